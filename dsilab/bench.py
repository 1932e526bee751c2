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
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import psutil

from .core import Run, seed_everything
from .course import ROOT
from .data import Collection, load_collection
from .metrics import evaluate

BENCH_DOC = ROOT / "docs" / "benchmarks.md"
#: Committed copies of the result JSON files (small): what notebook 09 and the README quote.
RESULTS_DIR = ROOT / "docs" / "results"


def environment() -> dict[str, Any]:
    """Machine and library versions, so a number can be reproduced or explained."""
    import importlib.metadata as md

    versions = {}
    for pkg in ("dsilab", "torch", "transformers", "sentence-transformers", "rank-bm25", "ir-measures", "numpy"):
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


#: Sizes of `dsilab bench dsi`, small enough that the table trains on a 2-core CPU (see docs/benchmarks.md).
DSI_BENCH = {
    # measured on lab (atomic, docids starting at document encodings, no pseudo-queries): 10 epochs -> test
    # Hits@1 0.794 in 114 s on the 2-core CPU (make bench); 20 epochs bought ~1 point for twice the time, so 10
    # it is. Random docid rows: 0.521.
    "minilm-seq2seq": {"arch": {"decoder_layers": 2}, "epochs": 10, "lr": 3e-3, "batch_size": 64},
    "t5-scratch": {"arch": {"d_model": 192, "layers": 2, "decoder_layers": 2, "heads": 4, "d_ff": 768,
                            "vocab_size": 3000}, "epochs": 10, "lr": 2e-3, "batch_size": 64},
}
#: (backbone, docid kind, pseudo-queries per doc, docid_init) trained by default: supervised collections / zero-shot ones.
DSI_VARIANTS = [("minilm-seq2seq", "atomic", 0, "encoder"), ("minilm-seq2seq", "atomic", 0, "random"),
                ("minilm-seq2seq", "atomic", 2, "encoder"), ("minilm-seq2seq", "naive", 0, "encoder"),
                ("minilm-seq2seq", "semantic", 0, "encoder"), ("minilm-seq2seq", "semantic", 2, "encoder"),
                ("t5-scratch", "semantic", 2, "random")]
DSI_ZERO_SHOT = [("minilm-seq2seq", "atomic", 2, "encoder"), ("minilm-seq2seq", "semantic", 2, "encoder")]


DSI_METRICS = ("Hits@1", "Hits@5", "Hits@10", "MRR@10", "nDCG@10")


def dsi_row(collection: Collection, tree: Any, backbone: str, pseudo_per_doc: int, docid_init: str, split: str,
            seed: int, doc_len: int = 64) -> dict[str, Any]:
    """Train one DSI model at the `DSI_BENCH` size and measure it on `split`: metrics, memorisation, cost."""
    from .decode import search
    from .models import build_model
    from .tasks import TaskConfig, build_examples
    from .train import TrainConfig, train

    zero_shot = "train" not in collection.splits
    size = DSI_BENCH[backbone]
    task = TaskConfig(doc_len=doc_len, query_split=None if zero_shot else "train", pseudo_per_doc=pseudo_per_doc, seed=seed)
    examples = build_examples(collection, tree, task)
    model = build_model(backbone, tree, examples, seed=seed, docid_init=docid_init, **size["arch"])
    cfg = TrainConfig(epochs=size["epochs"], lr=size["lr"], batch_size=size["batch_size"], seed=seed,
                      warmup_steps=30, progress=False)
    result = train(model, examples, cfg)
    queries, qrels = collection.split(split)
    t0 = time.perf_counter()
    run = search(model, queries, k=10)
    ms = 1000 * (time.perf_counter() - t0) / max(len(queries), 1)
    docs = {e.doc_id: e.source for e in examples if e.task == "index"}
    memo = evaluate(search(model, docs, k=1), {d: {d: 1} for d in docs}, ("Hits@1",))["Hits@1"]
    return {**{k: round(v, 4) for k, v in evaluate(run, qrels, DSI_METRICS).items()},
            "memo Hits@1": round(memo, 4), "steps": result.steps, "step_ms": round(1000 * result.step_time_s),
            "train_s": round(result.train_seconds + result.cache_seconds), "peak_mb": result.peak_rss_mb,
            "ms_per_query": round(ms, 2)}



