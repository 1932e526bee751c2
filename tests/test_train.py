"""The training loop: it learns, resumes exactly after an interruption, stops early, logs, calls back."""
import json

import pytest
import torch

from dsilab.core import DsilabError
from dsilab.decode import search
from dsilab.metrics import evaluate
from dsilab.models import build_model
from dsilab.experiments import efficiency, runner
from dsilab.recipes import Convergence
from dsilab.train import Callback, TrainConfig, train

from conftest import TINY_T5 as TINY, Interrupt


def _cfg(**kw):
    return TrainConfig(**{"batch_size": 4, "lr": 3e-3, "warmup_steps": 2, "seed": 0, **kw})


@pytest.mark.slow  # trains to convergence: `make test` runs it, `make test-quick` does not
def test_training_memorises_a_tiny_index(tiny_dsi):
    coll, tree, ex = tiny_dsi
    model = build_model("t5-scratch", tree, ex, seed=0, **TINY)
    result = train(model, ex, _cfg(max_steps=250, batch_size=8))  # lr 1e-2 was borderline (Hits@1 0.8-1.0 by seed)
    losses = [h["loss"] for h in result.history if "loss" in h]
    docs = {e.doc_id: e.source for e in ex if e.task == "index"}
    hits = evaluate(search(model, docs, k=3), {d: {d: 1} for d in docs}, ("Hits@1",))["Hits@1"]
    assert result.steps == 250 and losses[-1] < 0.2 * losses[0] and hits >= 0.9


def test_resume_gives_the_same_weights(tiny_dsi, tmp_path):
    coll, tree, ex = tiny_dsi
    cfg = _cfg(max_steps=7, grad_accum=2)
    keep = dict(checkpoint_every=3, checkpoint_dir=str(tmp_path / "ck"))
    straight = build_model("t5-scratch", tree, ex, seed=0, **TINY)
    train(straight, ex, _cfg(max_steps=7, grad_accum=2))
    interrupted = build_model("t5-scratch", tree, ex, seed=0, **TINY)
    with pytest.raises(KeyboardInterrupt):
        train(interrupted, ex, cfg, callbacks=[Interrupt(5)], **keep)  # dies after the step-3 checkpoint
    resumed = build_model("t5-scratch", tree, ex, seed=0, **TINY)
    result = train(resumed, ex, cfg, **keep)
    assert result.steps == 7
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


def test_early_stopping_log_and_callbacks(tiny_dsi, tmp_path):
    coll, tree, ex = tiny_dsi
    model = build_model("t5-scratch", tree, ex, seed=0, **TINY)
    seen = []

    class Count(Callback):
        def on_step_end(self, trainer):
            seen.append(trainer.step)

    log = tmp_path / "log.jsonl"
    # lr = 0: dev Hits@1 never improves, so the stopping rule (threshold 0: "memorised" at once; patience 1) stops at
    # the second evaluation (step 4)
    stop = Convergence(threshold=0.0, patience=1, dev_is_memo=True)
    result = train(model, ex, _cfg(max_steps=20, lr=0.0, eval_every=2), dev=coll.split("dev"), callbacks=[Count(), stop],
                   log_every=1, log_path=str(log))
    assert result.stopped_early and result.steps == 4 and seen == [1, 2, 3, 4]
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert [x["step"] for x in lines if "loss" in x] == [1, 2, 3, 4]
    assert sum("Hits@1" in x for x in lines) == 2 and "Hits@1" in result.best
    # each evaluation says how training went since the previous one: the mean loss and the largest pre-clip grad norm
    evals = [x for x in lines if "Hits@1" in x]
    per_step = [x["loss"] for x in lines if "loss" in x]
    assert evals[0]["train loss"] == pytest.approx(sum(per_step[:2]) / 2, rel=1e-3)
    assert evals[1]["train loss"] == pytest.approx(sum(per_step[2:4]) / 2, rel=1e-3)
    assert all(x["grad norm max"] > 0 for x in evals)


def test_convergence_stops_a_run_whose_memorisation_collapses():
    """A run that memorised and then lost more than half of it has diverged: stop, and say so (not "time limit")."""
    from types import SimpleNamespace

    stop = Convergence(threshold=0.95, patience=3, dev_is_memo=False)
    trainer = SimpleNamespace(history=[], step=0, stopped_early=False)
    for step, memo in ((100, 0.1), (200, 0.62), (300, 0.4), (400, 0.25)):
        trainer.step = step
        trainer.history.append({})
        stop.on_evaluate(trainer, {"Hits@1": 0.1, "memo Hits@1": memo})
        assert stop.diverged == trainer.stopped_early == (step == 400)  # 0.4 is not below half of 0.62; 0.25 is
    # a run that never reached 0.2 is slow, not diverged
    slow = Convergence(threshold=0.95, patience=3, dev_is_memo=False)
    for memo in (0.15, 0.02):
        slow.on_evaluate(SimpleNamespace(history=[{}], step=1, stopped_early=False), {"Hits@1": 0.0, "memo Hits@1": memo})
    assert not slow.diverged


