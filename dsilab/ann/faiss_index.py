"""FAISS, the industrial anchor: IVF-Flat and HNSW (inner product on unit vectors) behind the course's
`search_vectors(queries, qids=None, k=10, <knob>) -> SearchResult`, with distance computations counted exactly.

IVF-Flat: cost = nlist centroid products + the sizes of the probed lists (read from FAISS's inverted lists).
HNSW: cost = FAISS's own count of the distances its graph walk computed (`faiss.cvar.hnsw_stats.ndis`, all
layers), read per query. FAISS runs on `threads` OpenMP threads (default 1: the course's numpy indexes search one
query at a time, so ms/query compares like with like); the HNSW graph is built on one thread too, because a parallel
build inserts in a racy order and the graph (and every number after it) would change from run to run.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..core import DsilabError, Run
from .evaluation import SearchResult, scoped_threads
from .reference import _Index


def _faiss():
    try:
        import faiss
    except ImportError as e:  # pragma: no cover - faiss-cpu is a dependency
        raise DsilabError("FAISS is not installed: pip install faiss-cpu") from e
    return faiss


def faiss_threads(n: int):
    """Run FAISS on `n` OpenMP threads inside the block (FAISS ships its own OpenMP, separate from torch's)."""
    faiss = _faiss()
    return scoped_threads(faiss.omp_get_max_threads, faiss.omp_set_num_threads, n)


def _check_threads(threads: int) -> int:
    if threads < 1:
        raise DsilabError(f"threads must be >= 1; got {threads}.")
    return threads


def _run(qids: list[str], ids: list[str], scores: np.ndarray, labels: np.ndarray) -> Run:
    """FAISS's (scores, labels) matrices as a `Run`; label -1 (fewer than k found) is dropped."""
    return {q: [(ids[j], float(s)) for s, j in zip(srow, lrow) if j >= 0] for q, srow, lrow in zip(qids, scores, labels)}


class FaissIVFFlat(_Index):
    """FAISS IndexIVFFlat: k-means (seeded) into `nlist` lists; a query scans its `nprobe` nearest lists exactly."""

    def __init__(self, database: np.ndarray, ids: Sequence[str] | None = None, nlist: int = 64, seed: int = 0,
                 threads: int = 1, build_threads: int | None = None):
        """build_threads: threads for k-means and list assignment (default: `threads`); the result does not depend on it."""
        super().__init__(database, ids)
        faiss = _faiss()
        n = self.database.shape[0]
        if not 1 <= nlist <= n:
            raise DsilabError(f"nlist must be between 1 and the number of vectors ({n}); got {nlist}.")
        self.threads = _check_threads(threads)
        self.nlist = nlist
        self.index = faiss.IndexIVFFlat(faiss.IndexFlatIP(self.dim), self.dim, nlist, faiss.METRIC_INNER_PRODUCT)
        self.index.cp.seed = seed  # k-means initialisation and its training subsample (256 vectors per list at most)
        self.index.cp.min_points_per_centroid = 1  # only silences FAISS's warning about few vectors per list (small sets)
        with faiss_threads(_check_threads(build_threads or threads)):
            self.index.train(self.database)
            self.index.add(self.database)
        self.list_sizes = np.array([self.index.invlists.list_size(c) for c in range(nlist)], dtype=np.int64)

    def search_vectors(self, queries: np.ndarray, qids: Sequence[str] | None = None, k: int = 10, nprobe: int = 1) -> SearchResult:
        """Rank the centroids (nlist products), then scan the `nprobe` nearest lists (their sizes)."""
        if not 1 <= nprobe <= self.nlist:
            raise DsilabError(f"nprobe must be between 1 and nlist ({self.nlist}); got {nprobe}. "
                              f"nprobe = nlist scans every list, i.e. exact search.")
        q, qids = self._queries(queries, qids)
        with faiss_threads(self.threads):
            self.index.nprobe = nprobe
            cd, probed = self.index.quantizer.search(q, nprobe)
            scores, labels = self.index.search_preassigned(q, k, probed, cd)
        cost = self.nlist + self.list_sizes[probed].sum(axis=1)
        return SearchResult(_run(qids, self.ids, scores, labels), cost.astype(np.int64))


class FaissHNSW(_Index):
    """FAISS IndexHNSWFlat: a navigable graph (M links per node, built with `ef_construction`); `ef_search` sets
    how many candidates the walk keeps, the knob that trades recall for distance computations."""

    def __init__(self, database: np.ndarray, ids: Sequence[str] | None = None, m: int = 32,
                 ef_construction: int = 40, threads: int = 1, build_threads: int = 1):
        """Defaults are FAISS's "HNSW32" (M = 32, efConstruction = 40). build_threads > 1 builds faster but the
        graph then depends on thread timing (not reproducible)."""
        super().__init__(database, ids)
        faiss = _faiss()
        if m < 2 or ef_construction < 1:
            raise DsilabError(f"HNSW needs m >= 2 and ef_construction >= 1; got m={m}, ef_construction={ef_construction}.")
        self.threads = _check_threads(threads)
        self.m, self.ef_construction = m, ef_construction
        self.index = faiss.IndexHNSWFlat(self.dim, m, faiss.METRIC_INNER_PRODUCT)
        self.index.hnsw.efConstruction = ef_construction
        with faiss_threads(_check_threads(build_threads)):
            self.index.add(self.database)

    def search_vectors(self, queries: np.ndarray, qids: Sequence[str] | None = None, k: int = 10, ef_search: int = 64) -> SearchResult:
        """One FAISS call per query, so that FAISS's distance counter (reset before each) is read per query."""
        if ef_search < k:
            raise DsilabError(f"ef_search must be >= k ({k}): HNSW keeps ef_search candidates and returns the best k "
                              f"of them; got ef_search={ef_search}.")
        faiss = _faiss()
        q, qids = self._queries(queries, qids)
        params = faiss.SearchParametersHNSW(efSearch=ef_search)
        stats = faiss.cvar.hnsw_stats
        scores, labels = np.empty((len(qids), k), np.float32), np.empty((len(qids), k), np.int64)
        cost = np.zeros(len(qids), dtype=np.int64)
        with faiss_threads(self.threads):
            for i in range(len(qids)):
                stats.reset()
                scores[i : i + 1], labels[i : i + 1] = self.index.search(q[i : i + 1], k, params=params)
                cost[i] = stats.ndis
        return SearchResult(_run(qids, self.ids, scores, labels), cost)
