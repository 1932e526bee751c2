"""A natural long tail for any collection: popularity = training queries per document, buckets B0 (head) .. B4 (tail),
and a popularity-bias measure on which a popularity-blind retriever scores neutral.

* `zipf_collection(collection, s, n_max, seed)`: the collection with its *training split* replaced by a Zipfian one:
  document of popularity rank r keeps round(n_max / (r+1)^s) training queries (its real ones first, then span
  pseudo-queries). Dev and test stay as they are. Every retriever trained on it (DSI, DGI: `train_dsi` reads the
  "train" split) sees the same skew; a collection whose training queries are already skewed (SciFact) needs none.
* `popularity(collection)`: training queries per document (the natural definition: how often a document was the
  answer during training).
* `buckets(pop, n=5, seed)`: documents sorted by popularity (most popular first; ties in a seeded random order),
  cut into n groups of equal size: B0 = head ... B4 = tail. A test query belongs to its relevant document's bucket.
* `popularity_bias(run, qrels, pop, k, seed)`: how popular the *wrong* documents in the top k are, as a percentile:
  each document's popularity percentile (ties in a seeded random order, 0 = least, 1 = most popular); the bias is
  2 * mean(percentile of the non-relevant documents in the top k) - 1, in [-1, 1]. A retriever that does not
  look at popularity ranks wrong documents whatever their popularity, so where popularity is not tied to content
  (the Zipf permutation of `zipf_collection`) its expected bias is 0; > 0 means the popular are favoured.
  `bias_band` gives the range a popularity-blind retriever's value falls in (popularity shuffled), and a p-value.
  Where popularity follows content (a real query log), compare with BM25's and dense's values rather than with 0.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..core import DsilabError, Qrels, Run
from ..data import Collection

BUCKET_NAMES = ("B0", "B1", "B2", "B3", "B4")


def zipf_counts(n_docs: int, s: float = 1.0, n_max: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Popularity rank per document (seeded permutation) and round(n_max / (rank+1)^s) queries each."""
    if n_docs < 1 or n_max < 1 or s < 0:
        raise DsilabError(f"zipf_counts needs n_docs >= 1, n_max >= 1, s >= 0; got {n_docs}, {n_max}, {s}.")
    rank = np.random.default_rng(seed).permutation(n_docs)
    counts = np.floor(n_max / (rank + 1.0) ** s + 0.5).astype(int)
    return rank, counts


def zipf_collection(collection: Collection, s: float = 1.0, n_max: int = 64, seed: int = 0) -> Collection:
    """The collection with a Zipfian training split (see the module docstring); deterministic per seed."""
    from ..querygen import generate_queries

    if "train" not in collection.qrels:
        raise DsilabError(f"{collection.name} has no training split to skew; zipf_collection needs one.")
    doc_ids = collection.doc_ids
    rank, counts = zipf_counts(len(doc_ids), s, n_max, seed)
    real: dict[str, list[str]] = {d: [] for d in doc_ids}
    for q, rels in sorted(collection.qrels["train"].items()):
        for d, g in rels.items():
            if g > 0 and d in real:
                real[d].append(q)
    short = int(max((c - len(real[d]) for d, c in zip(doc_ids, counts)), default=0))
    pseudo = generate_queries(collection, short, "span", seed=seed) if short > 0 else {}
    queries = dict(collection.queries)
    train: Qrels = {}
    for d, c in zip(doc_ids, counts):
        kept = real[d][:c]
        for q in kept:
            train[q] = {d: 1}
        for j, text in enumerate(pseudo.get(d, [])[: c - len(kept)]):
            queries[f"zipf-{d}-{j}"] = text
            train[f"zipf-{d}-{j}"] = {d: 1}
    qrels = {**collection.qrels, "train": train}
    meta = {**collection.meta, "zipf": {"s": s, "n_max": n_max, "seed": seed, "rank": dict(zip(doc_ids, rank.tolist()))}}
    return Collection(f"{collection.name}-zipf{s:g}", collection.docs, queries, qrels, meta)


def popularity(collection: Collection, split: str = "train") -> dict[str, int]:
    """doc_id -> number of training queries (grade > 0) that have it as an answer (0 for the rest)."""
    pop = {d: 0 for d in collection.doc_ids}
    for rels in collection.qrels.get(split, {}).values():
        for d, g in rels.items():
            if g > 0 and d in pop:
                pop[d] += 1
    return pop


def _order(pop: dict[str, int], seed: int) -> list[str]:
    """Documents from most to least popular; ties in a seeded random order."""
    ids = sorted(pop)
    tie = np.random.default_rng(seed).permutation(len(ids))
    return [ids[i] for i in sorted(range(len(ids)), key=lambda i: (-pop[ids[i]], tie[i]))]


def buckets(pop: dict[str, int], n: int = 5, seed: int = 0) -> dict[str, str]:
    """doc_id -> "B0" (head) .. "B{n-1}" (tail): n equal groups of documents by popularity (ties seeded)."""
    if not 1 <= n <= len(pop):
        raise DsilabError(f"buckets needs 1 <= n <= {len(pop)} documents, got n={n}.")
    order = _order(pop, seed)
    return {d: f"B{i * n // len(order)}" for i, d in enumerate(order)}


