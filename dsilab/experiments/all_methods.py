"""`dsilab bench all`: every retriever of the course on the same test queries, in one table, with quality-vs-cost plots.

Each method is built as a `Retriever` (trained on the collection's train split if it learns; DSI also indexes
every document) and scored through the one call every retriever answers, `search(queries, k=10) -> Run`, on
`split`. `ms_per_query` is end to end (query text in, ranking out) but for the ANN rows, which time their index
alone (query vectors given: their encoding costs what Dense's does). Methods measured here run in their own fresh
process, so `peak_mb` is that method's own peak RSS (the on-disk MiniLM embedding cache is shared, as in the
notebooks). DSI rows come from `dsilab bench dsi` (run first when its result is missing), so no model is trained
twice and this table agrees with the detailed sections of docs/benchmarks.md; `source` says which, and names the
machine of a row measured on another one.
"""
from __future__ import annotations


import json
import resource
import time
from pathlib import Path
from typing import Any, Callable

from ..core import DsilabError, Retriever, Run, seed_everything
from ..data import Collection
from ..metrics import summarize

METRICS = ("Hits@1", "Hits@10", "MRR@10")
INTERVALS = ("Hits@1", "Hits@10")  # every Hits@k carries its 95% bootstrap interval
COLUMNS = ("family", *METRICS, *(f"{m} CI" for m in INTERVALS), "train_s", "ms_per_query", "peak_mb", "source")


def _row(run: Run, qrels, train_s: float, query_s: float, n_queries: int) -> dict[str, Any]:
    return {**summarize(run, qrels, METRICS, INTERVALS), "train_s": round(train_s, 1),
            "ms_per_query": round(1000 * query_s / max(n_queries, 1), 2)}


# -- the methods: each (collection, split, seed) -> a Retriever ------------------------------------------
def _baseline(name: str) -> Callable[..., Retriever]:
    def build(collection: Collection, split: str, seed: int) -> Retriever:
        from ..baselines import BM25, Dense

        return BM25(collection) if name == "bm25" else Dense(collection)
    return build


def _ann(name: str) -> Callable[..., Retriever]:
    """ANN over MiniLM vectors; trained (soft tree, learned hash) on the train queries' exact neighbours."""
    def build(collection: Collection, split: str, seed: int) -> Retriever:
        from ..ann import IVF, LSH, EncodedIndex, KMeansTree, LearnedHash, SoftTree
        from ..ann.sweeps import MASS, TREE_TRAIN
        from ..ann.vectors import lab_vectors

        vs = lab_vectors(collection, split=split)
        if name == "ivf":
            index, kw = IVF(vs.database, vs.ids, nlist=16, seed=seed), {"nprobe": 2}
        elif name == "soft-tree":
            kmt = KMeansTree(vs.database, vs.ids, k=4, depth=3, seed=seed)
            index = SoftTree(tree=kmt.tree, seed=seed, lam=1.0, **TREE_TRAIN)
            index.fit(vs.database, vs.ids, vs.train_queries, vs.train_targets)
            kw = {"beam": 4, "mass": MASS}
        elif name == "lsh":
            index, kw = LSH(vs.database, vs.ids, bits=32, seed=seed), {"candidates": 20}
        else:
            index = LearnedHash(bits=32, seed=seed).fit(vs.database, vs.ids, vs.train_queries, vs.train_targets)
            kw = {"candidates": 20}
        return EncodedIndex(index, vs.meta["encoder"], **kw)
    return build


def _dgi(collection: Collection, split: str, seed: int) -> Retriever:
    """DGI on the DSI backbone (`dsilab.dgi.train_dgi`, the default Recipe), trained to convergence: a DSIResult."""
    from ..dgi import train_dgi
    from ..recipes import Recipe

    return train_dgi(collection, Recipe(seed=seed))


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
    "DGI (residual codes, DSI backbone)": ("DGI", _dgi),
}


