"""Checkers of chapters 06 (augmentation) and 07 (efficient training) added with their "predict, then run" exercises,
and `metrics.paired_bounds`, which both chapters use to compare committed results that kept only shares."""
import json

from dsilab.results import RESULTS_DIR
from dsilab.exercises import check
from dsilab.metrics import paired_bounds


def test_paired_bounds_settles_only_what_every_pairing_settles():
    big = paired_bounds(0.4167, 0.6167, 300)        # 60 queries apart out of 300: lower under any pairing
    assert big["verdict"] == "lower" and big["CI least favourable"][1] < 0
    assert big["CI least favourable"][0] <= big["CI most favourable"][0]   # the least favourable interval is wider
    small = paired_bounds(0.5567, 0.6167, 300)      # 18 apart: lower only if the misses coincide
    assert small["CI most favourable"][1] < 0 < small["CI least favourable"][1]
    assert small["verdict"] == "cannot be ranked from the stored numbers"
    same = paired_bounds(0.5, 0.5, 100)
    assert same["verdict"] == "too small to tell" and same["difference"] == 0
    assert paired_bounds(0.9, 0.1, 50)["verdict"] == "higher"


def test_06_4_bm25_stopword_prediction():
    measured = {"A": 0.927, "B": 0.9206, "difference": 0.0063, "CI": [-0.0159, 0.0286], "verdict": "too small to tell",
                "queries": 315}
    assert check("06.4", "too small to tell", measured=measured, strict=True)
    assert not check("06.4", "lower", measured=measured)
    assert not check("06.4", 0.5, measured=measured)                 # a word is expected
    assert not check("06.4", "lower", measured={"verdict": None} | {})  # not a paired_difference result


def test_07_3_lora_step_prediction(capsys):
    step_ms = {"frozen encoder (default)": 83, "full fine-tuning": 282, "LoRA r=8": 284}
    assert check("07.3", "full fine-tuning", step_ms=step_ms, strict=True)
    assert "back-propagates" in capsys.readouterr().out
    assert not check("07.3", "frozen encoder", step_ms=step_ms)
    assert check("07.3", "frozen encoder", step_ms={**step_ms, "LoRA r=8": 90})   # follows the measurement
    assert not check("07.3", "full fine-tuning", step_ms={"LoRA r=8": 1})


def test_07_4_peak_minus_state():
    results = json.loads((RESULTS_DIR / "efficiency-lab.json").read_text())["results"]
    names = ("full fine-tuning", "LoRA r=8", "QLoRA r=8 (NF4)")
    right = {n: results[n]["peak_mb"] - results[n]["train_state_mb"] for n in names}
    assert check("07.4", right, results=results, strict=True)
    assert not check("07.4", {n: results[n]["peak_mb"] for n in names}, results=results)
    assert not check("07.4", {"LoRA r=8": right["LoRA r=8"]}, results=results)


def test_06_1_message_says_what_the_raw_list_deletes(capsys):
    from dsilab.augment import Num2Text, Pipeline, StopwordRemover

    text = "It is 2 km deep and 100 years old"
    run = lambda **kw: Pipeline([Num2Text(), StopwordRemover(keep_numbers=False, **kw)]).run(  # noqa: E731
        [text], target="queries")[0][0]
    fixed, plain = run(keep=("two", "one", "hundred")), run()
    capsys.readouterr()
    assert check("06.1", fixed, text=text, strict=True)
    out = capsys.readouterr().out
    if plain != fixed:                     # the raw list deletes number words: the message must say so
        assert "were deleted" in out and "nothing was lost" not in out and repr(plain) in out
    assert not check("06.1", plain, text=text) or plain == fixed
