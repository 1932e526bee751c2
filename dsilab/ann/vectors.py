"""Vector sets for the ANN chapter: MiniLM embeddings of a text collection, or synthetic clustered
vectors of any size (the `--collection synthetic` path of `dsilab bench ann`).

A `VectorSet` holds the database, the training queries (never the test ones) with their exact
nearest neighbours as training targets, and the test queries with their exact top-10.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..core import DsilabError, Qrels
from .evaluation import exact_neighbours, truth_from_indices


@dataclass
class VectorSet:
    """Database vectors and queries (unit norm, so inner product = cosine), split into train and test."""

    name: str
    database: np.ndarray
    ids: list[str]
    train_queries: np.ndarray
    test_queries: np.ndarray
    test_qids: list[str]
    test_qrels: Qrels | None = None
    k: int = 10
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.database.shape[0] == 0:
            raise DsilabError(f"vector set {self.name!r} has an empty database.")
        for name in ("train_queries", "test_queries"):
            if getattr(self, name).shape[1] != self.database.shape[1]:
                raise DsilabError(f"vector set {self.name!r}: {name} and database differ in dimension.")
        self.train_targets = exact_neighbours(self.train_queries, self.database, self.k)
        self.test_neighbours = exact_neighbours(self.test_queries, self.database, self.k)
        self.truth = truth_from_indices(self.test_qids, self.test_neighbours, self.ids)

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.database.shape)


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def lab_vectors(collection, split: str = "test", encoder: str = "minilm", k: int = 10) -> VectorSet:
    """MiniLM embeddings of a collection: docs = database, `train` queries = training, `split` = test.

    Training uses only the collection's train split; `split` (default test) is only searched.
    """
    from ..embed import load_encoder

    if split == "train":
        raise DsilabError("lab_vectors: the test split must differ from the train split (use 'dev' or 'test').")
    if "train" not in collection.qrels:
        raise DsilabError(f"collection {collection.name!r} has no train split to learn the index from.")
    enc = load_encoder(encoder)
    train_q, _ = collection.split("train")
    test_q, test_qrels = collection.split(split)
    database = enc.encode_cached(collection.contents)
    return VectorSet(
        name=f"{collection.name} ({encoder})",
        database=database,
        ids=collection.doc_ids,
        train_queries=enc.encode_cached(list(train_q.values())),
        test_queries=enc.encode_cached(list(test_q.values())),
        test_qids=list(test_q),
        test_qrels=test_qrels,
        k=k,
        meta={"collection": collection.name, "split": split, "encoder": encoder},
    )


def synthetic_vectors(
    n: int = 100_000,
    dim: int = 384,
    n_train: int = 5_000,
    n_test: int = 1_000,
    n_clusters: int = 64,
    n_subclusters: int = 16,
    latent_dim: int = 32,
    spread: float = 1.0,
    query_noise: float = 0.4,
    seed: int = 0,
    k: int = 10,
) -> VectorSet:
    """Clustered unit vectors that look like sentence embeddings: a two-level Gaussian mixture in a
    `latent_dim`-dimensional subspace, mapped into `dim` dimensions, plus small isotropic noise.

    Queries are database vectors perturbed by noise of relative size `query_noise`; train and
    test queries come from disjoint sets of database vectors (seeded, so the set repeats exactly).
    """
    if n < 2 or dim < 2:
        raise DsilabError("synthetic_vectors: n and dim must be at least 2.")
    if n_train + n_test > n:
        raise DsilabError(f"synthetic_vectors: n_train + n_test ({n_train + n_test}) must not exceed n ({n}).")
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_clusters, latent_dim)) * 1.0
    subs = centres[:, None, :] + rng.normal(size=(n_clusters, n_subclusters, latent_dim)) * 0.5
    # cluster sizes vary (Zipf-like), as topics do in a real corpus
    weights = 1.0 / np.arange(1, n_clusters + 1) ** 0.5
    cluster = rng.choice(n_clusters, size=n, p=weights / weights.sum())
    sub = rng.integers(n_subclusters, size=n)
    latent = subs[cluster, sub] + rng.normal(size=(n, latent_dim)).astype(np.float32) * spread
    basis, _ = np.linalg.qr(rng.normal(size=(dim, latent_dim)))
    x = latent.astype(np.float32) @ basis.T.astype(np.float32)
    x += rng.normal(size=(n, dim)).astype(np.float32) * (0.15 * np.sqrt(latent_dim / dim))
    x += 0.5 * _unit(rng.normal(size=(1, dim))) * np.sqrt(latent_dim)  # a shared offset, as MiniLM has
    database = _unit(x)
    del x
    picks = rng.permutation(n)[: n_train + n_test]

    def perturb(idx: np.ndarray) -> np.ndarray:
        noise = _unit(rng.normal(size=(len(idx), dim))) * query_noise
        return _unit(database[idx] + noise)

    return VectorSet(
        name=f"synthetic-vectors-{n}x{dim}",
        database=database,
        ids=[f"v{i}" for i in range(n)],
        train_queries=perturb(picks[:n_train]),
        test_queries=perturb(picks[n_train:]),
        test_qids=[f"t{i}" for i in range(n_test)],
        k=k,
        meta={"generator": "synthetic_vectors", "seed": seed, "n_clusters": n_clusters,
              "n_subclusters": n_subclusters, "latent_dim": latent_dim, "spread": spread, "query_noise": query_noise},
    )
