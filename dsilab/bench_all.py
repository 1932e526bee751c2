"""`dsilab bench all`: every retriever of the course on the same test queries, in one table, with quality-vs-cost plots.

Each method trains on the collection's train split (DSI also indexes every document) and is read on
`split`. Methods measured here run in their own fresh process, so `peak_mb` is that method's own peak
RSS (the on-disk MiniLM embedding cache is shared, as in the notebooks). DSI rows come from `dsilab
bench dsi` (run first when its result is missing), so no model is trained twice and this table agrees with
the detailed sections of docs/benchmarks.md; `source` says which.
"""
from __future__ import annotations

import json
import multiprocessing as mp
import resource
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .core import DsilabError, Run, seed_everything
from .data import Collection
from .metrics import evaluate

METRICS = ("Hits@1", "Hits@10", "MRR@10")
COLUMNS = ("family", *METRICS, "train_s", "ms_per_query", "peak_mb", "source")


def _row(run: Run, qrels, train_s: float, query_s: float, n_queries: int) -> dict[str, Any]:
    return {**{k: round(v, 4) for k, v in evaluate(run, qrels, METRICS).items()}, "train_s": round(train_s, 1),
            "ms_per_query": round(1000 * query_s / max(n_queries, 1), 2)}


# -- the methods: each (collection, split, seed) -> row -------------------------------------------------
def _baseline(name: str) -> Callable[..., dict[str, Any]]:
    def run(collection: Collection, split: str, seed: int) -> dict[str, Any]:
        from .baselines import BM25, Dense

        queries, qrels = collection.split(split)
        t0 = time.perf_counter()
        index = BM25(collection) if name == "bm25" else Dense(collection)
        t1 = time.perf_counter()
        result = index.search(queries, k=10)
        return _row(result, qrels, t1 - t0, time.perf_counter() - t1, len(queries))
    return run


def _ann(name: str) -> Callable[..., dict[str, Any]]:
    """ANN over MiniLM vectors; trained (soft tree, learned hash) on the train queries' exact neighbours."""
    def run(collection: Collection, split: str, seed: int) -> dict[str, Any]:
        from .ann import IVF, LSH, KMeansTree, LearnedHash, SoftTree
        from .ann.experiments import MASS, TREE_TRAIN
        from .ann.vectors import lab_vectors

        vs = lab_vectors(collection, split=split)
        t0 = time.perf_counter()
        if name == "ivf":
            index, kw = IVF(vs.database, vs.ids, nlist=16, seed=seed), {"nprobe": 2}
        elif name == "soft-tree":
            kmt = KMeansTree(vs.database, vs.ids, k=4, depth=3, seed=seed)
            index = SoftTree(vs.database, vs.ids, tree=kmt.tree, seed=seed, lam=1.0, **TREE_TRAIN)
            index.fit(vs.train_queries, vs.train_targets)
            kw = {"beam": 4, "mass": MASS}
        elif name == "lsh":
            index, kw = LSH(vs.database, vs.ids, bits=32, seed=seed), {"candidates": 20}
        else:
            index = LearnedHash(vs.database, vs.ids, bits=32, seed=seed).fit(vs.train_queries, vs.train_targets)
            kw = {"candidates": 20}
        t1 = time.perf_counter()
        result = index.search(vs.test_queries, vs.test_qids, k=10, **kw)
        row = _row(result.run, vs.test_qrels, t1 - t0, time.perf_counter() - t1, len(vs.test_qids))
        return {**row, "distances/query": round(float(np.mean(result.cost)), 1)}
    return run


