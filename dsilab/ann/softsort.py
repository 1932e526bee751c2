"""Soft sorting: a differentiable rank and a soft top-k loss for training indexes on what search does.

A search keeps the top candidates (leaves, Hamming neighbours), so the quantity that matters is the
*rank* of each true neighbour, a step function of the scores. The pairwise-sigmoid relaxation
rank_i = 1 + sum_{j != i} sigmoid((s_j - s_i) / T) is smooth, keeps the hard order at every T > 0 and
tends to the hard rank as T -> 0 (Qin et al. 2010; NeuralSort, Grover et al. 2019, relaxes the whole
permutation matrix instead, which costs n x n per query where we need the rank of a few items among many).
Written in a few lines of torch rather than taking `torchsort`: that package ships a compiled extension
that must match the installed torch build, and the pairwise form is all these losses need.
"""
from __future__ import annotations

import math

from ..core import DsilabError

LOSSES = ("nll", "softsort")


def check_loss(loss: str, top: int, rank_temperature: float, width: float) -> None:
    """Validate the loss settings of an index config (shared by the soft tree and the learned hash)."""
    if loss not in LOSSES:
        raise DsilabError(f"loss must be one of {LOSSES}; got {loss!r} (use 'softsort' for the soft top-k loss).")
    if not isinstance(top, int) or top < 1:
        raise DsilabError(f"top (how many candidates the soft top-k loss aims at) must be an integer >= 1; got {top!r}.")
    if not (rank_temperature > 0 and width > 0):
        raise DsilabError("rank_temperature and width must be positive (use e.g. 1.0 and 0.25).")


def soft_rank(scores, temperature: float):
    """1-based soft rank of every entry along the last axis (largest score = rank 1), differentiable."""
    if temperature <= 0:
        raise DsilabError(f"temperature must be positive; got {temperature}.")
    import torch

    diff = (scores.unsqueeze(-2) - scores.unsqueeze(-1)) / temperature   # [.., i, j] = (s_j - s_i) / T
    return 0.5 + torch.sigmoid(diff).sum(-1)                               # the j = i term adds sigmoid(0) = 0.5


def rank_among(items, pool, temperature: float, pool_weight: float = 1.0):
    """Soft rank of each item (..., p) among a pool (..., n) of competitors: 1 + w * sum_n sigmoid((pool_n - item) / T).

    With a pool sampled from a larger set, `pool_weight` = set size / pool size estimates the rank in the whole set.
    """
    import torch

    return 1.0 + pool_weight * torch.sigmoid((pool.unsqueeze(-2) - items.unsqueeze(-1)) / temperature).sum(-1)


def soft_topk_loss(rank, top: int, width: float = 0.25):
    """-log sigmoid((log top - log rank) / width), per item: near 0 once an item ranks well inside the top
    `top`, a steep push when it falls outside. Unlike a softmax loss it stops spending effort on neighbours
    that are already found and works on those at the edge of the candidate list."""
    import torch

    return torch.nn.functional.softplus((torch.log(rank) - math.log(top)) / width)