def _from_benchmark(bench: str, label: str, collection: Collection, split: str, seed: int,
                    out_dir: str | Path) -> dict[str, Any] | None:
    """A row of a per-topic benchmark's result: this run's (in `out_dir`), else the shipped one (read only), else that
    benchmark is run first and written to `out_dir`, never into the package."""
    from . import benchmark
    from ..results import RESULTS_DIR
    from .runner import write_result

    name = f"{bench}-{collection.name}.json"
    for folder in (Path(out_dir), RESULTS_DIR):
        result = json.loads((folder / name).read_text()) if (folder / name).is_file() else None
        if result is not None and (result["split"], result["seed"]) == (split, seed):
            break
    else:
        print(f"bench all: running `dsilab bench {bench}` first ({name} missing or from another setting)", flush=True)
        result = benchmark(bench)(collection, split=split, seed=seed)
        write_result(result, out_dir)
    if label not in result["results"]:  # that benchmark ran without this variant: say so, do not invent a row
        return None
    r = result["results"][label]
    intervals = {f"{m} CI": r[f"{m} CI"] for m in INTERVALS if f"{m} CI" in r}
    return {k: r[k] for k in METRICS} | intervals | {"train_s": r["train_s"], "ms_per_query": r["ms_per_query"],
                                                     "peak_mb": r.get("peak_rss_mb", r.get("peak_mb")),
                                                     "source": f"bench {bench}" + _elsewhere(r, result["environment"])}


def _elsewhere(row: dict[str, Any], env: dict[str, Any]) -> str:
    """The `source` suffix of a stored row timed on another kind of machine than this run's, e.g. " (H200)", else "":
    notebook 11 keeps such rows out of its like-for-like latency comparisons."""
    from .runner import environment

    if row.get("machine"):
        return f" ({row['machine']})"
    here, there = environment(), env.get("accelerator", "cpu")
    if (here["machine"], here["accelerator"]) == (env["machine"], there):
        return ""
    return f" ({there.removeprefix('cuda: ').removeprefix('NVIDIA ') if there != 'cpu' else env['machine']})"


#: The methods this module builds and trains itself; the others are rows of a per-topic benchmark.
BUILT_HERE = [name for name, (_, method) in METHODS.items() if callable(method)]


def build_retriever(name: str, collection: Collection, split: str = "test", seed: int = 0) -> Retriever:
    """The `Retriever` of method `name` (one of BUILT_HERE), trained on the train split if it learns."""
    if name not in BUILT_HERE:
        raise DsilabError(f"{name!r} is not built here; choose from {BUILT_HERE} (DSI rows come from `dsilab bench dsi`).")
    seed_everything(seed)
    return METHODS[name][1](collection, split, seed)


