"""Every checker accepts the reference answer and rejects a wrong one with a helpful message."""
import pytest

from dsilab import DsilabError, evaluate
from dsilab.baselines import reciprocal_rank_fusion
from dsilab.exercises import check, load_all


def test_not_attempted_runs_but_strict_raises(lab, capsys):
    assert check("00.2", None, collection=lab) is False
    assert "not attempted" in capsys.readouterr().out
    with pytest.raises(DsilabError, match="reference solution"):
        check("00.2", None, strict=True, collection=lab)
    with pytest.raises(DsilabError, match="no checker"):
        check("99.9", 1)


def test_00_checkers(lab):
    queries, qrels = lab.split("test")
    right = evaluate({q: [("d000", 1.0)] for q in queries}, qrels)["Hits@1"]
    assert check("00.1", right, collection=lab) and not check("00.1", 0.5, collection=lab)
    assert check("00.2", (0, 0), collection=lab, strict=True)
    assert not check("00.2", (3, 0), collection=lab)


def test_rrf_checker_and_reference():
    a = {"q": [("x", 9.0), ("y", 8.0)]}
    b = {"q": [("y", 1.0), ("z", 0.5)]}
    fused = reciprocal_rank_fusion([a, b])
    assert [d for d, _ in fused["q"]] == ["y", "x", "z"]  # y: 1/62 + 1/61 beats x: 1/61
    qrels = {"q": {"x": 1}}
    assert check("01.3", fused, bm25_run=a, dense_run=b, qrels=qrels)
    assert not check("01.3", {"q": [("z", 1.0)]}, bm25_run=a, dense_run=b, qrels=qrels)
    assert not check("01.3", [1, 2], bm25_run=a, dense_run=b, qrels=qrels)


def test_every_checker_is_exercised_somewhere():
    """New checkers must get a test here (a right and a wrong answer) or in their module's tests."""
    import pathlib

    tested = pathlib.Path(__file__).read_text() + "".join(p.read_text() for p in pathlib.Path(__file__).parent.glob("test_*.py"))
    missing = [e for e in load_all() if f'"{e}"' not in tested]
    assert not missing, f"checkers without a test: {missing}"


def test_01_bm25_checker(lab):
    from dsilab.baselines import BM25

    queries, qrels = lab.split("test")
    right = evaluate(BM25(lab, stopwords=False).search(queries, k=10), qrels, ["Hits@1"])["Hits@1"]
    assert check("01.1", right, collection=lab) and not check("01.1", right - 0.01, collection=lab)


# -- 02 / 03: tiny synthetic vectors instead of the lab embeddings -------------------------------
@pytest.fixture(scope="module")
def vs():
    from dsilab.ann import synthetic_vectors

    return synthetic_vectors(n=400, dim=24, n_train=60, n_test=20, n_clusters=4, n_subclusters=2, latent_dim=6)


def _rc(index, vs, **search):
    from dsilab.ann import score

    s = score(index.search_vectors(vs.test_queries, vs.test_qids, **search), vs.truth)
    return s["recall@10"], s["distances/query"]


