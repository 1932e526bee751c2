"""Constrained decoding: the trie allows exactly the valid docids; beam search never emits anything else."""
import pytest
import torch

from dsilab.core import DsilabError
from dsilab.data import synthetic_collection
from dsilab.decode import DocidTrie, search, trace
from dsilab.docids import make_docids
from dsilab.models import build_model
from dsilab.tasks import TaskConfig, build_examples


def test_trie_allows_exactly_the_valid_docids():
    seqs = {"a": [5, 6, 1], "b": [5, 7, 1], "c": [8, 1], "d": [5, 6, 9, 1]}
    trie = DocidTrie(seqs)
    assert trie.allowed([]) == [5, 8]
    assert trie.allowed([5]) == [6, 7]
    assert trie.allowed([5, 6]) == [1, 9]
    assert trie.doc([5, 6, 1]) == "a" and trie.doc([5, 6]) is None and trie.doc([9]) is None
    # enumerate every path the trie allows: exactly the given sequences
    paths, stack = [], [[]]
    while stack:
        p = stack.pop()
        if p in trie:
            paths.append(tuple(p))
        stack += [p + [t] for t in trie.allowed(p)]
    assert sorted(paths) == sorted(tuple(s) for s in seqs.values())
    with pytest.raises(DsilabError, match="not the start"):
        trie.allowed([8, 8])
    with pytest.raises(DsilabError, match="collision"):
        DocidTrie({"a": [1, 2], "b": [1, 2]})


@pytest.fixture(scope="module")
def coll():
    return synthetic_collection(n_docs=30, n_topics=3, n_subtopics=2, doc_len=12, queries_per_doc=3,
                                vocab_per_topic=20, vocab_per_subtopic=10, n_common=30, seed=0)


def _model(coll, kind, seed):
    import numpy as np

    emb = np.random.default_rng(seed).normal(size=(len(coll.docs), 6)).astype("float32")
    tree = make_docids(coll, kind, k=3, c=4, embeddings=emb)
    ex = build_examples(coll, tree, TaskConfig(doc_len=12))
    return build_model("t5-scratch", tree, ex, seed=seed, vocab_size=120, d_model=16, layers=1, decoder_layers=1,
                       heads=2, d_ff=32), tree


@pytest.mark.parametrize("kind,seed", [("atomic", 0), ("naive", 1), ("naive", 2), ("semantic", 3), ("semantic", 4)])
def test_constrained_decoding_never_emits_invalid_docids(coll, kind, seed):
    # untrained random models put mass everywhere: constraints must still hold for every beam
    model, tree = _model(coll, kind, seed)
    queries, _ = coll.split("test")
    run = search(model, queries, k=5, beam_size=5)
    assert set(run) == set(queries)
    for ranked in run.values():
        docs = [d for d, _ in ranked]
        assert len(docs) == 5 and len(set(docs)) == 5 and set(docs) <= set(coll.doc_ids)
        scores = [s for _, s in ranked]
        assert scores == sorted(scores, reverse=True) and all(s <= 0 for s in scores)


def test_scores_are_sequence_logprobs(coll):
    # a docid's score is the sum of its tokens' log-probabilities under the docid head (softmax over docid tokens + EOS)
    model, tree = _model(coll, "semantic", 0)
    q = next(iter(coll.split("test")[0].values()))
    (doc, score), *_ = search(model, {"q": q}, k=3)["q"]
    enc = model.tokenize_sources([q])
    model.eval()  # search scores without dropout
    labels = torch.tensor([model.docid_sequences()[doc]])
    with torch.no_grad():
        logits = model.docid_logits(model.encode(enc["input_ids"], enc["attention_mask"]), enc["attention_mask"],
                                    model.shift_right(labels))
    logp = torch.log_softmax(logits, -1).gather(-1, model._docid_index[labels][..., None]).sum()
    assert score == pytest.approx(float(logp), abs=1e-4)


@pytest.mark.parametrize("backbone", ["t5-scratch", "minilm-seq2seq"])
def test_docid_head_equals_the_full_head_restricted(coll, backbone):
    # the fast path (only the docid rows are scored) computes exactly the docid columns of the full output layer
    tree = make_docids(coll, "naive")
    ex = build_examples(coll, tree, TaskConfig(doc_len=12, indexing="bidirectional"))
    arch = dict(vocab_size=120, d_model=16, layers=1, decoder_layers=1, heads=2, d_ff=32) if backbone == "t5-scratch" \
        else dict(decoder_layers=1)
    model = build_model(backbone, tree, ex, **arch).eval()
    batch = model.batch(ex[:6])
    hidden = model.encode(batch["input_ids"], batch["attention_mask"])
    dec = model.shift_right(batch["labels"])
    with torch.no_grad():
        fast = model.docid_logits(hidden, batch["attention_mask"], dec)
        full = model.decode(hidden, batch["attention_mask"], dec)[..., model.docid_vocab]
    assert torch.allclose(fast, full, atol=1e-4)
    assert torch.isfinite(model(**batch))  # docid targets and text targets (docid2text) in one batch