def query_buckets(qrels: Qrels, pop: dict[str, int], n: int = 5, seed: int = 0) -> dict[str, str]:
    """qid -> the bucket (`buckets`) of the query's first relevant document."""
    of = buckets(pop, n, seed)
    return {q: of.get(next((d for d, g in rels.items() if g > 0), ""), "") for q, rels in qrels.items()}


def percentiles(pop: dict[str, int], seed: int = 0) -> dict[str, float]:
    """doc_id -> popularity percentile in [0, 1] (1 = most popular; ties in a seeded random order)."""
    order = _order(pop, seed)
    n = max(len(order) - 1, 1)
    return {d: 1.0 - i / n for i, d in enumerate(order)}


def popularity_bias(run: Run, qrels: Qrels, pop: dict[str, int], k: int = 10, seed: int = 0,
                    per_query: bool = False) -> float | dict[str, float]:
    """2 * mean popularity percentile of the non-relevant documents in each query's top k - 1 (0 = neutral).

    The mean is over queries (each query's wrong documents averaged first); queries with no wrong document in
    their top k are left out. per_query=True returns qid -> that query's value (for intervals).
    """
    pct = percentiles(pop, seed)
    out: dict[str, float] = {}
    for q, rels in qrels.items():
        wrong = [pct[d] for d, _ in run.get(q, [])[:k] if rels.get(d, 0) <= 0 and d in pct]
        if wrong:
            out[q] = 2.0 * float(np.mean(wrong)) - 1.0
    if per_query:
        return out
    return float(np.mean(list(out.values()))) if out else 0.0


def bias_band(run: Run, qrels: Qrels, pop: dict[str, int], k: int = 10, seed: int = 0,
              n_perm: int = 500) -> dict[str, float]:
    """popularity_bias and its *neutral band*: the 2.5-97.5% range of the bias when the popularity percentiles are
    shuffled over the documents (n_perm permutations; the band is centred on 0), with the one-sided p-value of the
    observed bias (share of shuffles at least as large).

    Why not a bootstrap over queries: the wrong documents of nearby queries overlap (the same hubs come back), so
    queries are not independent draws of popularity; a bootstrap band around a popularity-blind retriever's value
    excludes 0 far more often than 5% of the time. Shuffling popularity asks the right question (is this run tied
    to *this* popularity, beyond what its choice of documents gives by chance?) and has the right size for a
    popularity-blind retriever, whose run cannot depend on the shuffle.
    """
    observed = popularity_bias(run, qrels, pop, k, seed)
    ids = sorted(pop)
    at = {d: i for i, d in enumerate(ids)}
    wrong = [[at[d] for d, _ in run.get(q, [])[:k] if rels.get(d, 0) <= 0 and d in at] for q, rels in qrels.items()]
    wrong = [w for w in wrong if w]
    if not wrong:
        return {"bias": 0.0, "lo": 0.0, "hi": 0.0, "p": 1.0}
    rng = np.random.default_rng(seed + 1)
    pct = percentiles(pop, seed)
    values = np.array([pct[d] for d in ids])
    sims = np.empty(n_perm)
    for i in range(n_perm):  # the percentiles shuffled over the documents: each document's is uniform, the mean 0
        vec = rng.permutation(values)
        sims[i] = np.mean([2.0 * vec[w].mean() - 1.0 for w in wrong])
    return {"bias": observed, "lo": float(np.percentile(sims, 2.5)), "hi": float(np.percentile(sims, 97.5)),
            "p": float((np.sum(sims >= observed) + 1) / (n_perm + 1))}


def bucket_table(runs: dict[str, Run], qrels: Qrels, pop: dict[str, int], n_docs: int, k: int = 10, seed: int = 0,
                 n_buckets: int = 5, n_perm: int = 200) -> Any:
    """One row per (run, bucket): Hits@k with its 95% bootstrap interval and chance, queries, and popularity bias
    with its neutral band (`bias_band`).

    The "all" bucket holds every query; B0 .. B4 the queries whose (first) relevant document is in that bucket.
    """
    import pandas as pd

    from ..metrics import bootstrap_ci, chance, evaluate

    of = query_buckets(qrels, pop, n_buckets, seed)
    groups: dict[str, Qrels] = {"all": qrels}
    for b in BUCKET_NAMES[:n_buckets]:
        groups[b] = {q: r for q, r in qrels.items() if of[q] == b}
    rows = []
    metric = f"Hits@{k}"
    for name, run in runs.items():
        for b, sub in groups.items():
            if not sub:
                continue
            lo, hi = bootstrap_ci(run, sub, metric, seed=seed)
            band = bias_band(run, sub, pop, k, seed, n_perm)
            rows.append({"method": name, "bucket": b, "queries": len(sub), metric: round(evaluate(run, sub, (metric,))[metric], 4),
                         "95% CI": f"[{lo:.3f}, {hi:.3f}]", "chance": round(chance(sub, n_docs, k), 4),
                         "pop bias": round(band["bias"], 3), "neutral band": f"[{band['lo']:.3f}, {band['hi']:.3f}]",
                         "p (bias)": round(band["p"], 3)})
    return pd.DataFrame(rows)
