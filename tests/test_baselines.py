import numpy as np
import pytest

from dsilab import evaluate, load_collection
from dsilab.baselines import BM25, Dense, tokenize
from dsilab.embed import load_encoder


def test_tokenize_drops_stopwords_and_case():
    assert tokenize("The Volcano, and THE lava!") == ["volcano", "lava"]
    assert tokenize("The end", stopwords=False) == ["the", "end"]


def test_bm25_finds_the_obvious_doc(tiny_beir):
    c = load_collection(tiny_beir)
    run = BM25(c).search({"1": "volcano lava magma"}, k=3)
    assert run["1"][0][0] == "a" and len(run["1"]) == 3


def test_bm25_sparse_scores_equal_rank_bm25():
    c = load_collection("lab")
    bm25 = BM25(c)
    queries = [c.docs["d000"].contents[:60], "jupiter jupiter moons", "no such word zzz"]
    expected = np.vstack([bm25.index.get_scores(tokenize(q)) for q in queries])
    assert np.allclose(bm25.scores(queries), expected, atol=1e-9)
    run = bm25.search({"a": queries[0]}, k=5, batch_size=1)
    assert run["a"][0][0] == "d000" and len(run["a"]) == 5


def test_encoder_is_offline_normalised_and_cached():
    enc = load_encoder()
    a = enc.encode(["a river flows to the sea", "stars fuse hydrogen"])
    assert a.shape == (2, 384) and a.dtype == np.float32
    assert np.allclose(np.linalg.norm(a, axis=1), 1, atol=1e-5)
    b = enc.encode_cached(["a river flows to the sea", "stars fuse hydrogen"])
    c = enc.encode_cached(["a river flows to the sea", "stars fuse hydrogen"])  # from disk
    assert np.allclose(a, b, atol=1e-5) and np.array_equal(b, c)
    assert enc.encode([]).shape == (0, 384)
    from dsilab.embed import Encoder

    fresh = Encoder()  # a cached corpus is read from disk without loading the network
    assert np.array_equal(fresh.encode_cached(["a river flows to the sea", "stars fuse hydrogen"]), c)
    assert fresh._model is None


def test_dense_ranks_semantically(tiny_beir):
    c = load_collection(tiny_beir)
    run = Dense(c).search({"q": "how does the sun produce light"}, k=3)
    assert run["q"][0][0] == "c"


def test_unknown_hub_encoder_fails_fast(monkeypatch):
    from dsilab import DsilabError
    from dsilab.embed import Encoder

    with pytest.raises(DsilabError, match="packaged MiniLM"):
        Encoder("sentence-transformers/all-mpnet-base-v2")


def test_baselines_are_strong_on_the_lab_collection():
    """Not a timing test: a sanity floor that catches a broken loader, tokenizer or metric."""
    c = load_collection("lab")
    queries, qrels = c.split("test")
    bm25 = evaluate(BM25(c).search(queries), qrels)
    dense = evaluate(Dense(c).search(queries), qrels)
    assert bm25["Hits@10"] > 0.6 and dense["Hits@10"] > 0.6
    assert 0 < bm25["Hits@1"] <= bm25["Hits@10"] <= 1


def test_a_training_run_releases_the_shared_encoder_which_reloads_on_use():
    from conftest import TINY_T5

    from dsilab.data import synthetic_collection
    from dsilab.recipes import Recipe, train_dsi

    coll = synthetic_collection(n_docs=12, n_topics=2, n_subtopics=1, doc_len=12, queries_per_doc=2, vocab_per_topic=20,
                                vocab_per_subtopic=10, n_common=20, seed=0)
    encoder = load_encoder()
    before = encoder.encode(["a query about vitamins"])
    assert encoder._model is not None
    train_dsi(coll, Recipe(docids="atomic", backbone="t5-scratch", arch=TINY_T5, max_steps=1, eval_every=1))
    assert encoder._model is None  # dropped before training: the notebook holds the DSI network alone
    np.testing.assert_allclose(encoder.encode(["a query about vitamins"]), before, atol=1e-6)  # reloaded, same model
