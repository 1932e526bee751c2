import json
import time
from collections import namedtuple

import pytest

from dsilab import DsilabError, load_collection
from dsilab.data import Doc, load_beir_hub, load_msmarco, synthetic_collection

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


#: Each offline failure names all three offline alternatives.
ALTERNATIVES = ('load_collection("lab")', "local BEIR-layout folder", 'load_collection("synthetic")')


@pytest.mark.parametrize("name", ["msmarco-v1.1", "beir/scifact", "irds:beir/scifact/test",
                                  "irds:msmarco-passage/dev/small", "irds:natural-questions/dev"])
def test_networked_sources_fail_fast_offline_naming_alternatives(name, monkeypatch, tmp_path):
    pytest.importorskip("ir_datasets")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from dsilab.core import hub_available

    hub_available.cache_clear()
    monkeypatch.chdir(tmp_path)  # no folder named like a hub dataset can shadow it
    t = time.perf_counter()
    try:
        load_collection(name, **({"n_queries": 1, "n_docs": 1} if name.startswith("irds:") else {}))
    except DsilabError as err:
        assert time.perf_counter() - t < 5
        assert all(alt in str(err) for alt in ALTERNATIVES), str(err)
    else:  # ir_datasets reads its own cache offline, as it should
        pytest.skip(f"{name} is in ir_datasets' cache on this machine")


def test_irds_ids_are_checked_before_any_download(monkeypatch):
    pytest.importorskip("ir_datasets")
    with pytest.raises(DsilabError, match="no dataset 'nope/x'"):
        load_collection("irds:nope/x")
    with pytest.raises(DsilabError, match="has no queries with qrels; name a split"):
        load_collection("irds:beir/scifact")  # the corpus alone: nothing to evaluate
    monkeypatch.setitem(__import__("sys").modules, "ir_datasets", None)  # as if the extra were not installed
    with pytest.raises(DsilabError, match="pip install ir-datasets. Without it, use load_collection"):
        load_collection("irds:beir/scifact/test")


def test_a_local_folder_wins_over_a_hub_name(tiny_beir, monkeypatch):
    monkeypatch.chdir(tiny_beir.parent.parent)
    (tiny_beir.parent.parent / "beir").mkdir()
    tiny_beir.rename(tiny_beir.parent.parent / "beir" / "scifact")
    assert load_collection("beir/scifact").doc_ids == ["a", "b", "c"]


class FakeIrds:
    """What ir_datasets.load returns, reduced to the iterators: namedtuple records like ir_datasets' own."""

    Doc = namedtuple("BeirTitleDoc", "doc_id text title")
    NqDoc = namedtuple("NqPassageDoc", "doc_id text document_title")
    Query = namedtuple("GenericQuery", "query_id text")
    Qrel = namedtuple("TrecQrel", "query_id doc_id relevance iteration")

    def __init__(self, docs=(), queries=(), qrels=()):
        self.docs, self.queries, self.qrels = list(docs), list(queries), list(qrels)
        self.read = 0  # documents read through docs_iter

    def has_docs(self):
        return bool(self.docs)

    def has_queries(self):
        return bool(self.queries)

    def has_qrels(self):
        return bool(self.qrels)

    def docs_iter(self):
        for doc in self.docs:
            self.read += 1
            yield doc

    def queries_iter(self):
        return iter(self.queries)

    def qrels_iter(self):
        return iter(self.qrels)


@pytest.fixture
def fake_irds(monkeypatch):
    """A tiny 'beir/toy' family in place of ir_datasets' registry: corpus, train and test splits."""
    ir_datasets = pytest.importorskip("ir_datasets")
    D, Q, R = FakeIrds.Doc, FakeIrds.Query, FakeIrds.Qrel
    docs = [D("d1", "Lava erupts from a volcano.", "Volcanoes"), D("d2", "Rivers carry water.", "Rivers"),
            D("d3", "Stars fuse hydrogen.", ""), D("d4", "Unjudged filler.", "Filler")]
    queries = [Q("1", "what erupts"), Q("2", "what carries water"), Q("3", "how stars shine"), Q("4", "filler q")]
    registry = {
        "beir/toy": FakeIrds(docs, queries),
        "beir/toy/train": FakeIrds(docs, queries, [R("1", "d1", 1, "0"), R("2", "d2", 1, "0"), R("2", "d1", 0, "0")]),
        "beir/toy/test": FakeIrds(docs, queries, [R(3, "d3", 2, "0"), R("4", "zz", 1, "0")]),  # zz: not in the corpus
    }

    def load(name):
        return registry[name]  # KeyError for an unknown id, as ir_datasets' registry

    monkeypatch.setattr(ir_datasets, "load", load)
    return registry


