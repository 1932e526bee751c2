"""Distillation from a dense teacher onto docid prefixes (in the spirit of RIPOR, Zeng et al. 2023).

A DSI model trained on (query, docid) pairs learns one right answer per query. A dense retriever fine-tuned on the
same queries (`baselines.FineTunedDense`) knows more: a ranking of every document. Here each generated query takes
the teacher's top `distill_list` documents, and at every docid prefix length the model's prefix scores (summed token
log-probabilities, what constrained beam search ranks by) are trained towards the teacher's distribution over those
prefixes: a listwise loss, so that beam search does not prune the prefix of a document the teacher ranks high.

    recipe = Recipe(docids="semantic", pseudo_per_doc=5, query_teacher_k=1, distill_list=10)

`train_dsi` adds the loss through a `PrefixDistillation` callback (its `extra_loss` joins each micro-batch's loss).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .core import DsilabError
from .data import Collection
from .querygen import teacher_rankings
from .train import Callback

if TYPE_CHECKING:
    from .models import DSIModel


@dataclass(frozen=True)
class DistillConfig:
    """The listwise prefix loss (the distillation part of `dsilab.recipes.Recipe`).

    distill_list: teacher's documents per generated query (0: off; needs pseudo_per_doc); distill_weight: the loss's
    weight beside the cross-entropy; distill_temperature: the teacher's softmax temperature over its cosine scores;
    distill_batch: generated queries per micro-batch."""

    distill_list: int = 0
    distill_weight: float = 1.0
    distill_temperature: float = 0.05
    distill_batch: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        if self.distill_list == 1 or self.distill_list < 0:
            raise DsilabError(f"distill_list={self.distill_list}: a ranking needs at least 2 documents (0: off).")
        if self.distill_weight <= 0 or self.distill_temperature <= 0 or self.distill_batch < 1:
            raise DsilabError("distill_weight and distill_temperature must be > 0 and distill_batch >= 1.")
        # as a part of Recipe, which has pseudo_per_doc; a DistillConfig alone has no generated queries to check
        if self.distill_list and not getattr(self, "pseudo_per_doc", 1):
            raise DsilabError(f"distill_list={self.distill_list} ranks generated queries: set pseudo_per_doc >= 1.")


def prefix_listwise_loss(token_logp: torch.Tensor, labels: torch.Tensor, teacher: torch.Tensor,
                         temperature: float) -> torch.Tensor:
    """KL(teacher || model) over the distinct docid prefixes of each list, averaged over prefix lengths and lists.

    token_logp (lists, m, length): the model's log-probability of each docid token (0 at padding); labels (lists, m,
    length): the docid tokens (padding -100); teacher (lists, m): the teacher's scores. Documents that share a
    prefix form one entry of the prefix's distribution (the teacher's probabilities summed; the model scores the
    prefix once), so a level where they all share it teaches nothing.
    """
    n, m, length = labels.shape
    prefix = token_logp.float().cumsum(-1)                                              # (n, m, L)
    same = (labels[:, :, None, :] == labels[:, None, :, :]).long().cumprod(-1).bool()   # (n, m, m, L): prefix i = j
    earlier = torch.ones(m, m, dtype=torch.bool, device=labels.device).tril(-1)        # j < i
    first = ~(same & earlier[None, :, :, None]).any(2)                                 # (n, m, L): i opens its group
    p = torch.softmax(teacher.float() / temperature, -1)                               # (n, m)
    target = torch.einsum("nijl,nj->nil", same.float(), p).masked_fill(~first, 0.0)
    logq = torch.log_softmax(prefix.masked_fill(~first, float("-inf")), dim=1)
    kl = torch.where(target > 0, target * (target.clamp_min(1e-12).log() - logq.masked_fill(~first, 0.0)), 0.0)
    return kl.sum(1).mean()


def _docid_labels(model: DSIModel, lists: list[list[tuple[str, float]]], m: int) -> torch.Tensor:
    """The docid tokens (EOS-terminated, padded with -100) of the first `m` documents of each list: (lists, m, depth)."""
    seqs = model.docid_sequences()
    labels = torch.full((len(lists), m, max(len(s) for s in seqs.values())), -100, dtype=torch.long)
    for row, ranked in enumerate(lists):
        for j, (doc, _) in enumerate(ranked[:m]):
            labels[row, j, : len(seqs[doc])] = torch.tensor(seqs[doc])
    return labels


def _list_logprobs(model: DSIModel, ids: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """log p of each docid token of each list (lists, m, depth): each query encoded once, repeated per document."""
    with torch.no_grad() if model.encoder_frozen else torch.enable_grad():
        hidden = model.encode(ids, mask)
    n, m = labels.shape[:2]
    return model.docid_token_logprobs(hidden.repeat_interleave(m, 0), mask.repeat_interleave(m, 0),
                                      labels.flatten(0, 1)).view(n, m, -1)


@torch.no_grad()
def prefix_distributions(model: DSIModel, query: str, ranked: list[tuple[str, float]], temperature: float = 0.05
                         ) -> tuple[list[dict[str, Any]], float]:
    """What `prefix_listwise_loss` compares for one query and a teacher's ranked (doc_id, score) list: at each prefix
    length, every distinct prefix with the teacher's probability (pooled over its documents) and the model's; and the
    loss itself. Prefixes are written as docid digits; the last length is the whole docid with its end token."""
    m, training = len(ranked), model.training
    model.eval()  # no dropout: the scores beam search would see
    labels = _docid_labels(model, [ranked], m)
    labels = labels[..., : int((labels != -100).sum(-1).max())].to(model.device)  # as training cuts a batch
    enc = {k: v.to(model.device) for k, v in model.tokenize_sources([query]).items()}
    logp = _list_logprobs(model, enc["input_ids"], enc["attention_mask"], labels)
    teacher = torch.tensor([[s for _, s in ranked]], dtype=torch.float32, device=model.device)
    loss = float(prefix_listwise_loss(logp, labels, teacher, temperature))
    p, prefix = torch.softmax(teacher[0] / temperature, -1).tolist(), logp[0].float().cumsum(-1)
    codes = [model.docids.codes[d] for d, _ in ranked]
    rows = []
    for level in range(labels.shape[-1]):
        groups: dict[tuple, list[int]] = {}
        for j in range(m):
            groups.setdefault(tuple(labels[0, j, : level + 1].tolist()), []).append(j)
        q = torch.softmax(torch.stack([prefix[g[0], level] for g in groups.values()]), 0).tolist()
        for members, q_g in zip(groups.values(), q):
            code = codes[members[0]][: level + 1]
            rows.append({"length": level + 1, "prefix": "-".join(map(str, code)) + ("" if len(code) > level else " end"),
                         "documents": [ranked[j][0] for j in members], "teacher p": sum(p[j] for j in members),
                         "model q": q_g})
    model.train(training)
    return rows, loss


class PrefixDistillation(Callback):
    """Adds `weight` x `prefix_listwise_loss` on `batch` generated queries (with their teacher lists) to every
    micro-batch's loss; logs its mean at each evaluation as "distill loss"."""

    def __init__(self, queries: list[str], lists: list[list[tuple[str, float]]], config: DistillConfig):
        if len(queries) != len(lists) or not queries:
            raise DsilabError("PrefixDistillation needs one teacher list per query, and at least one query.")
        self.queries, self.lists, self.cfg = queries, lists, config
        self._sum, self._n = 0.0, 0

    @classmethod
    def from_examples(cls, collection: Collection, examples: list, config: DistillConfig) -> "PrefixDistillation":
        """The generated queries of `examples` (task "pseudo"), each with the teacher's top `distill_list`."""
        queries = list(dict.fromkeys(e.source for e in examples if e.task == "pseudo"))
        if not queries:
            raise DsilabError("distill_list needs generated queries among the examples (pseudo_per_doc >= 1).")
        return cls(queries, teacher_rankings(collection, queries, config.distill_list, config.seed), config)

    def on_train_begin(self, trainer) -> None:
        """Each query's input ids, and its list's docid labels (lists, m, length) and teacher scores, on the device."""
        net, m = trainer.net, self.cfg.distill_list
        if any(len(ranked) < m for ranked in self.lists):
            raise DsilabError(f"distill_list={m} is more documents than the teacher ranked: use a smaller list.")
        enc, labels = net.tokenize_sources(self.queries), _docid_labels(net, self.lists, m)
        # lengths stay on the host: cutting a batch to them then never waits for a GPU
        self.width, self.depth = enc["attention_mask"].sum(1), (labels != -100).sum(-1).amax(1)
        dev = net.device
        self.input_ids, self.mask = enc["input_ids"].to(dev), enc["attention_mask"].to(dev)
        self.labels = labels.to(dev)
        self.teacher = torch.tensor([[s for _, s in ranked[:m]] for ranked in self.lists], dtype=torch.float32, device=dev)

    def extra_loss(self, trainer) -> torch.Tensor:
        net, cfg = trainer.net, self.cfg
        rng = np.random.default_rng([cfg.seed, trainer.step, trainer.epoch, trainer.micro])  # the same after a resume
        rows = torch.as_tensor(rng.choice(len(self.labels), size=min(cfg.distill_batch, len(self.labels)), replace=False))
        width, depth, at = int(self.width[rows].max()), int(self.depth[rows].max()), rows.to(self.labels.device)
        ids, mask, labels = self.input_ids[at, :width], self.mask[at, :width], self.labels[at, :, :depth]
        loss = prefix_listwise_loss(_list_logprobs(net, ids, mask, labels), labels, self.teacher[at], cfg.distill_temperature)
        self._sum, self._n = self._sum + loss.detach(), self._n + 1  # summed on the device: no wait for the GPU
        return cfg.distill_weight * loss

    def on_evaluate(self, trainer, metrics: dict[str, float]) -> None:
        if self._n:
            trainer.history[-1]["distill loss"] = round(float(self._sum) / self._n, 5)
        self._sum, self._n = 0.0, 0
