"""dsilab.ann soft sorting, joint (query adapter) training and the routing ceiling."""
import numpy as np
import pytest
import torch

from dsilab.ann import LearnedHash, SoftTree, Tree, exact_neighbours
from dsilab.ann.joint import QueryAdapter
from dsilab.ann.learning import oracle_recall, t_interval
from dsilab.ann.softsort import rank_among, soft_rank, soft_topk_loss
from dsilab.core import DsilabError

from conftest import unit_blobs


@pytest.fixture(scope="module")
def blobs():
    x, q = unit_blobs(6, 40, 16, 0.4, 80, 0.2)
    return x, q, exact_neighbours(q, x, 5)


def test_soft_rank_tends_to_the_hard_rank_as_temperature_falls():
    scores = torch.tensor([[0.3, -1.0, 2.0, 0.5, 0.45], [1.0, 0.0, -0.5, 3.0, 0.2]])
    hard = torch.argsort(torch.argsort(-scores, dim=1), dim=1).float() + 1  # 1 = largest
    errors = []
    for t in (1.0, 0.3, 0.1, 0.03, 0.001):
        r = soft_rank(scores, t)
        assert torch.equal(torch.argsort(r, dim=1), torch.argsort(-scores, dim=1))  # the order is kept at every T
        errors.append(float((r - hard).abs().max()))
    assert all(a > b for a, b in zip(errors, errors[1:])), errors
    assert torch.allclose(soft_rank(scores, 1e-3), hard, atol=1e-6)


def test_gradients_flow_through_the_soft_top_k_loss():
    items = torch.tensor([[0.2, -0.1]], requires_grad=True)
    pool = torch.tensor([[0.5, 0.0, 0.3, -0.4]], requires_grad=True)
    loss = soft_topk_loss(rank_among(items, pool, 0.5, pool_weight=10.0), top=3).mean()
    loss.backward()
    assert torch.all(items.grad < 0) and pool.grad.abs().sum() > 0  # raising an item's score lowers the loss


def test_softsort_loss_trains_a_tiny_tree_past_its_start(blobs):
    x, q, nb = blobs
    st = SoftTree(k=3, depth=2, loss="softsort", top=2, epochs=15, lr=3e-3, t_start=0.2, t_end=0.1).fit(x)
    tgt = st._target_leaves(nb, len(q))

    def loss():
        with torch.no_grad():
            return float(st._softsort(st._log_path(torch.from_numpy(q), 0.1), tgt))

    before = loss()
    st.fit(x, queries=q, targets=nb)
    assert loss() < before


def test_softsort_loss_trains_a_tiny_hash_past_its_start(blobs):
    x, q, nb = blobs
    truth = {f"q{i}": [f"d{j}" for j in row] for i, row in enumerate(nb)}
    from dsilab.ann import recall_at_k

    def recall(h):
        return recall_at_k(h.search_vectors(q, candidates=10).run, truth, k=5)

    h = LearnedHash(bits=8, init="lsh", loss="softsort", top=10, epochs=10, negatives=64, seed=0)
    before = recall(h.fit(x))
    assert recall(h.fit(x, queries=q, targets=nb)) > before


def test_the_adapter_starts_as_the_identity_and_training_moves_it(blobs):
    x, q, nb = blobs
    for rank in (0, 4):
        np.testing.assert_array_equal(QueryAdapter(16, rank=rank).apply(q), q)
    plain = SoftTree(k=3, depth=2).fit(x)
    joint = SoftTree(k=3, depth=2, adapter=True, epochs=8, lr=3e-3, t_start=0.2, t_end=0.1).fit(x)
    np.testing.assert_allclose(joint.path_probabilities(q, 0.1), plain.path_probabilities(q, 0.1), rtol=1e-6)
    joint.fit(x, queries=q, targets=nb)
    assert joint.history[-1]["loss"] < joint.history[0]["loss"]
    assert np.abs(joint.adapter.matrix - np.eye(16)).max() > 0
    # documents never pass through the adapter: routed as documents, a vector skips the moved query map
    assert not np.allclose(joint.log_path_probabilities(x[:3], documents=True), joint.log_path_probabilities(x[:3]))
    h = LearnedHash(bits=8, adapter=True, epochs=3, negatives=64).fit(x)
    np.testing.assert_array_equal(h.query_signs(q), h.signs(q))  # identity before training
    h.fit(x, queries=q, targets=nb)
    assert np.abs(h.adapter.matrix - np.eye(16)).max() > 0


def test_bad_learning_settings_raise(blobs):
    x, _, _ = blobs
    with pytest.raises(DsilabError, match="softsort"):
        SoftTree(loss="rank")
    with pytest.raises(DsilabError, match="top"):
        LearnedHash(bits=8, loss="softsort", top=0)
    with pytest.raises(DsilabError, match="rank_temperature"):
        SoftTree(loss="softsort", rank_temperature=0.0)
    with pytest.raises(DsilabError, match="adapter_rank"):
        SoftTree(adapter=True, adapter_rank=-1)
    with pytest.raises(DsilabError, match="nothing to train"):
        SoftTree(k=3, depth=1, learn_centroids=False, bias=False).fit(x, None, x[:5], np.zeros((5, 1), dtype=int))
    with pytest.raises(DsilabError, match="temperature"):
        soft_rank(torch.zeros(3), 0.0)
    with pytest.raises(DsilabError, match="two"):
        t_interval([0.5])


def test_oracle_router_on_a_hand_built_tree():
    c = np.zeros((7, 2), dtype=np.float32)
    tree = Tree([[1, 2], [3, 4], [5, 6], [], [], [], []], c, [[], [], [], [0], [1, 2], [3, 4, 5], [6, 7, 8, 9]])
    nb = np.array([[0, 1]])  # leaves 3 and 4, both under node 1: cost 2 + 2 + 1 + 2 = 7
    assert oracle_recall(tree, nb, budget=7, k=2) == pytest.approx(1.0)
    assert oracle_recall(tree, nb, budget=5, k=2) == pytest.approx(0.5)  # leaf 3 only (2 + 2 + 1)
    assert oracle_recall(tree, nb, budget=4, k=2) == pytest.approx(0.0)
    mean, lo, hi = t_interval([0.5, 0.6, 0.7])
    assert mean == pytest.approx(0.6) and lo < mean < hi


def test_ceiling_note_reads_the_numbers_it_is_given():
    """The sentence follows the measured gains: an oracle under +5 points means +5 is out of reach."""
    from dsilab.experiments.ann import ceiling_note

    base = {"held_out_queries": 50, "budget": 90.0}
    low = ceiling_note({**base, "gain_points": {"oracle router": 3.0, "soft tree": 1.0, "soft tree, strong fit": 1.0,
                                                "soft tree, strong fit incl. these queries": 2.0}})
    seen = ceiling_note({**base, "gain_points": {"oracle router": 17.0, "soft tree": 0.7, "soft tree, strong fit": 0.0,
                                                 "soft tree, strong fit incl. these queries": 13.0}})
    assert "out of reach" in low and "+3.0" in low
    assert "carries over to new queries only in part" in seen and "+13.0" in seen
    assert ceiling_note({"error": "never reaches 80%"}).endswith("never reaches 80%")
