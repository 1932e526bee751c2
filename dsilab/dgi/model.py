"""The DGI network: a query encoder head, L learnable codebooks and a small autoregressive decoder.

One set of code vectors plays three roles at once (symmetric weight sharing): the *index centroids*
that assign documents to codes, the decoder's *input embeddings* (soft teacher forcing feeds their
Gumbel mixture) and its *output classifier weights* (cosine logits). The same class, configured
with fixed codes, untied tables, inner-product logits and hard teacher forcing, is the DSI baseline.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..core import DsilabError

INDEXES = ("learned", "fixed")
LOGITS = ("cosine", "inner")


@dataclass(frozen=True)
class DGIConfig:
    """Every knob of a DGI (or DSI-on-the-same-decoder) run; defaults fit the lab collection on a CPU.

    index: "learned" (DGI: codes come from the codebooks, trained end to end) or "fixed" (codes given,
    e.g. k-means semantic docids); levels/codes: L codebooks of K codes (learned index only);
    gumbel: soft teacher forcing with Gumbel-softmax assignments (False: hard argmax codes, the
    retrieval loss never reaches the assignment); straight_through: one-hot forward, soft backward;
    target_grad: also differentiate the cross-entropy through its target q (besides the soft
    teacher-forcing inputs). That path rewards putting every document under one code: with a weak
    balance term (w_balance=0.1) the lab index collapsed to one path, so w_balance defaults to 10;
    share_weights: centroids = decoder inputs = classifier weights (False: three separate tables);
    logits: "cosine" (cos / temperature) or "inner" (raw inner product, the geometric-conflict ablation).
    """

    index: str = "learned"
    levels: int = 2
    codes: int = 16
    dim: int = 128
    gumbel: bool = True
    straight_through: bool = False
    target_grad: bool = True          # the cross-entropy also differentiates through its target q
    share_weights: bool = True
    logits: str = "cosine"
    temperature: float = 0.1          # cosine-logit temperature (fixed unless learn_temperature)
    learn_temperature: bool = False
    assign_temperature: float = 0.1   # temperature of the cosine doc->code assignment logits
    tau_start: float = 1.0            # Gumbel-softmax temperature, annealed exponentially ...
    tau_end: float = 0.1              # ... to this value by the end of the joint phase
    w_commit: float = 0.25            # quantisation / commitment weight
    w_balance: float = 10.0           # code-usage balance weight (guards against index collapse)
    epochs: int = 60                  # joint phase (index + retriever)
    final_epochs: int = 20            # consolidation: codes frozen, decoder trained on the final ids
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 0.0
    beam: int = 20
    seed: int = 0

    def __post_init__(self) -> None:
        if self.index not in INDEXES:
            raise DsilabError(f"DGIConfig.index={self.index!r}; choose one of {list(INDEXES)}.")
        if self.logits not in LOGITS:
            raise DsilabError(f"DGIConfig.logits={self.logits!r}; choose one of {list(LOGITS)}.")
        if self.levels < 1 or self.codes < 2:
            raise DsilabError(f"DGIConfig needs levels >= 1 and codes >= 2, got levels={self.levels}, codes={self.codes}.")
        if min(self.temperature, self.assign_temperature, self.tau_start, self.tau_end) <= 0:
            raise DsilabError("DGIConfig temperatures (temperature, assign_temperature, tau_start, tau_end) must be > 0.")
        if self.epochs < 0 or self.final_epochs < 0 or self.epochs + self.final_epochs < 1:
            raise DsilabError("DGIConfig needs epochs + final_epochs >= 1 (and neither negative).")
        if self.batch_size < 1 or self.beam < 1 or self.dim < 2:
            raise DsilabError("DGIConfig needs batch_size >= 1, beam >= 1 and dim >= 2.")

    def as_dict(self) -> dict:
        return asdict(self)


def gumbel_softmax(logits: torch.Tensor, tau: float, hard: bool = False) -> torch.Tensor:
    """A Gumbel-softmax sample (torch's): rows are distributions, one-hot in the limit tau -> 0."""
    if tau <= 0:
        raise DsilabError(f"gumbel_softmax needs a temperature tau > 0, got {tau}.")
    return F.gumbel_softmax(logits, tau=tau, hard=hard, dim=-1)


def cosine_logits(x: torch.Tensor, table: torch.Tensor, temperature: float | torch.Tensor) -> torch.Tensor:
    """cos(x, every row of table) / temperature: blind to the norms, so no code can win by growing."""
    return F.normalize(x, dim=-1) @ F.normalize(table, dim=-1).T / temperature


def inner_logits(x: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Raw inner products x . table_k: a frequent code can win by growing its norm (the ablation)."""
    return x @ table.T


def anneal(step: int, total: int, start: float, end: float) -> float:
    """Exponential schedule from `start` (step 0) to `end` (step >= total)."""
    if total <= 0:
        return end
    t = min(max(step / total, 0.0), 1.0)
    return float(start * (end / start) ** t)


class DGIModel(nn.Module):
    """Query/doc encoder head, per-position code tables and a GRU decoder over the code positions.

    sizes[p] is the number of codes at position p. With index="learned", positions 0..L-1 are the L
    codebooks and position L is the final disambiguation position (documents that share a full
    path get a distinct number there). With index="fixed" the positions are those of the given codes.
    """

    def __init__(self, in_dim: int, sizes: list[int], config: DGIConfig):
        super().__init__()
        self.config = config
        self.sizes = list(sizes)
        d = config.dim
        self.encoder = nn.Linear(in_dim, d)
        self.encoder_mlp = nn.Sequential(nn.Linear(in_dim, 2 * d), nn.GELU(), nn.Linear(2 * d, d))
        nn.init.zeros_(self.encoder_mlp[2].weight)  # start as a random projection (keeps cosines)
        nn.init.zeros_(self.encoder_mlp[2].bias)
        self.bos = nn.Parameter(torch.zeros(d))
        self.cell = nn.GRUCell(d, d)
        self.out = nn.Linear(d, d)
        self.codebooks = nn.ParameterList([nn.Parameter(torch.randn(s, d) * 0.3) for s in sizes])
        if not config.share_weights:
            self.input_tables = nn.ParameterList([nn.Parameter(torch.randn(s, d) * 0.3) for s in sizes])
            self.output_tables = nn.ParameterList([nn.Parameter(torch.randn(s, d) * 0.3) for s in sizes])
        start = math.log(1.0 / config.temperature)
        self.log_scale = nn.Parameter(torch.tensor(start), requires_grad=config.learn_temperature)

    # -- the three roles of a code vector -------------------------------------------------------------
    def centroids(self, p: int) -> torch.Tensor:
        """Index centroids of position p (documents are assigned by cosine to these)."""
        return self.codebooks[p]

    def input_table(self, p: int) -> torch.Tensor:
        """Decoder input embeddings of position p's codes (the same tensor as the centroids when shared)."""
        return self.codebooks[p] if self.config.share_weights else self.input_tables[p]

    def output_table(self, p: int) -> torch.Tensor:
        """Classifier weights of position p (the same tensor as the centroids when shared)."""
        return self.codebooks[p] if self.config.share_weights else self.output_tables[p]

    # -- pieces ---------------------------------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Frozen sentence embeddings -> the model's space (queries and documents alike)."""
        return self.encoder(x) + self.encoder_mlp(x)

    def logits(self, o: torch.Tensor, p: int) -> torch.Tensor:
        """Output logits of position p: cosine / temperature, or raw inner product (ablation)."""
        table = self.output_table(p)
        if self.config.logits == "cosine":
            return cosine_logits(o, table, torch.exp(-self.log_scale))
        return inner_logits(o, table)

    def assign_logits(self, residual: torch.Tensor, level: int) -> torch.Tensor:
        """Document -> code affinities at one level: cosine of the residual to the level's centroids."""
        return cosine_logits(residual, self.centroids(level), self.config.assign_temperature)

    def assign(self, z_doc: torch.Tensor, tau: float | None) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor]:
        """Residual assignment of documents to the L codebooks.

        Returns per level the (Gumbel) code distributions q_l and the clean probabilities, and the
        reconstruction sum_l q_l C_l. tau=None gives hard argmax codes (no gradient to the assignment).
        """
        residual, recon = z_doc, torch.zeros_like(z_doc)
        qs, probs = [], []
        for level in range(self.config.levels):
            a = self.assign_logits(residual, level)
            probs.append(a.softmax(-1))
            if tau is None:
                q = F.one_hot(a.argmax(-1), a.shape[-1]).to(a.dtype)
            else:
                q = gumbel_softmax(a, tau, hard=self.config.straight_through)
            v = q @ self.centroids(level)
            qs.append(q)
            recon = recon + v
            residual = residual - v
        return qs, probs, recon

    def decode_teacher_forced(self, z_query: torch.Tensor, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
        """Logits of every position given the decoder inputs of the previous positions.

        inputs[p] is a (B, S_p) distribution over position p's codes (one-hot = hard teacher
        forcing, a Gumbel sample = soft teacher forcing); the step-p+1 input is inputs[p] @ table.
        """
        h = z_query
        x = self.bos.expand_as(z_query)
        out = []
        for p in range(len(self.sizes)):
            h = self.cell(x, h)
            out.append(self.logits(self.out(h), p))
            if p < len(inputs):
                x = inputs[p] @ self.input_table(p)
        return out

    def step(self, h: torch.Tensor, x: torch.Tensor, p: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One decoding step (for beam search): new state and log-probabilities over position p."""
        h = self.cell(x, h)
        return h, self.logits(self.out(h), p).log_softmax(-1)


def code_usage(codes: np.ndarray, sizes: list[int]) -> list[dict[str, float]]:
    """Per position: codes used, perplexity of the usage (effective number of codes), out of S_p."""
    out = []
    for p, size in enumerate(sizes):
        col = codes[:, p]
        col = col[col >= 0]
        counts = np.bincount(col, minlength=size).astype(float)
        frac = counts[counts > 0] / counts.sum()
        out.append({"position": p, "codes": int(size), "used": int((counts > 0).sum()),
                    "perplexity": float(np.exp(-(frac * np.log(frac)).sum()))})
    return out
