"""The packed training data, length bucketing, and the scaling module's helpers (throughput, studies, forgetting)."""
import numpy as np
import pytest
import torch

from dsilab.core import DsilabError
from dsilab.data import load_collection
from dsilab.docids import make_docids
from dsilab.models import build_model
from dsilab.recipes import Recipe
from dsilab.experiments.scaling import STUDIES, forgetting, resolve, shape_recipe, throughput
from dsilab.tasks import TaskConfig, build_examples
from dsilab.train import PackedExamples, TrainConfig, Trainer

from conftest import TINY_T5 as TINY


def test_packed_batches_equal_per_batch_tokenisation(tiny_dsi):
    coll, tree, ex = tiny_dsi
    model = build_model("t5-scratch", tree, ex, seed=0, **TINY)
    packed = PackedExamples(model, ex, encode=False)
    idx = np.array([5, 0, 3, 9, 1])
    got, want = packed.batch(idx), model.batch([ex[i] for i in idx])
    assert torch.equal(got["input_ids"], want["input_ids"])
    assert torch.equal(got["attention_mask"], want["attention_mask"])
    assert torch.equal(got["labels"], want["labels"])
    assert got["text_rows"].tolist() == [ex[i].task == "docid2text" for i in idx]


def test_packed_frozen_encoder_states_equal_encoding_each_batch():
    coll = load_collection("lab").topics(1)
    tree = make_docids(coll, "atomic")
    ex = build_examples(coll, tree, TaskConfig(query_split="train"))
    model = build_model("minilm-seq2seq", tree, ex, seed=0, docid_init="random")
    packed = PackedExamples(model, ex, encode=True)
    idx = np.array([2, 7, 0, len(ex) - 1])
    got = packed.batch(idx)
    hidden, mask = model.encode_texts([ex[i].source for i in idx])
    assert got["input_ids"] is None and torch.equal(got["attention_mask"], mask)
    torch.testing.assert_close(got["encoder_hidden"], hidden)


def test_bucketing_keeps_every_example_once_and_groups_lengths(tiny_dsi):
    coll, tree, ex = tiny_dsi
    model = build_model("t5-scratch", tree, ex, seed=0, **TINY)
    trainer = Trainer(model, ex, TrainConfig(batch_size=4, bucket=3), None, [])
    trainer.packed = PackedExamples(model, ex, encode=False)
    order = trainer.order(0)
    assert sorted(order.tolist()) == list(range(len(ex)))            # a permutation: nothing dropped or repeated
    assert np.array_equal(order, trainer.order(0))                    # seeded: the same after a resume
    lengths = trainer.packed.lengths_of(order)
    spread = [np.ptp(lengths[i : i + 4]) for i in range(0, len(order) - 3, 4)]
    plain = trainer.packed.lengths_of(np.random.default_rng(0).permutation(len(ex)))
    plain_spread = [np.ptp(plain[i : i + 4]) for i in range(0, len(ex) - 3, 4)]
    assert np.mean(spread) < np.mean(plain_spread)                   # batches of similar lengths: less padding


def test_forgetting_compares_best_and_last_evaluation():
    history = [{"step": 10, "loss": 1.0}, {"step": 20, "Hits@1": 0.4, "memo Hits@1": 0.9},
               {"step": 40, "Hits@1": 0.5, "memo Hits@1": 0.97}, {"step": 60, "Hits@1": 0.35, "memo Hits@1": 0.99}]
    f = forgetting(history)
    assert (f["best step"], f["last step"], f["drop"]) == (40, 60, 0.15) and f["last memo"] == 0.99
    with pytest.raises(DsilabError, match="no evaluation"):
        forgetting([{"step": 1, "loss": 2.0}])


def test_synthetic_specs_sample_dev_and_test_only():
    coll = resolve("synthetic:300", max_eval_queries=50)
    assert len(coll.docs) == 300 and len(coll.qrels["train"]) == 300
    assert len(coll.qrels["dev"]) == len(coll.qrels["test"]) == 50
    assert resolve("synthetic:300", max_eval_queries=50).qrels["test"] == coll.qrels["test"]  # seeded


def test_study_rows_are_valid_recipes():
    for study, rows in STUDIES.items():
        for label, (spec, changes) in rows.items():
            changes = dict(changes)
            shape = changes.pop("_shape", None)
            recipe = shape_recipe(shape, **changes) if shape else Recipe(**changes)
            assert recipe.docids in ("atomic", "naive", "semantic"), (study, label)
    assert shape_recipe("t5-small").arch["d_model"] == 512
    with pytest.raises(DsilabError, match="shape="):
        shape_recipe("t5-huge")


def test_throughput_measures_the_loop_and_the_bare_step():
    rows = throughput(load_collection("lab").topics(1), shapes=("minilm-seq2seq",), batch_sizes=(4,), steps=2,
                      warmup=1, buckets=(0,))
    (row,) = rows
    assert row["loop_step_ms"] > 0 and row["bare_step_ms"] > 0 and row["encoder"] == "frozen, states cached"
    assert row["loop_vs_bare"] == pytest.approx(row["bare_step_ms"] / row["loop_step_ms"], rel=0.02)
    assert row["loop_tokens_per_s"] == pytest.approx(
        row["batch"] * (row["mean_input_tokens"] + row["mean_docid_tokens"]) * 1000 / row["loop_step_ms"], rel=0.02)


def test_every_committed_scaling_row_has_a_study_that_reproduces_it():
    import json

    from dsilab.results import RESULTS_DIR

    result = json.loads((RESULTS_DIR / "scaling-scifact.json").read_text())
    defined = {f"{s}: {label.format(real=result['collection'])}" for s, rows in STUDIES.items() for label in rows}
    assert set(result["results"]) <= defined and not result.get("unfinished")
    assert result["studies"] == sorted({n.split(":")[0] for n in result["results"]})


def test_collect_reads_evaluation_lines_of_both_log_formats(tmp_path, monkeypatch):
    import importlib.util
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_dsi" / "collect.py"
    spec = importlib.util.spec_from_file_location("collect", path)
    collect = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(collect)
    result = tmp_path / "scaling.json"
    result.write_text(json.dumps({"collection": "scifact", "results": {}}))
    monkeypatch.setattr(collect, "RESULT", result)
    part = tmp_path / "run" / "x"
    part.mkdir(parents=True)
    row = "stability: 4-layer decoder, fp32"
    (part / "log.txt").write_text(f"[{row}] step 470: memo 0.012, dev Hits@1 0.000\n"
                                  f"[{row}] step 940: memo 0.066, dev Hits@1 0.049, train loss 1.2345, grad norm max 2.7e+04\n"
                                  "[unknown: row] step 1: memo 0.000, dev Hits@1 0.000\n")
    out = collect.collect([tmp_path / "run"])
    history = out["unfinished"][row]["history"]  # no rows.jsonl: cut short, kept apart from the results
    assert history[0] == {"step": 470, "memo Hits@1": 0.012, "dev Hits@1": 0.0}
    assert history[1]["train loss"] == 1.2345 and history[1]["grad norm max"] == 27000.0
    assert "unknown: row" not in out["unfinished"] and out["results"] == {}