def bench_dsi(collection: Collection, split: str = "test", seed: int = 0,
              variants: list[tuple] | None = None, doc_len: int = 64) -> dict[str, Any]:
    """BM25, dense and DSI variants (backbone x docid kind x pseudo-queries per doc [x docid_init]) on one split.

    A collection with a "train" split trains on its real queries too; one without (e.g. CISI, test only)
    is the zero-shot setting: indexing + pseudo-queries only. Also reports indexing memorisation
    (doc text -> own docid, Hits@1), step time, CPU training time and peak memory (of the process so far).
    """
    import torch

    from .baselines import BM25, Dense
    from .docids import make_docids
    from .models import clear_encoder_cache

    seed_everything(seed)
    queries, qrels = collection.split(split)
    zero_shot = "train" not in collection.splits
    blank = {"memo Hits@1": "-", "steps": "-", "step_ms": "-", "train_s": "-", "peak_mb": "-"}
    rows: dict[str, dict[str, Any]] = {}
    for name, build in {"BM25": lambda: BM25(collection), "Dense (MiniLM)": lambda: Dense(collection)}.items():
        run, cost = time_retriever(build, queries)
        rows[name] = {**{k: round(v, 4) for k, v in evaluate(run, qrels, DSI_METRICS).items()}, **blank,
                      "ms_per_query": cost["ms_per_query"]}
    variants = variants or (DSI_ZERO_SHOT if zero_shot else DSI_VARIANTS)
    trees: dict[str, Any] = {}
    for backbone, kind, pq, *init in variants:
        init = init[0] if init else "auto"
        if kind not in trees:
            trees[kind] = make_docids(collection, kind, k=10, c=100, seed=seed)
        label = f"DSI {backbone} {kind}" + (f" +PQ{pq}" if pq else "") + (
            " (random docid rows)" if init == "random" and backbone != "t5-scratch" else "")
        rows[label] = dsi_row(collection, trees[kind], backbone, pq, init, split, seed, doc_len)
        print(label, rows[label], flush=True)
    clear_encoder_cache()
    return {
        "benchmark": "dsi",
        "collection": collection.name,
        "split": split,
        "n_docs": len(collection.docs),
        "n_queries": len(queries),
        "seed": seed,
        "setting": "zero-shot (indexing + pseudo-queries)" if zero_shot else "supervised (indexing + train queries +/- pseudo-queries)",
        "sizes": {b: DSI_BENCH[b] for b in {v[0] for v in variants}},
        "doc_len_words": doc_len,
        "torch_threads": torch.get_num_threads(),
        "docid_trees": {k: t.stats() for k, t in trees.items()},
        "environment": environment(),
        "results": rows,
    }


def _cell(v: Any) -> str:
    if isinstance(v, float) and 0 < abs(v) < 0.001:
        return f"{v:.0e}"  # learning rates and the like
    return f"{v:.3f}" if isinstance(v, float) and v < 10 else str(v)


