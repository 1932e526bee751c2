"""`dsilab bench baselines`: BM25 and dense retrieval on one split, with their costs."""
from __future__ import annotations

from .runner import header

import time
from typing import Any, Callable
import psutil
from ..core import Run, seed_everything
from ..data import Collection
from ..metrics import evaluate


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
    """`dsilab bench baselines`: BM25 and dense retrieval on one split of one collection: metrics and costs."""
    from ..baselines import BM25, Dense

    seed_everything(seed)
    queries, qrels = collection.split(split)
    rows = {}
    for name, build in {"BM25": lambda: BM25(collection), "Dense (MiniLM)": lambda: Dense(collection)}.items():
        run, cost = time_retriever(build, queries)
        rows[name] = {**{k: round(v, 4) for k, v in evaluate(run, qrels).items()}, **cost}
    return {**header("baselines", collection, split, seed, len(queries)), "results": rows}
