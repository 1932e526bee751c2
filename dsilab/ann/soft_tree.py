"""Soft tree index: a k-means tree whose routing is learned by gradient descent.

Every internal node routes a query to its children with softmax(<q, centroid_child> / T).
A leaf's probability is the product of the routing probabilities on its path, so the whole
tree is a differentiable function of the centroids (and, optionally, a query projection).
Training raises the probability of the leaves that hold each training query's true neighbours,
minus `lam` times the expected search cost, while the temperature T anneals from soft to sharp.
Inference is hard and deterministic: beam descent, then exact scoring of the candidates.
Options: `loss="softsort"` trains the soft rank of each target's leaf among all leaves into the top
`top` (what a beam of that width keeps) instead of its log-probability; `adapter=True` trains a
query-side residual map with the routing (joint training; documents stay where they are).
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
from .tree import Descent, Tree, beam_descend, build_kmeans_tree, check_beam, top_k_run_row

_NEG = -1e9  # logit of a padding slot: softmax gives it 0 without the NaN gradients of -inf


@dataclass(frozen=True)
class SoftTreeConfig(Objective):
    """Shape and training settings (the loss and adapter settings: `joint.Objective`, whose `top` and `width` suit
    a beam of a few leaves); defaults suit a few hundred to a few hundred thousand vectors."""

    k: int = 8
    depth: int = 2
    leaf_size: int = 1
    assign: int = 1            # soft multi-assignment: each vector also sits in its top-m leaves
    projection: bool = False   # learn a shared d x d map of the centroids (folded in: costs nothing at search)
    bias: bool = True          # learn a per-node routing bias (a prior for a branch; free at search)
    node_temperature: bool = False  # learn how sharply each internal node routes (a log-scale on its children's logits)
    learn_centroids: bool = True    # False: keep the k-means centroids, learn only biases / temperatures (few parameters)
    anchor: float = 0.0        # L2 pull of the centroids towards their k-means values (regularisation)
    t_start: float = 0.1       # temperature at the first epoch ...
    t_end: float = 0.05        # ... annealed geometrically to this one, which inference keeps
    lam: float = 0.0           # weight of the cost term (expected distance computations / greedy cost)
    cost_beam: int = 4         # the cost term counts the nodes that `cost_beam` sampled descents open
    epochs: int = 20
    batch_size: int = 256
    lr: float = 3e-4

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.k < 2:
            raise DsilabError(f"k must be at least 2 (a node routes between at least two children); got {self.k}.")
        if self.depth < 1 or self.assign < 1 or self.cost_beam < 1 or self.epochs < 0:
            raise DsilabError("depth, assign and cost_beam must be >= 1 and epochs >= 0.")
        if not (self.t_start > 0 and self.t_end > 0):
            raise DsilabError("temperatures must be positive (t_start, t_end).")
        if self.lam < 0:
            raise DsilabError(f"lam (cost weight) must be >= 0; got {self.lam}.")


class SoftTree:
    """A learned-routing tree index, scikit-learn style: settings here, data in `fit`.

    `SoftTree(k=4, depth=3, lam=1.0).fit(database, ids, queries, targets)` indexes the database (rows = unit-norm
    vectors) in a k-means tree (or the given `tree`) and learns the routing from training queries.
    Public structure for viewers: `tree.children`, `centroids` (the trained ones), `tree.items`;
    per query: `routing_probabilities`, `path_probabilities`, `descend` (hard path and cost).
    """

    def __init__(self, config: SoftTreeConfig | None = None, tree: Tree | None = None, **overrides):
        if config is not None and not isinstance(config, SoftTreeConfig):
            raise DsilabError("SoftTree takes its settings, its data goes to fit: "
                              "SoftTree(k=..., depth=...).fit(database, ids, queries, targets).")
        from dataclasses import replace

        self.config = replace(config, **overrides) if config is not None else SoftTreeConfig(**overrides)
        self.initial_tree = tree

    def fit(self, database: np.ndarray, ids: Sequence[str] | None = None, queries: np.ndarray | None = None,
            targets: np.ndarray | Sequence[Sequence[int]] | None = None, progress: bool = False) -> "SoftTree":
        """Index `database` in the tree, then learn the routing from training `queries`: maximise
        log P(leaf holding each target | query) - lam * expected cost, annealing the temperature from t_start to t_end.

        `targets[i]` are database rows query i should find (its exact nearest neighbours, or its relevant documents).
        Without queries the routing stays the k-means tree's (an untrained soft tree).
        """
        self._index(database, ids)
        return train_if_given(self, queries, targets, progress)

    def _check_fitted(self) -> None:
        if "database" not in self.__dict__:
            raise DsilabError("this SoftTree has no data yet: call .fit(database, ids, queries, targets) first.")

    def _index(self, database: np.ndarray, ids: Sequence[str] | None) -> None:
        """The database in the tree, with the untrained routing parameters."""
        import torch

        cfg = self.config
        self.database = as_matrix(database, "database")
        self.ids = check_ids(ids, self.database.shape[0], "d")
        self.dim = self.database.shape[1]
        tree = self.initial_tree
        self.tree = tree if tree is not None else build_kmeans_tree(self.database, cfg.k, cfg.depth, cfg.leaf_size, cfg.seed)
        if self.tree.centroids.shape[1] != self.dim:
            raise DsilabError("the tree's centroids and the database differ in dimension.")
        self.temperature = cfg.t_end
        self.history: list[dict[str, float]] = []
        self.train_seconds = 0.0
        seed_everything(cfg.seed)
        self._centroids = torch.nn.Parameter(torch.from_numpy(self.tree.centroids.copy()))
        self._init = self._centroids.detach().clone()
        self._proj = torch.nn.Parameter(torch.eye(self.dim)) if cfg.projection else None
        self._bias = torch.nn.Parameter(torch.zeros(self.tree.n_nodes)) if cfg.bias else None
        self._scale = torch.nn.Parameter(torch.zeros(self.tree.n_nodes)) if cfg.node_temperature else None
        self.adapter = QueryAdapter(self.dim, cfg.adapter_rank, cfg.seed) if cfg.adapter else None
        self._compile_levels()
        if cfg.assign > 1:
            self.multi_assign(cfg.assign)

    # -- structure ----------------------------------------------------------------------------
    def _compile_levels(self) -> None:
        """Per depth: the internal nodes and their children padded to a (nodes x max_k) block."""
        import torch

        t = self.tree
        self._levels = []
        for d in range(t.max_depth):
            nodes = [v for v in t.internal if t.depth[v] == d]
            width = max(len(t.children[v]) for v in nodes)
            pad = np.zeros((len(nodes), width), dtype=np.int64)
            mask = np.zeros((len(nodes), width), dtype=bool)
            for r, v in enumerate(nodes):
                pad[r, : len(t.children[v])] = t.children[v]
                mask[r, : len(t.children[v])] = True
            self._levels.append((torch.tensor(nodes), torch.from_numpy(pad), torch.from_numpy(mask)))
        self._leaves = torch.tensor(t.leaves)
        n_kids = np.array([len(c) for c in t.children], dtype=np.float32)
        sizes = np.array([len(i) for i in t.items], dtype=np.float32)
        self._open_cost = torch.from_numpy(n_kids + sizes)  # opening a node costs its children or its rows

    @property
    def children(self) -> list[list[int]]:
        return self.tree.children

    def _routing_weights(self):
        """Effective centroids W c (the projection folded in, so a query costs one distance per
        child, projection or not) and the per-node bias."""
        import torch

        c = self._centroids @ self._proj.T if self._proj is not None else self._centroids
        b = self._bias if self._bias is not None else torch.zeros(c.shape[0])
        return c, b

    @property
    def centroids(self) -> np.ndarray:
        """The current (trained) routing centroids, projection folded in; row 0 (the root) is unused."""
        return self._routing_weights()[0].detach().numpy().copy()

    @property
    def biases(self) -> np.ndarray:
        """The learned routing bias of every node (0 before training or with bias=False)."""
        return self._routing_weights()[1].detach().numpy().copy()

    extra_cost = 0  # routing needs nothing beyond one distance per child: projection and bias fold in

    # -- soft routing ---------------------------------------------------------------------------
    def _log_path(self, q, temperature: float):
        """log P(node | q) for every node (torch, differentiable): sums of log-softmax along the path."""
        import torch

        c, b = self._routing_weights()
        logits = (q @ c.T + b) / temperature
        log_p = torch.zeros(q.shape[0], 1)
        for nodes, pad, mask in self._levels:
            child = logits[:, pad]
            if self._scale is not None:
                child = child * self._scale[nodes].exp()[None, :, None]
            child = child.masked_fill(~mask, _NEG)
            log_cond = torch.log_softmax(child, dim=-1)
            vals = (log_p[:, nodes].unsqueeze(-1) + log_cond)[:, mask]
            log_p = torch.cat([log_p, vals], dim=1)  # breadth-first ids: this level's children come next
        return log_p

    def log_path_probabilities(self, queries: np.ndarray, temperature: float | None = None,
                               documents: bool = False) -> np.ndarray:
        """log P(node | query) for every node (rows = queries); exact where P underflows to 0.
        `documents=True` routes database vectors, which never pass through the query adapter."""
        import torch

        self._check_fitted()
        q = as_matrix(queries, "queries", self.dim)
        if self.adapter is not None and not documents:
            q = self.adapter.apply(q)
        with torch.no_grad():
            return self._log_path(torch.from_numpy(q), temperature or self.temperature).numpy()

    def path_probabilities(self, queries: np.ndarray, temperature: float | None = None) -> np.ndarray:
        """P(node | query) for every node: the root has 1, the leaves sum to 1 (rows = queries)."""
        out = np.exp(self.log_path_probabilities(queries, temperature))
        return out[0] if np.asarray(queries).ndim == 1 else out

    def routing_probabilities(self, queries: np.ndarray, temperature: float | None = None) -> np.ndarray:
        """P(node | its parent, query) for every node (root = 1): each internal node's children sum to 1."""
        p = np.atleast_2d(self.path_probabilities(queries, temperature))
        parent = self.tree.parent.copy()
        parent[0] = 0
        with np.errstate(divide="ignore", invalid="ignore"):
            out = np.where(p[:, parent] > 0, p / p[:, parent], 0.0)
        out[:, 0] = 1.0
        return out[0] if np.asarray(queries).ndim == 1 else out

    def expected_cost(self, queries: np.ndarray, beam: int | None = None, temperature: float | None = None) -> np.ndarray:
        """The cost term, per query: expected distance computations when `beam` root-to-leaf paths
        are sampled from the soft routing (node v is opened with probability 1 - (1 - P(v))^beam)."""
        import torch

        q = as_matrix(queries, "queries", self.dim)
        q = torch.from_numpy(self.adapter.apply(q) if self.adapter is not None else q)
        with torch.no_grad():
            return self._expected_cost(self._log_path(q, temperature or self.temperature), beam or self.config.cost_beam).numpy()

    def _expected_cost(self, log_p, beam: int):
        import torch

        opened = 1.0 - torch.pow((1.0 - log_p.exp()).clamp(min=0.0), beam)
        return opened @ self._open_cost + self.extra_cost

    # -- multi-assignment -------------------------------------------------------------------------
    def multi_assign(self, m: int) -> None:
        """Put every database vector in its top-m leaves by its own routing probability (it keeps
        its k-means leaf too): a neighbour near a boundary is found from either side, at the price
        of larger leaves (more candidates per leaf)."""
        if m < 1:
            raise DsilabError(f"assign (leaves per vector) must be >= 1; got {m}.")
        if m == 1:
            return
        leaves = np.asarray(self.tree.leaves)
        members = {int(v): set(self.tree.items[v].tolist()) for v in leaves}
        for s in range(0, self.database.shape[0], 4096):
            p = self.log_path_probabilities(self.database[s : s + 4096], documents=True)[:, leaves]
            top = np.argsort(-p, axis=1, kind="stable")[:, :m]
            for r, row in enumerate(top):
                for j in row:
                    members[int(leaves[j])].add(s + r)
        for v in leaves:
            self.tree.items[v] = np.array(sorted(members[int(v)]), dtype=np.int64)
        self._compile_levels()

    # -- training -------------------------------------------------------------------------------
    def _fit(self, queries, targets, progress):
        import torch
        from tqdm.auto import tqdm

        cfg = self.config
        q = as_matrix(queries, "training queries", self.dim)
        tgt = self._target_leaves(targets, q.shape[0])
        seed_everything(cfg.seed)
        gen = torch.Generator().manual_seed(cfg.seed)
        centroids = self._centroids if cfg.learn_centroids else None
        params = [p for p in (centroids, self._proj, self._bias, self._scale) if p is not None]
        params += self.adapter.parameters if self.adapter is not None else []
        if not params:
            raise DsilabError("nothing to train: set learn_centroids, bias, node_temperature, projection or adapter.")
        opt = torch.optim.Adam(params, lr=cfg.lr)
        qt = torch.from_numpy(q)
        unit = self.tree.greedy_cost()
        start = time.perf_counter()
        for epoch in tqdm(range(cfg.epochs), desc="soft tree", disable=not progress):
            frac = epoch / max(cfg.epochs - 1, 1)
            temp = cfg.t_start * (cfg.t_end / cfg.t_start) ** frac
            order = torch.randperm(len(qt), generator=gen)
            tot = {"loss": 0.0, "nll": 0.0, "cost": 0.0}
            for s in range(0, len(order), cfg.batch_size):
                idx = order[s : s + cfg.batch_size]
                qb = self.adapter(qt[idx]) if self.adapter is not None else qt[idx]
                log_p = self._log_path(qb, temp)
                nll = self._nll(log_p, tgt[idx])
                fit = nll if cfg.loss == "nll" else self._softsort(log_p, tgt[idx])
                cost = self._expected_cost(log_p, cfg.cost_beam).mean()
                loss = fit + cfg.lam * cost / unit
                if self.adapter is not None:
                    loss = loss + cfg.adapter_l2 * self.adapter.penalty()
                if cfg.anchor:
                    loss = loss + cfg.anchor * ((self._centroids - self._init) ** 2).sum(1).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
                w = len(idx) / len(qt)
                tot["loss"] += w * loss.item(); tot["nll"] += w * nll.item(); tot["cost"] += w * cost.item()
            self.history.append({"epoch": epoch, "temperature": temp, **tot})
        self.temperature = cfg.t_end
        self.train_seconds = time.perf_counter() - start
        return self

    def _target_leaves(self, targets, n_queries: int):
        """(queries x targets x m) leaf positions of each target row, -1 where padded."""
        import torch

        tgt = np.asarray(targets, dtype=np.int64)
        if tgt.ndim == 1:
            tgt = tgt[:, None]
        if tgt.shape[0] != n_queries:
            raise DsilabError(f"targets has {tgt.shape[0]} rows for {n_queries} training queries: one row per query.")
        if tgt.min() < 0 or tgt.max() >= self.database.shape[0]:
            raise DsilabError("targets must be database row indices in [0, n).")
        pos = {int(v): j for j, v in enumerate(self.tree.leaves)}
        where: list[list[int]] = [[] for _ in range(self.database.shape[0])]
        for v in self.tree.leaves:
            for r in self.tree.items[v]:
                where[int(r)].append(pos[v])
        m = max(len(w) for w in where)
        table = np.full((self.database.shape[0], m), -1, dtype=np.int64)
        for r, w in enumerate(where):
            table[r, : len(w)] = w
        return torch.from_numpy(table[tgt])

    def _nll(self, log_p, tgt_leaves):
        """Mean over targets of -log P(some leaf holding the target | query)."""
        import torch

        leaf_lp = log_p[:, self._leaves]                                   # (B, L)
        gathered = torch.gather(leaf_lp, 1, tgt_leaves.clamp(min=0).flatten(1)).view(tgt_leaves.shape)
        gathered = gathered.masked_fill(tgt_leaves < 0, _NEG)
        return -torch.logsumexp(gathered, dim=-1).mean()

    def _softsort(self, log_p, tgt_leaves):
        """Mean soft top-k loss of each target's best leaf, ranked among all leaves by log P(leaf | q)."""
        import torch

        leaf_lp = log_p[:, self._leaves]                                   # (B, L)
        gathered = torch.gather(leaf_lp, 1, tgt_leaves.clamp(min=0).flatten(1)).view(tgt_leaves.shape)
        best = gathered.masked_fill(tgt_leaves < 0, _NEG).amax(-1)         # (B, P): its most likely copy
        rank = rank_among(best, leaf_lp, self.config.rank_temperature) - 0.5  # its own leaf counts sigmoid(0)
        return soft_topk_loss(rank, self.config.top, self.config.width).mean()

    # -- hard inference -------------------------------------------------------------------------
    def descend(self, query: np.ndarray, beam: int = 1, mass: float | None = None,
                temperature: float | None = None) -> Descent:
        """The hard descent of one query: nodes expanded, leaves reached, candidates and exact cost."""
        self._check_fitted()
        beam = check_beam(beam)
        logp = self.log_path_probabilities(as_matrix(query, "query", self.dim), temperature)[0]
        return beam_descend(self.tree, logp, beam, np.exp(logp), mass, self.extra_cost)

    def search_vectors(self, queries: np.ndarray, qids: Sequence[str] | None = None, k: int = 10, beam: int = 1,
                       mass: float | None = None, temperature: float | None = None) -> SearchResult:
        """Beam descent by path probability (top `beam` nodes per level, or fewer with `mass`), then
        exact scoring of the candidates. (All node probabilities are computed in one matrix product
        for speed; the cost counts only the children of nodes the descent actually expands.)"""
        self._check_fitted()
        beam = check_beam(beam)
        if mass is not None and not 0 < mass <= 1:
            raise DsilabError(f"mass must be in (0, 1]; got {mass}.")
        q = as_matrix(queries, "queries", self.dim)
        qids = check_ids(qids, q.shape[0], "q")
        run, cost = {}, np.zeros(len(qids), dtype=np.int64)
        for s in range(0, len(qids), 1024):
            logp = self.log_path_probabilities(q[s : s + 1024], temperature)
            p = np.exp(logp)
            for r in range(p.shape[0]):
                i = s + r
                d = beam_descend(self.tree, logp[r], beam, p[r], mass, self.extra_cost)
                run[qids[i]] = top_k_run_row(q[i], self.database, d.candidates, self.ids, k)
                cost[i] = d.cost
        return SearchResult(run, cost)
