"""What every ANN method shares: the `SearchResult` (a `Run` plus exact cost counts), `EncodedIndex` (an index
searched with query texts), exact top-k, recall@k against exact search, and reading a recall-vs-cost curve at a budget.

Cost is counted in *distance computations per query*: one inner product between the query and a
stored d-dimensional vector (a document, a centroid, or one hashing hyperplane). It is counted by
the algorithm, not timed, so it is exact and machine independent.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from ..core import DsilabError, Qrels, Retriever, Run


@dataclass
class SearchResult:
    """A `Run` plus, per query, the exact number of distance computations the search needed.

    Unpacks as `run, cost = index.search_vectors(...)`; `extra` holds secondary counts (e.g. Hamming
    comparisons of a hash index, which are cheap bit operations and not distance computations).
    """

    run: Run
    cost: np.ndarray
    extra: dict[str, np.ndarray] = field(default_factory=dict)

    def __iter__(self):
        return iter((self.run, self.cost))

    @property
    def mean_cost(self) -> float:
        """Distance computations per query, averaged over the queries."""
        return float(np.mean(self.cost)) if len(self.cost) else 0.0


class EncodedIndex(Retriever):
    """An ANN index searched with query texts, like every retriever: `search(queries, k) -> Run` encodes them with
    the encoder that made the index's vectors, then calls `index.search_vectors(..., **knobs)` (beam, nprobe, ...).

    encoder: a name for `dsilab.embed.load_encoder` or any object with `encode(texts) -> ndarray`. The latest
    search's `SearchResult`, with its distance computations per query, stays in `last`, and the seconds it spent
    encoding the queries in `encode_s` (what an index-only latency leaves out).
    """

    def __init__(self, index: Any, encoder: Any = "minilm", **knobs: Any):
        if not callable(getattr(index, "search_vectors", None)):
            raise DsilabError(f"EncodedIndex needs an ANN index with search_vectors(...); got {type(index).__name__}.")
        if isinstance(encoder, str):
            from ..embed import load_encoder

            encoder = load_encoder(encoder)
        self.index, self.encoder, self.knobs = index, encoder, knobs
        self.last: SearchResult | None = None
        self.encode_s = 0.0

    def search(self, queries: dict[str, str], k: int = 10) -> Run:
        """Top-k documents per query text, found by the index in the encoder's space."""
        if not queries:
            return {}
        qids = list(queries)
        start = time.perf_counter()
        vectors = self.encoder.encode([queries[q] for q in qids])
        self.encode_s = time.perf_counter() - start
        self.last = self.index.search_vectors(vectors, qids, k=k, **self.knobs)
        return self.last.run


def as_matrix(x: Any, name: str, dim: int | None = None) -> np.ndarray:
    """Validate a 2-D float matrix (rows = vectors) at the boundary, with a message that says the fix."""
    arr = np.asarray(x, dtype=np.float32)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise DsilabError(f"{name} must be a 2-D array (one vector per row); got shape {arr.shape}.")
    if arr.shape[0] == 0:
        raise DsilabError(f"{name} is empty: pass at least one vector.")
    if dim is not None and arr.shape[1] != dim:
        raise DsilabError(
            f"{name} has dimension {arr.shape[1]} but the index holds {dim}-dimensional vectors: "
            "embed queries and database with the same encoder."
        )
    if not np.isfinite(arr).all():
        raise DsilabError(f"{name} contains NaN or infinite values.")
    return np.ascontiguousarray(arr)


def check_ids(ids: Sequence[str] | None, n: int, prefix: str) -> list[str]:
    """Ids for n vectors: the given ones (checked for length) or `prefix0 .. prefix{n-1}`."""
    if ids is None:
        return [f"{prefix}{i}" for i in range(n)]
    ids = [str(i) for i in ids]
    if len(ids) != n:
        raise DsilabError(f"got {len(ids)} ids for {n} vectors: pass one id per row.")
    return ids


def exact_neighbours(queries: np.ndarray, database: np.ndarray, k: int = 10, chunk: int = 1024) -> np.ndarray:
    """Indices of the exact top-k database vectors by inner product, best first.

    torch's matmul + topk rather than numpy's argpartition: the same answer, about twice as fast on
    a laptop CPU (deterministic for a given machine; exact float ties are vanishingly rare).
    """
    import torch

    q = torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32))
    db = torch.from_numpy(np.ascontiguousarray(database, dtype=np.float32))
    k = min(k, db.shape[0])
    out = np.empty((q.shape[0], k), dtype=np.int64)
    with torch.no_grad():
        for s in range(0, q.shape[0], chunk):
            out[s : s + chunk] = torch.topk(q[s : s + chunk] @ db.T, k, dim=1, sorted=True).indices.numpy()
    return out


def truth_from_indices(qids: Sequence[str], neighbours: np.ndarray, ids: Sequence[str]) -> dict[str, list[str]]:
    """qid -> exact top-k ids, from the index matrix of `exact_neighbours`."""
    return {q: [ids[j] for j in row] for q, row in zip(qids, neighbours)}


def recall_at_k(run: Run, truth: dict[str, list[str]], k: int = 10) -> float:
    """Mean fraction of each query's exact top-k found in the run's top-k (not a qrels metric)."""
    if not truth:
        raise DsilabError("recall_at_k: the exact neighbour lists are empty; compute them with exact_neighbours.")
    total = 0.0
    for q, exact in truth.items():
        want = set(exact[:k])
        got = {d for d, _ in run.get(q, [])[:k]}
        total += len(want & got) / max(len(want), 1)
    return total / len(truth)


