"""The "predict, then run" checkers of chapters 02 (soft tree) and 03 (hashing), on tiny synthetic vectors."""
import pytest

from dsilab.exercises import check
from dsilab.metrics import paired_difference


@pytest.fixture(scope="module")
def vs():
    from dsilab.ann import synthetic_vectors

    return synthetic_vectors(n=400, dim=24, n_train=60, n_test=20, n_clusters=4, n_subclusters=2, latent_dim=6)


def test_02_4_relaxed_against_hard_cost(vs, capsys):
    from dsilab.ann import KMeansTree, SoftTree

    tree = SoftTree(tree=KMeansTree(vs.database, vs.ids, k=3, depth=2, seed=0).tree).fit(vs.database, vs.ids)
    q = vs.test_queries
    hard, relaxed = tree.search_vectors(q, beam=4).cost, tree.expected_cost(q, beam=4, temperature=0.05)
    measured = paired_difference(dict(enumerate(map(float, relaxed))), dict(enumerate(map(float, hard))))
    assert measured["verdict"] == "lower"                      # sampled paths coincide: fewer distinct nodes
    ctx = dict(tree=tree, queries=q, beam=4, temperature=0.05)
    assert check("02.4", "lower", measured=measured, strict=True, **ctx)
    assert "independently" in capsys.readouterr().out          # the explanation comes with the verdict
    assert not check("02.4", "higher", measured=measured, **ctx)
    assert not check("02.4", 3, measured=measured, **ctx)      # a word, not a number
    assert not check("02.4", "lower", measured={**measured, "verdict": "higher"}, **ctx)


def test_03_4_pca_bits(vs, capsys):
    from dsilab.ann import LearnedHash
    from dsilab.ann.evaluation import per_query_recall

    models = {b: LearnedHash(bits=b, seed=0).fit(vs.database, vs.ids) for b in (4, 8)}
    per = {b: per_query_recall(m.search_vectors(vs.test_queries, vs.test_qids, candidates=20).run, vs.truth) for b, m in models.items()}
    measured = paired_difference(per[8], per[4])
    ctx = dict(vs=vs, candidates=20, bits=(4, 8))
    assert check("03.4", measured["verdict"], measured=measured, strict=True, **ctx)
    assert check("03.4", measured["verdict"], measured=measured, models=models, strict=True, **ctx)   # reused as given
    trained = LearnedHash(bits=8, seed=0).fit(vs.database, vs.ids, vs.train_queries, vs.train_targets)
    assert check("03.4", measured["verdict"], measured=measured, models={4: models[4], 8: trained}, strict=True, **ctx)  # rebuilt
    assert "principal axes" in capsys.readouterr().out
    wrong = next(w for w in ("higher", "lower", "too small to tell") if w != measured["verdict"])
    assert not check("03.4", wrong, measured=measured, **ctx)
    assert not check("03.4", measured["verdict"], measured={**measured, "verdict": wrong}, **ctx)


def test_per_query_at_budget_keeps_the_curve_mean(vs):
    import numpy as np

    from dsilab.ann import KMeansTree, recall_at_budget, sweep
    from dsilab.ann.evaluation import per_query_at_budget

    kmt = KMeansTree(vs.database, vs.ids, k=3, depth=2, seed=0)
    beams = [1, 2, 4]
    rows = sweep(kmt, vs, "beam", beams)
    costs, recalls = [r["distances/query"] for r in rows], [r["recall@10"] for r in rows]
    budget = (costs[0] + costs[1]) / 2
    per = per_query_at_budget(kmt, vs, "beam", beams, budget)
    assert set(per) == set(vs.test_qids)
    assert np.mean(list(per.values())) == pytest.approx(recall_at_budget(costs, recalls, budget))
    with pytest.raises(Exception):
        per_query_at_budget(kmt, vs, "beam", beams, costs[0] / 2)