def test_adam_betas_reach_the_optimizer(tiny_dsi):
    coll, tree, ex = tiny_dsi
    seen = []

    class Betas(Callback):
        def on_train_begin(self, trainer):
            seen.extend(g["betas"] for g in trainer.optimizer.param_groups)

    model = build_model("t5-scratch", tree, ex, seed=0, **TINY)
    train(model, ex, _cfg(max_steps=1, betas=(0.9, 0.95), amp="off"), callbacks=[Betas()])
    assert seen and all(tuple(b) == (0.9, 0.95) for b in seen)


def test_keep_best_prefers_eligible_checkpoints(tiny_dsi):
    # a callback (e.g. the memorisation gate) marks evaluations ineligible: the best is chosen among eligible ones only
    coll, tree, ex = tiny_dsi

    class OnlyLast(Callback):
        def on_evaluate(self, trainer, metrics):
            trainer.history[-1]["eligible"] = trainer.step == 6

    model = build_model("t5-scratch", tree, ex, seed=0, **TINY)
    result = train(model, ex, _cfg(max_steps=6, lr=0.0, eval_every=2), dev=coll.split("dev"), callbacks=[OnlyLast()])
    # lr = 0 keeps dev Hits@1 equal at steps 2, 4, 6: without the gate step 2 (the first) would stay best
    assert result.best["step"] == 6 and result.best["eligible"]


def test_keep_best_restores_the_best_weights(tiny_dsi):
    """The best checkpoint's weights come back at the end (on a CPU they wait in a mapped file, not in memory)."""
    coll, tree, ex = tiny_dsi
    seen = {}

    class OnlyStep2(Callback):
        def on_evaluate(self, trainer, metrics):
            trainer.history[-1]["eligible"] = trainer.step == 2
            if trainer.step == 2:
                seen.update({k: v.detach().clone() for k, v in trainer.model.state_dict().items()})

    model = build_model("t5-scratch", tree, ex, seed=0, **TINY)
    result = train(model, ex, _cfg(max_steps=6, eval_every=2), dev=coll.split("dev"), callbacks=[OnlyStep2()])
    assert result.best["step"] == 2 and result.steps == 6
    assert seen.keys() == model.state_dict().keys()
    for k, v in model.state_dict().items():
        assert torch.equal(v, seen[k]), k


def test_bad_config(tiny_dsi):
    with pytest.raises(DsilabError, match="amp"):
        TrainConfig(amp="fp8")
    with pytest.raises(DsilabError, match="checkpoint_dir"):
        train(None, tiny_dsi[2], TrainConfig(), checkpoint_every=5)
    with pytest.raises(DsilabError, match="betas"):
        TrainConfig(betas=(0.9, 1.0))


def test_bench_dsi_zero_shot_on_a_test_only_beir_folder(tiny_beir, tmp_path):
    # a BEIR folder with only a test split: indexing only (never the test queries), intervals and a chance row
    from dsilab.experiments import dsi as bench
    from dsilab.data import load_collection

    coll = load_collection(tiny_beir)
    result = bench.bench_dsi(coll, variants=[{"docids": "atomic", "decoder_layers": 1, "max_epochs": 2}])
    assert result["setting"].startswith("zero-shot") and result["selected_on"] is None
    row = result["results"]["DSI atomic (1-layer decoder)"]
    assert 0.0 <= row["Hits@10"] <= 1.0 and row["steps"] == 2  # 3 documents = 1 batch, 2 epochs
    lo, hi = row["Hits@1 CI"]
    assert lo <= row["Hits@1"] <= hi and 0 <= row["memo Hits@1"] <= 1 and row["stopped"] in ("converged", "step cap")
    assert result["results"]["chance (random ranking)"]["Hits@1"] == pytest.approx(1 / 3, abs=1e-4)
    assert "Dense (MiniLM fine-tuned on train queries)" not in result["results"]  # nothing to fine-tune on
    # each row's Hits@10 per test query stays in the JSON, so that any two rows can be paired later
    per_query = result["per query Hits@10"]
    assert set(per_query["DSI atomic (1-layer decoder)"]) == set(coll.split("test")[1])
    assert sum(per_query["BM25"].values()) / len(per_query["BM25"]) == pytest.approx(result["results"]["BM25"]["Hits@10"], abs=1e-4)
    path = runner.write_result(result, tmp_path)
    assert path.parent == tmp_path and "[" in runner.format_table(result["results"])


