"""dsilab.ann: soft routing, hard descent, exact cost counts, learned codes, and bad input."""
import numpy as np
import pytest
import torch

from dsilab.ann import (
    IVF, LSH, Flat, KMeansTree, LearnedHash, SoftTree, Tree, budget_for_recall, exact_neighbours,
    recall_at_budget, recall_at_k, synthetic_vectors, truth_from_indices,
)
from dsilab.core import DsilabError

from conftest import unit_blobs


@pytest.fixture(scope="module")
def blobs():
    return unit_blobs(6, 40, 16, 0.4, 60, 0.2)


def hand_tree():
    """root -> {1, 2}; 1 -> {3, 4}; 2 -> {5, 6}; leaves hold 1, 2, 3 and 4 rows."""
    c = np.zeros((7, 2), dtype=np.float32)
    c[1], c[2] = [1, 0], [-1, 0]
    c[3], c[4], c[5], c[6] = [1, 1], [1, -1], [-1, 1], [-1, -1]
    items = [[], [], [], [0], [1, 2], [3, 4, 5], [6, 7, 8, 9]]
    return Tree([[1, 2], [3, 4], [5, 6], [], [], [], []], c, items)


def test_routing_probabilities_sum_to_one(blobs):
    x, q = blobs
    st = SoftTree(k=3, depth=2).fit(x)
    cond = st.routing_probabilities(q[:5], temperature=0.3)
    for v in st.tree.internal:
        np.testing.assert_allclose(cond[:, st.children[v]].sum(1), 1.0, rtol=1e-5)
    path = st.path_probabilities(q[:5], temperature=0.3)
    np.testing.assert_allclose(path[:, st.tree.leaves].sum(1), 1.0, rtol=1e-5)


def test_hard_descent_is_argmax_of_soft_routing_at_low_temperature(blobs):
    x, q = blobs
    st = SoftTree(k=3, depth=2).fit(x)
    for query in q[:20]:
        leaf = st.descend(query, beam=1).leaves[0]
        p = st.path_probabilities(query, temperature=1e-4)
        assert leaf == st.tree.leaves[int(np.argmax(p[st.tree.leaves]))]


def test_gradients_reach_the_centroids(blobs):
    x, q = blobs
    st = SoftTree(k=3, depth=2, lam=0.5).fit(x)
    tgt = st._target_leaves(exact_neighbours(q, x, 5), len(q))
    log_p = st._log_path(torch.from_numpy(q), 0.1)
    loss = st._nll(log_p, tgt) + st._expected_cost(log_p, 2).mean()
    loss.backward()
    grad = st._centroids.grad
    assert grad is not None and torch.all(grad[1:].abs().sum(1) > 0)


def test_training_lowers_the_loss_and_is_deterministic(blobs):
    x, q = blobs
    nb = exact_neighbours(q, x, 5)
    a = SoftTree(k=3, depth=2, epochs=5, t_start=0.2, t_end=0.1).fit(x, None, q, nb)
    b = SoftTree(k=3, depth=2, epochs=5, t_start=0.2, t_end=0.1).fit(x, None, q, nb)
    np.testing.assert_array_equal(a.centroids, b.centroids)
    assert a.history[-1]["nll"] < a.history[0]["nll"]


def test_cost_counts_are_exact_on_a_hand_built_tree():
    x = np.random.default_rng(0).normal(size=(10, 2))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    tree = hand_tree()
    kt = KMeansTree(x, tree=tree)
    q = np.array([[0.9, 0.4]], dtype=np.float32)  # closest to node 1, then leaf 3
    d = kt.search_vectors(q, beam=1)
    assert d.cost[0] == 2 + 2 + 1  # root's 2 children, node 1's 2 children, leaf 3's single row
    assert kt.search_vectors(q, beam=2).cost[0] == 2 + 2 + 2 + (1 + 2)  # both subtrees expanded, leaves 3 and 4
    assert kt.search_vectors(q, beam=4).cost[0] == 2 + 2 + 2 + 10
    st = SoftTree(tree=hand_tree()).fit(x)
    desc = st.descend(q[0], beam=1)
    assert desc.path == [0, 1, 3] and desc.cost == 5 and list(desc.candidates) == [0]
    assert Flat(x).search_vectors(q).cost[0] == 10