def _dgi(collection: Collection, split: str, seed: int) -> dict[str, Any]:
    from .dgi import DGIConfig, DGIRetriever
    from .embed import load_encoder

    enc = load_encoder("minilm")
    train_q, train_qrels = collection.split("train")
    queries, qrels = collection.split(split)
    row_of = {d: i for i, d in enumerate(collection.doc_ids)}
    pairs = [(q, d) for q, rels in train_qrels.items() for d, g in rels.items() if g > 0]
    t0 = time.perf_counter()
    doc_emb = enc.encode_cached(collection.contents)
    q_emb = enc.encode_cached([train_q[q] for q, _ in pairs])
    dgi = DGIRetriever(DGIConfig(seed=seed)).fit(collection.doc_ids, doc_emb, q_emb, np.array([row_of[d] for _, d in pairs]))
    t1 = time.perf_counter()
    result = dgi.search_embeddings(list(queries), enc.encode_cached(list(queries.values())), k=10)
    return _row(result, qrels, t1 - t0, time.perf_counter() - t1, len(queries))


#: name -> (family, method); the order of the table. A method given as (benchmark, row) is a row of that
#: per-topic benchmark (same code and sizes), run first when its result is missing: DSI is not trained twice.
#: Every row reads the same test queries. Efficient training (`bench efficiency`, 3 lab topics: a MiniLM training
#: step costs about a second on a 2-core CPU) and augmentation (`bench augment`, 3 seeds) have their own tables,
#: with their own baselines on their own queries.
METHODS: dict[str, tuple[str, Any]] = {
    "BM25": ("baseline", _baseline("bm25")),
    "Dense (MiniLM, exact)": ("baseline", _baseline("dense")),
    "IVF 16 lists, nprobe 2": ("ANN over dense", _ann("ivf")),
    "Soft tree 4^3, lambda 1, beam 4": ("ANN over dense", _ann("soft-tree")),
    "LSH 32 bits, 20 candidates": ("ANN over dense", _ann("lsh")),
    "Learned hash 32 bits, 20 candidates": ("ANN over dense", _ann("learned-hash")),
    "DSI atomic": ("DSI", ("dsi", "DSI atomic")),
    "DSI naive": ("DSI", ("dsi", "DSI naive")),
    "DSI semantic": ("DSI", ("dsi", "DSI semantic")),
    "DSI atomic, dense-initialised rows": ("DSI", ("dsi", "DSI atomic (dense-initialised rows)")),
    "DGI (learned codes)": ("DGI", _dgi),
}


def _from_benchmark(bench: str, label: str, collection: Collection, split: str, seed: int) -> dict[str, Any] | None:
    """A row of a per-topic benchmark's committed result, running that benchmark first if it is missing or other."""
    from .bench import BENCHMARKS, RESULTS_DIR, write_result

    path = RESULTS_DIR / f"{bench}-{collection.name}.json"
    result = json.loads(path.read_text()) if path.is_file() else None
    if result is None or (result["split"], result["seed"]) != (split, seed):
        print(f"bench all: running `dsilab bench {bench}` first ({path.name} missing or from another setting)", flush=True)
        result = BENCHMARKS[bench](collection, split=split, seed=seed)
        write_result(result, RESULTS_DIR)
    if label not in result["results"]:  # that benchmark ran without this variant: say so, do not invent a row
        return None
    r = result["results"][label]
    return {k: r[k] for k in METRICS} | {"train_s": r["train_s"], "ms_per_query": r["ms_per_query"],
                                         "peak_mb": r.get("peak_rss_mb", r.get("peak_mb")),
                                         "source": f"bench {bench}" + (f" ({r['machine']})" if r.get("machine") else "")}


