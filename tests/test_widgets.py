"""Widgets driven through their Python API: a click, a query pick or a slider move changes the state,
the figure and the tables; every widget also carries a static copy of its state (PNG + HTML)."""
import base64
import json
import subprocess
import sys

import numpy as np
import pytest

from dsilab.core import DsilabError
from dsilab.data import synthetic_collection
from dsilab.ann import recall_at_k
from dsilab.decode import DocidTrie
from dsilab.docids import make_docids
from dsilab.widgets import BeamViewer, ClusterTreeExplorer, SoftTraversalExplorer, project_2d, tree_layout

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def coll():
    return synthetic_collection(n_docs=30, n_topics=3, n_subtopics=2, doc_len=12, queries_per_doc=3,
                                vocab_per_topic=20, vocab_per_subtopic=10, n_common=30, seed=0)


@pytest.fixture(scope="module")
def emb(coll):
    return np.random.default_rng(0).normal(size=(len(coll.docs), 6)).astype("float32")


@pytest.fixture(scope="module")
def tree(coll, emb):
    return make_docids(coll, "semantic", k=3, c=4, embeddings=emb)


@pytest.fixture(scope="module")
def model(coll, tree):
    from dsilab.models import build_model
    from dsilab.tasks import TaskConfig, build_examples

    ex = build_examples(coll, tree, TaskConfig(doc_len=12))
    return build_model("t5-scratch", tree, ex, seed=0, vocab_size=120, d_model=16, layers=1, decoder_layers=1,
                       heads=2, d_ff=32)  # untrained: the viewer must work for any model


@pytest.fixture(scope="module")
def soft():
    from dsilab.ann import SoftTree

    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 8)).astype("float32")
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q = x[:12] + 0.3 * rng.normal(size=(12, 8)).astype("float32")
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    index = SoftTree(k=3, depth=2, epochs=3, seed=0).fit(x, None, q, np.arange(12))
    return index, q


def _labels(widget):
    return [b.description for b in widget.nodes_box.children]


# -- cluster-tree explorer ------------------------------------------------------------------------------------
def test_cluster_tree_expand_select_collapse(coll, tree, emb):
    ex = ClusterTreeExplorer(tree, coll, embeddings=emb, projection="pca")
    top = list(tree.children(()))
    assert ex.selected == () and ex.visible_nodes() == [()] + [(d,) for d in top]
    png0, html0 = ex.png, ex.info.value
    assert png0.startswith(PNG_MAGIC) and f"{len(tree)} documents" in html0
    # a click on the second top node (the real Button callback): selected, opened, highlighted, listed
    button = next(b for b in ex.nodes_box.children if "dsilab-node-1" in b._dom_classes)
    button.click()
    assert ex.selected == (1,) and (1,) in ex.expanded
    kids = [(1, d) for d in tree.children((1,))]
    assert set(kids) <= set(ex.visible_nodes()) and len(_labels(ex)) == 1 + len(top) + len(kids)
    assert ex.png != png0 and ex.info.value != html0
    info = ex.node_info((1,))
    assert info["size"] == len(tree.docs_under((1,))) and info["docs"] == tree.docs_under((1,))
    assert f"node (1,)</b>: {info['size']} documents" in ex.info.value
    assert all(d in ex.info.value for d in info["docs"][: ex.max_listed])
    selected = [b for b in ex.nodes_box.children if b.button_style == "info"]
    assert len(selected) == 1 and "dsilab-node-1" in selected[0]._dom_classes
    # a second click on the open, selected node closes it
    ex.toggle((1,))
    assert (1,) not in ex.expanded and ex.visible_nodes() == [()] + [(d,) for d in top]
    # selecting a deep node opens its ancestors; a full docid is a document
    doc = tree.docs_under((1,))[0]
    ex.select(tree.codes[doc])
    assert ex.node_info(ex.selected)["doc"] == doc and tree.codes[doc][:1] in ex.expanded
    ex.collapse(())
    assert ex.visible_nodes() == [()]


def test_cluster_tree_terms_are_characteristic(coll, tree, emb):
    ex = ClusterTreeExplorer(tree, coll, embeddings=emb, projection="pca")
    for d in tree.children(()):
        terms = ex.terms((d,))
        assert terms, "every cluster of the synthetic collection has words of its own"
        # each term is more frequent (per document) inside the node than in the whole collection
        inside = [coll.docs[x].contents.lower() for x in tree.docs_under((d,))]
        everywhere = [c.lower() for c in coll.contents]
        for t in terms:
            assert np.mean([t in s for s in inside]) >= np.mean([t in s for s in everywhere])


def test_cluster_tree_rejects_bad_input(coll, tree, emb):
    with pytest.raises(DsilabError, match="one row per docid"):
        ClusterTreeExplorer(tree, coll, embeddings=emb[:5], projection="pca")
    with pytest.raises(DsilabError, match="coords must be"):
        ClusterTreeExplorer(tree, coll, embeddings=emb, coords=np.zeros((3, 2)))
    with pytest.raises(DsilabError, match="projection"):
        ClusterTreeExplorer(tree, coll, embeddings=emb, projection="umap")  # replaced by t-SNE: no numba compile
    ex = ClusterTreeExplorer(tree, coll, embeddings=emb, projection="pca")
    with pytest.raises(DsilabError, match="no node"):
        ex.select((99,))


