"""Checkers of chapters 04 (semantic docids) and 05 (DSI training): each accepts the right answer and rejects a wrong one."""
import numpy as np
import pytest

from dsilab.exercises import check


@pytest.fixture(scope="module")
def small(tiny_dsi):
    """A 10-document synthetic collection and random unit vectors for it (no encoder to load: milliseconds)."""
    coll = tiny_dsi[0]
    x = np.random.default_rng(0).normal(size=(len(coll.doc_ids), 16)).astype(np.float32)
    return coll, x / np.linalg.norm(x, axis=1, keepdims=True)


def test_04_4_another_seed(small, capsys):
    from dsilab.docids import make_docids

    coll, emb = small
    a, b = (make_docids(coll, "semantic", k=2, c=3, seed=s, embeddings=emb) for s in (0, 1))
    measured = float(np.mean([a.codes[d] == b.codes[d] for d in coll.doc_ids]))
    ctx = dict(collection=coll, embeddings=emb, k=2, c=3, seed=0)
    assert check("04.4", measured, measured=measured, strict=True, **ctx)
    out = capsys.readouterr().out
    assert "arbitrary order" in out and "within the tolerance" in out and "inside" not in out
    assert not check("04.4", measured + 0.5 if measured < 0.5 else measured - 0.5, measured=measured, **ctx)  # a far guess
    assert not check("04.4", "most", measured=measured, **ctx)                 # not a number
    assert not check("04.4", measured, measured=measured + 0.3, **ctx)         # the cell measured something else


def test_05_3_seen_queries(capsys):
    from dsilab.exercises.dsi_training import hits1_by_document
    from dsilab.metrics import paired_difference

    docs = [f"d{i}" for i in range(40)]
    train_qrels = {f"tr{i}": {d: 1} for i, d in enumerate(docs)}
    test_qrels = {f"te{i}": {d: 1} for i, d in enumerate(docs)}
    train_run = {q: [(next(iter(r)), 1.0)] for q, r in train_qrels.items()}                        # every training query hit
    test_run = {q: [(next(iter(r)) if i % 2 else "d0", 1.0)] for i, (q, r) in enumerate(test_qrels.items())}  # half missed
    assert hits1_by_document(train_run, train_qrels)["d3"] == 1.0 and hits1_by_document(test_run, test_qrels)["d2"] == 0.0
    word = paired_difference(hits1_by_document(train_run, train_qrels), hits1_by_document(test_run, test_qrels))["verdict"]
    assert word == "higher"
    ctx = dict(train_run=train_run, train_qrels=train_qrels, test_run=test_run, test_qrels=test_qrels)
    assert check("05.3", "higher", measured=word, strict=True, **ctx)
    assert "memorised rather than learned" in capsys.readouterr().out
    assert not check("05.3", "lower", measured=word, **ctx)
    assert not check("05.3", "much higher", measured=word, **ctx)              # not one of the choices
    assert not check("05.3", "higher", measured="lower", **ctx)                # the cell measured something else



def test_whose_ranking_counts_queries_whose_first_document_is_bm25s():
    bm25 = {"q1": [("d0", 2.0), ("d1", 1.0)], "q2": [("d1", 2.0), ("d0", 1.0)]}
    plan = {"q1": [("d0", 0.0), ("d1", -1.0)], "q2": [("d1", 0.0), ("d0", -1.0)]}   # both first documents BM25's
    plain = {"q1": [("d1", 0.0), ("d0", -1.0)], "q2": [("d1", 0.0), ("d0", -1.0)]}  # one of two
    ctx = dict(plan_run=plan, dsi_run=plain, bm25_run=bm25)
    assert check("05.5", (1.0, 0.5), strict=True, **ctx)
    assert not check("05.5", (0.5, 1.0), **ctx)
    assert not check("05.5", 0.75, **ctx)


def test_05_6_teacher_temperature(tiny_dsi, capsys):
    from dsilab.distill import prefix_distributions
    from dsilab.models import build_model

    coll, tree, examples = tiny_dsi
    model = build_model("t5-scratch", tree, examples, seed=0, vocab_size=120, d_model=32, layers=1, decoder_layers=1,
                        heads=2, d_ff=64)
    teacher_list = [(d, 0.8 - 0.05 * j) for j, d in enumerate(coll.doc_ids[:5])]
    losses = tuple(prefix_distributions(model, "some question", teacher_list, t)[1] for t in (0.01, 1.0))
    ctx = dict(model=model, query="some question", teacher_list=teacher_list)
    assert check("05.6", losses, strict=True, **ctx)
    assert "top-1 label" in capsys.readouterr().out
    assert not check("05.6", losses[::-1], **ctx)
    assert not check("05.6", losses[0], **ctx)
