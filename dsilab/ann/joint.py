"""Joint training: a small query-side adapter trained together with the index.

The index is built on fixed document vectors; the adapter moves only the *query* vector,
q -> q + A q with A starting at zero, so training starts exactly at the frozen encoder and can only
move queries to where the index sends their neighbours. Because the map is linear it folds into the
routing centroids (c -> (I + A)^T c) or the query's hash hyperplanes (W -> W (I + A)) at search time:
the search costs exactly what it costs without the adapter. `rank` > 0 makes A = U V^T low-rank
(fewer parameters to fit from a few hundred training queries).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core import DsilabError
from .softsort import check_loss


def check_adapter(adapter_l2: float, adapter_rank: int) -> None:
    """Validate the adapter settings of an index config (shared by the soft tree and the learned hash)."""
    if adapter_l2 < 0 or not isinstance(adapter_rank, int) or adapter_rank < 0:
        raise DsilabError(f"adapter_l2 and adapter_rank must be >= 0 (adapter_rank=0: full d x d); "
                          f"got {adapter_l2} and {adapter_rank!r}.")


@dataclass(frozen=True)
class Objective:
    """What a learned index trains on, shared by the soft tree's and the learned hash's configs: the loss
    (`softsort.LOSSES`; `top`, `rank_temperature`, `width` for the soft top-k one) and the optional query adapter."""

    loss: str = "nll"            # "nll": softmax ranking / -log P(targets); "softsort": soft top-`top` rank of each target
    top: int = 4                 # softsort: the candidate count the targets should rank within
    rank_temperature: float = 1.0  # softsort: sigmoid temperature of the soft rank
    width: float = 0.25          # softsort: how sharply the loss punishes a rank beyond `top` (log scale)
    adapter: bool = False        # joint training: learn a residual map of the query (free at search: it folds in)
    adapter_l2: float = 1.0      # weight of ||A||^2, which keeps the adapted query near the encoder's
    adapter_rank: int = 8        # 0: a full d x d adapter; r > 0: A = U V^T of rank r
    seed: int = 0

    def __post_init__(self) -> None:
        check_loss(self.loss, self.top, self.rank_temperature, self.width)
        check_adapter(self.adapter_l2, self.adapter_rank)


class QueryAdapter:
    """A residual linear head on the query embedding: q + q A^T, A (d x d, or rank r) starting at zero."""

    def __init__(self, dim: int, rank: int = 0, seed: int = 0):
        import torch

        if not isinstance(dim, (int, np.integer)) or dim < 1:
            raise DsilabError(f"QueryAdapter: dim must be a positive integer; got {dim!r}.")
        if not isinstance(rank, (int, np.integer)) or not 0 <= rank <= dim:
            raise DsilabError(f"QueryAdapter: rank must be 0 (full d x d) or 1..{dim}; got {rank!r}.")
        if rank == 0:
            self.parameters = [torch.nn.Parameter(torch.zeros(int(dim), int(dim)))]
        else:  # U = 0 (so A = 0 at the start), V random: the gradient reaches U from the first step
            v = torch.randn(int(dim), int(rank), generator=torch.Generator().manual_seed(seed)) / np.sqrt(dim)
            self.parameters = [torch.nn.Parameter(torch.zeros(int(dim), int(rank))), torch.nn.Parameter(v)]

    @property
    def weight(self):
        """A as a torch matrix (differentiable)."""
        return self.parameters[0] if len(self.parameters) == 1 else self.parameters[0] @ self.parameters[1].T

    def penalty(self):
        """||A||^2: what keeps the adapted query near the encoder's (weighted by the config's adapter_l2)."""
        return (self.weight ** 2).sum()

    def __call__(self, q):
        """Adapt a torch batch of queries (rows)."""
        return q + q @ self.weight.T

    def apply(self, queries: np.ndarray) -> np.ndarray:
        """Adapt numpy queries (rows), without gradients."""
        return (queries @ self.matrix.T).astype(np.float32)

    @property
    def matrix(self) -> np.ndarray:
        """I + A: the whole map, to fold into centroids or hyperplanes."""
        return np.eye(self.parameters[0].shape[0], dtype=np.float32) + self.weight.detach().numpy()
