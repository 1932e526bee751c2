"""Checkers of chapters 00 (welcome) and 01 (baselines): each accepts the reference answer and rejects a wrong one."""
import pytest

from dsilab import DsilabError, evaluate
from dsilab.baselines import BM25, reciprocal_rank_fusion
from dsilab.exercises import check
from dsilab.metrics import chance, paired_difference


def test_00_3_random_ranking_prediction(lab, capsys):
    queries, qrels = lab.split("test")
    level = chance(qrels, len(lab.docs), 10)
    context = dict(measured=0.035, interval=[0.016, 0.054], n_docs=len(lab.docs), k=10)
    assert check("00.3", level, strict=True, **context)
    out = capsys.readouterr().out
    assert "inside" in out and "10/315" in out and "chance level" in out
    assert not check("00.3", 0.5, **context)
    assert "above" in capsys.readouterr().out
    assert not check("00.3", "a tenth", **context)
    with pytest.raises(DsilabError):
        check("00.3", 0.0, strict=True, **context)


def test_01_1_reports_the_paired_verdict(lab, capsys):
    queries, qrels = lab.split("test")
    right = evaluate(BM25(lab, stopwords=False).search(queries, k=10), qrels, ["Hits@1"])["Hits@1"]
    assert check("01.1", right, collection=lab, strict=True)
    out = capsys.readouterr().out
    assert "paired" in out and any(w in out for w in ("higher", "lower", "too small to tell"))


def test_01_2_tuned_bm25(lab, capsys):
    from dsilab.exercises.baselines import tune_bm25

    grid = {"k1": (0.5, 2.0), "b": (0.0, 0.75)}
    dev = tune_bm25(lab, grid)
    assert len(dev) == 4 and all(0 < v <= 1 for v in dev.values())
    k1, b = max(dev, key=dev.get)
    queries, qrels = lab.split("test")
    score = evaluate(BM25(lab, k1=k1, b=b).search(queries, k=10), qrels, ["Hits@1"])["Hits@1"]
    assert check("01.2", (k1, b, score), collection=lab, grid=grid, strict=True)
    assert "Against the default" in capsys.readouterr().out
    worst = min(dev, key=dev.get)
    if dev[worst] < dev[(k1, b)] - 1e-9:                      # a setting that is not the best on dev
        assert not check("01.2", (*worst, score), collection=lab, grid=grid)
        assert "not the best on dev" in capsys.readouterr().out
    assert not check("01.2", (k1, b, score + 0.01), collection=lab, grid=grid)  # right setting, wrong test score
    assert not check("01.2", 0.93, collection=lab, grid=grid)                   # not a triple


def test_01_3_scores_the_answer_and_reports_verdicts(capsys):
    a = {"q1": [("x", 9.0), ("y", 8.0)], "q2": [("z", 3.0), ("w", 2.0)]}
    b = {"q1": [("y", 1.0), ("x", 0.5)], "q2": [("w", 1.0), ("z", 0.5)]}
    qrels = {"q1": {"x": 1}, "q2": {"w": 1}}
    fused = reciprocal_rank_fusion([a, b])
    assert check("01.3", fused, bm25_run=a, dense_run=b, qrels=qrels, strict=True)
    out = capsys.readouterr().out
    assert "fused minus BM25" in out and "fused minus dense" in out
    # Every document ties here (first in one run, second in the other): the other order of the ties passes too,
    # and the message scores that order, not the reference's.
    swapped = {q: list(reversed(r)) for q, r in fused.items()}
    assert check("01.3", swapped, bm25_run=a, dense_run=b, qrels=qrels, strict=True)
    h_ref = evaluate(fused, qrels, ["Hits@1"])["Hits@1"]
    h_swap = evaluate(swapped, qrels, ["Hits@1"])["Hits@1"]
    assert h_ref != h_swap and f"fused Hits@1 {h_swap:.3f}" in capsys.readouterr().out


def test_01_4_low_overlap_prediction(capsys):
    dense = {f"q{i}": 1.0 for i in range(40)}
    bm25 = {f"q{i}": float(i % 2) for i in range(40)}                 # dense right on every query, BM25 on half
    low = paired_difference(dense, bm25)
    rest = paired_difference(bm25, dense)
    assert low["verdict"] == "higher" and rest["verdict"] == "lower"
    assert check("01.4", "higher", measured=low["verdict"], low=low, rest=rest, strict=True)
    out = capsys.readouterr().out
    assert "low-overlap queries: +0.500" in out and "paraphrases" in out
    assert not check("01.4", "lower", measured=low["verdict"], low=low, rest=rest)
    assert not check("01.4", 0.1, measured=low["verdict"], low=low, rest=rest)  # a word is expected
    with pytest.raises(DsilabError):
        check("01.4", "too small to tell", measured=low["verdict"], low=low, rest=rest, strict=True)
