"""dsilab.ann.faiss_index (FAISS IVF-Flat and HNSW behind the course's interface) and the documents-as-queries
training signal of lab_vectors: correctness and exact cost counts only (timing lives in `dsilab bench ann`)."""
import numpy as np
import pytest

from dsilab.ann import FaissHNSW, FaissIVFFlat, exact_neighbours, lab_vectors, recall_at_k, truth_from_indices
from dsilab.core import DsilabError

from conftest import unit_blobs
from dsilab.data import Collection, Doc


@pytest.fixture(scope="module")
def vecs():
    x, q = unit_blobs(8, 250, 32, 0.6, 100, 0.3)
    truth = truth_from_indices([f"q{i}" for i in range(100)], exact_neighbours(q, x, 10), [f"d{i}" for i in range(2000)])
    return x, q, truth


def test_hnsw_with_large_ef_search_is_nearly_exact(vecs):
    x, q, truth = vecs
    res = FaissHNSW(x, m=16, ef_construction=40).search_vectors(q, k=10, ef_search=200)
    assert recall_at_k(res.run, truth) >= 0.95
    assert np.all(res.cost > 0)
    # a wider walk computes more distances
    assert FaissHNSW(x, m=16).search_vectors(q, ef_search=10).mean_cost < res.mean_cost


def test_ivf_flat_with_every_list_probed_is_exact_search(vecs):
    x, q, truth = vecs
    ivf = FaissIVFFlat(x, nlist=8, seed=0)
    res = ivf.search_vectors(q, k=10, nprobe=8)
    assert recall_at_k(res.run, truth) == pytest.approx(1.0)
    assert np.all(res.cost == 8 + len(x))
    exact = exact_neighbours(q, x, 10)
    got = [[int(d[1:]) for d, _ in res.run[f"q{i}"]] for i in range(len(q))]
    np.testing.assert_array_equal(got, exact)


def test_ivf_flat_cost_is_nlist_plus_the_probed_lists(vecs):
    import faiss

    x, q, _ = vecs
    ivf = FaissIVFFlat(x, nlist=8, seed=0)
    assert ivf.list_sizes.sum() == len(x)
    res = ivf.search_vectors(q, nprobe=2)
    _, probed = ivf.index.quantizer.search(q, 2)  # the two lists each query scans, by centroid score
    sizes = [ivf.index.invlists.list_size(int(c)) for c in range(8)]
    np.testing.assert_array_equal(res.cost, [8 + sizes[a] + sizes[b] for a, b in probed])
    faiss.cvar.indexIVF_stats.reset()  # FAISS's own counter of list entries scanned agrees
    ivf.search_vectors(q, nprobe=2)
    assert faiss.cvar.indexIVF_stats.ndis == int((res.cost - 8).sum())


def test_faiss_indexes_are_deterministic(vecs):
    x, q, _ = vecs
    a, b = FaissIVFFlat(x, nlist=8, seed=1), FaissIVFFlat(x, nlist=8, seed=1)
    np.testing.assert_array_equal(a.list_sizes, b.list_sizes)
    assert a.search_vectors(q, nprobe=2).run == b.search_vectors(q, nprobe=2).run
    h1, h2 = FaissHNSW(x, m=8), FaissHNSW(x, m=8)
    r1, r2 = h1.search_vectors(q, ef_search=16), h2.search_vectors(q, ef_search=16)
    assert r1.run == r2.run and np.array_equal(r1.cost, r2.cost)


def test_faiss_bad_input_names_the_fix(vecs):
    x, q, _ = vecs
    ivf = FaissIVFFlat(x, nlist=8)
    with pytest.raises(DsilabError, match=r"nprobe must be between 1 and nlist \(8\)"):
        ivf.search_vectors(q, nprobe=9)
    with pytest.raises(DsilabError, match="nprobe"):
        ivf.search_vectors(q, nprobe=0)
    with pytest.raises(DsilabError, match="nlist"):
        FaissIVFFlat(x[:5], nlist=8)
    with pytest.raises(DsilabError, match=r"ef_search must be >= k \(10\)"):
        FaissHNSW(x[:200], m=8).search_vectors(q, k=10, ef_search=5)
    with pytest.raises(DsilabError, match="dimension"):
        FaissHNSW(x[:200], m=8).search_vectors(q[:, :16])
    with pytest.raises(DsilabError, match="threads"):
        FaissIVFFlat(x, nlist=8, threads=0)