def test_02_checkers(vs, capsys):
    import copy

    from dsilab.ann import SoftTree

    trees = {lam: SoftTree(k=3, depth=2, seed=0, lam=lam, epochs=2).fit(vs.database, vs.ids, vs.train_queries, vs.train_targets)
             for lam in (1.0, 0.0)}
    tree = trees[1.0]
    temps = {t: (_rc(tree, vs, beam=1, temperature=t)[0], _rc(tree, vs, beam=4, temperature=t)[0]) for t in (0.02, 0.05, 0.1, 0.3)}
    assert len({v[0] for v in temps.values()}) == 1                  # beam 1 never depends on the temperature
    assert check("02.1", temps, tree=tree, vs=vs, strict=True)
    assert not check("02.1", {t: (v[1], v[0]) for t, v in temps.items()}, tree=tree, vs=vs)
    assert "temperature=T" in capsys.readouterr().out
    assert not check("02.1", [0.5], tree=tree, vs=vs)
    assert not check("02.1", {t: (str(a), b) for t, (a, b) in temps.items()}, tree=tree, vs=vs)   # numbers, not text

    adaptive = {lam: _rc(t, vs, beam=16, mass=0.9) for lam, t in trees.items()}
    assert check("02.2", adaptive, trees=trees, vs=vs, strict=True)
    assert not check("02.2", {1.0: adaptive[1.0]}, trees=trees, vs=vs)                    # a tree left out
    assert not check("02.2", {lam: (r, c + 1) for lam, (r, c) in adaptive.items()}, trees=trees, vs=vs)

    twice = copy.deepcopy(tree)
    twice.multi_assign(2)
    multi = {b: _rc(twice, vs, beam=b, mass=0.9) for b in (1, 2, 4)}
    assert check("02.3", multi, tree=tree, vs=vs, strict=True)
    assert not check("02.3", {b: _rc(tree, vs, beam=b, mass=0.9) for b in (1, 2, 4)}, tree=tree, vs=vs)  # single assignment
    assert sum(len(tree.tree.items[v]) for v in tree.tree.leaves) == vs.database.shape[0]         # the checker copied


def test_03_checkers(vs, capsys):
    from dataclasses import replace

    from dsilab.ann import LSH, LearnedHash

    model = LearnedHash(bits=8, epochs=2, seed=0).fit(vs.database, vs.ids, vs.train_queries, vs.train_targets)
    train = lambda **c: LearnedHash(replace(model.config, **c)).fit(vs.database, vs.ids, vs.train_queries, vs.train_targets)  # noqa: E731
    lsh_model = train(init="lsh")
    from_lsh = _rc(lsh_model, vs, candidates=20)[0]
    assert check("03.1", from_lsh, model=model, vs=vs, candidates=20, strict=True)
    # the notebook's own trained hash is scored as it is (no second training); a mismatched one is retrained
    import dsilab.exercises.hashing as exercises

    retrain = exercises._retrain
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(exercises, "_retrain", lambda *a, **k: pytest.fail("retrained a hash it was given"))
        assert check("03.1", from_lsh, model=model, vs=vs, candidates=20, trained=lsh_model, strict=True)
    assert exercises._retrain is retrain
    assert check("03.1", from_lsh, model=model, vs=vs, candidates=20, trained=model, strict=True)
    lsh = _rc(LSH(vs.database, vs.ids, bits=8, seed=0), vs, candidates=20)[0]
    assert _rc(LearnedHash(replace(model.config, init="lsh")).fit(vs.database, vs.ids), vs, candidates=20)[0] == lsh  # its start
    if abs(lsh - from_lsh) > 2e-3:
        assert not check("03.1", lsh, model=model, vs=vs, candidates=20)
        assert "LSH's own recall" in capsys.readouterr().out
    assert not check("03.1", "0.5", model=model, vs=vs, candidates=20)

    models = {"ste": train(relaxation="ste"), "steep": train(slope_start=model.config.slope_end)}
    relax = {name: _rc(m, vs, candidates=20)[0] for name, m in models.items()}
    ctx = dict(model=model, vs=vs, candidates=20)
    assert check("03.2", relax, models=models, strict=True, **ctx)
    assert not check("03.2", {"ste": relax["ste"], "steep": relax["steep"] + 0.05}, models=models, **ctx)
    assert not check("03.2", {"ste": relax["ste"]}, models=models, **ctx)
    untrained = LearnedHash(replace(model.config, relaxation="ste")).fit(vs.database, vs.ids)
    assert not check("03.2", relax, models={**models, "ste": untrained}, **ctx)
    assert not check("03.2", relax, models={"ste": models["steep"], "steep": models["ste"]}, **ctx)
    assert "configured differently" in capsys.readouterr().out

    work = {}
    for c in (10, 20):
        r = model.search_vectors(vs.test_queries, vs.test_qids, candidates=c)
        work[c] = (r.mean_cost + r.extra["hamming"].mean() / 64, _rc(model, vs, candidates=c)[0])
    assert check("03.3", work, model=model, vs=vs, candidates=(10, 20), strict=True)
    no_hamming = {c: (8 + c, rec) for c, (_, rec) in work.items()}                  # forgot the Hamming comparisons
    assert not check("03.3", no_hamming, model=model, vs=vs, candidates=(10, 20))
    assert "extra['hamming']" in capsys.readouterr().out


