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
    return mean_ci(list(per_query(run, qrels, (metric,))[metric].values()), n, seed)


def mean_ci(values, n: int = 1000, seed: int = 0) -> tuple[float, float]:
    """95% percentile-bootstrap interval of the mean of per-query values (e.g. a query's mean over seeds, or the paired
    difference of two runs on it)."""
    import numpy as np

    values = np.asarray(values, dtype=float)
    means = values[np.random.default_rng(seed).integers(0, len(values), size=(n, len(values)))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def paired_difference(a, b, qrels: Qrels | None = None, metric: str = "Hits@10", n: int = 1000,
                      seed: int = 0) -> dict[str, object]:
    """Two methods on the same queries: mean of A, mean of B, their difference A - B with a 95% paired bootstrap
    interval (the queries resampled together) and the verdict word: "higher" or "lower" when the interval excludes
    0, else "too small to tell". `a` and `b` are Runs (scored with `qrels`) or {qid: per-query value}."""
    import numpy as np

    va, vb = ((per_query(x, qrels, (metric,))[metric] if qrels is not None else x) for x in (a, b))
    if set(va) != set(vb) or not va:
        raise DsilabError(f"paired_difference: the two sides must be scored on the same, non-empty set of queries "
                          f"({len(set(va) ^ set(vb))} queries are in one side only); a paired test needs the same queries.")
    qids = sorted(va)
    diff = np.array([va[q] - vb[q] for q in qids], dtype=float)
    lo, hi = mean_ci(diff, n, seed)
    word = "higher" if lo > 0 else "lower" if hi < 0 else "too small to tell"
    return {"A": round(float(np.mean([va[q] for q in qids])), 4), "B": round(float(np.mean([vb[q] for q in qids])), 4),
            "difference": round(float(diff.mean()), 4), "CI": [round(lo, 4), round(hi, 4)], "verdict": word,
            "queries": len(qids)}


def compare(runs: dict[str, Run], qrels: Qrels, baseline: str, metrics: tuple[str, ...] = ("Hits@1", "Hits@10"),
            seed: int = 0):
    """PyTerrier-style comparison: every run against `baseline` on the same queries, one paired bootstrap per metric
    (`paired_difference`): the difference, its 95% interval and the verdict word ("higher" means above the baseline)."""
    import pandas as pd

    if baseline not in runs:
        raise DsilabError(f"compare: baseline {baseline!r} is not among the runs {sorted(runs)}.")
    rows = {}
    for name, run in runs.items():
        if name == baseline:
            continue
        row = {}
        for m in metrics:
            d = paired_difference(run, runs[baseline], qrels, m, seed=seed)
            row.update({f"{m} diff": d["difference"], f"{m} diff CI": d["CI"], f"{m} vs {baseline}": d["verdict"]})
        rows[name] = row
    return pd.DataFrame(rows).T


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


def share_ci(share: float, n: int, z: float = 1.96) -> list[float]:
    """95% Wilson score interval of a share (a Hits@k) measured on `n` queries, for results that kept only the mean
    (no per-query values to bootstrap); close to the bootstrap interval of `bootstrap_ci` at the course's sizes."""
    if n <= 0 or not 0.0 <= share <= 1.0:
        raise DsilabError(f"share_ci: need 0 <= share <= 1 and n > 0 queries, got share={share}, n={n}.")
    centre = (share + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * (share * (1 - share) / n + z * z / (4 * n * n)) ** 0.5
    return [round(max(0.0, centre - half), 4), round(min(1.0, centre + half), 4)]


def share_row(row: dict, n: int) -> dict:
    """A row of means (e.g. a training run's best dev scores) with the Wilson interval (`share_ci`) of each Hits@k
    measured on `n` queries added as "Hits@k CI", ready for `against_chance`."""
    return {**row, **{f"{m} CI": share_ci(float(v), n) for m, v in row.items()
                      if m.startswith("Hits@") and v is not None and not m.endswith(" CI")}}


def verdict(ci, level: float) -> str:
    """"above chance" when the 95% interval `ci` lies wholly above the chance `level`, else "too small to tell"."""
    return "above chance" if isinstance(ci, (list, tuple)) and ci[0] > level else "too small to tell"


def against_chance(rows: dict[str, dict], qrels: Qrels, n_docs: int, ks: tuple[int, ...] = (1, 10)):
    """Rows (name -> metrics with "Hits@k" or "Success@k", and its " CI") as a table with the chance level of each Hits@k beside it
    and a verdict: "too small to tell" when the 95% interval reaches down to chance, so that no number that could be
    luck reads as a finding. Each Hits@k is followed by its interval, its chance level and its verdict."""
    import pandas as pd

    table = pd.DataFrame(rows).T
    order = [c for c in table.columns if not (c.endswith(" CI") and c[:-3] in table)]
    for k in ks:
        for m in (f"Hits@{k}", f"Success@{k}"):  # the course's name or ir-measures' own
            if m not in table:
                continue
            level = round(chance(qrels, n_docs, k), 4)
            table[f"chance {m}"] = level
            extra = [f"{m} CI"] if f"{m} CI" in table else []
            if extra:
                table[f"{m} vs chance"] = [verdict(ci, level) for ci in table[f"{m} CI"]]
            at = order.index(m) + 1
            order[at:at] = extra + [f"chance {m}"] + ([f"{m} vs chance"] if extra else [])
    return table[order + [c for c in table.columns if c not in order]]


def results_table(runs: dict[str, Run], qrels: Qrels, n_docs: int,
                  metrics: tuple[str, ...] = ("Hits@1", "Hits@10", "MRR@10"), seed: int = 0):
    """The course's standard table: each run's metrics, and for every Hits@k among them its 95% interval, chance level
    and verdict."""
    hits = tuple(m for m in metrics if m.split("@")[0] in ("Hits", "Success"))  # either name of ir-measures' Success@k
    ks = tuple(int(m.split("@")[1]) for m in hits)
    return against_chance({name: summarize(run, qrels, metrics, hits, seed=seed) for name, run in runs.items()},
                          qrels, n_docs, ks)


def hits_table(rows: dict[str, dict], n_queries: int, chance_levels: dict[int, float]):
    """A result's rows as a table in which every Hits@k is followed by its 95% interval, the chance level of a random
    ranking (`chance_levels[k]`) and the verdict of `verdict`; the committed-results twin of `results_table`.

    A row saved without its interval gets the one the query bootstrap gives: Hits@k is 0 or 1 per query, so resampling
    the n queries draws Binomial(n, Hits@k) hits, and the interval is that distribution's 2.5% and 97.5% quantiles / n.
    """
    import pandas as pd
    from scipy.stats import binom

    table = pd.DataFrame(rows).T
    order = [c for c in table.columns if not c.endswith(" CI")]
    for k, level in chance_levels.items():
        m = f"Hits@{k}"
        p = table[m].astype(float)
        stored = table[f"{m} CI"] if f"{m} CI" in table else pd.Series(None, index=table.index, dtype=object)
        table[f"{m} CI"] = [ci if isinstance(ci, list) else [round(float(binom.ppf(q, n_queries, x)) / n_queries, 4)
                                                               for q in (0.025, 0.975)]
                            for ci, x in zip(stored, p)]
        table[f"chance {m}"] = round(level, 4)
        table[f"{m} vs chance"] = [verdict(ci, level) for ci in table[f"{m} CI"]]
        at = order.index(m) + 1
        order[at:at] = [f"{m} CI", f"chance {m}", f"{m} vs chance"]
    return table[order]


def hits_line(run: Run, qrels: Qrels, n_docs: int, ks: tuple[int, ...] = (1, 10), seed: int = 0) -> str:
    """Hits@k of one run as a line of text, each with its 95% interval, the chance level and the verdict, e.g.
    "Hits@1 0.333 [0.190, 0.476], chance 0.048: above chance; ...": for a print where a table would be too much."""
    names = tuple(f"Hits@{k}" for k in ks)
    s = summarize(run, qrels, names, names, seed=seed)
    parts = []
    for k, m in zip(ks, names):
        level = chance(qrels, n_docs, k)
        lo, hi = s[f"{m} CI"]
        parts.append(f"{m} {s[m]:.3f} [{lo:.3f}, {hi:.3f}], chance {level:.3f}: {verdict(s[f'{m} CI'], level)}")
    return f"{'; '.join(parts)} ({len(qrels)} queries)"


def check_quoted(quotes: dict[str, tuple], tol: float = 6e-4):
    """The numbers a text quotes, beside the values a cell measured or read: label -> (quoted, measured) or
    (quoted, measured, tolerance); a value may be a number or a list of numbers (an interval). Returns the table
    (quoted, measured, matches) and raises DsilabError naming every quote that no longer matches its value, so a
    re-run that moves a number cannot leave the text that quotes it wrong."""
    import pandas as pd

    def close(a, b, t) -> bool:
        if isinstance(a, (list, tuple)) or isinstance(b, (list, tuple)):
            return (isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and len(a) == len(b)
                    and all(close(x, y, t) for x, y in zip(a, b)))
        return b is not None and abs(float(a) - float(b)) <= t

    rows = {}
    for label, spec in quotes.items():
        if len(spec) not in (2, 3):
            raise DsilabError(f"check_quoted: {label!r} must be (quoted, measured) or (quoted, measured, tolerance).")
        quoted, measured, t = (*spec, tol) if len(spec) == 2 else spec
        rows[label] = {"quoted": quoted, "measured": measured, "matches": close(quoted, measured, t)}
    table = pd.DataFrame(rows).T
    wrong = [f"{k}: text says {v['quoted']}, measured {v['measured']}" for k, v in rows.items() if not v["matches"]]
    if wrong:
        raise DsilabError("the text quotes numbers that no longer match; update the text: " + "; ".join(wrong))
    return table


CHANCE_ROW = "chance (random ranking)"


def committed_table(results: dict[str, dict], ks: tuple[int, ...] = (1, 10), chance_row: str = CHANCE_ROW):
    """A committed benchmark's rows (name -> metrics, with the "chance (random ranking)" row that `dsilab bench`
    writes) in the shape of `results_table`: each Hits@k with its 95% interval, the chance level and the verdict.
    A Hits@k of a subset of the queries ("seen Hits@10") is set against the chance level of all queries."""
    import pandas as pd

    if chance_row not in results:
        raise DsilabError(f"committed_table: no {chance_row!r} row in the results; re-run the benchmark with this dsilab.")
    levels = results[chance_row]
    table = pd.DataFrame({n: r for n, r in results.items() if n != chance_row}).T
    order = [c for c in table.columns if not (c.endswith(" CI") and c[:-3] in table)]
    for col in [c for c in order if c.rsplit(" ", 1)[-1] in {f"Hits@{k}" for k in ks}]:
        level = levels.get(col, levels.get(col.rsplit(" ", 1)[-1]))
        if level is None:
            continue
        has_ci = f"{col} CI" in table
        table[f"chance {col}"] = level
        extra = [f"{col} CI"] if has_ci else []
        if has_ci:
            table[f"{col} vs chance"] = [verdict(ci, level) for ci in table[f"{col} CI"]]
        at = order.index(col) + 1
        order[at:at] = extra + [f"chance {col}"] + ([f"{col} vs chance"] if has_ci else [])
    return table[order + [c for c in table.columns if c not in order]]


def paired_from_means(hits_a: float, hits_b: float, n_queries: int, pairing: str = "least favourable",
                      seed: int = 0) -> dict[str, object]:
    """A paired test of two Hits@k that were kept only as means, on the same `n_queries` queries (the committed
    results keep no per-query scores). Per-query 0/1 scores matching both means are built, then
    `metrics.paired_difference` runs on them (A - B). "least favourable": as many queries as the means allow on which
    A and B disagree, the widest paired interval, so a "higher" or "lower" then holds for every pairing the means
    allow; "most favourable": as few as possible, the narrowest. When the two pairings give different verdicts, the
    kept means cannot rank A and B."""
    if pairing not in ("least favourable", "most favourable"):
        raise DsilabError(f"paired_from_means: pairing must be 'least favourable' or 'most favourable', not {pairing!r}.")
    counts = []
    for share in (hits_a, hits_b):
        hits = share * n_queries
        if not 0.0 <= share <= 1.0 or abs(hits - round(hits)) > max(0.05, n_queries * 5e-5):
            raise DsilabError(f"paired_from_means: {share} is not a share of {n_queries} queries (hits/n rounded to 4 digits).")
        counts.append(int(round(hits)))
    a, b = counts
    both = max(0, a + b - n_queries) if pairing == "least favourable" else min(a, b)  # queries both get right
    only_a, only_b = a - both, b - both
    neither = n_queries - both - only_a - only_b
    va = [1.0] * both + [1.0] * only_a + [0.0] * only_b + [0.0] * neither
    vb = [1.0] * both + [0.0] * only_a + [1.0] * only_b + [0.0] * neither
    out = paired_difference({f"q{i}": x for i, x in enumerate(va)}, {f"q{i}": x for i, x in enumerate(vb)}, seed=seed)
    return {**out, "pairing": pairing, "disagreements": only_a + only_b}


def paired_bounds(share_a: float, share_b: float, n: int, seed: int = 0) -> dict[str, object]:
    """Two Hits@k shares measured on the same `n` queries when only the shares were kept: `paired_from_means` under
    both extreme pairings. When both give the same word, every pairing does, and that word is the verdict; otherwise
    the verdict is "cannot be ranked from the stored numbers". Returns A, B, the difference A - B, both intervals and
    the verdict."""
    widest, narrowest = (paired_from_means(share_a, share_b, n, p, seed) for p in ("least favourable", "most favourable"))
    word = widest["verdict"] if widest["verdict"] == narrowest["verdict"] else "cannot be ranked from the stored numbers"
    return {"A": widest["A"], "B": widest["B"], "difference": widest["difference"], "CI least favourable": widest["CI"],
            "CI most favourable": narrowest["CI"], "verdict": word, "queries": n}

