"""Training examples: indexing in both directions, retrieval, pseudo-queries, mixing ratio, doc views."""
import pytest

from dsilab.core import DsilabError
from dsilab.data import synthetic_collection
from dsilab.docids import make_docids
from dsilab.tasks import REVERSE_PREFIX, TaskConfig, build_examples, describe_examples, doc_views


@pytest.fixture(scope="module")
def coll():
    return synthetic_collection(n_docs=20, n_topics=2, n_subtopics=2, doc_len=30, queries_per_doc=3,
                                vocab_per_topic=20, vocab_per_subtopic=10, n_common=30, seed=0)


@pytest.fixture(scope="module")
def tree(coll):
    return make_docids(coll, "naive")


def test_inputs2targets_and_retrieval(coll, tree):
    ex = build_examples(coll, tree, TaskConfig(doc_len=8))
    counts = describe_examples(ex)
    assert counts == {"index": 20, "retrieval": len(coll.split("train")[1])}
    first = ex[0]
    assert first.target == tree.text(first.doc_id) and len(first.source.split()) == 8


def test_bidirectional_uses_a_prefix_only_on_the_docid_side(coll, tree):
    ex = build_examples(coll, tree, TaskConfig(indexing="bidirectional", query_split=None))
    rev = [e for e in ex if e.task == "docid2text"]
    fwd = [e for e in ex if e.task == "index"]
    assert len(rev) == len(fwd) == 20
    assert all(e.source == REVERSE_PREFIX + tree.text(e.doc_id) for e in rev)
    assert not any(e.source.startswith(REVERSE_PREFIX) for e in fwd)


def test_random_spans_are_seeded(coll):
    a = doc_views(coll, "spans", length=5, n_spans=3, seed=1)
    b = doc_views(coll, "spans", length=5, n_spans=3, seed=1)
    c = doc_views(coll, "spans", length=5, n_spans=3, seed=2)
    assert a == b and a != c
    assert all(len(v) == 3 and all(len(s.split()) == 5 for s in v) for v in a.values())
    for doc_id, spans in a.items():
        assert all(s in " ".join(coll.docs[doc_id].contents.split()) for s in spans)


def test_zero_shot_mix_and_ratio(coll, tree):
    ex = build_examples(coll, tree, TaskConfig(query_split=None, pseudo_per_doc=2, ratio=0.5))
    counts = describe_examples(ex)
    assert counts == {"index": 20, "pseudo": 40}
    ex = build_examples(coll, tree, TaskConfig(query_split=None, pseudo_per_doc=2, ratio=2.0))
    assert describe_examples(ex)["index"] == 80


def test_bad_config(coll, tree):
    with pytest.raises(DsilabError, match="indexing"):
        TaskConfig(indexing="both")
    with pytest.raises(DsilabError, match="no split"):
        build_examples(coll, tree, TaskConfig(query_split="nope"))
    with pytest.raises(DsilabError, match="no training examples"):
        build_examples(coll, tree, TaskConfig(indexing="none", query_split=None))
    other = synthetic_collection(n_docs=5, n_topics=1, n_subtopics=1, queries_per_doc=1, n_common=10, seed=0)
    with pytest.raises(DsilabError, match="another collection"):
        build_examples(other, tree)


def test_pseudo_queries_pass_the_round_trip_filter_wherever_examples_are_built(coll, tree):
    # build_examples and the recipe's pipeline read the same TaskConfig.pseudo_queries: the filter applies to both
    from dsilab.querygen import roundtrip_filter

    task = TaskConfig(query_split=None, pseudo_per_doc=3, query_filter_k=1)
    kept, report = task.pseudo_queries(coll)
    unfiltered, none = TaskConfig(query_split=None, pseudo_per_doc=3).pseudo_queries(coll)
    assert none is None and (kept, report) == roundtrip_filter(coll, unfiltered, 1)
    pseudo = [e for e in build_examples(coll, tree, task) if e.task == "pseudo"]
    assert len(pseudo) == sum(map(len, kept.values())) < sum(map(len, unfiltered.values()))


def test_generator_steps_cap_the_trained_generator():
    from dsilab.querygen import QGConfig

    assert TaskConfig(generator_steps=7, seed=3).generator_config == QGConfig(seed=3, max_steps=7)
    assert TaskConfig(seed=3).generator_config == QGConfig(seed=3)  # the cache key of every generator trained so far
    with pytest.raises(DsilabError, match="generator_steps"):
        TaskConfig(generator_steps=0)
