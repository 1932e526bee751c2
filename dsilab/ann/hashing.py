"""Binary codes for candidate generation: random-hyperplane LSH and a learned hash.

Both map a vector to `bits` signs of linear functions, rank the whole database by Hamming
distance (cheap bit operations, counted apart), and re-score the best `candidates` exactly.
The learned hash trains its hyperplanes through a relaxation of sign(): tanh(slope * u) with a
slope that grows during training (or a straight-through sign), so that a query's true
neighbours get codes close to its own. At inference the codes are exactly +-1 (stored as bits).
Options: `loss="softsort"` trains each neighbour's soft Hamming rank into the top `top` candidates;
`adapter=True` learns a query-side residual map with the codes (the query's hyperplanes become
W (I + A): an asymmetric hash whose documents keep their codes).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..core import DsilabError, seed_everything
from .evaluation import SearchResult, as_matrix, check_ids, train_if_given
from .joint import Objective, QueryAdapter
from .softsort import rank_among, soft_topk_loss


def pack_bits(signs: np.ndarray) -> np.ndarray:
    """(n, bits) booleans (True = +1) -> one uint64 word per row (bits <= 64)."""
    weights = np.left_shift(np.uint64(1), np.arange(signs.shape[1], dtype=np.uint64))
    return (signs.astype(np.uint64) * weights).sum(axis=1, dtype=np.uint64)


def hamming_candidates(query_codes: np.ndarray, codes: np.ndarray, n: int) -> np.ndarray:
    """Per query, the `n` database rows of smallest Hamming distance (ties: lower row first)."""
    n = min(n, codes.shape[0])
    out = np.empty((len(query_codes), n), dtype=np.int64)
    rows = np.arange(codes.shape[0], dtype=np.int64)
    for i, qc in enumerate(query_codes):
        key = np.bitwise_count(codes ^ qc).astype(np.int64) * codes.shape[0] + rows  # distance, then row
        top = np.argpartition(key, n - 1)[:n] if n < len(key) else rows
        out[i] = top[np.argsort(key[top])]
    return out


def _check_bits(bits: int) -> int:
    if not isinstance(bits, (int, np.integer)) or not 1 <= bits <= 64:
        raise DsilabError(f"bits must be an integer from 1 to 64 (one machine word per code); got {bits!r}.")
    return int(bits)


class _HashIndex:
    """Codes of the database under `signs(x)`; search = Hamming ranking + exact re-scoring."""

    def _set_database(self, database: np.ndarray, ids: Sequence[str] | None, bits: int) -> None:
        bits = _check_bits(bits)
        self.database = as_matrix(database, "database")
        self.ids = check_ids(ids, self.database.shape[0], "d")
        self.dim, self.bits = self.database.shape[1], bits

    def signs(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - defined by subclasses
        raise NotImplementedError

    def query_signs(self, q: np.ndarray) -> np.ndarray:
        """The bits of a query: the database's hash unless a subclass hashes queries its own way."""
        return self.signs(q)

    def codes(self, x: np.ndarray) -> np.ndarray:
        """The +-1 codes of rows of `x` (float, exactly -1 or +1): what inference uses."""
        return np.where(self.signs(as_matrix(x, "vectors", self.dim)), 1.0, -1.0).astype(np.float32)

    def index(self) -> None:
        """(Re)compute the packed codes of the database."""
        self.packed = np.concatenate([pack_bits(self.signs(self.database[s : s + 65536]))
                                      for s in range(0, self.database.shape[0], 65536)])

    def search_vectors(self, queries: np.ndarray, qids: Sequence[str] | None = None, k: int = 10,
                       candidates: int = 100) -> SearchResult:
        """Hamming-rank the database, re-score the best `candidates` exactly.

        cost = `bits` (one d-dimensional product per hyperplane, to hash the query) + `candidates`;
        `extra["hamming"]` counts the Hamming comparisons (n per query, a few bit operations each).
        """
        if candidates < 1:
            raise DsilabError(f"candidates must be >= 1; got {candidates}.")
        if "database" not in self.__dict__:
            raise DsilabError(f"this {type(self).__name__} has no data yet: call .fit(database, ids, queries, targets) first.")
        q = as_matrix(queries, "queries", self.dim)
        qids = check_ids(qids, q.shape[0], "q")
        cand = hamming_candidates(pack_bits(self.query_signs(q)), self.packed, candidates)
        run = {}
        for i, qid in enumerate(qids):
            scores = self.database[cand[i]] @ q[i]
            order = np.lexsort((cand[i], -scores))[:k]
            run[qid] = [(self.ids[cand[i][j]], float(scores[j])) for j in order]
        n_q = len(qids)
        return SearchResult(run, np.full(n_q, self.bits + cand.shape[1], dtype=np.int64),
                            {"hamming": np.full(n_q, self.database.shape[0], dtype=np.int64)})