def format_table(rows: dict[str, dict[str, Any]]) -> str:
    """A Markdown table, one row per method, one column per metric/cost."""
    cols = list(next(iter(rows.values())))
    lines = ["| method | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, row in rows.items():
        lines.append(f"| {name} | " + " | ".join(_cell(row.get(c, "-")) for c in cols) + " |")
    return "\n".join(lines)


def write_result(result: dict[str, Any], out_dir: str | Path = "build/bench", doc: Path | None = None) -> Path:
    """Save the JSON and replace this benchmark's section of docs/benchmarks.md."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{result['benchmark']}-{result['collection']}")
    path = out / f"{slug}.json"
    path.write_text(json.dumps(result, indent=2))
    if out.resolve() != RESULTS_DIR.resolve() and (doc is None or doc == BENCH_DOC):
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        (RESULTS_DIR / path.name).write_text(path.read_text())
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
    """Soft tree and learned hashing vs flat / IVF / k-means tree / LSH: recall@10 against distance
    computations per query, training time, ms/query, and the issue's two goals.

    Vectors are MiniLM embeddings of `collection` (docs = database, train split = training queries).
    `--collection synthetic` instead uses 100,000 x 384 clustered synthetic vectors
    (`dsilab.ann.synthetic_vectors`; `DSILAB_ANN_N` sets another size), whose queries are
    perturbed database vectors.
    """
    from .ann import lab_vectors, synthetic_vectors
    from .ann.experiments import run_ann_benchmark

    seed_everything(seed)
    if collection.name.startswith("synthetic"):
        vs = synthetic_vectors(n=int(os.environ.get("DSILAB_ANN_N", 100_000)), seed=seed)
        name, split = vs.name, "synthetic queries"
    else:
        vs, name = lab_vectors(collection, split=split), collection.name
    out = run_ann_benchmark(vs, seed=seed)
    return {"benchmark": "ann", "collection": name, "split": split, "seed": seed, "environment": environment(), **out}


#: `dsilab bench efficiency` (issue 6): the same DSI model (minilm-seq2seq, semantic docids) trained several ways.
#: "full" unfreezes the pretrained encoder (lower lr, as usual for fine-tuning); LoRA/QLoRA adapt it with
#: rank-8 adapters; the pruned rows are "full" with gradual magnitude pruning of every linear layer.
EFFICIENCY_VARIANTS: dict[str, dict[str, Any]] = {
    "frozen encoder (default)": {"adapter": "full", "arch": {"freeze_encoder": True}, "lr": 3e-3},
    # The pretrained encoder takes BERT's usual fine-tuning step (5e-5) and the new parts keep 3e-3: one lr for all
    # fails one side (1e-3 collapsed to chance; 2e-4 learned the decoder too slowly: Hits@1 0.025 on the whole lab).
    "full fine-tuning": {"adapter": "full", "arch": {"freeze_encoder": False}, "lr": 3e-3, "encoder_lr": 5e-5},
    "LoRA r=8": {"adapter": "lora", "adapter_kwargs": {"r": 8, "alpha": 16}, "lr": 3e-3},
    "QLoRA r=8 (NF4)": {"adapter": "qlora", "adapter_kwargs": {"r": 8, "alpha": 16, "double_quant": True}, "lr": 3e-3},
    "pruned 50%": {"adapter": "full", "arch": {"freeze_encoder": False}, "lr": 3e-3, "encoder_lr": 5e-5, "prune": 0.5},
    "pruned 80%": {"adapter": "full", "arch": {"freeze_encoder": False}, "lr": 3e-3, "encoder_lr": 5e-5, "prune": 0.8},
}


#: What `dsilab bench efficiency` trains by default (pruned 50% runs in notebook 07's full mode).
EFFICIENCY_BENCH = ["frozen encoder (default)", "full fine-tuning", "LoRA r=8", "QLoRA r=8 (NF4)", "pruned 80%"]


def efficiency_variant(collection: Collection, spec: dict[str, Any], split: str = "test", seed: int = 0,
                       epochs: int = 10, batch_size: int = 64, docid_kind: str = "atomic", doc_len: int = 32,
                       eval_queries: int | None = None, backbone: str = "minilm-seq2seq",
                       return_model: bool = False) -> Any:
    """Train one variant of EFFICIENCY_VARIANTS and measure it: parameters, memory, step time, Hits@1/10.

    Returns the row (a dict), or (row, trained model) with `return_model=True`.
    """
    from .adapters import parameter_report
    from .decode import search
    from .docids import make_docids
    from .models import build_model
    from .pruning import MagnitudePruning
    from .tasks import TaskConfig, build_examples
    from .train import TrainConfig, train

    seed_everything(seed)
    tree = make_docids(collection, docid_kind, k=10, c=100, seed=seed)
    examples = build_examples(collection, tree, TaskConfig(doc_len=doc_len, seed=seed))
    model = build_model(backbone, tree, examples, adapter=spec["adapter"], seed=seed, decoder_layers=2,
                        adapter_kwargs=spec.get("adapter_kwargs"), **spec.get("arch", {}))
    params = parameter_report(model)
    steps = epochs * -(-len(examples) // batch_size)
    callbacks = []
    if spec.get("prune"):  # prune from 10% to 70% of the run, update the threshold 20 times, recover after
        callbacks.append(MagnitudePruning(target=spec["prune"], start=steps // 10, end=7 * steps // 10,
                                          every=max(1, 6 * steps // 200)))
    cfg = TrainConfig(epochs=epochs, lr=spec["lr"], encoder_lr=spec.get("encoder_lr"), batch_size=batch_size, warmup_steps=max(1, min(30, steps // 10)), keep_best=False,
                      progress=False, seed=seed)
    result = train(model, examples, cfg, callbacks=callbacks)
    queries, qrels = collection.split(split)
    if eval_queries:
        queries = {q: queries[q] for q in sorted(queries)[:eval_queries]}
        qrels = {q: qrels[q] for q in queries if q in qrels}
    t0 = time.perf_counter()
    run = search(model, queries, k=10)
    ms = 1000 * (time.perf_counter() - t0) / max(len(queries), 1)
    metrics = evaluate(run, qrels, ("Hits@1", "Hits@10", "MRR@10"))
    # optimizer memory: AdamW keeps 2 fp32 moments per trainable weight, the gradient one more
    state_mb = params["weights_mb"] + 3 * 4 * params["trainable"] / 2**20
    row = {"trainable_M": round(params["trainable"] / 1e6, 3), "trainable_pct": params["trainable_pct"],
            "weights_mb": params["weights_mb"], "train_state_mb": round(state_mb, 1), "peak_rss_mb": result.peak_rss_mb,
            "step_ms": round(1000 * result.step_time_s), "train_s": round(result.train_seconds + result.cache_seconds),
            "ms_per_query": round(ms, 1), "sparsity": round(callbacks[0].report()["total"]["sparsity"], 4) if callbacks else 0.0,
            "lr": spec["lr"], "encoder_lr": spec.get("encoder_lr"), **{k: round(v, 4) for k, v in metrics.items()}}
    return (row, model) if return_model else row


def bench_efficiency(collection: Collection, split: str = "test", seed: int = 0, epochs: int = 4, doc_len: int = 16,
                     batch_size: int = 16, topics: int | None = 3, variants: list[str] | None = None) -> dict[str, Any]:
    """Full vs LoRA vs QLoRA vs pruned DSI training on CPU; each variant in a fresh process (honest peak RSS).

    A MiniLM training step costs seconds on a 2-core CPU, so by default the table trains on the documents of
    `topics` lab topics (None: the whole collection) with a small budget, the same for every variant.
    """
    full_name = collection.name  # the result keeps the collection's name; `subset` says which part trained
    if topics and collection.meta.get("docs"):
        collection = collection.topics(topics)
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    import torch

    rows: dict[str, dict[str, Any]] = {}
    for name in variants or EFFICIENCY_BENCH:
        with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
            rows[name] = pool.submit(efficiency_variant, collection, EFFICIENCY_VARIANTS[name], split, seed, epochs,
                                     batch_size=batch_size, doc_len=doc_len).result()
        print(name, rows[name], flush=True)
    queries, _ = collection.split(split)
    return {
        "benchmark": "efficiency",
        "collection": full_name,
        "subset": collection.name,
        "split": split,
        "n_docs": len(collection.docs),
        "n_queries": len(queries),
        "seed": seed,
        "setting": f"minilm-seq2seq (2-layer decoder), atomic docids starting at document encodings, {epochs} epochs, "
                   f"batch {batch_size}, first {doc_len} words of each document, {collection.name} (a MiniLM training "
                   "step costs seconds on this 2-core CPU), "
                   "AdamW; train_state_mb = weights + gradient + 2 AdamW moments of the trainable weights",
        "variants": EFFICIENCY_VARIANTS,
        "torch_threads": torch.get_num_threads(),
        "environment": environment(),
        "results": rows,
    }


def bench_augment(collection: Collection, split: str = "test", seed: int = 0) -> dict[str, Any]:
    """Augmentation ablation (none / stopwords / num2text / POS-MLM / all) with DSI over 3 seeds: see dsilab.augment.ablation."""
    from .augment.ablation import bench_augment as ablation

    return ablation(collection, split=split, seed=seed, environment=environment())


def bench_dgi(collection: Collection, split: str = "test", seed: int = 0) -> dict[str, Any]:
    """DGI vs DSI-semantic and the ablations on Zipfian long-tail settings (the collection + synthetic), 3 seeds: see dsilab.dgi.bench."""
    from .dgi.bench import bench_dgi as run, goal_section

    result = {**run(collection, split=split, seed=seed), "environment": environment()}
    update_doc_section(BENCH_DOC, "dgi-goal", goal_section(result))
    return result


def bench_all(collection: Collection, split: str = "test", seed: int = 0) -> dict[str, Any]:
    """Every retriever of the course in one table, each in a fresh process: see dsilab.bench_all."""
    from .bench_all import bench_all as run

    return run(collection, split=split, seed=seed)


BENCHMARKS: dict[str, Callable[..., dict[str, Any]]] = {"augment": bench_augment, "baselines": bench_baselines, "dsi": bench_dsi, "ann": bench_ann,
                                                      "efficiency": bench_efficiency, "dgi": bench_dgi, "all": bench_all}


def run_benchmark(name: str, collection: str = "lab", split: str = "test", seed: int = 0, out_dir: str = "build/bench") -> dict[str, Any]:
    """Run one named benchmark, print its table, write JSON and the docs section."""
    result = BENCHMARKS[name](load_collection(collection), split=split, seed=seed)
    print(format_table(result["results"]))
    path = write_result(result, out_dir)
    print(f"wrote {path} and updated {BENCH_DOC.relative_to(ROOT)}")
    return result