def score(result: SearchResult, truth: dict[str, list[str]], qrels: Qrels | None = None, k: int = 10,
          metrics: Sequence[str] = ("Hits@10", "MRR@10")) -> dict[str, float]:
    """recall@k vs exact search, distance computations per query and, given qrels, `metrics` (course or ir-measures
    names: Hits@10 or Success@10, MRR@10 or RR@10, nDCG@10)."""
    row = {f"recall@{k}": recall_at_k(result.run, truth, k), "distances/query": result.mean_cost}
    if qrels:
        from ..metrics import evaluate

        row.update(evaluate(result.run, qrels, tuple(metrics)))
    return row


def recall_at_budget(costs: Sequence[float], recalls: Sequence[float], budget: float) -> float:
    """Recall of a curve at a cost budget, linearly interpolated between measured points.

    Below the cheapest point the curve is not defined and NaN is returned; above the dearest
    point the best measured recall holds (more budget can always be left unused).
    """
    c, r = _monotone(costs, recalls)
    if budget < c[0]:
        return float("nan")
    return float(np.interp(budget, c, r))


def budget_for_recall(costs: Sequence[float], recalls: Sequence[float], target: float) -> float:
    """The smallest cost at which a curve reaches `target` recall (interpolated); NaN if it never does."""
    c, r = _monotone(costs, recalls)
    hit = np.nonzero(r >= target)[0]
    if len(hit) == 0:
        return float("nan")
    i = hit[0]
    if i == 0:
        return float(c[0])
    # between point i-1 (below target) and point i (at or above it)
    t = (target - r[i - 1]) / (r[i] - r[i - 1])
    return float(c[i - 1] + t * (c[i] - c[i - 1]))


def _monotone(costs: Sequence[float], recalls: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Sort a curve by cost and take the running best recall (its Pareto frontier)."""
    c = np.asarray(costs, dtype=float)
    r = np.asarray(recalls, dtype=float)
    if c.size == 0 or c.size != r.size:
        raise DsilabError("a curve needs the same, non-zero number of costs and recalls.")
    order = np.argsort(c, kind="stable")
    return c[order], np.maximum.accumulate(r[order])


@contextmanager
def scoped_threads(get: Callable[[], int], set_: Callable[[int], None], n: int) -> Iterator[None]:
    """`set_(n)` inside the block, the value `get()` gave before restored after (a library's thread count)."""
    before = get()
    set_(n)
    try:
        yield
    finally:
        set_(before)


def torch_threads(n: int = 1):
    """Run torch on `n` threads inside the block: the ANN training steps are small batched ops
    where thread synchronisation costs more than it saves (10x slower on a busy 2-core laptop)."""
    import torch

    return scoped_threads(torch.get_num_threads, torch.set_num_threads, n)


def train_if_given(index, queries, targets, progress: bool):
    """The second half of a learned index's `fit`: train on `queries` (and their target rows) on one torch thread,
    or leave the index at its initialisation when no queries are given."""
    from ..core import DsilabError

    if queries is None:
        return index
    if targets is None:
        raise DsilabError("fit: training queries need their targets (database rows each query should find).")
    with torch_threads(1):
        return index._fit(queries, targets, progress)


def per_query_recall(run: Run, truth: dict[str, list[str]], k: int = 10) -> dict[str, float]:
    """recall@k of each query against its exact top-k ({qid: share found}); its mean is `recall_at_k`."""
    out = {}
    for q, exact in truth.items():
        want = set(exact[:k])
        out[q] = len(want & {d for d, _ in run.get(q, [])[:k]}) / max(len(want), 1)
    return out


def per_query_at_budget(index: Any, vs: Any, param: str, values: Sequence[Any], budget: float,
                        **fixed: Any) -> dict[str, float]:
    """Each test query's recall@10 at a cost `budget`, for a paired test at equal cost: the index is searched once per
    value of `param`, and every query's recall is interpolated between the two settings whose mean costs bracket the
    budget, with the weights `recall_at_budget` gives the mean (over the curve's Pareto frontier), so the mean of the
    answer is the curve's recall@10 at the budget. Raises below the cheapest setting, where the curve is undefined."""
    results = [index.search_vectors(vs.test_queries, vs.test_qids, **{"k": 10, **fixed, param: v}) for v in values]
    per = [per_query_recall(r.run, vs.truth) for r in results]
    costs = np.array([r.mean_cost for r in results])
    means = np.array([np.mean(list(p.values())) for p in per])
    order = np.argsort(costs, kind="stable")
    best, frontier = order[0], []
    for i in order:                       # the running best setting at each cost (as `_monotone` takes)
        if means[i] > means[best]:
            best = i
        frontier.append(best)
    c = costs[order]
    if budget < c[0]:
        raise DsilabError(f"per_query_at_budget: the budget {budget:.1f} is below the cheapest setting ({c[0]:.1f}).")
    if budget >= c[-1]:
        return dict(per[frontier[-1]])
    j = int(np.searchsorted(c, budget, side="right")) - 1
    w = 0.0 if c[j + 1] == c[j] else (budget - c[j]) / (c[j + 1] - c[j])
    lo, hi = per[frontier[j]], per[frontier[j + 1]]
    return {q: (1 - w) * lo[q] + w * hi[q] for q in lo}
