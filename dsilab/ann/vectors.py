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


#: What the index learns from: the collection's training queries, or short spans of the documents as stand-in queries.
TRAIN_SIGNALS = ("auto", "train queries", "document spans")


def lab_vectors(collection, split: str = "test", encoder: str = "minilm", k: int = 10, train_on: str = "auto",
                spans_per_doc: int = 2, seed: int = 0) -> VectorSet:
    """MiniLM embeddings of a collection: docs = database, training queries = `train_on`, `split` = test.

    train_on: "train queries" (the collection's train split), "document spans" (`spans_per_doc` seeded spans and
    key-phrases of every document, `dsilab.querygen`'s span generator: a collection without labelled queries still
    trains the index), or "auto" (train queries when there are any, else spans). Either way the training targets
    are exact neighbours in the encoder's space, and the `split` queries are only searched, never trained on.
    """
    from ..embed import load_encoder

    if split == "train":
        raise DsilabError("lab_vectors: the test split must differ from the train split (use 'dev' or 'test').")
    if train_on not in TRAIN_SIGNALS:
        raise DsilabError(f"lab_vectors: train_on must be one of {TRAIN_SIGNALS}; got {train_on!r}.")
    has_train = "train" in collection.qrels
    if train_on == "train queries" and not has_train:
        raise DsilabError(f"collection {collection.name!r} has no train split to learn the index from "
                          f"(splits: {sorted(collection.qrels)}); use train_on='document spans'.")
    signal = "train queries" if train_on == "train queries" or (train_on == "auto" and has_train) else "document spans"
    if signal == "train queries":
        train_texts = list(collection.split("train")[0].values())
    else:
        from ..querygen import generate_queries

        spans = generate_queries(collection, spans_per_doc, "span", seed=seed)
        train_texts = [s for d in collection.doc_ids for s in spans.get(d, [])]
    enc = load_encoder(encoder)
    test_q, test_qrels = collection.split(split)
    database = enc.encode_cached(collection.contents)
    meta = {"collection": collection.name, "split": split, "encoder": encoder, "train_signal": signal}
    if signal == "document spans":
        meta.update(spans_per_doc=spans_per_doc, span_seed=seed)
    return VectorSet(
        name=f"{collection.name} ({encoder})",
        database=database,
        ids=collection.doc_ids,
        train_queries=enc.encode_cached(train_texts),
        test_queries=enc.encode_cached(list(test_q.values())),
        test_qids=list(test_q),
        test_qrels=test_qrels,
        k=k,
        meta=meta,
    )


def synthetic_vectors(n: int = 100_000, dim: int = 384, n_train: int = 5_000, n_test: int = 1_000,
                      n_clusters: int = 64, n_subclusters: int = 16, latent_dim: int = 32, spread: float = 1.0,
                      query_noise: float = 0.4, seed: int = 0, k: int = 10) -> VectorSet:
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
        meta={"generator": "synthetic_vectors", "train_signal": "perturbed database vectors", "seed": seed,
              "n_clusters": n_clusters, "n_subclusters": n_subclusters, "latent_dim": latent_dim, "spread": spread,
              "query_noise": query_noise},
    )
