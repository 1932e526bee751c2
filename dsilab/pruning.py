"""Dynamic magnitude pruning during training: a `train.Callback` that zeroes the smallest weights on a schedule.

    pruner = MagnitudePruning(target=0.8, start=20, end=200, every=10)
    train(model, examples, cfg, callbacks=[pruner]);  pruner.report()   # exact per-layer sparsity

The schedule is the gradual one of Zhu & Gupta (2017, "To prune, or not to prune"): sparsity rises from
`initial` at step `start` to `target` at step `end` as s(t) = target + (initial - target)(1 - p)^3, with
p the fraction of the way. Every `every` steps the threshold is recomputed from the *current*
magnitudes (L1, unstructured), per layer (`scope="layer"`: each layer reaches exactly round(s * n)
zeros) or over all layers at once (`scope="global"`). Pruned weights are part of every later mask
(sparsity only grows), and after each optimizer step the masks are re-applied, so they stay exactly zero.

A pruned weight is a zero in the weight itself: no reparametrisation (unlike torch.nn.utils.prune, which
adds weight_orig/weight_mask and hooks that change the state_dict and would break checkpoints and peft).
Hence the mask survives a checkpoint for free: on resume it is read back as `weight != 0`.

What it buys: `save_pruned` stores a 1-bit mask plus the surviving values (80% sparsity -> ~4x smaller
file). What it does not buy on dense hardware: a dense matmul with zeros costs the same as without, so
training and inference step time do not drop; sparse kernels win only at high sparsity (`sparse_matmul_timing`).
"""
from __future__ import annotations

import io
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .core import DsilabError, check_choice
from .train import Callback

SCOPES = ("layer", "global")


def prunable_weights(net: nn.Module, include: tuple[str, ...] | None = None) -> dict[str, nn.Parameter]:
    """name -> weight of every nn.Linear of `net` (names containing one of `include`, if given), except the
    output head (tied to the word embeddings, which also hold the docid tokens)."""
    net = getattr(net, "net", net)
    head = net.get_output_embeddings() if hasattr(net, "get_output_embeddings") else None
    out = {}
    for name, mod in net.named_modules():
        if isinstance(mod, nn.Linear) and mod is not head and (include is None or any(s in name for s in include)):
            out[f"{name}.weight"] = mod.weight
    if not out:
        raise DsilabError(f"no prunable nn.Linear weights found (include={include}); check model.net.named_modules().")
    return out


def schedule_sparsity(step: int, target: float, start: int, end: int, initial: float = 0.0) -> float:
    """Zhu & Gupta's cubic schedule: `initial` before `start`, `target` from `end` on, cubic in between."""
    if step < start:
        return 0.0
    if step >= end:
        return target
    frac = (step - start) / max(end - start, 1)
    return target + (initial - target) * (1.0 - frac) ** 3


@torch.no_grad()
def magnitude_masks(weights: dict[str, torch.Tensor], sparsity: float, scope: str = "layer") -> dict[str, torch.Tensor]:
    """Keep-masks (True = keep) zeroing exactly round(sparsity * n) smallest-|w| entries, per layer or globally.

    Ties at the threshold (e.g. the zeros of already-pruned weights) are pruned lowest index first, as a stable sort
    would order them, so every run breaks them the same way; the threshold comes from a selection (kthvalue), not a
    full sort, which on a CPU was most of a pruned run's time.
    """
    if not 0.0 <= sparsity < 1.0:
        raise DsilabError(f"sparsity={sparsity}; use a fraction in [0, 1).")
    check_choice("scope", scope, SCOPES)
    groups = [[n] for n in weights] if scope == "layer" else [list(weights)]
    masks = {}
    for names in groups:
        mags = torch.cat([weights[n].detach().abs().flatten().float().cpu() for n in names])
        k = int(round(sparsity * mags.numel()))
        keep = torch.ones(mags.numel(), dtype=torch.bool)
        if k > 0:
            threshold = torch.kthvalue(mags, k).values
            keep[mags < threshold] = False
            ties = (mags == threshold).nonzero().flatten()
            keep[ties[: k - int((~keep).sum())]] = False
        offset = 0
        for n in names:
            size = weights[n].numel()
            masks[n] = keep[offset : offset + size].view_as(weights[n]).to(weights[n].device)
            offset += size
    return masks


