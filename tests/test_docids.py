"""Docids: unique, prefix-consistent with the tree, deterministic per seed; bad input fails clearly."""
import numpy as np
import pytest

from dsilab.core import DsilabError
from dsilab.data import synthetic_collection
from dsilab.docids import DocidTree, make_docids


@pytest.fixture(scope="module")
def coll():
    return synthetic_collection(n_docs=36, n_topics=3, n_subtopics=2, doc_len=20, queries_per_doc=3, vocab_per_topic=20, vocab_per_subtopic=10, n_common=30, seed=0)


def _emb(n, seed=0):
    x = np.random.default_rng(seed).normal(size=(n, 8)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("kind", ["atomic", "naive", "semantic"])
def test_docids_are_unique_and_invertible(coll, kind):
    tree = make_docids(coll, kind, k=3, c=4, embeddings=_emb(len(coll.docs)))
    assert len(set(tree.codes.values())) == len(coll.docs)
    for d in coll.doc_ids:
        assert tree.doc(tree.codes[d]) == d
        assert tree.parse(tree.tokens(d)) == d
    assert set(tree.token_vocab) == {t for d in coll.doc_ids for t in tree.tokens(d)}


def test_semantic_tree_is_prefix_consistent(coll):
    emb = _emb(len(coll.docs))
    tree = make_docids(coll, "semantic", k=3, c=4, embeddings=emb)
    # every node's children sum to its size, leaves hold at most c docs, no docid is a prefix of another
    for d, code in tree.codes.items():
        for i in range(len(code)):
            prefix = code[:i]
            assert sum(tree.children(prefix).values()) == len(tree.docs_under(prefix))
        assert tree.children(code) == {}
        assert len(tree.docs_under(code[:-1])) <= 4
        assert code[-1] < 4
    codes = set(tree.codes.values())
    assert not any(c[:i] in codes for c in codes for i in range(1, len(c)))
    assert tree.depths.max() >= 2 and sum(tree.children(()).values()) == len(coll.docs)


def test_semantic_docids_group_similar_docs(coll):
    # two well-separated blobs of documents must land under different top-level clusters
    n = len(coll.docs)
    emb = np.zeros((n, 4), dtype=np.float32)
    emb[: n // 2, 0], emb[n // 2 :, 1] = 1, 1
    emb += np.random.default_rng(0).normal(scale=0.01, size=emb.shape).astype(np.float32)
    tree = make_docids(coll, "semantic", k=2, c=100 // 10, embeddings=emb)
    first = [tree.codes[d][0] for d in coll.doc_ids]
    assert len(set(first[: n // 2])) == 1 and len(set(first[n // 2 :])) == 1 and first[0] != first[-1]


def test_deterministic_per_seed(coll):
    emb = _emb(len(coll.docs), 1)
    a = make_docids(coll, "semantic", k=3, c=4, seed=5, embeddings=emb)
    b = make_docids(coll, "semantic", k=3, c=4, seed=5, embeddings=emb)
    assert a.codes == b.codes


def test_naive_and_atomic_shapes(coll):
    naive = make_docids(coll, "naive")
    assert naive.codes[coll.doc_ids[12]] == (1, 2) and naive.tokens(coll.doc_ids[12]) == ["<n1>", "<n2>"]
    atomic = make_docids(coll, "atomic")
    assert atomic.depths.max() == 1 and len(atomic.token_vocab) == len(coll.docs)


def test_identical_embeddings_still_terminate(coll):
    emb = np.ones((len(coll.docs), 4), dtype=np.float32)
    tree = make_docids(coll, "semantic", k=2, c=3, embeddings=emb)
    assert len(set(tree.codes.values())) == len(coll.docs)


def test_bad_input(coll):
    with pytest.raises(DsilabError, match="k >= 2"):
        make_docids(coll, "semantic", k=1, embeddings=_emb(len(coll.docs)))
    with pytest.raises(DsilabError, match="collision"):
        DocidTree("atomic", {"a": (1,), "b": (1,)})
    with pytest.raises(DsilabError, match="empty"):
        DocidTree("atomic", {})
    with pytest.raises(DsilabError, match="docid kind="):
        make_docids(coll, "random")
    with pytest.raises(DsilabError, match="shape"):
        make_docids(coll, "semantic", embeddings=_emb(3))
    with pytest.raises(DsilabError, match="no document"):
        make_docids(coll, "atomic").doc((999,))


def test_c_smaller_than_k_splits_small_clusters_fully(coll):
    """A cluster of more than c but fewer than k docs cannot make k clusters: it splits into one doc each."""
    tree = make_docids(coll, "semantic", k=10, c=5, seed=0)
    assert len(set(tree.codes.values())) == len(coll.doc_ids)
    leaves = {}
    for code in tree.codes.values():
        leaves.setdefault(code[:-1], []).append(code[-1])
    assert max(len(v) for v in leaves.values()) <= 10


def test_a_tree_from_given_codes_residual_kind():
    """Codes built elsewhere (e.g. learned residual codes) become a DocidTree of kind "residual" with tokens <rN>."""
    tree = DocidTree("residual", {"a": (0, 16), "b": (0, 17), "c": (1, 16)})
    assert tree.tokens("b") == ["<r0>", "<r17>"] and tree.doc((1, 16)) == "c"
    assert tree.token_vocab == ["<r0>", "<r1>", "<r16>", "<r17>"] and tree.children((0,)) == {16: 1, 17: 1}
    with pytest.raises(DsilabError, match="collision"):
        DocidTree("residual", {"a": (0, 16), "b": (0, 16)})
    with pytest.raises(DsilabError, match="docid kind="):
        DocidTree("learned", {"a": (0,)})
    with pytest.raises(DsilabError, match="docid kind="):
        make_docids(synthetic_collection(n_docs=5), "residual")


def test_a_recipe_builds_residual_docids_with_enough_levels(coll, monkeypatch):
    """docids="residual": residual quantisation with k codes per level, as many levels as k**levels >= documents."""
    import dsilab.docids as docids
    from dsilab.recipes import Recipe

    monkeypatch.setattr(docids, "document_embeddings", lambda collection, space, seed: _emb(len(collection.docs)))
    tree = Recipe(docids="residual", k=4).make_docids(coll)  # 36 documents: 3 levels of 4 codes (64 paths)
    assert tree.kind == "residual" and len(set(tree.codes.values())) == len(coll.docs)
    assert min(len(c) for c in tree.codes.values()) >= 3 and tree.tokens(coll.doc_ids[0])[0].startswith("<r")
    assert "quantiser" not in tree.params  # a recipe's tree is plain data (a saved model writes it as JSON)
    assert Recipe(docids="residual", k=4).make_docids(coll).codes == tree.codes  # deterministic per seed


def test_relevance_based_docids_come_from_the_fine_tuned_encoder(coll):
    """docid_space="relevance": semantic docids over MiniLM fine-tuned on the training queries, not over MiniLM."""
    from dsilab.docids import document_embeddings
    from dsilab.recipes import Recipe

    tuned, plain = document_embeddings(coll, "relevance"), document_embeddings(coll, "minilm")
    assert tuned.shape == plain.shape and not np.allclose(tuned, plain, atol=1e-3)
    recipe = Recipe(docids="semantic", docid_space="relevance", k=3, c=4)
    tree = recipe.make_docids(coll)
    assert len(set(tree.codes.values())) == len(coll.docs) and "relevance-based docids" in recipe.label
    assert tree.codes == make_docids(coll, "semantic", k=3, c=4, embeddings=tuned).codes


def test_relevance_based_docids_refuse_what_they_cannot_build(coll):
    from dsilab.data import Collection
    from dsilab.docids import document_embeddings
    from dsilab.recipes import Recipe

    with pytest.raises(DsilabError, match="docid_space='nearest'"):
        Recipe(docid_space="nearest")
    with pytest.raises(DsilabError, match="semantic or residual"):
        Recipe(docids="atomic", docid_space="relevance")
    no_train = Collection(coll.name, coll.docs, {q: coll.queries[q] for q in coll.qrels["test"]}, {"test": coll.qrels["test"]})
    with pytest.raises(DsilabError, match="training queries"):
        document_embeddings(no_train, "relevance")
