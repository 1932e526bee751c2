"""Chapter 09's "predict, then run" checker: a made-up comparison where the answer is known, and the committed one."""
import json

from dsilab.results import RESULTS_DIR
from dsilab.experiments.dgi import per_query_scores
from dsilab.exercises import check
from dsilab.metrics import paired_difference


def _result(tail_gain: bool):
    """Two variants on 40 queries (20 head, 20 tail): without weight sharing, the tail gains every query or none."""
    buckets = {f"q{i}": "B0" if i < 20 else ("B3" if i < 30 else "B4") for i in range(40)}
    def hits(v, q, b):
        return float(b == "B0" or (v == "DGI w/o weight sharing" and tail_gain))
    rows = [{"variant": v, "seed": s, "memo Hits@1": 1.0, "steps": 1, "stopped": "converged",
             "per_query": {"Hits@10": {q: hits(v, q, b) for q, b in buckets.items()}}, "pop bias": {q: 0.0 for q in buckets}}
            for s in (0, 1) for v in ("DGI", "DGI w/o weight sharing")]
    return {"query bucket": buckets, "variants": ["DGI", "DGI w/o weight sharing"], "rows": rows}


def test_per_query_scores_averages_seeds_and_keeps_a_bucket():
    r = _result(tail_gain=True)
    tail = per_query_scores(r, "DGI w/o weight sharing", "Hits@10", "B3+B4")
    assert len(tail) == 20 and set(tail.values()) == {1.0}
    assert set(per_query_scores(r, "DGI", "Hits@10", "B0").values()) == {1.0}
    assert len(per_query_scores(r, "DGI", "pop bias")) == 40


def test_09_4_predict_then_run(capsys):
    gain = _result(tail_gain=True)
    assert check("09.4", "higher", result=gain, strict=True)
    assert not check("09.4", "too small to tell", result=gain)
    assert "measured 'higher'" in capsys.readouterr().out
    same = _result(tail_gain=False)
    assert check("09.4", "too small to tell", result=same, strict=True)
    assert not check("09.4", "lower", result=same)
    assert not check("09.4", "maybe", result=same)                        # not one of the three words
    wrong = {"difference": 0.5, "verdict": "higher"}
    assert not check("09.4", "too small to tell", measured=wrong, result=same)   # a measurement that is not this one
    assert "is not the paired difference" in capsys.readouterr().out


def test_09_4_on_the_committed_scifact_result(capsys):
    r = json.loads((RESULTS_DIR / "dgi-scifact.json").read_text())
    measured = paired_difference(per_query_scores(r, "DGI w/o weight sharing", "Hits@10", "B3+B4"),
                                 per_query_scores(r, "DGI", "Hits@10", "B3+B4"))
    assert measured["queries"] == 50 and measured["verdict"] == "too small to tell"
    assert check("09.4", "too small to tell", measured=measured, result=r, strict=True)
    assert not check("09.4", "lower", measured=measured, result=r)
    assert "only" in capsys.readouterr().out   # the explanation counts the queries on which the two differ
