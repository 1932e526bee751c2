"""Benchmarks behind `dsilab bench ...`: each prints a table, writes JSON, and refreshes docs/benchmarks.md.

Timing lives here, never in tests. Every result file records the command, versions, seed and machine.
"""
from __future__ import annotations

import json
import os
import platform
import re
import sys
import time
from dataclasses import asdict, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import psutil

from .core import DsilabError, Run, seed_everything
from .course import ROOT
from .data import Collection, load_collection
from .metrics import evaluate

BENCH_DOC = ROOT / "docs" / "benchmarks.md"
#: The committed result JSON files (small), shipped inside the package: the notebooks read them the same way from a
#: checkout and from a pip install (Colab). Only `make bench` (--out dsilab/results) rewrites them.
RESULTS_DIR = Path(__file__).resolve().parent / "results"


def environment() -> dict[str, Any]:
    """Machine and library versions, so a number can be reproduced or explained."""
    import importlib.metadata as md

    versions = {}
    for pkg in ("dsilab", "torch", "transformers", "sentence-transformers", "rank-bm25", "ir-measures", "numpy", "faiss-cpu"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": _command(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB RAM, {platform.system()}",
        "accelerator": _accelerator(),
        "python": platform.python_version(),
        "versions": versions,
    }


def _command() -> str:
    """The command line as a reader would type it: `dsilab ...` for the console script and `python -m dsilab`."""
    if sys.argv and Path(sys.argv[0]).name in ("dsilab", "__main__.py"):
        return " ".join(["dsilab", *sys.argv[1:]])
    return " ".join(sys.argv)


def _accelerator() -> str:
    """"cpu" or the GPU's name: trained rows reproduce exactly only on the same kind of machine."""
    import torch

    return f"cuda: {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "cpu"


def time_retriever(build: Callable[[], Any], queries: dict[str, str], k: int = 100) -> tuple[Run, dict[str, float]]:
    """Build an index, search all queries, return the run and its costs (index s, ms/query, RSS)."""
    t0 = time.perf_counter()
    retriever = build()
    t1 = time.perf_counter()
    run = retriever.search(queries, k=k)
    t2 = time.perf_counter()
    cost = {
        "index_s": round(t1 - t0, 2),
        "ms_per_query": round(1000 * (t2 - t1) / max(len(queries), 1), 2),
        "rss_mb": round(psutil.Process().memory_info().rss / 2**20),
    }
    return run, cost


def bench_baselines(collection: Collection, split: str = "test", seed: int = 0) -> dict[str, Any]:
    """BM25 and dense retrieval on one split of one collection: metrics and costs."""
    from .baselines import BM25, Dense

    seed_everything(seed)
    queries, qrels = collection.split(split)
    rows = {}
    for name, build in {"BM25": lambda: BM25(collection), "Dense (MiniLM)": lambda: Dense(collection)}.items():
        run, cost = time_retriever(build, queries)
        rows[name] = {**{k: round(v, 4) for k, v in evaluate(run, qrels).items()}, **cost}
    return {
        "benchmark": "baselines",
        "collection": collection.name,
        "split": split,
        "n_docs": len(collection.docs),
        "n_queries": len(queries),
        "seed": seed,
        "environment": environment(),
        "results": rows,
    }


#: What `dsilab bench dsi` trains: changes to the default `Recipe`, one row each. The pure DSI rows (random docid rows,
#: as in the DSI paper) first; "dense-initialised" starts atomic docid rows at the document encodings, which makes it a
#: dense retriever with a learned query side, and it is labelled so.
DSI_VARIANTS: list[dict[str, Any]] = [{"docids": "atomic"}, {"docids": "naive"}, {"docids": "semantic"},
                                      {"docids": "atomic", "docid_init": "encoder"}]
DSI_METRICS = ("Hits@1", "Hits@5", "Hits@10", "MRR@10", "nDCG@10")


def _scores(run: Run, qrels: dict, groups: dict[str, list[str]], seed: int) -> dict[str, Any]:
    """Metrics with 95% intervals on all queries, then Hits@10 (with interval) on each group (seen/unseen)."""
    from .metrics import summarize

    row = summarize(run, qrels, DSI_METRICS, seed=seed)
    for name, qids in groups.items():
        if qids:
            part = summarize({q: run.get(q, []) for q in qids}, {q: qrels[q] for q in qids}, ("Hits@10",),
                             ("Hits@10",), seed=seed)
            row[f"{name} Hits@10"], row[f"{name} Hits@10 CI"] = part["Hits@10"], part["Hits@10 CI"]
    return row


