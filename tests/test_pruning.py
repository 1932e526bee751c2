"""Dynamic magnitude pruning: exact sparsity, masks that hold after optimizer steps, resume, save/load."""
import pytest
import torch

from dsilab.core import DsilabError
from dsilab.models import build_model
from dsilab.pruning import (MagnitudePruning, load_pruned, magnitude_masks, prunable_weights, save_pruned,
                            schedule_sparsity, sparsity_report)
from dsilab.train import Callback, TrainConfig, train

from conftest import TINY_T5 as TINY, Interrupt


def _cfg(**kw):
    return TrainConfig(**{"batch_size": 4, "lr": 1e-2, "warmup_steps": 0, "seed": 0, **kw})


def _train(*args, **kw):
    """`train` without restoring the best dev weights (they would predate the pruning)."""
    return train(*args, keep_best=False, **kw)


def test_masks_are_exact_and_keep_the_largest_weights():
    g = torch.Generator().manual_seed(0)
    w = {"a": torch.randn(7, 13, generator=g), "b": torch.randn(5, 3, generator=g)}
    masks = magnitude_masks(w, 0.6)
    for n, m in masks.items():
        assert int((~m).sum()) == round(0.6 * w[n].numel())
        assert w[n].abs()[~m].max() <= w[n].abs()[m].min()
    glob = magnitude_masks(w, 0.6, scope="global")
    assert sum(int((~m).sum()) for m in glob.values()) == round(0.6 * (91 + 15))
    with pytest.raises(DsilabError):
        magnitude_masks(w, 1.0)


def test_schedule_is_monotone_and_hits_its_ends():
    values = [schedule_sparsity(t, 0.8, start=10, end=50) for t in range(70)]
    assert values[:10] == [0.0] * 10 and values[50:] == [0.8] * 20
    assert all(a <= b for a, b in zip(values, values[1:]))


class Check(Callback):
    """After every step (after the pruner ran): all weights pruned so far are still zero."""

    def __init__(self, pruner):
        self.pruner, self.pruned, self.checked = pruner, {}, 0

    def on_step_end(self, trainer):
        for n, w in self.pruner.weights.items():
            if n in self.pruned:
                assert not w[self.pruned[n]].any(), f"pruned weights of {n} came back at step {trainer.step}"
                self.checked += 1
        self.pruned = {n: (~m).clone() for n, m in self.pruner.masks.items()}


def test_pruned_weights_stay_zero_and_reported_sparsity_is_exact(tiny_dsi):
    _, tree, ex = tiny_dsi
    model = build_model("t5-scratch", tree, ex, **TINY)
    pruner = MagnitudePruning(target=0.8, start=2, end=8, every=2)
    check = Check(pruner)
    _train(model, ex, _cfg(max_steps=12), callbacks=[pruner, check])
    assert check.checked > 0 and [s for s, _ in pruner.history] == [4, 6, 8]
    report = pruner.report()
    for name, w in prunable_weights(model).items():
        assert report[name]["zeros"] == round(0.8 * w.numel()) == int((w == 0).sum())
    assert report["total"]["sparsity"] == pytest.approx(0.8, abs=1e-2)
    assert sparsity_report(model) == report
    assert (model.net.shared.weight != 0).all()  # embeddings (and the tied head) are not pruned


def test_only_weights_that_train_are_pruned(tiny_dsi):
    """A frozen weight set to zero could never recover: with the encoder frozen, only the decoder is pruned; with
    nothing left to train the pruner refuses early."""
    _, tree, ex = tiny_dsi
    model = build_model("t5-scratch", tree, ex, **TINY)
    frozen = {n for n, w in prunable_weights(model).items() if n.startswith("encoder.")}
    for n, w in prunable_weights(model).items():
        w.requires_grad_(n not in frozen)
    before = {n: w.detach().clone() for n, w in prunable_weights(model).items() if n in frozen}
    pruner = MagnitudePruning(target=0.8, start=1, end=4, every=1)
    _train(model, ex, _cfg(max_steps=5), callbacks=[pruner])
    assert frozen and set(pruner.weights) == set(prunable_weights(model)) - frozen
    assert pruner.report()["total"]["sparsity"] == pytest.approx(0.8, abs=1e-2)
    assert all(torch.equal(prunable_weights(model)[n], w) for n, w in before.items())  # untouched, no zeros added
    for p in model.parameters():
        p.requires_grad_(False)
    with pytest.raises(DsilabError, match="no trainable"):
        MagnitudePruning(target=0.5).on_train_begin(type("T", (), {"net": model.net, "total_steps": 4, "step": 0})())