# -- 04: the lab collection's topics, random embeddings (the checkers take them as given) ---------
def test_04_checkers(lab, capsys):
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):  # the codes do not change; KMeans' thread pool only costs time here
        _check_04(lab, capsys)


def _check_04(lab, capsys):
    import numpy as np
    import pandas as pd

    from dsilab.docids import DocidTree, make_docids, prefix_similarity

    emb = np.random.default_rng(0).normal(size=(len(lab.doc_ids), 8)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    topic = pd.Series({d: lab.meta["docs"][d]["topic"] for d in lab.doc_ids})

    def purity_of(tree):  # as the notebook computes it
        first = pd.Series({d: tree.codes[d][0] for d in lab.doc_ids})
        return pd.crosstab(first, topic).max(axis=1).sum() / len(first)

    shapes = {}
    for k, c in ((2, 30), (30, 30), (10, 10)):
        t = make_docids(lab, "semantic", k=k, c=c, seed=0, embeddings=emb)
        shapes[(k, c)] = (t.depths.mean(), purity_of(t))
    ctx = dict(collection=lab, embeddings=emb, k=10, c=30, seed=0)
    assert check("04.1", shapes, strict=True, **ctx)
    assert not check("04.1", {**shapes, (2, 30): (shapes[(2, 30)][0] - 1, shapes[(2, 30)][1])}, **ctx)
    assert "depths.mean()" in capsys.readouterr().out

    from sklearn.feature_extraction.text import TfidfVectorizer

    tfidf = purity_of(make_docids(lab, "semantic", k=10, c=30, seed=0,
                                  embeddings=TfidfVectorizer().fit_transform(lab.contents).toarray()))
    assert check("04.2", tfidf, strict=True, **ctx)
    assert not check("04.2", purity_of(make_docids(lab, "semantic", k=10, c=30, seed=0, embeddings=emb)) + 1e-3, **ctx)

    perm = np.random.default_rng(0).permutation(len(lab.doc_ids))
    shuffled = DocidTree("naive", {d: tuple(int(ch) for ch in str(perm[i])) for i, d in enumerate(lab.doc_ids)})
    assert check("04.3", prefix_similarity(shuffled, emb), collection=lab, embeddings=emb, seed=0, strict=True)
    capsys.readouterr()
    assert not check("04.3", prefix_similarity(make_docids(lab, "naive"), emb), collection=lab, embeddings=emb, seed=0)
    assert "collection order" in capsys.readouterr().out


# -- 06 --------------------------------------------------------------------------------------------
def test_06_checkers(lab, tiny_mlm, capsys):
    from dsilab.augment import Num2Text, Pipeline, PosMLM, StopwordRemover

    text = "It is 2 km deep and 100 years old"
    fixed = Pipeline([Num2Text(), StopwordRemover(keep=("two", "one", "hundred"))]).run([text], target="queries")[0][0]
    assert check("06.1", fixed, text=text, strict=True)
    assert not check("06.1", Num2Text()(text), text=text)                  # nothing removed at all
    plain = Pipeline([Num2Text(), StopwordRemover()]).run([text], target="queries")[0][0]
    if plain != fixed:                                                     # spaCy's list: the number words go
        capsys.readouterr()
        assert not check("06.1", plain, text=text)
        assert "keep=" in capsys.readouterr().out

    share = lambda texts: sum(r.changed for r in Num2Text().augment_batch(texts)) / len(texts)  # noqa: E731
    reach = (share(lab.contents), share(list(lab.queries.values())))
    assert 0 < reach[1] < reach[0] <= 1
    assert check("06.2", reach, collection=lab, strict=True)
    assert not check("06.2", reach[::-1], collection=lab)

    texts = ["The tall tree grows by the quiet river. Green moss covers the old stones.",
             "A bright star shines over the cold sea. Small boats sail to the island."]
    mlm = tiny_mlm  # the session's tiny masked LM (test_augment trains the same one): its fillers need not be good
    roles = {role: [p for r in PosMLM(mlm, roles=(role,), fraction=1.0).augment_batch(texts, seed=0) for p in r.changes]
             for role in ("ADJ", "NOUN")}
    assert roles["NOUN"], "the tiny example should replace some nouns"
    ctx = dict(mlm=mlm, texts=texts, fraction=1.0, seed=0)
    assert check("06.3", roles, strict=True, **ctx)
    assert not check("06.3", {"ADJ": roles["NOUN"], "NOUN": roles["ADJ"]}, **ctx)
    assert not check("06.3", {"NOUN": roles["NOUN"]}, **ctx)


# -- 09: residual codes of toy vectors, a Zipfian lab slice, a made-up comparison ----------------------------------
def test_09_checkers(capsys):
    import numpy as np

    from dsilab import load_collection
    from dsilab.baselines import BM25
    from dsilab.dgi import popularity, popularity_bias, residual_codes, zipf_collection

    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 16)).astype(np.float32)
    codes = residual_codes([f"d{i}" for i in range(300)], x, levels=2, codes=16, seed=0)
    rep = codes.report()
    right = (rep["collision rate (nearest codes)"], rep["collision rate (learned codes)"], rep["levels"])
    assert check("09.1", right, codes=codes, strict=True)
    assert not check("09.1", (right[0] + 0.1, right[1], right[2]), codes=codes)
    three = residual_codes([f"d{i}" for i in range(300)], x, levels=3, codes=16, seed=0)
    assert not check("09.1", right, codes=three)                       # built with 3 levels
    assert "levels=2" in capsys.readouterr().out

    lab = load_collection("lab").topics(1)
    steep = zipf_collection(lab, s=1.3)
    pop = popularity(steep)
    queries, qrels = steep.split("test")
    bias = popularity_bias(BM25(steep).search(queries, k=10), qrels, pop, k=10)
    answer = (sum(pop.values()), sum(v == 0 for v in pop.values()), bias)
    assert check("09.2", answer, collection=steep, strict=True)
    assert not check("09.2", answer, collection=zipf_collection(lab, s=1.0))  # the default exponent
    assert not check("09.2", (answer[0] + 1, answer[1], answer[2]), collection=steep)

    buckets_ = {f"q{i}": "B0" if i < 5 else "B4" for i in range(10)}
    rows = [{"variant": v, "seed": s, "memo Hits@1": 1.0, "steps": 1, "stopped": "converged",
             "per_query": {"Hits@10": {q: float(b == "B0" or v == "DGI w/o Gumbel soft TF") for q, b in buckets_.items()}},
             "pop bias": {q: 0.0 for q in buckets_}}
            for s in (0, 1) for v in ("DSI-semantic", "DGI", "DGI w/o Gumbel soft TF")]
    result = {"query bucket": buckets_, "variants": ["DSI-semantic", "DGI", "DGI w/o Gumbel soft TF"], "rows": rows}
    assert check("09.3", ("DGI w/o Gumbel soft TF", "higher"), result=result, strict=True)
    assert not check("09.3", ("DGI w/o Gumbel soft TF", "too small to tell"), result=result)
    assert not check("09.3", "DGI", result=result)