def test_a_cpu_search_in_token_bounded_chunks_ranks_the_same(coll, monkeypatch):
    """On a CPU a beam search holds at most CPU_BEAM_TOKENS (query, beam, token) rows at once: long inputs go a few at
    a time, and each query's ranking does not depend on its chunk."""
    from dsilab import decode

    model, tree = _model(coll, "semantic", 0)
    docs = {d: coll.docs[d].text for d in coll.doc_ids}  # documents: the longest inputs a search reads
    whole = search(model, docs, k=3, batch_size=64)
    sizes = []
    monkeypatch.setattr(decode, "CPU_BEAM_TOKENS", 3 * 3 * 14)  # a chunk of about 3 documents of 12 words
    real = decode._chunks
    monkeypatch.setattr(decode, "_chunks", lambda *a: (sizes.append(len(c)) or c for c in real(*a)))
    small = search(model, docs, k=3, batch_size=64)
    assert sum(sizes) == len(docs) and 1 <= max(sizes) <= 3 and len(sizes) >= len(docs) // 3
    assert small.keys() == whole.keys()
    for q in whole:
        assert [d for d, _ in small[q]] == [d for d, _ in whole[q]]
        assert [s for _, s in small[q]] == pytest.approx([s for _, s in whole[q]], abs=1e-5)


def test_full_beam_is_exact_for_atomic(coll):
    # with atomic docids the beam search is one softmax: the ranking equals sorting all docs by log p
    model, tree = _model(coll, "atomic", 0)
    q = next(iter(coll.split("test")[0].values()))
    ranked = search(model, {"q": q}, k=len(coll.docs))["q"]
    assert len(ranked) == len(coll.docs)


def test_trace_records_steps(coll):
    model, tree = _model(coll, "semantic", 1)
    tr = trace(model, "some query words", k=3, top=4)
    assert len(tr.ranking) == 3 and tr.steps
    assert len(tr.steps) >= max(tree.depths)  # one step per docid digit + EOS
    step0 = tr.steps[0]
    assert step0.beams == [([], 0.0)] and all(0 <= m <= 1 for m in step0.invalid_mass)
    assert any(c.kept for c in step0.candidates) and all(c.allowed for c in step0.candidates if c.kept)


def test_a_lexical_plan_adds_its_scores_and_steers_the_beam(coll):
    # PAG's plan: a docid scores log p + its plan score (0 outside the plan); a full beam finds the exact ranking, and a
    # plan far above any log p puts its own documents first, in plan order
    from dsilab.baselines import BM25
    from dsilab.decode import PrefixBonus, lexical_plan

    model, tree = _model(coll, "semantic", 0)
    queries = dict(list(coll.split("test")[0].items())[:4])
    n = len(coll.docs)
    plain = search(model, queries, k=n, beam_size=n)
    plan = lexical_plan(BM25(coll), queries, weight=0.5, depth=5)
    guided = search(model, queries, k=n, beam_size=n, plan=plan)
    for q in queries:
        bonus = dict(plan[q])
        assert plan[q][0][1] == pytest.approx(0.5) and all(0 < s <= 0.5 for _, s in plan[q])
        expected = sorted(((d, s + bonus.get(d, 0.0)) for d, s in plain[q]), key=lambda x: -x[1])
        assert [d for d, _ in guided[q]] == [d for d, _ in expected]
        assert [s for _, s in guided[q]] == pytest.approx([s for _, s in expected], abs=1e-4)
    strong = search(model, queries, k=3, plan=lexical_plan(BM25(coll), queries, weight=1e4, depth=3))
    top3 = lexical_plan(BM25(coll), queries, weight=1.0, depth=3)
    for q in queries:  # BM25's top 3 (ties between them left to the model), whenever BM25 finds 3 documents
        plan_of = dict(top3[q])
        if len(plan_of) == 3:
            assert {d for d, _ in strong[q]} == set(plan_of)
            assert [plan_of[d] for d, _ in strong[q]] == sorted(plan_of.values(), reverse=True)
    # a prefix is worth the best plan score below it (the root: the best of all); an unplanned prefix 0
    b = PrefixBonus({"a": 2.0, "b": 1.0}, {"a": [5, 6, 1], "b": [5, 7, 1], "c": [8, 1]})
    assert b.best[(5,)] == 2.0 and b.best[(5, 7)] == 1.0 and (8,) not in b.best and b.best[()] == 2.0
    assert b.delta([5], 10, torch.device("cpu")).tolist()[6:8] == [0.0, -1.0]
    with pytest.raises(DsilabError, match="each >= 0"):
        search(model, queries, k=3, plan={q: [("d0", -1.0)] for q in queries})
    with pytest.raises(DsilabError, match="documents this model indexed"):
        search(model, queries, k=3, plan={q: [("nowhere", 1.0)] for q in queries})
    with pytest.raises(DsilabError, match="lacks 1 of the queries"):
        search(model, queries, k=3, plan={q: plan[q] for q in list(queries)[1:]})
