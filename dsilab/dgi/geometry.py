"""Geometric conflict in miniature: how inner-product logits let frequent classes grow their norms.

`norm_inflation_toy` trains a softmax classifier on 2-D points of a few classes with Zipfian
frequencies, once with inner-product logits and once with cosine logits, and returns the class
vectors: with inner products the frequent classes' vectors grow long and their regions swallow the
rare classes; with cosine logits every class vector has the same say, whatever its norm.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..core import DsilabError


def cosine_logits(x: torch.Tensor, table: torch.Tensor, temperature: float | torch.Tensor) -> torch.Tensor:
    """cos(x, every row of table) / temperature: blind to the norms, so no code can win by growing."""
    return F.normalize(x, dim=-1) @ F.normalize(table, dim=-1).T / temperature


def inner_logits(x: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Raw inner products x . table_k: a frequent code can win by growing its norm (the ablation)."""
    return x @ table.T


def norm_inflation_toy(n_classes: int = 40, dim: int = 8, n_max: int = 200, s: float = 1.0, noise: float = 1.0,
                       steps: int = 60, temperature: float = 0.1, seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    """Per logit kind ("inner", "cosine"): class vectors' norms and per-class test accuracy, plus the counts.

    Class c has a random unit direction in `dim` dimensions and round(n_max / (c+1)^s) (at least 1)
    noisy training points (Zipf's law); the test set has 50 points per class, so every class counts the same.
    """
    if n_classes < 2 or dim < 2 or n_max < 1:
        raise DsilabError("norm_inflation_toy needs n_classes >= 2, dim >= 2 and n_max >= 1.")
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    counts = np.maximum(1, np.floor(n_max / (np.arange(n_classes) + 1.0) ** s + 0.5)).astype(int)

    def sample(sizes):
        y = np.repeat(np.arange(n_classes), sizes)
        x = centres[y] + noise * rng.normal(size=(len(y), dim)) / np.sqrt(dim)
        return torch.tensor(x, dtype=torch.float32), torch.tensor(y)

    x, y = sample(counts)
    xt, yt = sample(np.full(n_classes, 50))
    out: dict[str, dict[str, np.ndarray]] = {"data": {"counts": counts}}
    for kind in ("inner", "cosine"):
        torch.manual_seed(seed)
        W = torch.nn.Parameter(torch.randn(n_classes, dim) * 0.1)
        opt = torch.optim.Adam([W], lr=0.05)
        for _ in range(steps):
            logits = inner_logits(x, W) if kind == "inner" else cosine_logits(x, W, temperature)
            opt.zero_grad()
            F.cross_entropy(logits, y).backward()
            opt.step()
        with torch.no_grad():
            pred = (inner_logits(xt, W) if kind == "inner" else cosine_logits(xt, W, temperature)).argmax(-1)
        acc = np.array([(pred[yt == c] == c).float().mean().item() for c in range(n_classes)])
        share = np.bincount(pred.numpy(), minlength=n_classes) / len(pred)
        out[kind] = {"norms": W.detach().norm(dim=1).numpy(), "accuracy": acc, "predicted_share": share}
    return out