def test_05_checkers(tiny_dsi):
    from dsilab.decode import search
    from dsilab.models import build_model
    from conftest import TINY_T5

    coll, tree, ex = tiny_dsi
    model = build_model("t5-scratch", tree, ex, **TINY_T5)
    queries, qrels = coll.split("test")
    right = evaluate(search(model, queries, k=1, beam_size=1), qrels, ("Hits@1",))["Hits@1"]
    assert check("05.1", right, model=model, queries=queries, qrels=qrels)
    assert not check("05.1", right + 0.5, model=model, queries=queries, qrels=qrels)
    q1, q2 = sorted(qrels)[:2]
    gold = {q: next(iter(qrels[q])) for q in (q1, q2)}
    other = next(d for d in coll.doc_ids if d not in gold.values())
    dsi = {q1: [(gold[q1], 1.0)], q2: [(other, 1.0)]}
    bm25 = {q1: [(other, 1.0)], q2: [(gold[q2], 1.0)]}
    sub = {q: qrels[q] for q in (q1, q2)}
    assert check("05.2", (1, 1), dsi_run=dsi, bm25_run=bm25, qrels=sub)
    bm25[q1] = [(gold[q1], 1.0)]
    assert check("05.2", (1, 0), dsi_run=dsi, bm25_run=bm25, qrels=sub)
    assert not check("05.2", (0, 1), dsi_run=dsi, bm25_run=bm25, qrels=sub)
    assert not check("05.2", "two", dsi_run=dsi, bm25_run=bm25, qrels=sub)