def test_each_technique_is_paired_against_the_row_without_it():
    # a row is paired with each row of the same run whose recipe has some of its changes and no others, on the same
    # queries: what the changes it lacks add
    from dsilab.experiments.dsi import _against_controls

    rows = {"plain": {"docids": "semantic"}, "span": {"docids": "semantic", "pseudo_per_doc": 5},
            "teacher": {"docids": "semantic", "pseudo_per_doc": 5, "query_teacher_k": 1},
            "residual": {"docids": "residual"}}
    by_query = {"plain": {"a": 0.0, "b": 1.0, "c": 0.0}, "span": {"a": 1.0, "b": 1.0, "c": 0.0},
                "teacher": {"a": 1.0, "b": 1.0, "c": 1.0}, "residual": {"a": 0.0, "b": 0.0, "c": 0.0}}
    out = _against_controls(by_query, rows, {"unseen": ["c"]}, seed=0)
    assert set(out) == {"span minus plain", "teacher minus span", "teacher minus plain"}  # residual changes a value: none
    assert out["teacher minus span"]["all"]["difference"] == pytest.approx(1 / 3, abs=1e-4)
    assert out["teacher minus span"]["unseen"]["difference"] == 1.0 and out["span minus plain"]["unseen"]["difference"] == 0
    assert out["teacher minus plain"]["all"]["difference"] == pytest.approx(2 / 3, abs=1e-4)


def test_activation_checkpointing_saves_memory_not_numbers(tiny_dsi):
    """`checkpoint_activations` (on by default on a CPU) recomputes activations in the backward pass: the same
    weights after training, dropout included (t5-scratch trains with dropout, so the recompute must replay its masks)."""
    coll, tree, ex = tiny_dsi
    weights = {}
    for ckpt in (True, False):
        model = build_model("t5-scratch", tree, ex, seed=0, **TINY)
        train(model, ex, _cfg(max_steps=4, checkpoint_activations=ckpt))
        assert model.net.is_activation_checkpointing == ckpt
        weights[ckpt] = model.state_dict()
    for name, a in weights[True].items():
        assert torch.equal(a, weights[False][name]), name


def test_encoder_lr_steps_the_encoder_alone(tiny_dsi):
    """encoder_lr = 0 with lr > 0: the decoder learns, and so does the embedding matrix T5 shares between encoder
    and decoder (it holds the docid rows), while every encoder-only weight stays put."""
    coll, tree, ex = tiny_dsi
    model = build_model("t5-scratch", tree, ex, seed=0, **TINY)
    shared = {id(p) for p in model.net.get_decoder().parameters()}
    encoder_only = {n: p for n, p in model.net.get_encoder().named_parameters() if id(p) not in shared}
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    train(model, ex, _cfg(max_steps=3, encoder_lr=0.0))
    after = dict(model.named_parameters())
    assert encoder_only and all(torch.equal(p, before[f"net.encoder.{n}"]) for n, p in encoder_only.items())
    assert not torch.equal(model.net.get_input_embeddings().weight, before["net.shared.weight"])
    assert any(not torch.equal(after[n], before[n]) for n in before if n.startswith("net.decoder."))


def test_encoder_lr_needs_a_model_with_an_encoder(tiny_dsi):
    coll, tree, ex = tiny_dsi
    with pytest.raises(DsilabError, match="encoder_lr"):
        train(torch.nn.Linear(2, 2), ex, _cfg(max_steps=1, encoder_lr=1e-4))


def test_bench_dsi_named_variants_report_cost_columns(tiny_beir):
    # the efficiency table is bench_dsi with named recipes: rows keep their names and carry the cost columns
    from dsilab.experiments import dsi as bench
    from dsilab.data import load_collection

    coll = load_collection(tiny_beir)
    result = bench.bench_dsi(coll, variants={"pruned": {"docids": "atomic", "backbone": "t5-scratch", "decoder_layers": 1,
                                                        "prune": 0.5, "prune_epochs": 1, "max_epochs": 3}})
    row = result["results"]["pruned"]
    assert row["sparsity"] == pytest.approx(0.5, abs=0.02) and row["trainable_M"] > 0 and row["train_state_mb"] > row["weights_mb"]
    assert efficiency.efficiency_recipe("LoRA r=8").label == "DSI atomic (dense-initialised rows, LoRA r=8)"
    with pytest.raises(DsilabError, match="efficiency variant"):
        efficiency.efficiency_recipe("LoRA r=9")