def test_project_2d_pca_is_deterministic_and_auto_falls_back_on_tiny_sets(coll, tree, emb):
    a, b = project_2d(emb, "pca"), project_2d(emb, "auto")  # 30 < 50 rows: auto uses PCA
    assert a.shape == (len(emb), 2) and np.array_equal(a, b)
    xy = np.arange(2 * len(emb), dtype=np.float32).reshape(-1, 2)
    assert np.array_equal(ClusterTreeExplorer(tree, coll, embeddings=emb, coords=xy).coords, xy)


def test_project_2d_tsne_keeps_clusters_apart_and_is_seeded(monkeypatch, tmp_path):
    """Three well-separated blobs of 20 points stay separated on the map; the same seed draws the same map."""
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(size=(20, 8)) + 8 * np.eye(8)[i] for i in range(3)]).astype("float32")
    monkeypatch.setenv("DSILAB_CACHE", str(tmp_path / "a"))
    xy = project_2d(x, "auto", seed=0)  # 60 >= 50 rows: auto uses t-SNE
    monkeypatch.setenv("DSILAB_CACHE", str(tmp_path / "b"))  # computed again, not read from the cache
    assert np.allclose(project_2d(x, "tsne", seed=0), xy, atol=1e-4)
    nearest = np.linalg.norm(xy[:, None] - xy[None], axis=-1)
    np.fill_diagonal(nearest, np.inf)
    assert (nearest.argmin(axis=1) // 20 == np.arange(60) // 20).all()  # every point's map neighbour is in its blob


# -- beam viewer -------------------------------------------------------------------------------------------------
def test_beam_viewer_pick_query_and_beam_width(coll, tree, model):
    bv = BeamViewer(model, coll, k=5, beam_size=3, n_queries=5)
    tr0, png0 = bv.trace, bv.png
    assert tr0.query == bv.queries[bv.qid] and 1 <= len(tr0.ranking) <= 5
    assert {d for d, _ in tr0.ranking} <= set(coll.doc_ids) and png0.startswith(PNG_MAGIC)
    assert all(d in bv.info.value for d, _ in tr0.ranking)
    # the drawn tree: every kept, unfinished path becomes a beam of the next step; pruned tokens are not allowed
    trie = DocidTrie(model.docid_sequences())
    cols = bv.layout()
    assert len(cols) == len(tr0.steps)
    ids = model.tokenizer.convert_tokens_to_ids
    for t, col in enumerate(cols[:-1]):
        next_beams = {tuple(b[0]) for b in tr0.steps[t + 1].beams}
        kept = {n["path"] for n in col if n["kind"] == "kept" and n["token"] != model.tokenizer.eos_token}
        assert kept == next_beams
        for n in col:
            allowed = trie.allowed(ids(list(n["parent"])))
            assert (ids(n["token"]) in allowed) == (n["kind"] != "pruned")
    # another query from the dropdown: new trace, new figure
    other = list(bv.queries)[1]
    bv.dropdown.value = other
    assert bv.qid == other and bv.trace.query == bv.queries[other] and bv.png != png0
    # beam width 1: one beam per step, the slider and the state agree
    bv.set_beam(1)
    assert bv.beam.value == 1 and bv.beam_size == 1 and all(len(st.beams) == 1 for st in bv.trace.steps)
    # free text has no relevance judgements
    bv.text.value = "a question nobody judged"
    assert bv.qid is None and bv.trace.query == "a question nobody judged" and "no relevance judgements" in bv.info.value
    with pytest.raises(DsilabError, match="not in the viewer"):
        bv.pick("nope")


def test_beam_viewer_marks_relevant_docs(coll, model):
    probe = BeamViewer(model, coll, k=5, beam_size=3, n_queries=1)
    qid, (first, _) = probe.qid, probe.trace.ranking[0]
    bv = BeamViewer(model, queries={qid: probe.query}, qrels={qid: {first: 1}}, k=5, beam_size=3)
    assert "relevant doc at rank 1" in bv.info.value and "✓" in bv.info.value


# -- soft-traversal explorer --------------------------------------------------------------------------------------
def test_soft_traversal_temperature_query_and_stats(soft):
    index, q = soft
    ex = SoftTraversalExplorer(index, q, beam=2)
    png0, html0 = ex.png, ex.info.value
    s0 = ex.stats()
    assert 0 <= s0["recall@10"] <= 1 and s0["cost"] > 0 and s0["leaves reached"] >= 1
    res = index.search_vectors(q, ex.qids, k=10, beam=2, temperature=ex.temperature)
    assert s0["mean cost"] == pytest.approx(res.mean_cost)
    assert s0["mean recall@10"] == pytest.approx(recall_at_k(res.run, ex.truth, 10))
    # truth for more queries than shown (e.g. a whole split): the mean is over the shown queries only
    few = SoftTraversalExplorer(index, q[:3], ex.qids[:3], truth=ex.truth, beam=2)
    part = index.search_vectors(q[:3], ex.qids[:3], k=10, beam=2, temperature=few.temperature)
    assert few.stats()["mean recall@10"] == pytest.approx(recall_at_k(part.run, {x: ex.truth[x] for x in ex.qids[:3]}, 10))
    # the slider: routing probabilities flatten as T grows, the drawing changes
    ex.slider.value = 1.0
    assert ex.temperature == pytest.approx(1.0) and ex.png != png0
    p_hot = index.path_probabilities(q[0], 1.0)
    p_cold = index.path_probabilities(q[0], 1e-3)
    leaves = index.tree.leaves
    assert p_hot[leaves].max() < p_cold[leaves].max()
    # another query
    ex.picker.value = 3
    assert ex.current == 3 and ex.info.value != html0 and ex.qids[3] in ex.info.value


def test_soft_traversal_hard_path_depends_on_temperature_only_with_beam_or_mass(soft):
    index, q = soft
    ex = SoftTraversalExplorer(index, q, beam=1)
    paths = []
    for t in (1e-3, 1.0):
        ex.set_temperature(t)
        paths.append(ex._descent().path)
    assert paths[0] == paths[1]  # greedy: argmax of the logits at every node, whatever T
    ex.set_beam(4)
    ex.set_mass(0.9)
    ex.set_temperature(1e-3)
    sharp = ex.stats()
    ex.set_temperature(1.0)
    flat = ex.stats()
    assert sharp["leaves reached"] == 1 and flat["leaves reached"] > 1 and flat["cost"] > sharp["cost"]
    with pytest.raises(DsilabError):
        ex.set_temperature(0)


def test_tree_layout_centres_parents(soft):
    index, _ = soft
    x, y = tree_layout(index.tree.children)
    for v in index.tree.internal:
        assert x[v] == pytest.approx(np.mean(x[index.tree.children[v]]))
        assert all(y[c] == y[v] - 1 for c in index.tree.children[v])


# -- static fallback ----------------------------------------------------------------------------------------------
def test_mimebundle_has_widget_view_and_static_copies(coll, tree, emb, model, soft):
    widgets = [ClusterTreeExplorer(tree, coll, embeddings=emb, projection="pca"),
               BeamViewer(model, coll, k=3, beam_size=2, n_queries=2), SoftTraversalExplorer(soft[0], soft[1])]
    for wd in widgets:
        b = wd._repr_mimebundle_()
        assert b["application/vnd.jupyter.widget-view+json"]["model_id"] == wd.model_id
        assert base64.b64decode(b["image/png"]) == wd.png
        assert b["image/png"] in b["text/html"] and wd.info.value in b["text/html"]


NOTEBOOK = r'''
import numpy as np
from dsilab.data import synthetic_collection
from dsilab.docids import make_docids
from dsilab.widgets import ClusterTreeExplorer
coll = synthetic_collection(n_docs=30, n_topics=3, n_subtopics=2, doc_len=12, queries_per_doc=3, seed=0)
emb = np.random.default_rng(0).normal(size=(30, 6)).astype("float32")
ex = ClusterTreeExplorer(make_docids(coll, "semantic", k=3, c=4, embeddings=emb), coll, embeddings=emb, projection="pca")
ex.toggle((2,))
ex
'''


@pytest.mark.notebook  # starts a kernel: about a minute on 2 busy cores
def test_static_render_survives_papermill_and_nbconvert(tmp_path):
    """papermill output keeps the widget state (JupyterLab shows the widget) and the PNG; nbconvert HTML
    without widget state (GitHub-like renderers, or state stripped) shows the static figure, not a blank."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(NOTEBOOK)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    src, out = tmp_path / "in.ipynb", tmp_path / "out.ipynb"
    nbformat.write(nb, src)
    subprocess.run([sys.executable, "-m", "papermill", "-k", "python3", "--no-progress-bar", str(src), str(out)],
                   check=True, capture_output=True, timeout=300)
    done = json.loads(out.read_text())
    data = done["cells"][0]["outputs"][-1]["data"]
    assert {"application/vnd.jupyter.widget-view+json", "image/png", "text/html"} <= set(data)
    png = base64.b64decode(data["image/png"])
    assert png.startswith(PNG_MAGIC) and "node (2,)" in "".join(data["text/html"])
    assert "widgets" in done["metadata"]  # nbclient stored the widget state: JupyterLab re-renders the widget
    del done["metadata"]["widgets"]
    (tmp_path / "nostate.ipynb").write_text(json.dumps(done))
    subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "html", str(tmp_path / "nostate.ipynb")],
                   check=True, capture_output=True, timeout=120)
    page = (tmp_path / "nostate.html").read_text()
    assert "dsilab-static" in page and "data:image/png;base64," + data["image/png"].strip() in page
    assert "Error displaying widget" not in page