def sparsity_report(model: nn.Module, include: tuple[str, ...] | None = None) -> dict[str, dict[str, float]]:
    """Per prunable layer: zeros, size and sparsity, counted in the weights themselves (exact), plus a total."""
    rows, zeros_all, n_all = {}, 0, 0
    for name, w in prunable_weights(model, include).items():
        zeros, n = int((w == 0).sum()), w.numel()
        rows[name] = {"zeros": zeros, "size": n, "sparsity": zeros / n}
        zeros_all, n_all = zeros_all + zeros, n_all + n
    rows["total"] = {"zeros": zeros_all, "size": n_all, "sparsity": zeros_all / max(n_all, 1)}
    return rows


@dataclass(frozen=True)
class PruneConfig:
    """Pruning during DSI training (the pruning part of `dsilab.recipes.Recipe`)."""

    prune: float = 0.0                   # final sparsity of gradual magnitude pruning; 0: none
    prune_epochs: int = 10               # pruning ramps from epoch 1 to epoch 1 + prune_epochs; no stop before that

    def __post_init__(self) -> None:
        if not 0 <= self.prune < 1:
            raise DsilabError(f"prune={self.prune}; use a sparsity in [0, 1), e.g. 0.8.")

    def pruner(self, steps_per_epoch: int, max_epochs: int) -> "MagnitudePruning | None":
        """The schedule: from epoch 1, 20 threshold updates, the target reached `prune_epochs` later (or at the cap)."""
        if not self.prune:
            return None
        end = min(1 + self.prune_epochs, max_epochs) * steps_per_epoch
        start = min(steps_per_epoch, end // 2)
        return MagnitudePruning(self.prune, start=start, end=end, every=max(1, (end - start) // 20))


class MagnitudePruning(Callback):
    """Gradual unstructured magnitude pruning as a training callback (see the module docstring).

    target: final sparsity in [0, 1); start/end: optimizer steps where pruning begins and reaches `target`
    (end defaults to 3/4 of the run, leaving steps to recover); every: steps between threshold updates;
    scope: "layer" or "global"; include: substrings selecting the layers (default: every nn.Linear but the head);
    only the selected weights that train are pruned (with a frozen encoder: the decoder's).
    """

    def __init__(self, target: float = 0.5, start: int = 0, end: int | None = None, every: int = 10,
                 scope: str = "layer", include: tuple[str, ...] | None = None, initial: float = 0.0):
        if not 0.0 < target < 1.0 or not 0.0 <= initial <= target:
            raise DsilabError(f"MagnitudePruning: need 0 <= initial <= target < 1 and target > 0 (got {initial}, {target}).")
        if every < 1 or start < 0 or (end is not None and end < start):
            raise DsilabError(f"MagnitudePruning: need every >= 1 and 0 <= start <= end (got every={every}, start={start}, end={end}).")
        check_choice("MagnitudePruning scope", scope, SCOPES)
        self.target, self.start, self.end, self.every = target, start, end, every
        self.scope, self.include, self.initial = scope, include, initial
        self.masks: dict[str, torch.Tensor] = {}
        self.weights: dict[str, nn.Parameter] = {}
        self.current = 0.0
        self.history: list[tuple[int, float]] = []   # (step, scheduled sparsity) at each threshold update

    def _end(self, total_steps: int) -> int:
        return self.end if self.end is not None else max(self.start, int(0.75 * total_steps))

    def on_train_begin(self, trainer) -> None:
        # only the weights that train: a frozen weight set to zero could never recover (e.g. a frozen encoder)
        self.weights = {n: w for n, w in prunable_weights(trainer.net, self.include).items() if w.requires_grad}
        if not self.weights:
            raise DsilabError("MagnitudePruning: no trainable nn.Linear weight to prune; unfreeze some layers "
                              "(e.g. Recipe(freeze_encoder=False)) or leave pruning off.")
        self.total = trainer.total_steps
        if trainer.step > self.start:  # resumed: the pruned weights are the zeros of the checkpoint
            self.masks = {n: w.detach() != 0 for n, w in self.weights.items()}
            self.current = schedule_sparsity(self._last_update(trainer.step), self.target, self.start,
                                             self._end(self.total), self.initial)

    def _last_update(self, step: int) -> int:
        """The step of the latest threshold update at or before `step`."""
        end = self._end(self.total)
        if step >= end:
            return end
        return self.start + (step - self.start) // self.every * self.every

    @torch.no_grad()
    def on_step_end(self, trainer) -> None:
        step, end = trainer.step, self._end(self.total)
        update = step >= self.start and ((step - self.start) % self.every == 0 or step == end) and step <= end
        if update:
            s = schedule_sparsity(step, self.target, self.start, end, self.initial)
            if s > 0 and s >= self.current:
                self.masks = magnitude_masks(self.weights, s, self.scope)
                self.current = s
                self.history.append((step, round(s, 6)))
        self.apply()

    @torch.no_grad()
    def apply(self) -> None:
        """Zero the pruned weights (after each optimizer step: AdamW's momentum would revive them)."""
        for n, mask in self.masks.items():
            self.weights[n].mul_(mask)

    def on_train_end(self, trainer) -> None:
        reached = self.report()["total"]["sparsity"]
        if self.masks and reached + 1e-9 < self.current * 0.999:
            import warnings

            warnings.warn(f"MagnitudePruning: the final weights are {reached:.1%} sparse, below the scheduled "
                          f"{self.current:.1%}: keep_best restored weights from before pruning finished. Use "
                          "train(..., keep_best=False) or evaluate only after the schedule's end.", stacklevel=2)

    def report(self) -> dict[str, dict[str, float]]:
        """Exact per-layer sparsity, counted in the weights."""
        out, z, t = {}, 0, 0
        for n, w in self.weights.items():
            zeros, size = int((w == 0).sum()), w.numel()
            out[n] = {"zeros": zeros, "size": size, "sparsity": zeros / size}
            z, t = z + zeros, t + size
        out["total"] = {"zeros": z, "size": t, "sparsity": z / max(t, 1)}
        return out


# -- saving pruned models ----------------------------------------------------------------------------------
def save_pruned(model: nn.Module, path: str | Path, include: tuple[str, ...] | None = None) -> dict[str, float]:
    """Save the state_dict with each prunable weight as (1-bit mask, surviving values): smaller when sparse.

    Returns the file size and the size of a plain dense `torch.save(state_dict)` for comparison (MB).
    """
    state = model.state_dict()
    prefix = "net." if hasattr(model, "net") else ""
    packed, dense = {}, {}
    names = {prefix + n for n in prunable_weights(model, include)}
    for k, v in state.items():
        if k in names:
            keep = (v != 0).cpu().numpy().ravel()
            packed[k] = {"shape": tuple(v.shape), "dtype": v.dtype, "mask": np.packbits(keep),
                         "values": v.detach().cpu().flatten()[torch.from_numpy(keep)].clone()}
        else:
            dense[k] = v.detach().cpu()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"packed": packed, "dense": dense}, path)
    buf = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in state.items()}, buf)
    return {"file_mb": round(path.stat().st_size / 2**20, 3), "dense_mb": round(buf.tell() / 2**20, 3)}