def test_bad_schedule_fails_clearly():
    with pytest.raises(DsilabError, match="target"):
        MagnitudePruning(target=1.2)
    with pytest.raises(DsilabError, match="every"):
        MagnitudePruning(target=0.5, every=0)
    with pytest.raises(DsilabError, match="scope"):
        MagnitudePruning(target=0.5, scope="row")


@pytest.mark.parametrize("scope", ["layer", "global"])
def test_resume_with_pruning_gives_the_same_weights(tiny_dsi, tmp_path, scope):
    _, tree, ex = tiny_dsi
    prune = dict(target=0.7, start=1, end=6, every=2, scope=scope)
    cfg, keep = _cfg(max_steps=8), dict(checkpoint_every=4, checkpoint_dir=str(tmp_path / "ck"))
    straight = build_model("t5-scratch", tree, ex, **TINY)
    _train(straight, ex, _cfg(max_steps=8), callbacks=[MagnitudePruning(**prune)])
    interrupted = build_model("t5-scratch", tree, ex, **TINY)
    with pytest.raises(KeyboardInterrupt):
        _train(interrupted, ex, cfg, callbacks=[MagnitudePruning(**prune), Interrupt(5)], **keep)
    resumed = build_model("t5-scratch", tree, ex, **TINY)
    _train(resumed, ex, cfg, callbacks=[MagnitudePruning(**prune)], **keep)
    for (k, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k


def test_save_and_load_pruned_model(tiny_dsi, tmp_path):
    _, tree, ex = tiny_dsi
    model = build_model("t5-scratch", tree, ex, **TINY)
    _train(model, ex, _cfg(max_steps=4), callbacks=[MagnitudePruning(target=0.9, start=0, end=2, every=1)])
    sizes = save_pruned(model, tmp_path / "p.pt")
    assert sizes["file_mb"] < sizes["dense_mb"]
    fresh = load_pruned(build_model("t5-scratch", tree, ex, **TINY), tmp_path / "p.pt")
    for (k, a), b in zip(model.state_dict().items(), fresh.state_dict().values()):
        assert torch.equal(a, b), k
    other = build_model("t5-scratch", tree, ex, **{**TINY, "d_ff": 32})
    with pytest.raises((DsilabError, RuntimeError)):
        load_pruned(other, tmp_path / "p.pt")


@pytest.mark.parametrize("scope", ["layer", "global"])
def test_masks_prune_exactly_k_and_break_ties_as_a_stable_sort_would(scope):
    """The selection (kthvalue) must pick the same entries as a stable sort, zeros and other ties included."""
    g = torch.Generator().manual_seed(0)
    weights = {"a": torch.round(torch.randn(40, 9, generator=g) * 2) / 2, "b": torch.randn(7, 30, generator=g)}
    weights["b"][:3] = 0  # already pruned: all tied at zero
    for sparsity in (0.0, 0.25, 0.5, 0.9):
        masks = magnitude_masks(weights, sparsity, scope)
        groups = [[n] for n in weights] if scope == "layer" else [list(weights)]
        for names in groups:
            mags = torch.cat([weights[n].abs().flatten() for n in names])
            expected = torch.ones(mags.numel(), dtype=torch.bool)
            expected[torch.argsort(mags, stable=True)[: round(sparsity * mags.numel())]] = False
            assert torch.equal(torch.cat([masks[n].flatten() for n in names]), expected), (sparsity, names)
