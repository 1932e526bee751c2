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
        "command": " ".join(["dsilab", *sys.argv[1:]]) if sys.argv and sys.argv[0].endswith("dsilab") else " ".join(sys.argv),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB RAM, {platform.system()}",
        "python": platform.python_version(),
        "versions": versions,
    }


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


def format_table(rows: dict[str, dict[str, Any]]) -> str:
    """A Markdown table, one row per method, one column per metric/cost."""
    cols = list(next(iter(rows.values())))
    lines = ["| method | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, row in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{row[c]:.3f}" if isinstance(row[c], float) and row[c] < 10 else str(row[c]) for c in cols) + " |")
    return "\n".join(lines)


def write_result(result: dict[str, Any], out_dir: str | Path = "build/bench", doc: Path | None = None) -> Path:
    """Save the JSON and replace this benchmark's section of docs/benchmarks.md."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{result['benchmark']}-{result['collection']}")
    path = out / f"{slug}.json"
    path.write_text(json.dumps(result, indent=2))
    env = result["environment"]
    section = (
        f"### {result['benchmark']} on {result['collection']} ({result['split']} split: "
        f"{result['n_queries']} queries, {result['n_docs']} docs)\n\n"
        f"{format_table(result['results'])}\n\n"
        f"Command: `{env['command']}` · seed {result['seed']} · {env['machine']} · {env['date']} · "
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


BENCHMARKS: dict[str, Callable[..., dict[str, Any]]] = {"baselines": bench_baselines}


def run_benchmark(name: str, collection: str = "lab", split: str = "test", seed: int = 0, out_dir: str = "build/bench") -> dict[str, Any]:
    """Run one named benchmark, print its table, write JSON and the docs section."""
    result = BENCHMARKS[name](load_collection(collection), split=split, seed=seed)
    print(format_table(result["results"]))
    path = write_result(result, out_dir)
    print(f"wrote {path} and updated {BENCH_DOC.relative_to(ROOT)}")
    return result
