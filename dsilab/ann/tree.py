"""The k-ary tree shared by the k-means tree reference and the soft (learned) tree: its shape,
built by recursive k-means, and hard beam descent with exact cost counting.

Nodes are numbered breadth first (root = 0), so every depth is a contiguous block of ids and a
node's children are contiguous too; the soft tree relies on this to route level by level.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..core import DsilabError


@dataclass
class Tree:
    """A k-ary tree over database vectors: children per node, a centroid per node, items per leaf.

    `items[v]` lists the database rows stored in leaf v (empty for internal nodes); a row may sit
    in several leaves (soft multi-assignment).
    """

    children: list[list[int]]
    centroids: np.ndarray
    items: list[np.ndarray]
    depth: np.ndarray = field(init=False)
    parent: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        n = len(self.children)
        if n == 0 or len(self.items) != n or self.centroids.shape[0] != n:
            raise DsilabError("Tree: children, items and centroids need one entry per node (root = node 0).")
        self.depth = np.zeros(n, dtype=np.int64)
        self.parent = np.full(n, -1, dtype=np.int64)
        expected = 1
        for v, kids in enumerate(self.children):
            if len(kids) == 1:
                raise DsilabError(f"Tree: node {v} has a single child; an internal node needs at least 2 (k >= 2).")
            for c in kids:
                if c != expected:
                    raise DsilabError("Tree: nodes must be numbered breadth first (children of node 0 are 1..k, ...).")
                expected += 1
                self.parent[c] = v
                self.depth[c] = self.depth[v] + 1
            if kids and len(self.items[v]):
                raise DsilabError(f"Tree: internal node {v} holds items; only leaves hold database rows.")
        if expected != n:
            raise DsilabError("Tree: some nodes are not reachable from the root.")
        if np.any(np.diff(self.depth) < 0):
            raise DsilabError("Tree: nodes must be numbered breadth first (depth never decreases with the id).")
        self.items = [np.asarray(i, dtype=np.int64) for i in self.items]
        if sum(len(self.items[v]) for v in self.leaves) == 0:
            raise DsilabError("Tree: the index is empty; build it over at least one vector.")

    @property
    def n_nodes(self) -> int:
        return len(self.children)

    @property
    def leaves(self) -> list[int]:
        return [v for v, kids in enumerate(self.children) if not kids]

    @property
    def internal(self) -> list[int]:
        return [v for v, kids in enumerate(self.children) if kids]

    @property
    def max_depth(self) -> int:
        return int(self.depth.max())

    def path_to(self, node: int) -> list[int]:
        """Node ids from the root down to `node`."""
        path = [node]
        while self.parent[path[-1]] >= 0:
            path.append(int(self.parent[path[-1]]))
        return path[::-1]

    def leaf_sizes(self) -> np.ndarray:
        return np.array([len(self.items[v]) for v in self.leaves])

    def greedy_cost(self) -> float:
        """Distance computations of one root-to-leaf descent into an average leaf (the cost unit)."""
        per_level = np.mean([len(self.children[v]) for v in self.internal]) if self.internal else 0.0
        return float(per_level * self.max_depth + self.leaf_sizes().mean())


def build_kmeans_tree(
    database: np.ndarray, k: int, depth: int, leaf_size: int = 1, seed: int = 0, sample: int = 10_000
) -> Tree:
    """Recursive k-means (scikit-learn) to `depth` levels: a node splits while it holds more than
    `leaf_size` rows. Each k-means is fitted on at most `sample` rows (as FAISS does) and then
    assigns all of the node's rows, which keeps a 100k-vector build in seconds."""
    from sklearn.cluster import KMeans
    from threadpoolctl import threadpool_limits

    if k < 2:
        raise DsilabError(f"k must be at least 2 (a node needs two children to route between); got {k}.")
    if depth < 1:
        raise DsilabError(f"depth must be at least 1; got {depth}.")
    n = database.shape[0]
    rng = np.random.default_rng(seed)
    children: list[list[int]] = [[]]
    items: list[np.ndarray] = [np.arange(n)]
    centroids: list[np.ndarray] = [database.mean(0)]
    node_depth = [0]
    v = 0
    while v < len(children):  # breadth first: ids are handed out in the order nodes are queued
        rows = items[v]
        if node_depth[v] < depth and len(rows) > max(leaf_size, k - 1):
            fit_rows = rows if len(rows) <= sample else rng.choice(rows, sample, replace=False)
            km = KMeans(n_clusters=k, n_init=1, random_state=int(rng.integers(2**31)))
            with threadpool_limits(1):  # fits this small are faster single-threaded (thread start-up dominates)
                km.fit(database[fit_rows])
            labels = km.predict(database[rows])
            groups = [rows[labels == c] for c in range(k)]
            keep = [c for c in range(k) if len(groups[c])]
            if len(keep) >= 2:
                for c in keep:
                    children[v].append(len(children))
                    children.append([])
                    items.append(groups[c])
                    centroids.append(km.cluster_centers_[c])
                    node_depth.append(node_depth[v] + 1)
                items[v] = np.zeros(0, dtype=np.int64)
        v += 1
    return Tree(children, np.asarray(centroids, dtype=np.float32), items)


