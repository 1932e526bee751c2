"""Every checker accepts the reference answer and rejects a wrong one with a helpful message."""
import pytest

from dsilab import DsilabError, evaluate, load_collection
from dsilab.exercises import CHECKERS, check, reciprocal_rank_fusion


@pytest.fixture(scope="module")
def lab():
    return load_collection("lab")


def test_not_attempted_runs_but_strict_raises(lab, capsys):
    assert check("00.2", None, collection=lab) is False
    assert "not attempted" in capsys.readouterr().out
    with pytest.raises(DsilabError, match="reference solution"):
        check("00.2", None, strict=True, collection=lab)
    with pytest.raises(DsilabError, match="no checker"):
        check("99.9", 1)


def test_00_checkers(lab):
    queries, qrels = lab.split("test")
    right = evaluate({q: [("d000", 1.0)] for q in queries}, qrels)["Hits@1"]
    assert check("00.1", right, collection=lab) and not check("00.1", 0.5, collection=lab)
    assert check("00.2", (0, 0), collection=lab, strict=True)
    assert not check("00.2", (3, 0), collection=lab)


def test_rrf_checker_and_reference():
    a = {"q": [("x", 9.0), ("y", 8.0)]}
    b = {"q": [("y", 1.0), ("z", 0.5)]}
    fused = reciprocal_rank_fusion([a, b])
    assert [d for d, _ in fused["q"]] == ["y", "x", "z"]  # y: 1/62 + 1/61 beats x: 1/61
    qrels = {"q": {"x": 1}}
    assert check("01.3", fused, bm25_run=a, dense_run=b, qrels=qrels)
    assert not check("01.3", {"q": [("z", 1.0)]}, bm25_run=a, dense_run=b, qrels=qrels)
    assert not check("01.3", [1, 2], bm25_run=a, dense_run=b, qrels=qrels)


def test_every_checker_is_exercised_somewhere():
    """New checkers must get a test here (a right and a wrong answer) or in their module's tests."""
    import pathlib

    tested = pathlib.Path(__file__).read_text() + "".join(p.read_text() for p in pathlib.Path(__file__).parent.glob("test_*.py"))
    missing = [e for e in CHECKERS if f'"{e}"' not in tested]
    assert not missing, f"checkers without a test: {missing}"


def test_01_bm25_checker(lab):
    from dsilab.baselines import BM25

    queries, qrels = lab.split("test")
    right = evaluate(BM25(lab, stopwords=False).search(queries, k=10), qrels, ["Hits@1"])["Hits@1"]
    assert check("01.1", right, collection=lab) and not check("01.1", right - 0.01, collection=lab)