def _measured(name: str, collection: Collection, split: str, seed: int) -> dict[str, Any]:
    """Run one method in this (fresh) process and add its peak RSS."""
    from .core import configure_threads

    configure_threads()
    seed_everything(seed)
    t0 = time.perf_counter()
    row = METHODS[name][1](collection, split, seed)
    return {"family": METHODS[name][0], **row, "wall_s": round(time.perf_counter() - t0, 1),
            "peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024), "source": "bench all"}


def bench_all(collection: Collection, split: str = "test", seed: int = 0, methods: list[str] | None = None,
              plot_dir: str | Path | None = None) -> dict[str, Any]:
    """Every method of METHODS (or `methods`) on `split`, each in a fresh process; writes the quality-vs-cost PNGs."""
    from .bench import RESULTS_DIR, environment

    unknown = sorted(set(methods or []) - set(METHODS))
    if unknown:
        raise DsilabError(f"unknown method(s) {unknown}; choose from {list(METHODS)}.")
    if "train" not in collection.splits:
        raise DsilabError(f"bench all trains on a 'train' split; {collection.name!r} has {sorted(collection.splits)}. "
                          "Use `dsilab bench dsi` for the zero-shot setting (indexing + pseudo-queries only).")
    rows: dict[str, dict[str, Any]] = {}
    not_run: list[str] = []
    for name in methods or list(METHODS):
        family, method = METHODS[name]
        if isinstance(method, tuple):
            row = _from_benchmark(*method, collection, split, seed)
            if row is None:
                not_run.append(f"{name} ({method[0]} benchmark result has no row {method[1]!r})")
                continue
            rows[name] = {"family": family, **row}
        else:
            with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
                rows[name] = pool.submit(_measured, name, collection, split, seed).result()
        print(name, rows[name], flush=True)
    rows = {name: {c: r.get(c, "-") for c in COLUMNS} for name, r in rows.items()}  # one shape for the table
    queries, _ = collection.split(split)
    plots = plot_all(rows, Path(plot_dir or RESULTS_DIR) / f"all-{collection.name}.png", title=f"{collection.name}, {split} split")
    return {"benchmark": "all", "collection": collection.name, "split": split, "n_docs": len(collection.docs),
            "n_queries": len(queries), "seed": seed, "plot": plots.name, "environment": environment(),
            "results": rows, "not_run": not_run,
            "notes": [f"Not in this table: {', '.join(not_run)}."] if not_run else []}


def plot_all(rows: dict[str, dict[str, Any]], path: Path, title: str = "") -> Path:
    """Two panels: Hits@10 vs query latency, Hits@1 vs training time (log x), one colour per family.

    Points carry numbers and the names are listed beside the panels: 18 names written at their points overlap.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    families = list(dict.fromkeys(r["family"] for r in rows.values()))
    colours = dict(zip(families, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    number = {name: i for i, name in enumerate(rows, 1)}
    # a row trained on another machine (its source names it, e.g. "bench dsi (H100)"): its train_s is not this CPU's
    elsewhere = {name for name, r in rows.items() if "(" in str(r.get("source", ""))}
    fig, axes = plt.subplots(1, 2, figsize=(15, 5.5), gridspec_kw={"right": 0.72})
    for ax, (x, y, xlabel) in zip(axes, [("ms_per_query", "Hits@10", "query latency (ms/query, log)"),
                                         ("train_s", "Hits@1", "training / indexing time (s, log)")]):
        for name, r in rows.items():
            if not isinstance(r[x], (int, float)):
                continue
            ax.scatter(max(r[x], 1e-2), r[y], color=colours[r["family"]], label=r["family"],
                       marker="x" if name in elsewhere else "o")
            ax.annotate(str(number[name]), (max(r[x], 1e-2), r[y]), fontsize=7, xytext=(3, 2), textcoords="offset points")
        ax.set_xscale("log"); ax.set_xlabel(xlabel); ax.set_ylabel(y); ax.set_ylim(0, 1.05); ax.grid(alpha=0.3)
    handles = {h.get_label(): h for h in axes[0].collections}
    axes[0].legend(handles.values(), handles.keys(), loc="center left", fontsize=8)
    names = [f"{number[n]:>2}  {n}" + (f" (x: {rows[n]['source']})" if n in elsewhere else "") for n in rows]
    fig.text(0.735, 0.5, "\n".join(names), fontsize=7.5, va="center", family="monospace")
    fig.suptitle(f"Every method of the course: quality vs cost ({title})")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