@dataclass
class Descent:
    """What a hard beam descent did for one query: nodes expanded, leaves reached, candidates, cost."""

    expanded: list[int]
    leaves: list[int]
    candidates: np.ndarray
    cost: int

    @property
    def path(self) -> list[int]:
        """Expanded nodes then the leaves: with beam 1 this is the root-to-leaf path."""
        return self.expanded + self.leaves


def beam_descend(
    tree: Tree, node_scores: np.ndarray, beam: int, mass_probs: np.ndarray | None = None, mass: float | None = None,
    extra_cost: int = 0,
) -> Descent:
    """Hard, deterministic beam descent: expand every internal node in the beam (cost: one distance
    per child), keep the `beam` best nodes by `node_scores` (leaves stay in the beam), stop when
    the beam holds only leaves; then the union of their rows is scored exactly (cost: one each).

    With `mass`, a level keeps only the best nodes until their probability (`mass_probs`) reaches
    `mass` (never more than `beam`): a confident router opens fewer nodes.
    """
    frontier = [0]
    expanded: list[int] = []
    cost = extra_cost
    while any(tree.children[v] for v in frontier):
        cand: list[int] = []
        for v in frontier:
            if tree.children[v]:
                expanded.append(v)
                cost += len(tree.children[v])
                cand.extend(tree.children[v])
            else:
                cand.append(v)
        cand_arr = np.asarray(cand)
        order = cand_arr[np.lexsort((cand_arr, -node_scores[cand_arr]))]
        keep = order[:beam]
        if mass is not None and mass_probs is not None:
            reach = np.searchsorted(np.cumsum(mass_probs[keep]), mass - 1e-9) + 1
            keep = keep[: max(1, min(reach, len(keep)))]
        frontier = [int(v) for v in keep]
    rows = [tree.items[v] for v in frontier]
    candidates = np.unique(np.concatenate(rows)) if rows else np.zeros(0, dtype=np.int64)
    return Descent(expanded, frontier, candidates, cost + len(candidates))


def check_beam(beam: int) -> int:
    if not isinstance(beam, (int, np.integer)) or beam < 1:
        raise DsilabError(f"beam must be an integer >= 1 (how many nodes a level keeps); got {beam!r}.")
    return int(beam)


def top_k_run_row(query: np.ndarray, database: np.ndarray, candidates: np.ndarray, ids: Sequence[str], k: int):
    """Exact re-scoring of the candidates: the top-k (id, score), best first, ties by row index."""
    if len(candidates) == 0:
        return []
    scores = database[candidates] @ query
    order = np.lexsort((candidates, -scores))[:k]
    return [(ids[candidates[j]], float(scores[j])) for j in order]
