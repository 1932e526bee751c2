"""`dsilab bench qg`: DSI-QG, the same recipe trained with no, span or generated queries per document."""
from __future__ import annotations

from .dsi import bench_dsi

import time
from dataclasses import asdict
from typing import Any
from ..core import DsilabError
from ..data import Collection


#: `dsilab bench qg`: the DSI recipe whose rows differ only in their generated queries (DSI-QG). Atomic docids starting
#: at the document encodings: the best DSI row on SciFact's dev queries (dsilab/results/dsi-scifact.json).
QG_BASE: dict[str, Any] = {"docids": "atomic", "docid_init": "encoder"}


def _qg_settings(n_values: list[int] | None, recipe: dict[str, Any] | None) -> tuple[list[int], dict[str, Any]]:
    """Queries per document (default [5]) and the rows' recipe: QG_BASE + `recipe` (e.g. {"eval_every": 400} on
    SciFact, where 5 epochs of generated queries are long)."""
    return sorted(n_values or [5]), {**QG_BASE, **(recipe or {})}


def prepare_qg(collection: Collection, seed: int = 0, n_values: list[int] | None = None,
               recipe: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train the query generator on the training split and generate every set of queries `bench_qg` trains on
    (cached on disk, so that the variant processes read them); returns the generator's report and each generator's
    quality. A GPU run can call it alone first, to stay within one command's time limit."""
    from dataclasses import replace

    from ..querygen import query_quality, real_queries, train_generator
    from ..recipes import Recipe, with_dev

    trained_on, dev_from = with_dev(collection, seed=seed)
    if "train" not in trained_on.qrels:
        raise DsilabError(f"bench qg trains a query generator on training queries; {collection.name!r} has none "
                          f"(splits: {collection.splits}). Use a supervised collection such as lab or SciFact.")
    n_values, base = _qg_settings(n_values, recipe)
    task = Recipe(**{**base, "seed": seed})
    t0 = time.perf_counter()
    gen = train_generator(trained_on, task.generator_config)
    report = {"config": asdict(gen.config), "train_s": round(gen.train_seconds), "history": gen.history,
              "best held-out loss": min((h["dev loss"] for h in gen.history), default=None), "held out from": dev_from}
    quality: dict[str, Any] = {}
    for name in ("span", "trained"):
        for n in n_values:  # the very queries (and cache entries) the rows train on
            queries, _ = replace(task, pseudo_per_doc=n, query_generator=name).pseudo_queries(trained_on)
        quality[name] = {"n_per_doc": n_values[-1], **query_quality(trained_on, queries, seed=seed)}
        print(f"{name} queries:", quality[name], flush=True)
    report["generate_s"] = round(time.perf_counter() - t0)
    quality["real training queries"] = query_quality(trained_on, real_queries(trained_on), seed=seed)
    return {"generator": report, "quality": quality}


def bench_qg(collection: Collection, split: str = "test", seed: int = 0, n_values: list[int] | None = None,
             recipe: dict[str, Any] | None = None, jobs: int = 1, time_limit_s: float | None = None) -> dict[str, Any]:
    """`dsilab bench qg`: DSI-QG, the same DSI recipe trained with no generated queries, with span queries and with
    queries from the generator trained here (n per document each), to convergence; the generators' quality read by
    BM25 beside it.

    Generators learn from the training split only (dev held out from it when the collection has none), so test
    queries never reach training.

    Args:
        n_values: generated queries per document, one pair of rows (span, trained) each (default: 5)
        recipe: changes to the rows' recipe, QG_BASE (atomic docids at the document encodings): JSON (e.g.
            '{"eval_every": 400}') or a JSON file of dsilab.recipes.Recipe fields
    """
    n_values, base = _qg_settings(n_values, recipe)
    prepared = prepare_qg(collection, seed, n_values, recipe)
    variants = {"DSI (indexing + training queries)": base}
    for n in n_values:
        variants[f"DSI + {n} span queries/doc"] = {**base, "pseudo_per_doc": n, "query_generator": "span"}
        variants[f"DSI-QG: + {n} generated queries/doc"] = {**base, "pseudo_per_doc": n, "query_generator": "trained"}
    result = bench_dsi(collection, split, seed, variants, jobs=jobs, time_limit_s=time_limit_s)
    result.update({"benchmark": "qg", **prepared,
                   "setting": f"{result['setting']}; every DSI row = Recipe({', '.join(f'{k}={v!r}' for k, v in base.items())})"
                              " + its generated queries, trained to convergence"})
    result["notes"].append("Quality: the share of generated queries whose source document is BM25's top-1 "
                           "(a seeded sample of at most 5,000 queries), with a 95% bootstrap interval.")
    return result
