"""Learned residual codes with few collisions: residual quantisation of document embeddings into L levels x K codes.

    rq = residual_codes(doc_ids, embeddings, levels=3, codes=16, seed=0)
    rq.report()            # collision rate (nearest codes, before any disambiguation), codebook use per level
    tree = rq.tree()       # a DocidTree: the rest of the pipeline (tasks, DSIModel, decode) reads it like semantic docids

How a code is made (RQ, as the RQ-VAE quantisers of TIGER and the DGI paper start):

1. Every level l has a codebook of K vectors, fitted by k-means (scikit-learn) on the *residuals* that the levels
   before it left: level 0 on the unit document embeddings, level 1 on what level 0 did not explain, and so on.
   A document's code is its nearest codebook vector at each level; the sum of its L vectors reconstructs it.
2. **Dead codes** (no document) waste a token: they are re-seeded at the residuals that are worst explained and
   k-means runs again from there (`reseeded` counts them).
3. **Collisions by design, not by counter.** Two documents collide when all L nearest codes agree. Their
   number is reported as `collision_rate_nearest` (before anything is done about it). Then the last level is
   assigned *collision-aware*: inside each group of documents that share the first L-1 codes, documents get
   distinct last codes by a minimum-cost assignment (scipy's Hungarian `linear_sum_assignment`) on their
   distances to the last codebook -- each document keeps the nearest code it can have alone (most keep their
   own nearest). This is the "uniform semantic mapping" idea of LC-Rec (Zheng et al., 2024), done exactly.
   A group of m > K documents cannot be separated at one level: it is balanced (at most ceil(m/K) per code) and
   **an extra level** is added (k-means on what is left), assigned the same way, up to `max_levels`. `collision_rate` is the rate after this, still before
   any disambiguation; only if collisions remain at `max_levels` does `tree()` append a counter, and it says so.

Departures from the DGI paper (arXiv 2603.10409; only its abstract is stored here, the rest follows the project's
notes on it): its RQ-VAE learns an encoder/decoder around the codebooks and codebooks {4096, 1024, 256} at
industrial scale; here the codebooks quantise fixed MiniLM document embeddings (no autoencoder: a course-size
collection of 315 documents cannot train one) with K chosen for the collection, and collisions are handled by the
assignment above rather than by a loss alone. The codebooks stay live in DGI training: they become the decoder's
docid-token rows (`dsilab.dgi.seq2seq`).
"""
from __future__ import annotations

import warnings
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..core import DsilabError
from .tree import DocidTree


