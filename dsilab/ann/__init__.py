"""Differentiable ANN: a soft (learned-routing) tree and learned binary hashing, measured against
exact search, the k-means tree, IVF and random-hyperplane LSH with the same cost accounting, and against
FAISS's IVF-Flat and HNSW (`faiss_index`), the structures used in production.

Every index answers `search_vectors(vectors, qids=None, k=10, ...) -> SearchResult` (a `Run` plus the
exact number of distance computations per query); `recall_at_k` scores a run against exact top-k.
`EncodedIndex(index, encoder)` searches it with query texts, `search(queries, k) -> Run`, like every retriever.
"""
from .evaluation import (
    EncodedIndex, SearchResult, budget_for_recall, exact_neighbours, recall_at_budget, recall_at_k, score, truth_from_indices,
)
from .sweeps import hash_table, sweep, tree_curves
from .faiss_index import FaissHNSW, FaissIVFFlat
from .hashing import LSH, HashConfig, LearnedHash
from .reference import IVF, Flat, KMeansTree
from .soft_tree import SoftTree, SoftTreeConfig
from .tree import Descent, Tree, build_kmeans_tree
from .vectors import VectorSet, lab_vectors, synthetic_vectors

__all__ = [
    "EncodedIndex", "SearchResult", "score", "recall_at_k", "exact_neighbours", "truth_from_indices", "recall_at_budget",
    "budget_for_recall", "Flat", "IVF", "KMeansTree", "SoftTree", "SoftTreeConfig", "Tree", "Descent",
    "build_kmeans_tree", "LSH", "LearnedHash", "HashConfig", "VectorSet", "lab_vectors", "synthetic_vectors",
    "sweep", "tree_curves", "hash_table", "FaissIVFFlat", "FaissHNSW",
]
