"""One seam: every retriever of the course answers `search(queries, k) -> Run` (the `Retriever` protocol)."""
import zlib

import numpy as np
import pytest

from dsilab import DsilabError, Retriever
from dsilab.ann import IVF, LSH, EncodedIndex, Flat, KMeansTree, SoftTree


class HashEncoder:
    """A stand-in sentence encoder: a fixed unit vector per text (no model to load)."""

    dim = 8

    def encode(self, texts):
        rows = [np.random.default_rng(zlib.crc32(t.encode())).normal(size=self.dim) for t in texts]
        x = np.array(rows, dtype=np.float32).reshape(len(texts), self.dim)
        return x / np.linalg.norm(x, axis=1, keepdims=True)


TEXTS = [f"document number {i}" for i in range(40)]
QUERIES = {"a": "document number 3", "b": "something else", "c": "document number 17"}


def test_every_retriever_class_declares_the_protocol():
    from dsilab.baselines import BM25, Dense, FineTunedDense
    from dsilab.dgi import DGIResult
    from dsilab.incremental import Update
    from dsilab.recipes import DSIResult

    for cls in (BM25, Dense, FineTunedDense, DSIResult, DGIResult, Update, EncodedIndex):
        assert issubclass(cls, Retriever), cls
    # vector-level indexes are not retrievers of texts: they answer search_vectors
    assert not issubclass(Flat, Retriever) and not issubclass(SoftTree, Retriever)


def test_bm25_is_a_retriever_and_answers_a_run():
    from dsilab import load_collection
    from dsilab.baselines import BM25

    bm25 = BM25(load_collection("lab"))
    assert isinstance(bm25, Retriever)
    run = bm25.search({"q": "volcano lava"}, k=3)
    assert list(run) == ["q"] and len(run["q"]) == 3


@pytest.mark.parametrize("make, knobs", [
    (lambda x, ids: Flat(x, ids), {}),
    (lambda x, ids: KMeansTree(x, ids, k=3, depth=2), {"beam": 2}),
    (lambda x, ids: IVF(x, ids, nlist=4), {"nprobe": 2}),
    (lambda x, ids: LSH(x, ids, bits=16), {"candidates": 10}),
    (lambda x, ids: SoftTree(k=3, depth=1).fit(x, ids), {"beam": 2}),
])
def test_encoded_index_searches_texts_exactly_as_search_vectors(make, knobs):
    enc = HashEncoder()
    ids = [f"d{i}" for i in range(len(TEXTS))]
    index = make(enc.encode(TEXTS), ids)
    retriever = EncodedIndex(index, enc, **knobs)
    assert isinstance(retriever, Retriever)
    run = retriever.search(QUERIES, k=5)
    direct = index.search_vectors(enc.encode(list(QUERIES.values())), list(QUERIES), k=5, **knobs)
    assert run == direct.run and list(run) == list(QUERIES)
    assert np.array_equal(retriever.last.cost, direct.cost)  # the costs of the latest search stay readable
    assert retriever.search({}, k=5) == {}


def test_encoded_index_keeps_its_query_encoding_time_apart():
    """`encode_s` holds the latest search's encoding seconds, which `bench all` subtracts for an index-only latency."""
    import time

    class SlowEncoder(HashEncoder):
        def encode(self, texts):
            time.sleep(0.2)
            return super().encode(texts)

    enc = SlowEncoder()
    ids = [f"d{i}" for i in range(len(TEXTS))]
    retriever = EncodedIndex(Flat(HashEncoder().encode(TEXTS), ids), enc)
    start = time.perf_counter()
    retriever.search(QUERIES, k=5)
    total = time.perf_counter() - start
    assert 0.2 <= retriever.encode_s <= total


def test_encoded_index_errors_name_the_fix():
    enc = HashEncoder()
    with pytest.raises(DsilabError, match="search_vectors"):
        EncodedIndex(object(), enc)
    index = Flat(np.eye(4, dtype=np.float32))  # 4-d vectors, 8-d encoder: not the encoder that made them
    with pytest.raises(DsilabError, match="same encoder"):
        EncodedIndex(index, enc).search(QUERIES)


def test_ann_score_takes_ir_measures_names():
    from dsilab.ann import score

    enc = HashEncoder()
    ids = [f"d{i}" for i in range(len(TEXTS))]
    index = Flat(enc.encode(TEXTS), ids)
    res = index.search_vectors(enc.encode(list(QUERIES.values())), list(QUERIES), k=10)
    qrels = {"a": {"d3": 1}, "b": {"d5": 1}, "c": {"d17": 1}}
    truth = {q: [d for d, _ in res.run[q]] for q in QUERIES}
    course = score(res, truth, qrels, metrics=("Hits@1", "MRR@10", "Recall@10"))
    ir = score(res, truth, qrels, metrics=("Success@1", "RR@10", "R@10", "nDCG@10"))
    assert (course["Hits@1"], course["MRR@10"], course["Recall@10"]) == (ir["Success@1"], ir["RR@10"], ir["R@10"])
    assert course["Hits@1"] == pytest.approx(2 / 3) and "nDCG@10" in ir
