import json
import time

import pytest

from dsilab import DsilabError, load_collection
from dsilab.data import load_msmarco, synthetic_collection

from conftest import write_beir


def test_lab_collection_meets_its_card():
    c = load_collection("lab")
    assert len(c.docs) >= 300
    assert len(c.queries) >= 1000
    assert set(c.splits) == {"train", "dev", "test"}
    words = [len(d.text.split()) for d in c.docs.values()]
    assert min(words) >= 40 and max(words) <= 120
    train_docs = {d for rels in c.qrels["train"].values() for d in rels}
    assert train_docs == set(c.docs), "every passage keeps at least one train query"
    assert len(c.qrels["test"]) >= 200
    topics = {d["topic"] for d in c.meta["docs"].values()}
    assert len(topics) >= 12
    # splits are disjoint
    tr, dv, te = (set(c.qrels[s]) for s in ("train", "dev", "test"))
    assert not (tr & dv) and not (tr & te) and not (dv & te)


def test_beir_folder_roundtrip(tiny_beir, tmp_path):
    c = load_collection(tiny_beir)
    assert c.doc_ids == ["a", "b", "c"]
    queries, qrels = c.split("test")
    assert queries == {"1": "what comes out of a volcano", "2": "how do stars shine"}
    assert qrels == {"1": {"a": 1}, "2": {"c": 1}}
    assert c.splits == ["test"]  # a test-only collection works
    again = load_collection(c.save_beir(tmp_path / "copy"))
    assert again.docs == c.docs and again.qrels == c.qrels


def test_bad_input_is_reported_clearly(tmp_path):
    good = [{"_id": "a", "text": "x"}]
    q = [{"_id": "1", "text": "q"}]
    with pytest.raises(DsilabError, match="missing file"):
        load_collection(tmp_path)  # an empty folder
    bad = write_beir(tmp_path / "bad", [good[0], "{not json"], q, {"test": [("1", "a", 1)]})
    with pytest.raises(DsilabError, match=r"corpus.jsonl:2: malformed JSON"):
        load_collection(bad)
    dup = write_beir(tmp_path / "dup", good * 2, q, {"test": [("1", "a", 1)]})
    with pytest.raises(DsilabError, match="duplicate doc id 'a'"):
        load_collection(dup)
    unk = write_beir(tmp_path / "unk", good, q, {"test": [("1", "zzz", 1)]})
    with pytest.raises(DsilabError, match="unknown doc"):
        load_collection(unk)
    unq = write_beir(tmp_path / "unq", good, q, {"test": [("9", "a", 1)]})
    with pytest.raises(DsilabError, match="query '9'"):
        load_collection(unq)
    empty = write_beir(tmp_path / "empty", [], q, {"test": []})
    with pytest.raises(DsilabError, match="empty corpus"):
        load_collection(empty)
    with pytest.raises(DsilabError, match="unknown collection 'nope'"):
        load_collection("nope")
    with pytest.raises(DsilabError, match="no split .validation."):
        load_collection("lab").split("validation")


def test_msmarco_offline_fails_fast_naming_alternative(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from dsilab.core import hub_available

    hub_available.cache_clear()
    t = time.perf_counter()
    with pytest.raises(DsilabError, match='load_collection\\("lab"\\) or a BEIR-layout folder'):
        load_collection("msmarco-v1.1")
    assert time.perf_counter() - t < 5


def _marco_row(qid, query, passages, selected):
    return {
        "query_id": qid, "query": query, "query_type": "DESCRIPTION", "answers": ["x"],
        "wellFormedAnswers": [], "passages": {"passage_text": passages, "is_selected": selected, "url": ["u"] * len(passages)},
    }


def test_msmarco_schema_fixture(tmp_path):
    import datasets

    rows = [
        _marco_row(1, "what is a volcano", ["A volcano is a vent.", "Rivers flow."], [1, 0]),
        _marco_row(2, "no answer here", ["Nothing relevant."], [0]),  # skipped: nothing to evaluate
        _marco_row(3, "how do rivers flow", ["Rivers flow.", "Downhill, by gravity."], [0, 1]),
    ] + [_marco_row(10 + i, f"query {i}", [f"passage {i}"], [1]) for i in range(8)]
    path = tmp_path / "marco.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    ds = datasets.load_dataset("json", data_files=str(path), split="train")
    c = load_msmarco(n_queries=100, records=ds)
    assert len(c.queries) == 10 and "2" not in c.queries
    assert c.docs["p1"].text == "Rivers flow." and c.queries["3"] == "how do rivers flow"
    all_qrels = {q: r for split in c.qrels.values() for q, r in split.items()}
    assert all_qrels["1"] == {"p0": 1} and all_qrels["3"] == {"p2": 1}  # shared passage deduplicated
    assert sum(len(v) for v in c.qrels.values()) == 10
    assert len(load_msmarco(n_queries=2, records=ds).queries) == 2
    assert len(load_msmarco(n_queries=100, n_docs=3, records=ds).docs) <= 3


def test_synthetic_is_deterministic_and_sized():
    a, b = synthetic_collection(n_docs=50, seed=3), synthetic_collection(n_docs=50, seed=3)
    assert a.docs == b.docs and a.queries == b.queries and a.qrels == b.qrels
    assert len(a.docs) == 50 and set(a.splits) == {"train", "test"}
    assert synthetic_collection(n_docs=50, seed=4).docs != a.docs
    for qid, rels in a.qrels["test"].items():
        (did,) = rels
        assert a.queries[qid].split()[0] in a.docs[did].text  # the query's key word is in its doc


def test_topic_subset_keeps_whole_topics_and_their_queries():
    lab = load_collection("lab")
    sub = lab.topics(2)
    topics = {lab.meta["docs"][d]["topic"] for d in sub.doc_ids}
    assert len(topics) == 2 and len(sub.doc_ids) == 2 * 21
    for split, judged in sub.qrels.items():
        assert judged and all(set(rels) <= set(sub.doc_ids) for rels in judged.values())
    with pytest.raises(DsilabError, match="1..15"):
        lab.topics(0)
    with pytest.raises(DsilabError, match="no per-document topics"):
        synthetic_collection(n_docs=10, n_topics=2, seed=0).topics(1)