def dsi_variant(collection: Collection, changes: Any, split: str = "test", seed: int = 0,
                threads: int | None = None, name: str | None = None, return_result: bool = False) -> Any:
    """Train one DSI recipe to convergence (`dsilab.recipes.train_dsi`) and read it once on `split`: its table row.

    changes: a `Recipe`, or changes to the default one; threads: this process's share of the CPU cores when several
    variants run side by side (each defaults to all); name: the row's label (default: the recipe's);
    return_result: also return the `DSIResult` (model, history), as (row, result).
    """
    import torch

    if threads:
        torch.set_num_threads(threads)

    from .adapters import parameter_report
    from .recipes import Recipe, seen_unseen, train_dsi

    limit = os.environ.get("DSILAB_TIME_LIMIT_S")  # e.g. a GPU lease: training stops there and the row says so
    if not isinstance(changes, Recipe):
        changes = Recipe(**{"seed": seed, **changes})
    recipe = replace(changes, time_limit_s=float(limit)) if limit else changes
    result = train_dsi(collection, recipe)
    queries, qrels = collection.split(split)
    t0 = time.perf_counter()
    run = result.search(queries, k=10)
    ms = 1000 * (time.perf_counter() - t0) / max(len(queries), 1)
    row = _scores(run, qrels, seen_unseen(result.collection, split), seed)
    summary = result.summary()
    peak = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None
    params = parameter_report(result.model)
    # training state: the weights, plus a gradient and AdamW's 2 fp32 moments per trainable weight
    state_mb = params["weights_mb"] + 3 * 4 * params["trainable"] / 2**20
    row = {**row, "memo Hits@1": summary["memo Hits@1"], "steps": summary["steps"],
            "steps_to_memorise": summary["steps_to_memorise"], "seconds_to_memorise": summary["seconds_to_memorise"],
            "stopped": summary["stopped"],
            "best dev Hits@1": summary["best dev"].get("Hits@1"), "train_s": summary["train_s"],
            "step_ms": summary["step_ms"], "ms_per_query": round(ms, 2), "peak_mb": summary["peak_mb"],
            **({"gpu_peak_mb": round(peak)} if peak else {}), "trainable_M": round(params["trainable"] / 1e6, 3),
            "trainable_pct": params["trainable_pct"], "weights_mb": params["weights_mb"], "train_state_mb": round(state_mb, 1),
            **({"sparsity": summary["sparsity"]} if recipe.prune else {}),
            "label": name or recipe.label, "dev_from": summary["dev_from"], "history": summary["history"]}
    return (row, result) if return_result else row