def test_irds_id_maps_to_a_collection_with_its_split(fake_irds):
    c = load_collection("irds:beir/toy/test")
    assert c.splits == ["test"]
    assert c.qrels["test"] == {"3": {"d3": 2}}  # ids become strings; a judgement of a missing doc is dropped
    assert c.split("test")[0] == {"3": "how stars shine"}
    assert c.docs["d1"] == Doc("d1", "Volcanoes", "Lava erupts from a volcano.") and c.docs["d3"].contents == "Stars fuse hydrogen."
    assert c.doc_ids == ["d1", "d2", "d3", "d4"] and c.meta["docs judged but not in the corpus"] == 1
    assert c.name == "irds-beir-toy-test"


def test_irds_splits_land_where_collection_expects_them(fake_irds, tmp_path):
    c = load_collection("irds:beir/toy", splits=["train", "test"])
    assert c.splits == ["train", "test"]
    assert c.qrels["train"] == {"1": {"d1": 1}, "2": {"d2": 1, "d1": 0}}
    queries, qrels = c.split("train")
    assert set(queries) == {"1", "2"} and set(c.queries) == {"1", "2", "3"}
    again = load_collection(c.save_beir(tmp_path / "toy"))  # the same collection as a BEIR folder
    assert again.qrels == c.qrels and again.docs == c.docs
    with pytest.raises(DsilabError, match="no dataset 'beir/toy/dev'"):
        load_collection("irds:beir/toy", splits=["dev"])


def test_irds_caps_keep_every_judged_document(fake_irds):
    c = load_collection("irds:beir/toy", splits=["train", "test"], n_queries=1, n_docs=1)
    assert c.qrels == {"train": {"1": {"d1": 1}}, "test": {"3": {"d3": 2}}}
    assert c.doc_ids == ["d1", "d3"]  # the judged documents, even past n_docs
    assert load_collection("irds:beir/toy/train", n_docs=3).doc_ids == ["d1", "d2", "d3"]

    class Store:  # ir_datasets' random access by id: the judged documents without a scan of the corpus
        def get_many(self, ids):
            return {d.doc_id: d for d in fake_irds["beir/toy"].docs if d.doc_id in ids}

    fake_irds["beir/toy"].docs_store = Store
    fake_irds["beir/toy"].read = 0
    c = load_collection("irds:beir/toy", splits=["test"], n_docs=1)
    assert c.doc_ids == ["d3"] and fake_irds["beir/toy"].read <= 2  # a look at the first (cache check), no scan


@pytest.mark.parametrize("dataset_id, split", [("beir/scifact/test", "test"), ("msmarco-passage/dev/small", "dev"),
                                               ("natural-questions/dev", "dev"), ("antique/train/split200-valid", "valid"),
                                               ("vaswani", "vaswani")])
def test_irds_split_names(dataset_id, split):
    from dsilab.data import _irds_split_name

    assert _irds_split_name(dataset_id) == split


def test_irds_records_without_title_or_text_fields(fake_irds):
    from dsilab.data import _irds_doc

    assert _irds_doc(FakeIrds.NqDoc("p1", "passage", "Page title")) == Doc("p1", "Page title", "passage")
    Plain = namedtuple("Doc", "doc_id body")
    Plain.default_text = lambda self: self.body
    assert _irds_doc(Plain("x", "body text")) == Doc("x", "", "body text")


def test_beir_hub_rows_map_to_a_collection():
    corpus = [{"_id": "a", "title": "T", "text": "x"}, {"_id": "b", "title": None, "text": "y"}]
    queries = [{"_id": "1", "text": "q1"}, {"_id": "2", "text": "q2"}, {"_id": "9", "text": "unjudged"}]
    qrels = {"test": [{"query-id": "2", "corpus-id": "b", "score": 1}],
             "train": [{"query-id": 1, "corpus-id": "a", "score": 1}]}
    c = load_beir_hub("toy", corpus=corpus, queries=queries, qrels=qrels)
    assert c.splits == ["train", "test"] and c.qrels["train"] == {"1": {"a": 1}}
    assert set(c.queries) == {"1", "2"} and c.docs["b"].title == "" and c.name == "beir-toy"


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