@pytest.fixture(scope="module")
def unlabelled():
    """A collection with test queries only (like CISI): the index must learn from the documents themselves."""
    topics = ["solar panels convert sunlight into electricity", "the river floods the valley every spring",
              "neural networks learn weights by gradient descent", "bread rises because yeast makes gas"]
    docs = {f"d{i}": Doc(f"d{i}", "", f"{topics[i % 4]}. Note number {i} adds detail about item {i}. Another sentence on case {i}.")
            for i in range(24)}
    queries = {"t0": "how do solar cells make power", "t1": "why does dough rise", "t2": "spring floods in valleys"}
    qrels = {"test": {"t0": {"d0": 1}, "t1": {"d3": 1}, "t2": {"d1": 1}}}
    return Collection("tiny-unlabelled", docs, queries, qrels)


def test_documents_as_queries_when_there_is_no_train_split(unlabelled):
    vs = lab_vectors(unlabelled, split="test")
    assert vs.meta["train_signal"] == "document spans"
    assert len(vs.train_queries) > len(unlabelled.docs)  # spans_per_doc = 2 (fewer only for repeated spans)
    # the training targets are the exact neighbours of each span in the encoder's space
    np.testing.assert_array_equal(vs.train_targets, exact_neighbours(vs.train_queries, vs.database, 10))
    # and no test query is among the training queries
    sims = vs.train_queries @ vs.test_queries.T
    assert sims.max() < 0.9999
    assert vs.test_qids == ["t0", "t1", "t2"]


def test_train_signal_is_a_choice(unlabelled):
    with pytest.raises(DsilabError, match="no train split.*train_on='document spans'"):
        lab_vectors(unlabelled, train_on="train queries")
    with pytest.raises(DsilabError, match="train_on must be one of"):
        lab_vectors(unlabelled, train_on="test queries")
    labelled = Collection("tiny-labelled", unlabelled.docs, {**unlabelled.queries, "r0": "bread and yeast"},
                          {**unlabelled.qrels, "train": {"r0": {"d3": 1}}})
    assert lab_vectors(labelled).meta["train_signal"] == "train queries"
    assert len(lab_vectors(labelled).train_queries) == 1
    spans = lab_vectors(labelled, train_on="document spans")
    assert spans.meta["train_signal"] == "document spans" and len(spans.train_queries) > 1


def test_reference_only_benchmark_has_the_faiss_rows_and_a_plot(tmp_path):
    from dsilab.ann import synthetic_vectors
    from dsilab.experiments.ann import run_ann_benchmark, save_plots

    vs = synthetic_vectors(n=1500, dim=16, n_train=20, n_test=30, n_clusters=4, n_subclusters=2, latent_dim=6)
    out = run_ann_benchmark(vs, only="reference")
    assert out["only"] == "reference" and not any("soft tree" in name for name in out["results"])
    hnsw = [r for name, r in out["results"].items() if name.startswith("FAISS HNSW")]
    assert len(hnsw) == len(out["plan"]["ef_search"]) and hnsw[-1]["recall@10"] >= 0.95
    assert any(name.startswith("FAISS IVF-Flat") for name in out["results"])
    assert any("--only reference" in note for note in out["notes"])
    png = save_plots({**out, "collection": vs.name}, tmp_path / "ann.png")
    assert png.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(DsilabError, match="only must be"):
        run_ann_benchmark(vs, only="faiss")


def test_structures_only_benchmark_skips_the_seed_comparisons():
    """only="structures" (the 1M run): every index, learned ones included, but no 3-seed learning rows."""
    from dsilab.ann import synthetic_vectors
    from dsilab.experiments.ann import run_ann_benchmark

    vs = synthetic_vectors(n=600, dim=64, n_train=40, n_test=30, n_clusters=4, n_subclusters=2, latent_dim=6)
    out = run_ann_benchmark(vs, only="structures", hash_epochs=1)
    assert out["only"] == "structures" and out["learning"] is None
    assert any(name.startswith("soft tree") for name in out["results"]) and any("FAISS HNSW" in n for n in out["results"])
    assert any("skipped" in note for note in out["notes"])