def load_pruned(model: nn.Module, path: str | Path) -> nn.Module:
    """Load `save_pruned`'s file into a model of the same architecture (zeros restored exactly)."""
    blob = torch.load(path, map_location="cpu", weights_only=False)
    state = dict(blob["dense"])
    for k, p in blob["packed"].items():
        n = int(np.prod(p["shape"]))
        keep = torch.from_numpy(np.unpackbits(p["mask"])[:n].astype(bool))
        w = torch.zeros(n, dtype=p["dtype"])
        w[keep] = p["values"]
        state[k] = w.view(p["shape"])
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise DsilabError(f"load_pruned: {path} does not fit this model ({len(missing)} missing, {len(unexpected)} "
                          "unexpected tensors): build it with the same backbone, docids and sizes.")
    return model


# -- what sparsity buys on dense hardware --------------------------------------------------------------------
@torch.no_grad()
def sparse_matmul_timing(d_in: int = 512, d_out: int = 2048, tokens: int = 256,
                         sparsities: tuple[float, ...] = (0.0, 0.5, 0.8, 0.95, 0.99), repeats: int = 20,
                         seed: int = 0) -> list[dict[str, Any]]:
    """Time y = x W^T for one layer: dense W with zeros vs torch.sparse CSR W, at each sparsity (ms)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(tokens, d_in, generator=g)
    rows = []
    for s in sparsities:
        w = torch.randn(d_out, d_in, generator=g)
        if s > 0:
            w = w * magnitude_masks({"w": w}, s)["w"]
        with warnings.catch_warnings():  # torch's notice that CSR is a beta API: known, and what is being timed
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")
            w_sparse = w.to_sparse_csr()
        timings = {}
        for name, fn in {"dense_ms": lambda: x @ w.T, "sparse_csr_ms": lambda: torch.sparse.mm(w_sparse, x.T)}.items():
            fn()
            t0 = time.perf_counter()
            for _ in range(repeats):
                fn()
            timings[name] = round(1000 * (time.perf_counter() - t0) / repeats, 3)
        rows.append({"sparsity": s, **timings, "speedup": round(timings["dense_ms"] / timings["sparse_csr_ms"], 2)})
    return rows