class LSH(_HashIndex):
    """Random-hyperplane LSH (SimHash): bit i = [<x, r_i> > 0] with Gaussian r_i; angle-preserving
    in expectation, blind to where the data actually lies."""

    def __init__(self, database: np.ndarray, ids: Sequence[str] | None = None, bits: int = 32, seed: int = 0):
        self._set_database(database, ids, bits)
        self.planes = np.random.default_rng(seed).normal(size=(self.bits, self.dim)).astype(np.float32)
        self.index()

    def signs(self, x: np.ndarray) -> np.ndarray:
        return x @ self.planes.T > 0


@dataclass(frozen=True)
class HashConfig(Objective):
    """Training settings of the learned hash (the loss and adapter settings: `joint.Objective`)."""

    bits: int = 32
    init: str = "pca"            # "pca": top principal axes, centred (better start); "lsh": LSH's hyperplanes
    relaxation: str = "tanh"     # "tanh": tanh(slope * u); "ste": sign forward, tanh gradient backward
    slope_start: float = 1.0     # the slope grows geometrically ...
    slope_end: float = 20.0      # ... so the relaxed codes approach +-1
    negatives: int = 1024        # random database rows each batch ranks the neighbours against
    nats_per_bit: float = 1.0    # logit change per Hamming bit in the ranking loss
    balance: float = 0.1         # weight of the bit-balance term (each bit +1 on half the data)
    epochs: int = 20
    batch_size: int = 128
    lr: float = 0.01
    top: int = 20                # softsort: neighbours should rank within the top 20 by Hamming distance
    width: float = 1.0           # rank_temperature is in Hamming bits here

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.init not in ("lsh", "pca"):
            raise DsilabError(f"init must be 'lsh' or 'pca'; got {self.init!r}.")
        if self.relaxation not in ("tanh", "ste"):
            raise DsilabError(f"relaxation must be 'tanh' or 'ste'; got {self.relaxation!r}.")
        if self.slope_start <= 0 or self.slope_end <= 0:
            raise DsilabError("slopes must be positive.")