def test_ivf_cost_and_exactness(blobs):
    x, q = blobs
    ivf = IVF(x, nlist=6)
    res = ivf.search_vectors(q, nprobe=6)
    assert np.all(res.cost == 6 + len(x))
    truth = truth_from_indices([f"q{i}" for i in range(len(q))], exact_neighbours(q, x, 10), [f"d{i}" for i in range(len(x))])
    assert recall_at_k(res.run, truth) == pytest.approx(1.0)
    assert recall_at_k(Flat(x).search_vectors(q).run, truth) == pytest.approx(1.0)


def test_codes_are_plus_minus_one_and_learning_helps_lsh(blobs):
    x, q = blobs
    lh = LearnedHash(bits=16, epochs=3, negatives=64).fit(x, queries=q, targets=exact_neighbours(q, x, 5))
    codes = lh.codes(x)
    assert set(np.unique(codes)) <= {-1.0, 1.0}
    lsh = LSH(x, bits=16)
    res = lh.search_vectors(q, candidates=20)
    assert np.all(res.cost == 16 + 20) and np.all(res.extra["hamming"] == len(x))
    assert set(np.unique(lsh.codes(q))) <= {-1.0, 1.0}


def test_curve_reading():
    costs, recalls = [10, 20, 40], [0.5, 0.7, 0.9]
    assert budget_for_recall(costs, recalls, 0.8) == pytest.approx(30)
    assert recall_at_budget(costs, recalls, 30) == pytest.approx(0.8)
    assert np.isnan(recall_at_budget(costs, recalls, 5))
    assert np.isnan(budget_for_recall(costs, recalls, 0.95))


def test_synthetic_vectors_are_seeded_and_unit_norm():
    a = synthetic_vectors(n=500, dim=24, n_train=50, n_test=20, n_clusters=4, n_subclusters=2, latent_dim=6)
    b = synthetic_vectors(n=500, dim=24, n_train=50, n_test=20, n_clusters=4, n_subclusters=2, latent_dim=6)
    np.testing.assert_array_equal(a.database, b.database)
    np.testing.assert_allclose(np.linalg.norm(a.database, axis=1), 1.0, rtol=1e-5)
    assert a.train_targets.shape == (50, 10) and len(a.truth) == 20


def test_bad_input_raises(blobs):
    x, q = blobs
    with pytest.raises(DsilabError, match="dimension"):
        KMeansTree(x, k=3, depth=1).search_vectors(q[:, :8])
    with pytest.raises(DsilabError, match="dimension"):
        LSH(x, bits=8).search_vectors(np.zeros((2, 5)))
    with pytest.raises(DsilabError, match="empty"):
        Flat(np.zeros((0, 16)))
    with pytest.raises(DsilabError, match="empty"):
        SoftTree().fit(np.zeros((0, 16)))
    with pytest.raises(DsilabError, match="k must be at least 2"):
        SoftTree(k=1)
    with pytest.raises(DsilabError, match="k must be at least 2"):
        KMeansTree(x, k=1)
    with pytest.raises(DsilabError, match="beam"):
        KMeansTree(x, k=3, depth=1).search_vectors(q, beam=0)
    with pytest.raises(DsilabError, match="beam"):
        SoftTree(k=3, depth=1).fit(x).search_vectors(q, beam=0)
    with pytest.raises(DsilabError, match="bits"):
        LSH(x, bits=65)


def test_learned_indexes_take_settings_then_data_in_fit(blobs):
    """scikit-learn's order: SoftTree(settings).fit(database, ids, queries, targets); the old order is refused clearly."""
    x, q = blobs
    with pytest.raises(DsilabError, match="fit"):
        SoftTree(x)
    with pytest.raises(DsilabError, match="fit"):
        LearnedHash(x)
    with pytest.raises(DsilabError, match="fit"):
        SoftTree(k=3, depth=1).search_vectors(q)
    with pytest.raises(DsilabError, match="fit"):
        LearnedHash(bits=8).search_vectors(q)
    with pytest.raises(DsilabError, match="targets"):
        SoftTree(k=3, depth=1).fit(x, queries=q)
    untrained = SoftTree(k=3, depth=2).fit(x)
    assert untrained.history == [] and np.allclose(untrained.centroids, KMeansTree(x, k=3, depth=2).tree.centroids)