@dataclass
class ResidualCodes:
    """Residual codes of a collection: codebooks (one (K, dim) array per level), codes (n_docs, levels), and how
    they were reached (nearest codes before collision handling, dead codes re-seeded, levels added)."""

    doc_ids: list[str]
    embeddings: np.ndarray                 # the unit document embeddings that were quantised (n_docs, dim)
    codebooks: list[np.ndarray]            # level -> (K, dim)
    codes: np.ndarray                      # (n_docs, levels): code of every document at every level (collision-aware)
    nearest: np.ndarray                    # (n_docs, base levels): nearest codes, before any collision handling
    codes_per_level: int
    reseeded: int = 0                      # dead codes re-seeded during fitting, all levels
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def levels(self) -> int:
        return len(self.codebooks)

    # -- measurements ---------------------------------------------------------------------------------------
    @staticmethod
    def collision_rate_of(codes: np.ndarray) -> float:
        """Share of documents whose full code is shared with at least one other document (0 = every code unique)."""
        counts = Counter(map(tuple, np.asarray(codes).tolist()))
        return float(sum(c for c in counts.values() if c > 1) / max(len(codes), 1))

    @property
    def collision_rate_nearest(self) -> float:
        """Collision rate of the plain nearest-code assignment at the base levels (nothing done about collisions)."""
        return self.collision_rate_of(self.nearest)

    @property
    def collision_rate(self) -> float:
        """Collision rate of the final learned codes, before any disambiguation counter."""
        return self.collision_rate_of(self.codes)

    def utilisation(self) -> list[dict[str, float]]:
        """Per level: codes used out of K, and the perplexity of their use (effective number of codes)."""
        out = []
        for level in range(self.levels):
            counts = np.bincount(self.codes[:, level], minlength=self.codes_per_level).astype(float)
            frac = counts[counts > 0] / counts.sum()
            out.append({"level": level, "codes": self.codes_per_level, "used": int((counts > 0).sum()),
                        "perplexity": round(float(np.exp(-(frac * np.log(frac)).sum())), 2)})
        return out

    def reconstruction_error(self) -> float:
        """Mean squared error of the sum of a document's code vectors against its unit embedding (0 = exact)."""
        recon = sum(cb[self.codes[:, level]] for level, cb in enumerate(self.codebooks))
        return float(((self.embeddings - recon) ** 2).sum(1).mean())

    def report(self) -> dict[str, Any]:
        """The numbers to read first: collisions before and after the collision-aware assignment, codebook use."""
        return {"docs": len(self.doc_ids), "levels": self.levels, "base levels": self.nearest.shape[1],
                "codes per level": self.codes_per_level,
                "collision rate (nearest codes)": round(self.collision_rate_nearest, 4),
                "collision rate (learned codes)": round(self.collision_rate, 4),
                "dead codes re-seeded": self.reseeded,
                "codes used per level": [u["used"] for u in self.utilisation()],
                "perplexity per level": [u["perplexity"] for u in self.utilisation()],
                "reconstruction error": round(self.reconstruction_error(), 4)}

    # -- as docids -----------------------------------------------------------------------------------------------
    def digit(self, level: int, code: int) -> int:
        """The docid digit of code `code` at `level`: each level has its own K tokens (level * K + code), so that
        a token's embedding row is one codebook vector (the weight sharing of DGI needs one row per (level, code))."""
        return level * self.codes_per_level + int(code)

    def tree(self) -> DocidTree:
        """The codes as a `DocidTree` (kind "residual"); a counter position is appended only where collisions remain."""
        K, L = self.codes_per_level, self.levels
        paths = [tuple(self.digit(level, c) for level, c in enumerate(row)) for row in self.codes.tolist()]
        seen: dict[tuple[int, ...], int] = defaultdict(int)
        counter = self.collision_rate > 0
        codes = {}
        for d, p in zip(self.doc_ids, paths):
            codes[d] = p + ((L * K + seen[p],) if counter else ())
            seen[p] += 1
        return DocidTree("residual", codes, {"levels": L, "codes": K, "counter": counter, "quantiser": self,
                                             "seed": self.params.get("seed", 0)})


def _kmeans(x: np.ndarray, k: int, seed: int, init: np.ndarray | None = None) -> np.ndarray:
    from sklearn.cluster import KMeans
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)   # duplicate points: fewer distinct clusters than k
        km = KMeans(n_clusters=k, n_init=3 if init is None else 1, init="k-means++" if init is None else init,
                    random_state=seed).fit(x)
    return km.cluster_centers_


def _fit_level(x: np.ndarray, k: int, seed: int, max_reseed: int = 3) -> tuple[np.ndarray, int]:
    """k-means codebook of one level, with dead codes re-seeded at the worst-explained points."""
    cent = _kmeans(x, k, seed)
    reseeded = 0
    for _ in range(max_reseed):
        d2 = ((x[:, None, :] - cent[None]) ** 2).sum(-1)
        labels = d2.argmin(1)
        dead = np.flatnonzero(np.bincount(labels, minlength=k) == 0)
        if not len(dead):
            break
        worst = np.argsort(-d2[np.arange(len(x)), labels])[: len(dead)]
        cent[dead[: len(worst)]] = x[worst]
        reseeded += len(dead)
        cent = _kmeans(x, k, seed, init=cent)
    return cent, reseeded


