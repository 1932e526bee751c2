"""Query generation: the span baseline, the generator trained offline, the round-trip filter and the quality read."""
import pytest

from dsilab import core
from dsilab.core import DsilabError
from dsilab.data import load_collection
from dsilab.querygen import QGConfig, generate_queries, query_quality, real_queries, roundtrip_filter, train_generator

TINY_QG = QGConfig(max_steps=40, eval_every=10, batch_size=8, patience=10, source_len=64)


@pytest.fixture(scope="module")
def lab1():
    return load_collection("lab").topics(1)


def test_span_queries_are_seeded_distinct_cached_and_from_the_doc(lab1):
    pq = generate_queries(lab1, 4, "span", seed=0)
    assert pq == generate_queries(lab1, 4, "span", seed=0, cache=False)
    assert pq != generate_queries(lab1, 4, "span", seed=1, cache=False)
    assert set(pq) == set(lab1.doc_ids) and all(len(v) == 4 and len(set(v)) == 4 and all(v) for v in pq.values())
    for doc_id, qs in pq.items():
        words = set(core_words(lab1.docs[doc_id].contents))
        assert all(set(q.split()) <= words for q in qs)


def core_words(text: str) -> list[str]:
    import re

    return re.findall(r"[a-z0-9][a-z0-9'\-]*", text.lower())


@pytest.mark.slow  # trains to convergence: `make test` runs it, `make test-quick` does not
def test_trained_generator_learns_samples_distinct_queries_and_is_cached(lab1, tmp_path, monkeypatch):
    monkeypatch.setenv("DSILAB_CACHE", str(tmp_path))
    gen = train_generator(lab1, TINY_QG)
    losses = [h["dev loss"] for h in gen.history]
    assert len(losses) == 4 and min(losses) < losses[0]           # held-out loss falls: it learns queries
    docs = lab1.contents[:3]
    a = gen.generate(docs, n=3, seed=0)
    assert a == gen.generate(docs, n=3, seed=0) and len(a) == 3
    assert all(1 <= len(qs) <= 3 and len(set(qs)) == len(qs) and all(q.strip() for q in qs) for qs in a)
    again = train_generator(lab1, TINY_QG)                      # from the disk cache: the same weights
    assert again.history == gen.history and again.generate(docs, n=3, seed=0) == a
    queries = generate_queries(lab1, 2, "trained", seed=0, config=TINY_QG)
    assert set(queries) == set(lab1.doc_ids) and all(1 <= len(v) <= 2 for v in queries.values())


def test_roundtrip_filter_keeps_only_traceable_queries(lab1):
    queries = generate_queries(lab1, 4, "span", seed=0)
    queries[lab1.doc_ids[0]] = queries[lab1.doc_ids[0]] + ["zzz unrelated words qqq"]
    kept, report = roundtrip_filter(lab1, queries, k=1)
    assert report["queries"] == sum(map(len, queries.values())) and report["kept"] == sum(map(len, kept.values()))
    assert report["dropped"] >= 1 and "zzz unrelated words qqq" not in kept[lab1.doc_ids[0]]
    assert all(set(kept[d]) <= set(queries[d]) for d in queries)
    quality = query_quality(lab1, kept)
    assert quality["source is BM25 top-1"] == 1.0 and quality["queries"] == report["kept"]


def test_query_quality_reads_each_generator(lab1):
    q = query_quality(lab1, generate_queries(lab1, 4, "span", seed=0))
    lo, hi = q["source is BM25 top-1 CI"]
    assert 0 <= lo <= q["source is BM25 top-1"] <= hi <= 1 and q["source in BM25 top-10"] >= q["source is BM25 top-1"]
    assert q["words found in the document"] == 1.0 and q["distinct per doc (mean)"] == 4
    real = real_queries(lab1)
    queries, qrels = lab1.split("train")
    assert sum(map(len, real.values())) == sum(len(r) for r in qrels.values())
    assert query_quality(lab1, real)["copies of a training query"] == 1.0


def test_bad_requests_fail_clearly(lab1, monkeypatch):
    with pytest.raises(DsilabError, match="unknown query generator"):
        generate_queries(lab1, 2, "t5")
    with pytest.raises(DsilabError, match="n_per_doc"):
        generate_queries(lab1, 0, "span")
    no_train = load_collection("lab").topics(1)
    no_train.qrels.pop("train")
    with pytest.raises(DsilabError, match="generator='span'"):
        train_generator(no_train, TINY_QG, cache=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    core.hub_available.cache_clear()
    try:
        with pytest.raises(DsilabError, match="trained"):
            generate_queries(lab1, 2, "doc2query/msmarco-t5-base-v1", cache=False)
    finally:
        core.hub_available.cache_clear()
    with pytest.raises(DsilabError, match="k >= 1"):
        roundtrip_filter(lab1, {}, k=0)


def test_a_dense_teacher_labels_each_generated_query_with_its_top_documents(lab1):
    from collections import Counter

    from dsilab.baselines import FineTunedDense
    from dsilab.querygen import teacher_labels
    from dsilab.tasks import TaskConfig

    queries = generate_queries(lab1, 2, "span", seed=0)
    labelled, report = teacher_labels(lab1, queries, k=2, seed=0)
    n = sum(map(len, queries.values()))
    assert report["queries"] == n and set(labelled) == set(lab1.doc_ids)
    assert Counter(q for qs in labelled.values() for q in qs) == Counter(2 * [q for qs in queries.values() for q in qs])
    teacher = FineTunedDense(lab1, "train", seed=0)  # the same seeded teacher: its top 1 is each query's first label
    pairs = [(d, q) for d, qs in queries.items() for q in qs]
    top1 = teacher.search({str(i): q for i, (_, q) in enumerate(pairs)}, 1)
    assert report["source is the teacher's top 1"] == round(sum(top1[str(i)][0][0] == d for i, (d, _) in enumerate(pairs)) / n, 4)
    assert all(q in labelled[top1[str(i)][0][0]] for i, (_, q) in enumerate(pairs))
    with pytest.raises(DsilabError, match="query_teacher_k"):
        TaskConfig(pseudo_per_doc=0, query_teacher_k=1)
    with pytest.raises(DsilabError, match="k >= 1"):
        teacher_labels(lab1, queries, k=0)
