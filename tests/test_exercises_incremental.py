"""Checkers of chapters 10 (incremental indexing) and 11 (capstone): each accepts the reference answer and rejects a
wrong one, with a message that explains."""
from types import SimpleNamespace

import pytest

from dsilab.exercises import check


@pytest.fixture(scope="module")
def split(lab):
    from dsilab.incremental import split_collection

    return split_collection(lab.topics(3), new_share=0.2, seed=0)


def test_10_1_predict_bm25_after_adding_documents(split, capsys):
    from dsilab.exercises.incremental import bm25_before_after

    m = bm25_before_after(split)
    assert m["paired"]["queries"] == len(split.groups("test")["old"]) > 0
    right = m["paired"]["verdict"]
    wrong = next(w for w in ("higher", "lower", "too small to tell") if w != right)
    assert check("10.1", right, split=split, strict=True)
    assert "cannot forget" in capsys.readouterr().out
    assert not check("10.1", wrong, split=split)
    assert not check("10.1", 0.5, split=split)                 # a word is expected


def test_10_2_replay_examples(split):
    from dsilab.docids import make_docids
    from dsilab.incremental import UpdateConfig, update_examples
    from dsilab.recipes import Recipe

    initial = SimpleNamespace(recipe=Recipe(docids="atomic", seed=0))
    tree = make_docids(split.full, "atomic", seed=0)
    right = len(update_examples(initial, split, tree, "replay", UpdateConfig(replay=2.0)))
    new = len(update_examples(initial, split, tree, "continue", UpdateConfig()))
    assert right == new + round(2.0 * new)
    assert check("10.2", right, initial=initial, split=split, tree=tree, strict=True)
    assert not check("10.2", new, initial=initial, split=split, tree=tree)          # continued training only
    assert not check("10.2", right + 1, initial=initial, split=split, tree=tree)
    assert not check("10.2", "many", initial=initial, split=split, tree=tree)


def test_11_1_keeps_to_end_to_end_cpu_rows():
    results = {"BM25": {"family": "baseline", "Hits@1": 0.9, "Hits@10": 0.99, "ms_per_query": 2.0, "source": "bench all"},
               "IVF": {"family": "ANN over dense", "Hits@1": 0.8, "Hits@10": 0.9, "ms_per_query": 0.02},
               "DGI": {"family": "DGI", "Hits@1": 0.7, "Hits@10": 0.9, "ms_per_query": 0.1, "source": "bench all (H200)"}}
    assert check("11.1", "BM25", results=results)
    assert not check("11.1", "IVF", results=results) and not check("11.1", "DGI", results=results)


def test_11_3_predict_paired_live_rows():
    qrels = {f"q{i}": {f"d{i}": 1} for i in range(40)}
    a = {q: [(f"d{i}", 1.0)] for i, q in enumerate(qrels)}                           # always right
    b = {q: [(f"d{i}" if i % 2 else "x", 1.0)] for i, q in enumerate(qrels)}         # right on half
    runs = {"BM25": a, "Dense (MiniLM, exact)": b}
    assert check("11.3", "higher", runs=runs, qrels=qrels, strict=True)
    assert not check("11.3", "too small to tell", runs=runs, qrels=qrels)
    same = {"BM25": a, "Dense (MiniLM, exact)": a}
    assert check("11.3", "too small to tell", runs=same, qrels=qrels)
    assert not check("11.3", "bigger", runs=same, qrels=qrels)


def test_measure_keeps_what_paired_tests_need():
    """`measure(..., keep=)` gives the same row, plus the run, each group's judgements and per-document memorisation."""
    from conftest import TINY_T5
    from dsilab.data import synthetic_collection
    from dsilab.decode import search
    from dsilab.docids import make_docids
    from dsilab.experiments.incremental import measure
    from dsilab.incremental import split_collection
    from dsilab.metrics import paired_difference
    from dsilab.models import build_model
    from dsilab.recipes import memorisation
    from dsilab.tasks import TaskConfig, build_examples, doc_views

    coll = synthetic_collection(n_docs=20, n_topics=2, n_subtopics=1, doc_len=12, queries_per_doc=3,
                                vocab_per_topic=20, vocab_per_subtopic=10, n_common=20, seed=0)
    split = split_collection(coll, 0.2, seed=0)
    tree = make_docids(split.full, "atomic")
    model = build_model("t5-scratch", tree, build_examples(split.full, tree, TaskConfig(doc_len=12)), seed=0, **TINY_T5)
    retriever = SimpleNamespace(search=lambda queries, k=10: search(model, queries, k=k))
    kept = {}
    row = measure(retriever, split, "test", model, 12, keep=kept)
    assert row == measure(retriever, split, "test", model, 12)                       # keep changes nothing
    views = doc_views(split.full, "first", 12)
    memo = kept["memo"]["old"]
    assert set(memo) == set(split.old_ids) and set(memo.values()) <= {0.0, 1.0}
    assert abs(sum(memo.values()) / len(memo) - memorisation(model, {d: views[d][0] for d in split.old_ids})) < 1e-9
    assert set(kept["qrels"]) <= {"old", "new", "mixed"} and set(kept["run"]) >= set(kept["qrels"]["old"])
    same = paired_difference(kept["run"], kept["run"], kept["qrels"]["old"], "Hits@10")
    assert same["difference"] == 0 and same["verdict"] == "too small to tell"
