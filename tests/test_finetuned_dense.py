"""FineTunedDense: MiniLM fine-tuned with in-batch negatives on a tiny synthetic collection (seconds on a CPU)."""
import numpy as np
import pytest

from conftest import write_beir
from dsilab import DsilabError, evaluate, load_collection
from dsilab.baselines import Dense, FineTunedDense
from dsilab.data import synthetic_collection

K = 5
FAST = dict(batch_size=4, lr=1e-4)  # 12 pairs -> 3 optimizer steps, enough to move the encoder


@pytest.fixture(scope="module")
def setup():
    coll = synthetic_collection(n_docs=12, n_topics=2, n_subtopics=2, doc_len=12, queries_per_doc=2,
                                vocab_per_topic=20, vocab_per_subtopic=10, n_common=20, seed=0)
    dense = Dense(coll)
    before = dense.encoder.encode(list(coll.split("train")[0].values()))
    return coll, dense, before, FineTunedDense(coll, seed=0, **FAST)


def test_search_returns_k_valid_docs_best_first(setup):
    coll, _, _, ft = setup
    queries, _ = coll.split("test")
    run = ft.search(queries, k=K)
    assert set(run) == set(queries)
    for ranked in run.values():
        docs, scores = zip(*ranked)
        assert len(ranked) == K and len(set(docs)) == K and set(docs) <= set(coll.doc_ids)
        assert list(scores) == sorted(scores, reverse=True)
    assert ft.search({}, k=K) == {}
    assert ft.n_pairs == 12 and ft.train_seconds > 0
    assert np.allclose(np.linalg.norm(ft.doc_emb, axis=1), 1, atol=1e-5)


def test_finetuning_moves_the_encoder_and_fits_the_training_queries(setup):
    coll, dense, before, ft = setup
    queries, qrels = coll.split("train")
    texts = list(queries.values())
    assert not np.allclose(ft.encoder.encode(texts), before, atol=1e-4)
    # The shared, cached encoder that Dense uses must stay untrained.
    assert np.allclose(dense.encoder.encode(texts), before, atol=1e-6)
    base = evaluate(dense.search(queries, k=10), qrels, ("MRR@10",))["MRR@10"]
    tuned = evaluate(ft.search(queries, k=10), qrels, ("MRR@10",))["MRR@10"]
    assert tuned >= base


def test_same_seed_same_run(setup):
    coll, _, _, ft = setup
    queries, _ = coll.split("test")
    assert FineTunedDense(coll, seed=0, **FAST).search(queries, k=K) == ft.search(queries, k=K)


def test_no_training_queries_fails_early(setup, tmp_path):
    coll, _, _, _ = setup
    only_test = synthetic_collection(n_docs=4, queries_per_doc=1, seed=0)  # a "test" split only
    with pytest.raises(DsilabError, match="no split 'train'"):
        FineTunedDense(only_test)
    with pytest.raises(DsilabError, match="split 'train'.*no \\(query, relevant doc\\) pairs.*training queries"):
        FineTunedDense(coll, exclude=set(coll.split("train")[0]))
    corpus = [{"_id": "a", "title": "", "text": "lava"}, {"_id": "b", "title": "", "text": "rivers"}]
    zero = load_collection(write_beir(tmp_path / "zero", corpus, [{"_id": "1", "text": "volcano"}],
                                      {"train": [("1", "a", 0)], "test": [("1", "a", 1)]}))
    with pytest.raises(DsilabError, match="training queries"):
        FineTunedDense(zero)
    with pytest.raises(DsilabError, match="batch_size >= 2"):
        FineTunedDense(coll, batch_size=1)
