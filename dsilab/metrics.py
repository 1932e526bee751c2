"""Scoring a `Run` against qrels with ir-measures, under its own names or the course's (Hits@k = Success@k).

Every retriever in the course, classic or learned, is scored by `evaluate`, so numbers compare.
"""
from __future__ import annotations

import ir_measures

from .core import DsilabError, Qrels, Run

#: The course's display names for ir-measures' measures: Hits@k is ir-measures' Success@k ("at least one relevant
#: doc in the top k"), MRR@k is RR@k, Recall@k is R@k. Either spelling works everywhere a metric is named.
ALIASES = {"Hits": "Success", "MRR": "RR", "Recall": "R"}
DEFAULT = ("Hits@1", "Hits@5", "Hits@10", "MRR@10", "Recall@100", "nDCG@10")


def measure(name: str):
    """The ir-measures measure behind a metric name: a course alias (Hits@1, MRR@10, Recall@100) or any ir-measures
    name (Success@1, RR@10, R@100, nDCG@10, P@5, ...)."""
    base, at, cutoff = name.partition("@")
    try:
        return ir_measures.parse_measure(ALIASES.get(base, base) + at + cutoff)
    except Exception:  # noqa: BLE001  (ir-measures raises several types for a bad name)
        raise DsilabError(f"unknown metric {name!r}; use an ir-measures name (Success@1, RR@10, R@100, nDCG@10) "
                          f"or a course alias ({', '.join(DEFAULT)}).") from None


def _measures(names: tuple[str, ...] | list[str]) -> list:
    return [measure(n) for n in names]


def per_query(run: Run, qrels: Qrels, metrics: tuple[str, ...] | list[str] = DEFAULT) -> dict[str, dict[str, float]]:
    """metric -> {qid: value} for every judged query; a query missing from the run scores 0."""
    measures = _measures(metrics)
    names_of: dict[str, list[str]] = {}  # one measure may be asked for under two names (Hits@1 and Success@1)
    for n, m in zip(metrics, measures):
        names_of.setdefault(repr(m), []).append(n)
    out: dict[str, dict[str, float]] = {n: {q: 0.0 for q in qrels} for n in metrics}
    # Score by rank, not raw score: the Run's order is the ranking (ties stay in the Run's order).
    scored: dict[str, dict[str, float]] = {}
    for q, ranked in run.items():
        if q in qrels:
            ranks = scored.setdefault(q, {})
            for i, (d, _) in enumerate(ranked):
                ranks.setdefault(d, float(len(ranked) - i))
    for m in ir_measures.iter_calc(list({repr(x): x for x in measures}.values()), qrels, scored):
        for n in names_of[repr(m.measure)]:
            out[n][m.query_id] = float(m.value)
    return out


def evaluate(run: Run, qrels: Qrels, metrics: tuple[str, ...] | list[str] = DEFAULT) -> dict[str, float]:
    """Mean of each metric over all judged queries (missing queries count as 0, never dropped)."""
    if not qrels:
        raise DsilabError("evaluate: the qrels are empty; pass the judgements of a split, e.g. collection.split('test')[1].")
    table = per_query(run, qrels, metrics)
    return {n: sum(v.values()) / len(qrels) for n, v in table.items()}


def bootstrap_ci(run: Run, qrels: Qrels, metric: str = "Hits@1", n: int = 1000, seed: int = 0) -> tuple[float, float]:
    """95% percentile-bootstrap interval of a metric's mean over queries (queries resampled with replacement)."""
    import numpy as np

    values = np.array(list(per_query(run, qrels, (metric,))[metric].values()))
    means = values[np.random.default_rng(seed).integers(0, len(values), size=(n, len(values)))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def chance(qrels: Qrels, n_docs: int, k: int) -> float:
    """Expected Hits@k of a uniformly random ranking of `n_docs` documents: the floor a result must clear."""
    from math import comb

    def p_hit(relevant: int) -> float:
        return 1.0 - comb(n_docs - relevant, k) / comb(n_docs, k) if k < n_docs else 1.0

    return sum(p_hit(sum(g > 0 for g in rels.values())) for rels in qrels.values()) / len(qrels)


def summarize(run: Run, qrels: Qrels, metrics: tuple[str, ...] | list[str] = ("Hits@1", "Hits@10", "MRR@10"),
              intervals: tuple[str, ...] = ("Hits@1", "Hits@10"), seed: int = 0) -> dict[str, object]:
    """The means of `metrics` plus a 95% bootstrap interval (`"<metric> CI"`) for each of `intervals`."""
    out: dict[str, object] = {m: round(v, 4) for m, v in evaluate(run, qrels, metrics).items()}
    for m in intervals:
        out[f"{m} CI"] = [round(x, 4) for x in bootstrap_ci(run, qrels, m, seed=seed)]
    return out


def verdict(ci, level: float) -> str:
    """"above chance" when the 95% interval `ci` lies wholly above the chance `level`, else "too small to tell"."""
    return "above chance" if isinstance(ci, (list, tuple)) and ci[0] > level else "too small to tell"


def against_chance(rows: dict[str, dict], qrels: Qrels, n_docs: int, ks: tuple[int, ...] = (1, 10)):
    """Rows (name -> metrics with "Hits@k" and "Hits@k CI") as a table with the chance level of each Hits@k beside it
    and a verdict: "too small to tell" when the 95% interval reaches down to chance, so that no number that could be
    luck reads as a finding."""
    import pandas as pd

    table = pd.DataFrame(rows).T
    for k in ks:
        m = f"Hits@{k}"
        if m not in table:
            continue
        level = round(chance(qrels, n_docs, k), 4)
        table[f"chance {m}"] = level
        if f"{m} CI" in table:
            table[f"{m} vs chance"] = [verdict(ci, level) for ci in table[f"{m} CI"]]
    return table


def results_table(runs: dict[str, Run], qrels: Qrels, n_docs: int,
                  metrics: tuple[str, ...] = ("Hits@1", "Hits@10", "MRR@10"), seed: int = 0):
    """The course's standard table: each run's metrics, 95% intervals of Hits@1/10, chance levels and the verdict."""
    return against_chance({name: summarize(run, qrels, metrics, seed=seed) for name, run in runs.items()}, qrels, n_docs)
