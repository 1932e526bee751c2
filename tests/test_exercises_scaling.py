"""Chapter 08 · DSI at scale: its checkers accept the reference answer and reject a wrong one; the paired test built
from kept means brackets the truth."""
import pytest

from dsilab import DsilabError
from dsilab.exercises import check
from dsilab.metrics import paired_from_means


def test_paired_from_means_builds_both_pairings():
    worst = paired_from_means(0.6433, 0.6267, 300)
    best = paired_from_means(0.6433, 0.6267, 300, pairing="most favourable")
    assert (worst["A"], worst["B"], worst["queries"]) == (0.6433, 0.6267, 300)
    assert best["disagreements"] == 5 and best["verdict"] == "higher"   # 193 vs 188 hits: at least 5 disagreements
    assert worst["disagreements"] == 219 and worst["verdict"] == "too small to tell"  # 193 + 188 - 300 = 81 in both
    assert paired_from_means(0.6433, 0.42, 300)["verdict"] == "higher"   # holds for every pairing
    assert paired_from_means(0.42, 0.6433, 300)["verdict"] == "lower"
    with pytest.raises(DsilabError, match="share"):
        paired_from_means(0.5017, 0.5, 300)  # 150.5 hits: not a share of 300
    with pytest.raises(DsilabError, match="pairing"):
        paired_from_means(0.5, 0.5, 300, pairing="best")


def test_08_1_predict_live_memorisation(capsys):
    assert check("08.1", "higher", memo_a=0.16, memo_b=0.02, n=100, strict=True)
    assert "encoding" in capsys.readouterr().out
    assert not check("08.1", "too small to tell", memo_a=0.16, memo_b=0.02, n=100)
    assert check("08.1", "too small to tell", memo_a=0.06, memo_b=0.04, n=100)
    assert not check("08.1", 0.14, memo_a=0.16, memo_b=0.02, n=100)


def test_08_2_most_favourable_pairing():
    ctx = dict(hits_a=0.6433, hits_b=0.6267, n_queries=300)
    assert check("08.2", (5, "higher"), strict=True, **ctx)
    assert not check("08.2", (219, "too small to tell"), **ctx)
    assert not check("08.2", (5, "too small to tell"), **ctx)
    assert not check("08.2", "higher", **ctx)


def test_08_3_atomic_rows_grow_with_the_corpus():
    sizes = {1000: 17.216, 20000: 24.531, 100000: 55.331}
    per_doc = (24.531 - 17.216) * 1e6 / 19000
    assert check("08.3", (per_doc, 17.216 + per_doc * 99000 / 1e6), trainable_M=sizes, strict=True)
    assert not check("08.3", (384, 55.2), trainable_M=sizes)            # the bias is an extra weight per document
    assert not check("08.3", (per_doc, 38.5), trainable_M=sizes)        # the rest of the network counts too
    assert not check("08.3", 55.3, trainable_M=sizes)
