"""The classic indexes the learned ones must beat, with the same interface and cost accounting:
exact search (flat), the k-means tree with unlearned routing, and IVF (k-means lists + nprobe).

Each has `search_vectors(queries, qids=None, k=10, ...) -> SearchResult` (a `Run` plus distance
computations per query).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..core import DsilabError, run_from_scores
from .evaluation import SearchResult, as_matrix, check_ids
from .tree import Tree, beam_descend, build_kmeans_tree, check_beam, top_k_run_row


class _Index:
    """Holds the database and its ids; validates queries at the boundary."""

    def __init__(self, database: np.ndarray, ids: Sequence[str] | None = None):
        self.database = as_matrix(database, "database")
        self.ids = check_ids(ids, self.database.shape[0], "d")
        self.dim = self.database.shape[1]

    def _queries(self, queries: np.ndarray, qids: Sequence[str] | None) -> tuple[np.ndarray, list[str]]:
        q = as_matrix(queries, "queries", self.dim)
        return q, check_ids(qids, q.shape[0], "q")


class Flat(_Index):
    """Exact inner-product search: every query is compared with every stored vector (cost = n)."""

    def search_vectors(self, queries: np.ndarray, qids: Sequence[str] | None = None, k: int = 10) -> SearchResult:
        q, qids = self._queries(queries, qids)
        run = {}
        step = max(1, min(1024, 2**27 // self.database.shape[0]))  # a block of scores stays near 0.5 GB at 1M vectors
        for s in range(0, len(qids), step):
            run.update(run_from_scores(qids[s : s + step], self.ids, q[s : s + step] @ self.database.T, k))
        return SearchResult(run, np.full(len(qids), self.database.shape[0], dtype=np.int64))


class KMeansTree(_Index):
    """Hierarchical k-means with classic routing: descend by similarity to the child centroids.

    The soft tree starts from exactly this tree (same seed, same shape) and only learns the
    routing, so the two compare at equal structure.
    """

    def __init__(self, database: np.ndarray, ids: Sequence[str] | None = None, k: int = 8, depth: int = 2,
                 leaf_size: int = 1, seed: int = 0, tree: Tree | None = None):
        super().__init__(database, ids)
        self.tree = tree if tree is not None else build_kmeans_tree(self.database, k, depth, leaf_size, seed)

    def search_vectors(self, queries: np.ndarray, qids: Sequence[str] | None = None, k: int = 10, beam: int = 1) -> SearchResult:
        """Beam descent ranking nodes by inner product with their centroid, then exact re-scoring."""
        beam = check_beam(beam)
        q, qids = self._queries(queries, qids)
        sims = q @ self.tree.centroids.T
        run, cost = {}, np.zeros(len(qids), dtype=np.int64)
        for i, qid in enumerate(qids):
            d = beam_descend(self.tree, sims[i], beam)
            run[qid] = top_k_run_row(q[i], self.database, d.candidates, self.ids, k)
            cost[i] = d.cost
        return SearchResult(run, cost)


class IVF(_Index):
    """Inverted file: k-means into `nlist` lists; a query scans the `nprobe` lists of its nearest centroids."""

    def __init__(self, database: np.ndarray, ids: Sequence[str] | None = None, nlist: int = 64, seed: int = 0,
                 sample: int = 10_000):
        from sklearn.cluster import KMeans

        super().__init__(database, ids)
        n = self.database.shape[0]
        if not 2 <= nlist <= n:
            raise DsilabError(f"nlist must be between 2 and the number of vectors ({n}); got {nlist}.")
        rng = np.random.default_rng(seed)
        fit = self.database if n <= sample else self.database[rng.choice(n, sample, replace=False)]
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1):  # as in build_kmeans_tree: small fits run faster on one thread
            km = KMeans(n_clusters=nlist, n_init=1, random_state=seed).fit(fit)
        self.centroids = km.cluster_centers_.astype(np.float32)
        labels = km.predict(self.database)
        self.lists = [np.nonzero(labels == c)[0] for c in range(nlist)]

    def search_vectors(self, queries: np.ndarray, qids: Sequence[str] | None = None, k: int = 10, nprobe: int = 1) -> SearchResult:
        """Scan the `nprobe` nearest lists; cost = nlist centroid distances + the rows scanned."""
        if nprobe < 1:
            raise DsilabError(f"nprobe must be >= 1; got {nprobe}.")
        q, qids = self._queries(queries, qids)
        sims = q @ self.centroids.T
        nlist = len(self.lists)
        probe = np.argsort(-sims, axis=1, kind="stable")[:, : min(nprobe, nlist)]
        run, cost = {}, np.zeros(len(qids), dtype=np.int64)
        for i, qid in enumerate(qids):
            cand = np.concatenate([self.lists[c] for c in probe[i]])
            run[qid] = top_k_run_row(q[i], self.database, cand, self.ids, k)
            cost[i] = nlist + len(cand)
        return SearchResult(run, cost)