def test_07_checkers():
    import torch

    assert check("07.1", 147456, counted=147456)
    assert not check("07.1", 6 * 4 * 8 * 384, counted=147456)
    assert not check("07.1", 147456, counted=1)  # the formula must agree with what the model counted
    w = torch.randn(256, 512, generator=torch.Generator().manual_seed(0))
    assert check("07.2", 4 + 8 / 128 + 32 / (128 * 256), weight=w)
    assert not check("07.2", 4.5, weight=w)


def test_11_checkers():
    results = {"BM25": {"family": "baseline", "Hits@1": 0.9, "Hits@10": 0.99, "ms_per_query": 2.0},
               "Dense": {"family": "baseline", "Hits@1": 0.8, "Hits@10": 0.98, "ms_per_query": 0.5},
               "DSI a": {"family": "DSI", "Hits@1": 0.7, "Hits@10": 0.9, "ms_per_query": 20.0},
               "DSI b": {"family": "DSI", "Hits@1": 0.75, "Hits@10": 0.9, "ms_per_query": 25.0}}
    assert check("11.1", "Dense", results=results)
    assert not check("11.1", "BM25", results=results) and not check("11.1", "nope", results=results)
    assert check("11.2", 15.0, results=results)
    assert not check("11.2", 0.15, results=results) and not check("11.2", 20.0, results=results)


def test_compare_prediction_words_and_numbers():
    from dsilab.exercises import compare_prediction

    assert compare_prediction("Higher ", "higher", choices=("higher", "lower", "too small to tell"))[0]
    ok, said = compare_prediction("lower", "higher", choices=("higher", "lower", "too small to tell"))
    assert not ok and "'lower'" in said and "'higher'" in said
    assert not compare_prediction(1, "higher", choices=("higher", "lower"))[0]              # a word is expected
    assert compare_prediction(0.5, 0.55, interval=(0.45, 0.62))[0]                           # inside the interval
    ok, said = compare_prediction(0.9, 0.55, interval=(0.45, 0.62))
    assert not ok and "above" in said
    assert compare_prediction(12, 10, tolerance=2)[0] and not compare_prediction(13, 10, tolerance=2)[0]
    assert not compare_prediction("0.5", 0.5, tolerance=0.1)[0]                             # a number is expected