def _measured(name: str, collection: Collection, split: str, seed: int, threads: int | None = None,
              gpu: str | None = None) -> dict[str, Any]:
    """Build one method in this (fresh) process, score it through `search(queries, k=10)` and add its peak RSS."""
    from ..ann import EncodedIndex
    from ..core import configure_threads

    configure_threads(threads)
    queries, qrels = collection.split(split)
    t0 = time.perf_counter()
    retriever = build_retriever(name, collection, split, seed)
    t1 = time.perf_counter()
    run = retriever.search(queries, k=10)
    index_only = isinstance(retriever, EncodedIndex)  # an ANN row times its index alone: encoding is Dense's cost
    query_s = time.perf_counter() - t1 - (retriever.encode_s if index_only else 0.0)
    row = _row(run, qrels, t1 - t0, query_s, len(queries))
    if index_only:
        row["distances/query"] = round(retriever.last.mean_cost, 1)
    return {"family": METHODS[name][0], **row, "wall_s": round(time.perf_counter() - t0, 1),
            "peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024), "source": "bench all"}


def bench_all(collection: Collection, split: str = "test", seed: int = 0, methods: list[str] | None = None,
              add_rows: str | None = None, out_dir: str | Path = "build/bench") -> dict[str, Any]:
    """`dsilab bench all`: every method of the course on `split` in one table, each in a fresh process; writes the
    quality-vs-cost PNG, and any benchmark it had to run first (`bench dsi`), under --out only.

    Args:
        methods: the rows, names of dsilab.experiments.all_methods.METHODS (default: all of them), e.g. BM25
            "IVF 16 lists, nprobe 2" "DSI semantic"
        add_rows: a `bench all` JSON of the same collection, split and seed (e.g. its DGI row, trained on a GPU) whose
            rows this run did not measure join the table; `source` names the machine each was measured on
    """
    from .runner import header, in_processes

    unknown = sorted(set(methods or []) - set(METHODS))
    if unknown:
        raise DsilabError(f"unknown method(s) {unknown}; choose from {list(METHODS)}.")
    if "train" not in collection.splits:
        raise DsilabError(f"bench all trains on a 'train' split; {collection.name!r} has {sorted(collection.splits)}. "
                          "Use `dsilab bench dsi` for the zero-shot setting (indexing + pseudo-queries only).")
    added = _added_rows(Path(add_rows), collection, split, seed) if add_rows else {}  # checked before any training
    rows: dict[str, dict[str, Any]] = {}
    not_run: list[str] = []
    for name in methods or list(METHODS):
        family, method = METHODS[name]
        if isinstance(method, tuple):
            row = _from_benchmark(*method, collection, split, seed, out_dir)
            if row is None:
                not_run.append(f"{name} ({method[0]} benchmark result has no row {method[1]!r})")
                continue
            rows[name] = {"family": family, **row}
        else:
            rows[name] = in_processes(_measured, {name: (name, collection, split, seed)})[name]  # its own peak memory
            if "error" in rows[name]:
                raise DsilabError(f"bench all: {name} failed: {rows[name]['error']}")
        print(name, rows[name], flush=True)
    joined = [name for name in added if name not in rows]
    rows |= {name: added[name] for name in joined}
    rows = {name: rows[name] for name in METHODS if name in rows}  # the table's order
    not_run += [f"{name} (not among --methods)" for name in METHODS if methods and name not in rows]
    rows = {name: {c: r.get(c, "-") for c in COLUMNS} for name, r in rows.items()}  # one shape for the table
    queries, _ = collection.split(split)
    plots = plot_all(rows, Path(out_dir) / f"all-{collection.name}.png", title=f"{collection.name}, {split} split")
    notes = [f"Not in this table: {', '.join(not_run)}."] if not_run else []
    if joined:
        env = json.loads(Path(add_rows).read_text())["environment"]
        notes.append(f"Measured by another `bench all` run ({env['date']}, {env['machine']}, {env['accelerator']}): "
                     f"{', '.join(joined)}.")
    return {**header("all", collection, split, seed, len(queries)), "plot": plots.name, "results": rows, "not_run": not_run,
            "notes": notes}


def _added_rows(path: Path, collection: Collection, split: str, seed: int) -> dict[str, dict[str, Any]]:
    """The rows of another `bench all` result, each `source` naming where it was measured."""
    if not path.is_file():
        raise DsilabError(f"--add-rows {path}: no such file; give the JSON another `dsilab bench all` wrote.")
    other = json.loads(path.read_text())
    n_queries = len(collection.split(split)[0])
    if (other.get("benchmark"), other.get("collection"), other.get("split"), other.get("seed"), other.get("n_queries")) \
            != ("all", collection.name, split, seed, n_queries):
        raise DsilabError(f"--add-rows {path}: its rows are not on this table's queries (it is bench "
                          f"{other.get('benchmark')!r} on {other.get('collection')!r}, split {other.get('split')!r}, seed "
                          f"{other.get('seed')}, {other.get('n_queries')} queries; this table: {collection.name!r}, "
                          f"{split!r}, seed {seed}, {n_queries} queries).")
    where = _elsewhere({}, other["environment"])
    return {name: {**r, "source": r["source"] + where if where and "(" not in r["source"] else r["source"]}
            for name, r in other["results"].items()}


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