def bench_dsi(collection: Collection, split: str = "test", seed: int = 0,
              variants: list[dict[str, Any]] | dict[str, dict[str, Any]] | None = None,
              jobs: int | None = None) -> dict[str, Any]:
    """BM25, dense (untrained and fine-tuned) and DSI variants trained to convergence, all read on `split` once.

    variants: Recipe changes, one per row (a dict names the rows; a list takes each recipe's label).

    Each DSI variant trains in a fresh process (its own peak memory); `jobs` (default: env DSILAB_BENCH_JOBS or 1)
    run side by side, e.g. on a GPU. Settings are the default `Recipe` for every collection; the best DSI variant is
    chosen on dev Hits@1 (`selected_on`). Every Hits@k carries a 95% bootstrap interval; the chance row is what a
    random ranking scores; "seen"/"unseen" split the test queries by whether a training query points to a relevant doc.
    """
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    from .baselines import BM25, Dense
    from .metrics import chance
    from .recipes import Recipe, seen_unseen, with_dev

    seed_everything(seed)
    queries, qrels = collection.split(split)
    trained_on, dev_from = with_dev(collection, seed=seed)
    groups = seen_unseen(trained_on, split)
    rows: dict[str, dict[str, Any]] = {"chance (random ranking)": {
        "Hits@1": round(chance(qrels, len(collection.docs), 1), 4), "Hits@10": round(chance(qrels, len(collection.docs), 10), 4)}}
    baselines: dict[str, Any] = {"BM25": lambda: BM25(collection), "Dense (MiniLM)": lambda: Dense(collection)}
    if "train" in trained_on.qrels:
        from .baselines import FineTunedDense

        baselines["Dense (MiniLM fine-tuned on train queries)"] = lambda: FineTunedDense(trained_on, seed=seed)
    for name, build in baselines.items():
        t0 = time.perf_counter()
        run, cost = time_retriever(build, queries)
        rows[name] = {**_scores(run, qrels, groups, seed), "train_s": round(time.perf_counter() - t0),
                      "ms_per_query": cost["ms_per_query"]}
        print(name, {k: v for k, v in rows[name].items() if "CI" not in k}, flush=True)
    variants = variants or DSI_VARIANTS
    names = list(variants) if isinstance(variants, dict) else [None] * len(variants)
    changes = list(variants.values()) if isinstance(variants, dict) else variants
    jobs = jobs or int(os.environ.get("DSILAB_BENCH_JOBS", 1))
    with ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn"), max_tasks_per_child=1) as pool:
        threads = max(1, (os.cpu_count() or 1) // jobs) if jobs > 1 else None
        futures = [pool.submit(dsi_variant, collection, v, split, seed, threads, n) for n, v in zip(names, changes)]
        failed: dict[str, str] = {}  # a variant that fails is reported, and the others' rows are kept
        for n, v, fut in zip(names, changes, futures):
            try:
                row = fut.result()
            except Exception as e:  # noqa: BLE001  (recorded in the result; run_benchmark then exits non-zero)
                label = n or Recipe(**v).label
                failed[label] = f"{type(e).__name__}: {e}"
                print(f"{label}: FAILED {failed[label]}", flush=True)
                continue
            rows[row.pop("label")] = row
            print(f"{next(reversed(rows))}: " + ", ".join(f"{k} {row[k]}" for k in
                  ("Hits@1", "Hits@10", "memo Hits@1", "steps", "stopped", "train_s")), flush=True)
    dsi = {name: r for name, r in rows.items() if "memo Hits@1" in r}
    best = max(dsi, key=lambda n: (dsi[n]["best dev Hits@1"] or 0)) if dsi and dev_from != "none" else None
    history = {name: r.pop("history") for name, r in dsi.items()}
    return {
        "benchmark": "dsi",
        "collection": collection.name,
        "split": split,
        "n_docs": len(collection.docs),
        "n_queries": len(queries),
        "groups": {g: len(q) for g, q in groups.items()},
        "seed": seed,
        "setting": "supervised (indexing + training queries)" if "train" in trained_on.qrels
                   else "zero-shot (indexing only: the collection has no training queries)",
        "tried": variants,
        "recipe": "dsilab.recipes.Recipe() defaults, changed per row as in `tried`",
        "dev_from": dev_from,
        "selected_on": "dev" if best else None,
        "best_dsi": best,
        "notes": [f"Best DSI variant by dev Hits@1 (dev from {dev_from}): {best}." if best else
                  "No dev queries: no variant is selected; the rows are compared as they are.",
                  "Hits@k = ir-measures' Success@k; [a, b] = 95% bootstrap interval over queries; "
                  "the chance row is a uniformly random ranking."],
        "environment": environment(),
        "results": rows,
        "history": history,
        **({"failed": failed} if failed else {}),
    }


def _cell(v: Any) -> str:
    if isinstance(v, list) and len(v) == 2:
        return f"[{v[0]:.3f}, {v[1]:.3f}]"
    if v is None:
        return "-"
    if isinstance(v, float) and 0 < abs(v) < 0.001:
        return f"{v:.0e}"  # learning rates and the like
    return f"{v:.3f}" if isinstance(v, float) and v < 10 else str(v)


def format_table(rows: dict[str, dict[str, Any]]) -> str:
    """A Markdown table, one row per method, one column per metric/cost."""
    seen = list(dict.fromkeys(c for row in rows.values() for c in row))  # every column, in order of first use
    cols = [x for c in seen if not c.endswith(" CI") for x in (c, f"{c} CI") if x in seen]  # an interval after its metric
    lines = ["| method | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, row in rows.items():
        lines.append(f"| {name} | " + " | ".join(_cell(row.get(c, "-")) for c in cols) + " |")
    return "\n".join(lines)


def append_partial(row: dict[str, Any]) -> None:
    """Append a finished row as one JSON line to the file named by env DSILAB_PARTIAL, if set: on a device lease that
    may end before the whole benchmark does, every finished row is already on disk (in one file: a lease returns
    only a few files). Rows of processes side by side are appended under a lock."""
    partial = os.environ.get("DSILAB_PARTIAL")
    if not partial:
        return
    import fcntl

    os.makedirs(os.path.dirname(partial) or ".", exist_ok=True)
    with open(partial, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.write(json.dumps(row) + "\n")


def write_result(result: dict[str, Any], out_dir: str | Path = "build/bench", doc: Path | None = None) -> Path:
    """Save the JSON in `out_dir`; the docs section is rewritten only for an explicit `doc`, or when `out_dir` is
    dsilab/results (what `make bench` passes): a user's `dsilab bench ...` never edits the repository's docs."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{result['benchmark']}-{result['collection']}")
    path = out / f"{slug}.json"
    path.write_text(json.dumps(result, indent=2))
    if doc is None and out.resolve() != RESULTS_DIR.resolve():
        return path
    env = result["environment"]
    section = (
        f"### {result['benchmark']} on {result['collection']} ({result['split']} split: "
        f"{result['n_queries']} queries, {result['n_docs']} docs)\n\n"
        f"{format_table(result['results'])}\n\n"
        + (f"Setting: {result['setting']}.\n\n" if isinstance(result.get("setting"), str) else "")
        + "".join(f"{note}\n\n" for note in result.get("notes", []))
        + f"Command: `{env['command']}` · seed {result['seed']} · {env['machine']} · {env['date']} · "
        + ", ".join(f"{k} {v}" for k, v in env["versions"].items())
        + "\n"
    )
    update_doc_section(doc or BENCH_DOC, slug, section)
    return path


def update_doc_section(doc: Path, key: str, body: str) -> None:
    """Replace (or append) the block between `<!-- bench:key -->` markers, leaving the rest alone."""
    begin, end = f"<!-- bench:{key} -->", f"<!-- /bench:{key} -->"
    text = doc.read_text(encoding="utf-8") if doc.is_file() else "# Benchmarks\n"
    block = f"{begin}\n{body}{end}"
    if begin in text and end in text:
        text = text[: text.index(begin)] + block + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(text, encoding="utf-8")


def bench_ann(collection: Collection, split: str = "test", seed: int = 0) -> dict[str, Any]:
    """Soft tree and learned hashing vs flat / IVF / k-means tree / LSH, with FAISS IVF-Flat and HNSW as the
    industrial anchor: recall@10 against distance computations per query and ms/query, training time, and the two
    goals the soft tree and the learned hash were set.

    Vectors are MiniLM embeddings of `collection` (docs = database); the index learns from the train split, or, for
    a collection without one, from spans of its documents (env DSILAB_ANN_TRAIN_ON = "train queries" or "document
    spans" chooses; default "auto"). `--collection synthetic` instead uses 100,000 x 384 clustered synthetic vectors
    (`dsilab.ann.synthetic_vectors`; `DSILAB_ANN_N` sets another size), whose queries are perturbed database vectors.
    DSILAB_ANN_ONLY=reference runs flat, IVF and FAISS only (e.g. at 1M vectors, where training the learned
    structures does not fit a laptop run); DSILAB_ANN_ONLY=structures every index once, without the 3-seed
    soft-sort / joint-training comparisons.
    """
    from .ann import lab_vectors, synthetic_vectors
    from .ann.experiments import run_ann_benchmark

    seed_everything(seed)
    if collection.name.startswith("synthetic"):
        vs = synthetic_vectors(n=int(os.environ.get("DSILAB_ANN_N", 100_000)), seed=seed)
        name, split = vs.name, "synthetic queries"
    else:
        train_on = os.environ.get("DSILAB_ANN_TRAIN_ON", "auto")
        vs, name = lab_vectors(collection, split=split, train_on=train_on, seed=seed), collection.name
    out = run_ann_benchmark(vs, seed=seed, only=os.environ.get("DSILAB_ANN_ONLY") or None)
    tested = split if split.endswith("queries") else f"{split} queries"
    setting = (f"index trained on {vs.meta.get('train_signal')} ({len(vs.train_queries)} training queries, each with its "
               f"exact top-{vs.k} database vectors as targets); the {tested} are only searched")
    slug = f"-{out['only']}" if out.get("only") else ""
    return {"benchmark": "ann", "collection": f"{name}{slug}", "split": split, "seed": seed, "setting": setting,
            "environment": environment(), **out}


#: `dsilab bench efficiency`: the same DSI recipe trained several ways (changes to EFFICIENCY_BASE, a `Recipe`).
#: "full fine-tuning" unfreezes the pretrained encoder at BERT's usual fine-tuning rate (the new decoder keeps the
#: recipe's 1e-3); LoRA/QLoRA adapt it with rank-8 adapters; the pruned rows are full fine-tuning with gradual
#: magnitude pruning of every linear layer. Each trains to convergence, like every DSI row.
EFFICIENCY_BASE: dict[str, Any] = {"docids": "atomic", "docid_init": "encoder", "doc_len": 32, "batch_size": 16}
EFFICIENCY_VARIANTS: dict[str, dict[str, Any]] = {
    "frozen encoder (default)": {},
    "full fine-tuning": {"freeze_encoder": False, "encoder_lr": 5e-5},
    "LoRA r=8": {"adapter": "lora", "adapter_kwargs": {"r": 8, "alpha": 16}},
    "QLoRA r=8 (NF4)": {"adapter": "qlora", "adapter_kwargs": {"r": 8, "alpha": 16, "double_quant": True}},
    "pruned 50%": {"freeze_encoder": False, "encoder_lr": 5e-5, "prune": 0.5},
    "pruned 80%": {"freeze_encoder": False, "encoder_lr": 5e-5, "prune": 0.8},
}

#: What `dsilab bench efficiency` trains by default (pruned 50% runs in notebook 07's full mode).
EFFICIENCY_BENCH = ["frozen encoder (default)", "full fine-tuning", "LoRA r=8", "QLoRA r=8 (NF4)", "pruned 80%"]


def _efficiency_changes(name: str) -> dict[str, Any]:
    """Recipe changes of one efficiency variant: EFFICIENCY_BASE + its own."""
    if name not in EFFICIENCY_VARIANTS:
        raise DsilabError(f"unknown efficiency variant {name!r}; choose from {list(EFFICIENCY_VARIANTS)}.")
    return {**EFFICIENCY_BASE, **EFFICIENCY_VARIANTS[name]}


def efficiency_recipe(name: str, **changes: Any):
    """The `Recipe` of one efficiency variant (EFFICIENCY_BASE + its changes + yours)."""
    from .recipes import Recipe

    return Recipe(**{**_efficiency_changes(name), **changes})


def bench_efficiency(collection: Collection, split: str = "test", seed: int = 0, topics: int | None = 3,
                     variants: list[str] | None = None) -> dict[str, Any]:
    """Frozen vs full vs LoRA vs QLoRA vs pruned DSI training, each to convergence in a fresh process (its own peak RSS).

    Every row trains MiniLM to convergence, which on a CPU is slow, so by default the table trains on the documents of
    `topics` lab topics (None: the whole collection); its baselines are read on the same queries.
    """
    subset = collection.topics(topics) if topics and collection.meta.get("docs") else collection
    names = variants or EFFICIENCY_BENCH
    result = bench_dsi(subset, split, seed, {n: _efficiency_changes(n) for n in names})
    import torch

    result.update({
        "benchmark": "efficiency", "collection": collection.name, "subset": subset.name,
        "setting": f"{result['setting']}; minilm-seq2seq (2-layer decoder), each row = dsilab.recipes.Recipe"
                   f"({', '.join(f'{k}={v!r}' for k, v in EFFICIENCY_BASE.items())}) + the row's changes (`tried`), "
                   f"trained to convergence; on {subset.name} (a MiniLM training step costs about a second on a "
                   "2-core CPU); train_state_mb = weights + gradient + 2 AdamW moments of the trainable weights",
        "torch_threads": torch.get_num_threads()})
    return result


#: `dsilab bench qg`: the DSI recipe whose rows differ only in their generated queries (DSI-QG). Atomic docids starting
#: at the document encodings: the best DSI row on SciFact's dev queries (dsilab/results/dsi-scifact.json).
QG_BASE: dict[str, Any] = {"docids": "atomic", "docid_init": "encoder"}


def _qg_settings(n_values: list[int] | None, base: dict[str, Any] | None) -> tuple[list[int], dict[str, Any]]:
    """Queries per document (env DSILAB_QG_N, e.g. "5,20"; default 5) and the rows' recipe: QG_BASE + env
    DSILAB_QG_RECIPE (JSON, e.g. '{"eval_every": 400}' on SciFact, where 5 epochs of generated queries are long) + `base`."""
    n_values = sorted(n_values or [int(x) for x in os.environ.get("DSILAB_QG_N", "5").split(",")])
    return n_values, {**QG_BASE, **json.loads(os.environ.get("DSILAB_QG_RECIPE", "{}")), **(base or {})}


def prepare_qg(collection: Collection, seed: int = 0, n_values: list[int] | None = None) -> dict[str, Any]:
    """Train the query generator on the training split and generate every set of queries `bench_qg` trains on
    (cached on disk, so that the variant processes read them); returns the generator's report and each generator's
    quality. A GPU run can call it alone first, to stay within one command's time limit."""
    from .querygen import QGConfig, generate_queries, query_quality, real_queries, train_generator
    from .recipes import with_dev

    trained_on, dev_from = with_dev(collection, seed=seed)
    if "train" not in trained_on.qrels:
        raise DsilabError(f"bench qg trains a query generator on training queries; {collection.name!r} has none "
                          f"(splits: {collection.splits}). Use a supervised collection such as lab or SciFact.")
    n_values, _ = _qg_settings(n_values, None)
    t0 = time.perf_counter()
    gen = train_generator(trained_on, QGConfig(seed=seed))
    report = {"config": asdict(gen.config), "train_s": round(gen.train_seconds), "history": gen.history,
              "best held-out loss": min((h["dev loss"] for h in gen.history), default=None), "held out from": dev_from}
    quality: dict[str, Any] = {}
    for name in ("span", "trained"):
        for n in n_values:
            queries = generate_queries(trained_on, n, name, seed=seed)
        quality[name] = {"n_per_doc": n_values[-1], **query_quality(trained_on, queries, seed=seed)}
        print(f"{name} queries:", quality[name], flush=True)
    report["generate_s"] = round(time.perf_counter() - t0)
    quality["real training queries"] = query_quality(trained_on, real_queries(trained_on), seed=seed)
    return {"generator": report, "quality": quality}


def bench_qg(collection: Collection, split: str = "test", seed: int = 0, n_values: list[int] | None = None,
             base: dict[str, Any] | None = None) -> dict[str, Any]:
    """DSI-QG: the same DSI recipe trained with no generated queries, with span queries and with queries from the
    generator trained here (n per document each), to convergence; the generators' quality read by BM25 beside it.

    Generators learn from the training split only (dev held out from it when the collection has none), so test
    queries never reach training. n_values and the recipe: see `_qg_settings`.
    """
    n_values, base = _qg_settings(n_values, base)
    prepared = prepare_qg(collection, seed, n_values)
    variants = {"DSI (indexing + training queries)": base}
    for n in n_values:
        variants[f"DSI + {n} span queries/doc"] = {**base, "pseudo_per_doc": n, "query_generator": "span"}
        variants[f"DSI-QG: + {n} generated queries/doc"] = {**base, "pseudo_per_doc": n, "query_generator": "trained"}
    result = bench_dsi(collection, split, seed, variants)
    result.update({"benchmark": "qg", **prepared,
                   "setting": f"{result['setting']}; every DSI row = Recipe({', '.join(f'{k}={v!r}' for k, v in base.items())})"
                              " + its generated queries, trained to convergence"})
    result["notes"].append("Quality: the share of generated queries whose source document is BM25's top-1 "
                           "(a seeded sample of at most 5,000 queries), with a 95% bootstrap interval.")
    return result


def bench_augment(collection: Collection, split: str = "test", seed: int = 0) -> dict[str, Any]:
    """Augmentation ablation (none / stopwords / num2text / POS-MLM / all) with DSI over 3 seeds: see dsilab.augment.ablation."""
    from .augment.ablation import bench_augment as ablation

    return ablation(collection, split=split, seed=seed, environment=environment())


def bench_dgi(collection: Collection, split: str = "test", seed: int = 0) -> dict[str, Any]:
    """DGI vs DSI-semantic on the same backbone, with the ablations, per popularity bucket: see dsilab.dgi.study.

    Env (for device runs split into parts): DSILAB_DGI_SEEDS ("0,1,2"), DSILAB_DGI_VARIANTS (";"-separated names of
    dsilab.dgi.study.VARIANTS), DSILAB_DGI_RECIPE (JSON changes to the default Recipe, the same for every row)."""
    from .dgi.study import bench_dgi as run, results_rows

    seeds = tuple(int(s) for s in os.environ.get("DSILAB_DGI_SEEDS", f"{seed},{seed + 1},{seed + 2}").split(","))
    variants = tuple(os.environ["DSILAB_DGI_VARIANTS"].split(";")) if os.environ.get("DSILAB_DGI_VARIANTS") else None
    recipe = json.loads(os.environ.get("DSILAB_DGI_RECIPE", "{}"))
    result = run(collection, split, seeds, variants, recipe=recipe)
    return {**result, "results": results_rows(result), "environment": environment(),
            "failed": [f"{r['variant']} · seed {r['seed']}: {r['error']}" for r in result["rows"] if "error" in r]}


def bench_all(collection: Collection, split: str = "test", seed: int = 0) -> dict[str, Any]:
    """Every retriever of the course in one table, each in a fresh process: see dsilab.bench_all."""
    from .bench_all import bench_all as run

    return run(collection, split=split, seed=seed)


BENCHMARKS: dict[str, Callable[..., dict[str, Any]]] = {"augment": bench_augment, "baselines": bench_baselines, "dsi": bench_dsi, "ann": bench_ann,
                                                      "efficiency": bench_efficiency, "dgi": bench_dgi, "all": bench_all,
                                                      "qg": bench_qg}


def bench_incremental(collection: Collection, split: str = "test", seed: int = 0) -> dict[str, Any]:
    """Adding 20% new documents to a DSI index: continue vs replay vs retrain, BM25 and dense: see dsilab.incremental."""
    from .incremental import bench_incremental as run

    return run(collection, split=split, seed=seed)


BENCHMARKS["incremental"] = bench_incremental


def bench_throughput(collection: Collection, split: str = "test", seed: int = 0) -> dict[str, Any]:
    """Tokens/s of the DSI training loop vs a bare forward+backward of the same network: see dsilab.scaling."""
    from .scaling import bench_throughput as run

    return run(collection, split=split, seed=seed)


def bench_scaling(collection: Collection, split: str = "test", seed: int = 0) -> dict[str, Any]:
    """Corpus size, model size, indexing:retrieval ratio and forgetting during training: see dsilab.scaling."""
    from .scaling import bench_scaling as run

    return run(collection, split=split, seed=seed)


BENCHMARKS["throughput"] = bench_throughput
BENCHMARKS["scaling"] = bench_scaling


def run_benchmark(name: str, collection: str = "lab", split: str = "test", seed: int = 0, out_dir: str = "build/bench") -> dict[str, Any]:
    """Run one named benchmark, print its table, write JSON and the docs section."""
    result = BENCHMARKS[name](load_collection(collection), split=split, seed=seed)
    print(format_table(result["results"]))
    path = write_result(result, out_dir)
    if name == "ann":  # the recall-vs-cost plot beside the JSON
        from .ann.experiments import save_plots

        print(f"wrote {save_plots(result, path.with_suffix('.png'))}")
    if result.get("failed"):  # the finished rows are written; the failures must still fail the command
        raise DsilabError(f"{len(result['failed'])} variant(s) failed (rows written to {path}): {result['failed']}")
    print(f"wrote {path}" + (f" and updated {BENCH_DOC.relative_to(ROOT)}" if Path(out_dir).resolve() == RESULTS_DIR.resolve() else ""))
    return result