class LearnedHash(_HashIndex):
    """Hyperplanes and offsets learned so that each training query's nearest neighbours fall
    within a small Hamming radius; the ranking loss runs on relaxed (tanh) codes.

    scikit-learn style: settings here, data in `fit`, e.g. `LearnedHash(bits=32).fit(database, ids, queries, targets)`.
    """

    def __init__(self, config: HashConfig | None = None, **overrides):
        if config is not None and not isinstance(config, HashConfig):
            raise DsilabError("LearnedHash takes its settings, its data goes to fit: "
                              "LearnedHash(bits=...).fit(database, ids, queries, targets).")
        from dataclasses import replace

        self.config = replace(config, **overrides) if config is not None else HashConfig(**overrides)
        _check_bits(self.config.bits)

    def fit(self, database: np.ndarray, ids: Sequence[str] | None = None, queries: np.ndarray | None = None,
            targets: np.ndarray | None = None, progress: bool = False) -> "LearnedHash":
        """Hash `database` with the initial hyperplanes (PCA or LSH), then train them on `queries`: every target row
        (a true neighbour) of query i should out-rank `negatives` random database rows by relaxed code similarity (a
        multi-positive softmax loss). Without queries the hash stays at its initialisation (untrained)."""
        self._initialise(database, ids)
        return train_if_given(self, queries, targets, progress)

    def _initialise(self, database: np.ndarray, ids: Sequence[str] | None) -> None:
        """The database, the starting hyperplanes and offsets, and its codes under them."""
        cfg = self.config
        self._set_database(database, ids, cfg.bits)
        if cfg.init == "lsh":
            planes = LSH(self.database[:1], bits=cfg.bits, seed=cfg.seed).planes
            offset = np.zeros(cfg.bits, dtype=np.float32)
        else:
            from sklearn.decomposition import PCA

            if cfg.bits > min(self.database.shape):
                raise DsilabError(f"init='pca' needs bits <= min(n, d) = {min(self.database.shape)}.")
            pca = PCA(n_components=cfg.bits, random_state=cfg.seed).fit(self.database)
            planes = (pca.components_ / np.sqrt(pca.explained_variance_)[:, None]).astype(np.float32)
            offset = -(pca.mean_ @ planes.T).astype(np.float32)
        self.planes, self.offset = planes, offset
        self.adapter = QueryAdapter(self.dim, cfg.adapter_rank, cfg.seed) if cfg.adapter else None
        self.history: list[dict[str, float]] = []
        self.train_seconds = 0.0
        self.index()

    def signs(self, x: np.ndarray) -> np.ndarray:
        return x @ self.planes.T + self.offset > 0

    def query_signs(self, q: np.ndarray) -> np.ndarray:
        """With the adapter, a query is hashed by the folded hyperplanes W (I + A): still `bits` products."""
        if self.adapter is None:
            return self.signs(q)
        return q @ (self.planes @ self.adapter.matrix).T + self.offset > 0

    def relaxed_codes(self, x: np.ndarray, slope: float) -> np.ndarray:
        """tanh(slope * (W x + b)): the differentiable stand-in for the codes (for plots)."""
        return np.tanh(slope * (as_matrix(x, "vectors", self.dim) @ self.planes.T + self.offset))

    def _fit(self, queries, targets, progress):
        import torch
        from tqdm.auto import tqdm

        cfg = self.config
        q = torch.from_numpy(as_matrix(queries, "training queries", self.dim))
        tgt = torch.as_tensor(np.asarray(targets, dtype=np.int64))
        if tgt.ndim != 2 or tgt.shape[0] != q.shape[0]:
            raise DsilabError("targets must be a (queries x neighbours) array of database rows, one row per query.")
        db = torch.from_numpy(self.database)
        seed_everything(cfg.seed)
        gen = torch.Generator().manual_seed(cfg.seed)
        w = torch.nn.Parameter(torch.from_numpy(self.planes.copy()))
        b = torch.nn.Parameter(torch.from_numpy(self.offset.copy()))
        opt = torch.optim.Adam([w, b] + (self.adapter.parameters if self.adapter is not None else []), lr=cfg.lr)
        scale = cfg.nats_per_bit / 2.0  # sim = <h_q, h_x> changes by 2 per flipped bit

        def relax(u, slope):
            soft = torch.tanh(slope * u)
            return soft if cfg.relaxation == "tanh" else soft + (torch.sign(u) - soft).detach()

        start = time.perf_counter()
        for epoch in tqdm(range(cfg.epochs), desc="learned hash", disable=not progress):
            slope = cfg.slope_start * (cfg.slope_end / cfg.slope_start) ** (epoch / max(cfg.epochs - 1, 1))
            order = torch.randperm(len(q), generator=gen)
            total = 0.0
            for s in range(0, len(order), cfg.batch_size):
                idx = order[s : s + cfg.batch_size]
                neg = torch.randint(len(db), (cfg.negatives,), generator=gen)
                qb = self.adapter(q[idx]) if self.adapter is not None else q[idx]
                hq = relax(qb @ w.T + b, slope)                              # (B, bits)
                hp = relax(db[tgt[idx]] @ w.T + b, slope)                     # (B, P, bits)
                hn = relax(db[neg] @ w.T + b, slope)                          # (N, bits)
                pos = scale * torch.einsum("bd,bpd->bp", hq, hp)              # (B, P)
                negs = scale * hq @ hn.T                                      # (B, N)
                clash = (tgt[idx][:, :, None] == neg[None, None, :]).any(1)   # a sampled row that is a neighbour
                negs = negs.masked_fill(clash, -1e9)
                if cfg.loss == "softsort":  # rank in the whole database, estimated from the sampled negatives
                    rank = rank_among(pos / scale / 2, negs / scale / 2, cfg.rank_temperature, len(db) / cfg.negatives)
                    loss = soft_topk_loss(rank, cfg.top, cfg.width).mean()
                else:  # each neighbour against all negatives: -log e^pos / (e^pos + sum e^neg)
                    lse_neg = torch.logsumexp(negs, dim=1, keepdim=True)
                    loss = (torch.logaddexp(pos, lse_neg) - pos).mean()
                if self.adapter is not None:
                    loss = loss + cfg.adapter_l2 * self.adapter.penalty()
                loss = loss + cfg.balance * (hn.mean(0) ** 2).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += loss.item() * len(idx) / len(q)
            self.history.append({"epoch": epoch, "slope": slope, "loss": total})
        self.planes = w.detach().numpy().copy()
        self.offset = b.detach().numpy().copy()
        self.train_seconds = time.perf_counter() - start
        self.index()
        return self