def _unique_assign(residual: np.ndarray, codebook: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Nearest codes, made distinct inside each group (rows with equal `groups` key) by the minimum-total-distance
    assignment (Hungarian). A group of m > K documents cannot get distinct codes; it is *balanced* instead (at most
    ceil(m / K) documents per code), so that one more level can separate what is left."""
    from scipy.optimize import linear_sum_assignment

    d2 = ((residual[:, None, :] - codebook[None]) ** 2).sum(-1)
    out = d2.argmin(1)
    K = len(codebook)
    members: dict[tuple, list[int]] = defaultdict(list)
    for i, g in enumerate(map(tuple, groups.tolist())):
        members[g].append(i)
    for idx in members.values():
        cap = -(-len(idx) // K)
        if len(idx) < 2 or np.bincount(out[idx], minlength=K).max() <= cap:
            continue
        rows, cols = linear_sum_assignment(np.repeat(d2[idx], cap, axis=1))   # each code offered `cap` times
        out[np.array(idx)[rows]] = cols // cap
    return out


def residual_codes(doc_ids: list[str], embeddings: np.ndarray, levels: int = 3, codes: int = 16, seed: int = 0,
                   max_levels: int | None = None, collision_aware: bool = True) -> ResidualCodes:
    """Residual quantisation of `embeddings` (one row per document) into `levels` x `codes`, collisions handled.

    collision_aware=False keeps the nearest codes (the plain RQ baseline: report its collisions, nothing more);
    max_levels (default levels + 1) caps the extra levels added while some group still collides.
    Deterministic per seed; k-means runs on one thread (many small fits on a busy machine).
    """
    from threadpoolctl import threadpool_limits

    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2 or len(x) != len(doc_ids):
        raise DsilabError(f"embeddings must be (n_docs={len(doc_ids)}, dim), got {x.shape}.")
    if levels < 1 or codes < 2:
        raise DsilabError(f"residual_codes needs levels >= 1 and codes >= 2, got levels={levels}, codes={codes}.")
    if len(x) < codes:
        raise DsilabError(f"{len(x)} documents are fewer than codes={codes} per level; lower `codes`.")
    max_levels = levels + 1 if max_levels is None else max_levels
    if max_levels < levels:
        raise DsilabError(f"max_levels={max_levels} is below levels={levels}.")
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    books, cols, reseeded = [], [], 0
    residual = x.copy()
    with threadpool_limits(limits=1):
        for level in range(levels):
            cb, r = _fit_level(residual, codes, seed + level)
            reseeded += r
            c = ((residual[:, None, :] - cb[None]) ** 2).sum(-1).argmin(1)
            books.append(cb)
            cols.append(c)
            residual = residual - cb[c]
        nearest = np.stack(cols, 1)
        final = nearest.copy()
        if collision_aware:
            # re-assign the last level collision-aware, from the residual that level saw
            last_in = residual + books[-1][final[:, -1]]
            final[:, -1] = _unique_assign(last_in, books[-1], final[:, :-1])
            residual = last_in - books[-1][final[:, -1]]
            while ResidualCodes.collision_rate_of(final) > 0 and len(books) < max_levels:
                cb, r = _fit_level(residual, codes, seed + len(books))
                reseeded += r
                c = _unique_assign(residual, cb, final)
                books.append(cb)
                final = np.concatenate([final, c[:, None]], 1)
                residual = residual - cb[c]
    return ResidualCodes(list(doc_ids), x.astype(np.float32), [b.astype(np.float32) for b in books], final, nearest,
                         codes, reseeded, {"seed": seed, "levels": levels, "max_levels": max_levels,
                                           "collision_aware": collision_aware})


def collection_codes(collection, levels: int = 3, codes: int = 16, seed: int = 0, embeddings: np.ndarray | None = None,
                     **kwargs: Any) -> ResidualCodes:
    """`residual_codes` of a collection's documents, embedded by MiniLM (the same embeddings as semantic docids)."""
    if embeddings is None:
        from ..embed import load_encoder

        embeddings = load_encoder().encode_cached(collection.contents)
    return residual_codes(collection.doc_ids, embeddings, levels, codes, seed, **kwargs)
