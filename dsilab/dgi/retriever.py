"""Training and search: the joint (index + retriever) phase, collision handling, trie-constrained beam search.

`DGIRetriever(config).fit(doc_ids, doc_emb, train_emb, train_doc)` learns the codes and the decoder;
`search_embeddings(qids, q_emb)` decodes with the same trie-constrained beam search as DSI and returns
a `Run`. With `fixed_codes=` (e.g. k-means semantic docids) and `DGIConfig(index="fixed")` the same
decoder is trained with hard teacher forcing on codes it cannot change: the DSI-semantic baseline.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..core import DsilabError, Run, seed_everything
from ..decode import DocidTrie
from .model import DGIConfig, DGIModel, anneal, code_usage


def disambiguate(paths: list[tuple[int, ...]]) -> list[tuple[int, ...]]:
    """Append a final position to every path: 0, 1, 2, ... within each group of equal paths.

    Documents that share a full code path (a collision) thus get distinct identifiers; the order
    inside a group is the input order (deterministic).
    """
    seen: dict[tuple[int, ...], int] = defaultdict(int)
    out = []
    for path in paths:
        path = tuple(int(x) for x in path)
        out.append(path + (seen[path],))
        seen[path] += 1
    return out


class CodeTrie(DocidTrie):
    """dsilab.decode.DocidTrie over code tuples (the same trie DSI decodes with), plus `children` and `max_len`."""

    def __init__(self, codes: dict[str, tuple[int, ...]]):
        super().__init__({d: [int(x) for x in c] for d, c in codes.items()})
        self.max_len = max(len(c) for c in codes.values())

    def children(self, prefix: tuple[int, ...]) -> list[int]:
        """The codes that may follow `prefix` (empty for a complete code)."""
        return self.allowed(prefix)


class DGIRetriever:
    """A generative retriever over frozen sentence embeddings: learned (DGI) or fixed (DSI) codes."""

    def __init__(self, config: DGIConfig = DGIConfig()):
        self.config = config
        self.model: DGIModel | None = None
        self.codes: dict[str, tuple[int, ...]] = {}
        self.history: list[dict[str, Any]] = []

    # -- fitting --------------------------------------------------------------------------------------
    def fit(self, doc_ids: list[str], doc_emb: np.ndarray, train_emb: np.ndarray, train_doc: np.ndarray,
            fixed_codes: dict[str, tuple[int, ...]] | None = None) -> "DGIRetriever":
        """Learn codes and decoder from indexing (every doc's embedding) + retrieval (query embedding, doc index) pairs."""
        cfg = self.config
        doc_emb = np.asarray(doc_emb, dtype=np.float32)
        train_emb = np.asarray(train_emb, dtype=np.float32).reshape(-1, doc_emb.shape[1] if doc_emb.ndim == 2 else 0)
        train_doc = np.asarray(train_doc, dtype=np.int64).reshape(-1)
        n = len(doc_ids)
        if doc_emb.ndim != 2 or doc_emb.shape[0] != n:
            raise DsilabError(f"doc_emb must be (n_docs={n}, dim), got {doc_emb.shape}.")
        if len(train_emb) != len(train_doc):
            raise DsilabError(f"train_emb has {len(train_emb)} rows but train_doc has {len(train_doc)}; pass one doc index per query.")
        if len(train_doc) and (train_doc.min() < 0 or train_doc.max() >= n):
            raise DsilabError(f"train_doc holds indices outside 0..{n - 1}; they index doc_ids.")
        if (cfg.index == "fixed") != (fixed_codes is not None):
            raise DsilabError('pass fixed_codes exactly when DGIConfig(index="fixed") (e.g. make_docids(...).codes).')
        if cfg.index == "learned" and n < cfg.codes:
            raise DsilabError(f"{n} documents are fewer than codes={cfg.codes} per level; lower DGIConfig.codes.")
        seed_everything(cfg.seed)
        self.doc_ids = list(doc_ids)
        D = torch.from_numpy(doc_emb)
        X = torch.cat([D, torch.from_numpy(train_emb)])          # indexing examples first, then queries
        T = torch.cat([torch.arange(n), torch.from_numpy(train_doc)])
        self.target_counts = np.bincount(T.numpy(), minlength=n)
        if cfg.index == "fixed":
            self._fit_fixed(D, X, T, fixed_codes)
        else:
            self._fit_learned(D, X, T)
        self.trie = CodeTrie(self.codes)
        return self

    def _batches(self, m: int, gen: torch.Generator):
        perm = torch.randperm(m, generator=gen)
        for i in range(0, m, self.config.batch_size):
            yield perm[i : i + self.config.batch_size]

    def _optimiser(self) -> torch.optim.Optimizer:
        params = [p for p in self.model.parameters() if p.requires_grad]
        return torch.optim.Adam(params, lr=self.config.lr, weight_decay=self.config.weight_decay)

    def _fit_fixed(self, D: torch.Tensor, X: torch.Tensor, T: torch.Tensor, fixed_codes: dict[str, tuple[int, ...]]) -> None:
        missing = [d for d in self.doc_ids if d not in fixed_codes]
        if missing:
            raise DsilabError(f"fixed_codes lacks {len(missing)} document(s), e.g. {missing[:3]}; build them from the same collection.")
        codes = [tuple(fixed_codes[d]) for d in self.doc_ids]
        if len(set(codes)) != len(codes):
            raise DsilabError("fixed_codes has collisions: two documents share a code; every document needs its own.")
        width = max(map(len, codes))
        C = np.full((len(codes), width), -100, dtype=np.int64)
        for i, c in enumerate(codes):
            C[i, : len(c)] = c
        sizes = [int(C[:, p].max()) + 1 for p in range(width)]
        self.model = DGIModel(D.shape[1], sizes, self.config)
        self.codes = dict(zip(self.doc_ids, codes))
        self.code_matrix = C
        self._train_hard(X, T, torch.from_numpy(C), self.config.epochs + self.config.final_epochs, phase="fixed")

    def _hard_inputs(self, C: torch.Tensor) -> list[torch.Tensor]:
        return [F.one_hot(C[:, p].clamp(min=0), s).float() for p, s in enumerate(self.model.sizes)]

    def _train_hard(self, X: torch.Tensor, T: torch.Tensor, C: torch.Tensor, epochs: int, phase: str) -> None:
        """Hard teacher forcing on fixed codes (DSI, or DGI's consolidation phase)."""
        model, opt = self.model, self._optimiser()
        gen = torch.Generator().manual_seed(self.config.seed)
        for epoch in range(epochs):
            total, seen = 0.0, 0
            for b in self._batches(len(X), gen):
                target = C[T[b]]
                logits = model.decode_teacher_forced(model.encode(X[b]), self._hard_inputs(target))
                loss = sum(F.cross_entropy(lg, target[:, p], ignore_index=-100) for p, lg in enumerate(logits))
                opt.zero_grad()
                loss.backward()
                opt.step()
                total, seen = total + float(loss.detach()) * len(b), seen + len(b)
            self.history.append({"phase": phase, "epoch": len(self.history), "retrieval": total / seen})

    @torch.no_grad()
    def current_paths(self) -> np.ndarray:
        """Hard (argmax) code path of every document under the current codebooks, shape (n_docs, L)."""
        qs, _, _ = self.model.assign(self.model.encode(self._D), tau=None)
        return torch.stack([q.argmax(-1) for q in qs], 1).numpy()

    def _init_codebooks(self, D: torch.Tensor) -> None:
        """Residual k-means (scikit-learn) on the encoded documents: DGI starts from the k-means index."""
        from sklearn.cluster import KMeans
        from threadpoolctl import threadpool_limits

        # one BLAS/OpenMP thread: on a busy 2-core laptop, KMeans' thread pool spins far longer than it computes
        with torch.no_grad(), threadpool_limits(limits=1):
            residual = self.model.encode(D).numpy().astype(np.float64)
            for level in range(self.config.levels):
                # cosine assignment: cluster the unit residuals, keep centroids at the residual scale
                unit = residual / np.maximum(np.linalg.norm(residual, axis=1, keepdims=True), 1e-9)
                km = KMeans(n_clusters=self.config.codes, n_init=3, random_state=self.config.seed).fit(unit)
                labels = km.labels_
                cent = np.stack([residual[labels == k].mean(0) if (labels == k).any() else km.cluster_centers_[k]
                                 for k in range(self.config.codes)])
                self.model.codebooks[level].copy_(torch.from_numpy(cent).float())
                residual = residual - cent[labels]
            if not self.config.share_weights:
                for level in range(self.config.levels):
                    self.model.input_tables[level].copy_(self.model.codebooks[level])
                    self.model.output_tables[level].copy_(self.model.codebooks[level])

    def _fit_learned(self, D: torch.Tensor, X: torch.Tensor, T: torch.Tensor) -> None:
        cfg = self.config
        n, L = len(self.doc_ids), cfg.levels
        self._D = D
        self.model = DGIModel(D.shape[1], [cfg.codes] * L + [n], cfg)
        self._init_codebooks(D)
        model, opt = self.model, self._optimiser()
        gen = torch.Generator().manual_seed(cfg.seed)
        steps_per_epoch = -(-len(X) // cfg.batch_size)
        total_steps, step = cfg.epochs * steps_per_epoch, 0
        for epoch in range(cfg.epochs):
            paths = self.current_paths()
            pos = torch.tensor([c[-1] for c in disambiguate([tuple(p) for p in paths])])
            width = int(pos.max()) + 1          # positions in use in the largest collision group
            sums = {"retrieval": 0.0, "commit": 0.0, "balance": 0.0}
            seen = 0
            for b in self._batches(len(X), gen):
                tau = anneal(step, total_steps, cfg.tau_start, cfg.tau_end)
                z_x, z_d = model.encode(X[b]), model.encode(D[T[b]])
                qs, probs, recon = model.assign(z_d, tau if cfg.gumbel else None)
                logits = model.decode_teacher_forced(z_x, qs)
                targets = qs if cfg.target_grad else [q.detach() for q in qs]
                ret = sum(-(q * lg.log_softmax(-1)).sum(-1).mean() for q, lg in zip(targets, logits[:L]))
                ret = ret + F.cross_entropy(logits[L][:, :width], pos[T[b]])
                norm = z_d.norm(dim=-1, keepdim=True).clamp(min=1e-6)
                commit = (((z_d - recon) / norm) ** 2).sum(-1).mean()          # scale-free quantisation error
                balance = sum(np.log(cfg.codes) + (pm * pm.clamp(min=1e-9).log()).sum()
                              for pm in (p.mean(0) for p in probs))   # log K - H(batch mean usage)
                loss = ret + cfg.w_commit * commit + cfg.w_balance * balance
                opt.zero_grad()
                loss.backward()
                opt.step()
                step += 1
                for k, v in (("retrieval", ret), ("commit", commit), ("balance", balance)):
                    sums[k] += float(v.detach()) * len(b)
                seen += len(b)
            usage = code_usage(paths, [cfg.codes] * L)
            self.history.append({"phase": "joint", "epoch": epoch, "tau": tau, **{k: v / seen for k, v in sums.items()},
                                 "collision_groups_max": width, "perplexity": [u["perplexity"] for u in usage]})
        final = disambiguate([tuple(p) for p in self.current_paths()])
        self.codes = dict(zip(self.doc_ids, final))
        self.code_matrix = np.array(final, dtype=np.int64)
        if cfg.final_epochs:
            self._train_hard(X, T, torch.from_numpy(self.code_matrix), cfg.final_epochs, phase="final")

    # -- inspection -----------------------------------------------------------------------------------
    def usage(self) -> list[dict[str, float]]:
        """Code utilisation per position of the final identifiers (used codes, perplexity)."""
        self._check_fitted()
        return code_usage(np.where(self.code_matrix < 0, -1, self.code_matrix), self.model.sizes)

    def collisions(self) -> dict[str, int]:
        """How many documents share their full L-level path with another one, and the largest group."""
        self._check_fitted()
        if self.config.index == "fixed":
            return {"docs_in_collisions": 0, "largest_group": 1}
        paths = [c[:-1] for c in self.codes.values()]
        counts = defaultdict(int)
        for p in paths:
            counts[p] += 1
        return {"docs_in_collisions": int(sum(c for c in counts.values() if c > 1)), "largest_group": int(max(counts.values()))}

    def _check_fitted(self) -> None:
        if self.model is None:
            raise DsilabError("this DGIRetriever is not fitted yet: call fit(...) first.")

    # -- search ---------------------------------------------------------------------------------------
    @torch.no_grad()
    def search_embeddings(self, qids: list[str], q_emb: np.ndarray, k: int = 10) -> Run:
        """Trie-constrained beam search (beam = config.beam) for every query; scores are log-probabilities."""
        self._check_fitted()
        q_emb = np.asarray(q_emb, dtype=np.float32)
        if q_emb.ndim != 2 or len(q_emb) != len(qids):
            raise DsilabError(f"q_emb must be (n_queries={len(qids)}, dim), got {q_emb.shape}.")
        self.model.eval()
        ranked = beam_search(self.model, torch.from_numpy(q_emb), self.trie, max(self.config.beam, k))
        self.model.train()
        return {q: [(self.trie.doc(c), s) for c, s in r[:k]] for q, r in zip(qids, ranked)}


def beam_search(model: DGIModel, q_emb: torch.Tensor, trie: CodeTrie, beam: int) -> list[list[tuple[tuple[int, ...], float]]]:
    """Constrained beam search over code positions: at each step only the trie's children are allowed
    (log-softmax over all codes of the position, then the others masked, as in dsilab.decode); per query the
    `beam` best prefixes survive and complete codes are collected, best log-probability first."""
    nq = len(q_emb)
    h = model.encode(q_emb)
    x = model.bos.expand_as(h)
    beams: list[list[tuple[float, tuple[int, ...], int]]] = [[(0.0, (), i)] for i in range(nq)]
    done: list[list[tuple[tuple[int, ...], float]]] = [[] for _ in range(nq)]
    for p in range(trie.max_len):
        rows = [e for bq in beams for e in bq]
        if not rows:
            break
        idx = torch.tensor([r[2] for r in rows])
        h_new = model.cell(x[idx], h[idx])
        logits = model.logits(model.out(h_new), p)
        mask = torch.full_like(logits, float("-inf"))
        for j, (_, prefix, _) in enumerate(rows):
            mask[j, trie.children(prefix)] = 0.0
        logp = logits.log_softmax(-1) + mask     # as dsilab.decode / generate: full softmax, then invalid codes masked
        new_beams: list[list[tuple[float, tuple[int, ...], int]]] = []
        next_rows, next_codes = [], []
        j = 0
        for qi, bq in enumerate(beams):
            cands = []
            for score, prefix, _ in bq:
                for c in trie.children(prefix):
                    cands.append((score + float(logp[j, c]), prefix + (c,), j))
                j += 1
            cands.sort(key=lambda t: -t[0])
            pool = sorted(cands[:beam] + [(s, c, -1) for c, s in done[qi]], key=lambda t: -t[0])[:beam]
            done[qi] = [(c, s) for s, c, r in pool if trie.doc(c) is not None]
            keep = []
            for s, c, r in pool:
                if r >= 0 and trie.children(c):
                    keep.append((s, c, len(next_rows)))
                    next_rows.append(r)
                    next_codes.append(c[-1])
            new_beams.append(keep)
        if next_rows:
            rows_t = torch.tensor(next_rows)
            h = h_new[rows_t]
            x = model.input_table(p)[torch.tensor(next_codes)]
        beams = new_beams
    return [sorted(d, key=lambda t: -t[1]) for d in done]
