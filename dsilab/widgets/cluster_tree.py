"""Cluster-tree explorer: browse a `DocidTree` node by node and see where its documents lie.

Every node (a docid prefix) shows its size, its most characteristic terms (TF-IDF of its documents
against the whole collection) and sample titles; selecting it highlights its documents on a 2-D map
of the document embeddings (t-SNE, or PCA when the collection is tiny) and lists them.
"""
from __future__ import annotations

from typing import Sequence

import ipywidgets as w
import numpy as np

from ..core import DsilabError
from ..data import Collection
from ..docids import DocidTree
from ._static import StaticWidget, esc, figure_png, new_figure, table

PROJECTIONS = ("auto", "tsne", "pca")


def project_2d(embeddings: np.ndarray, method: str = "auto", seed: int = 0) -> np.ndarray:
    """2-D coordinates of the rows: t-SNE (cosine, scikit-learn) when asked, or for "auto" when n >= 50; else PCA.

    t-SNE keeps neighbours together, as UMAP would, without UMAP's numba compilation (half a minute on a laptop
    before the first map). Its result is cached on disk (`dsilab.core.cache_dir`), keyed by the embeddings and seed.
    """
    if method not in PROJECTIONS:
        raise DsilabError(f"projection must be one of {list(PROJECTIONS)}; got {method!r}.")
    x = np.ascontiguousarray(embeddings, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] < 2:
        raise DsilabError(f"need a (n_docs >= 2, dim) embedding matrix for the map; got shape {x.shape}.")
    if method == "tsne" or (method == "auto" and x.shape[0] >= 50):
        return _tsne_cached(x, seed)
    from sklearn.decomposition import PCA

    dims = min(2, x.shape[1])
    out = PCA(n_components=dims, random_state=seed).fit_transform(x)
    return np.pad(out, ((0, 0), (0, 2 - dims))).astype(np.float32)


def _tsne_cached(x: np.ndarray, seed: int) -> np.ndarray:
    import hashlib

    import sklearn
    from sklearn.manifold import TSNE

    from ..core import atomic_path, cache_dir

    key = hashlib.sha256(x.tobytes() + repr((x.shape, seed, sklearn.__version__)).encode()).hexdigest()[:24]
    path = cache_dir("projections") / f"tsne-{key}.npy"
    if path.is_file():
        return np.load(path)
    tsne = TSNE(n_components=2, perplexity=min(30.0, (x.shape[0] - 1) / 3), metric="cosine", init="pca",
                random_state=seed)
    out = np.asarray(tsne.fit_transform(x), dtype=np.float32)
    with atomic_path(path) as tmp:
        np.save(tmp, out)
    return out


def _key(prefix: Sequence[int]) -> str:
    return "-".join(str(int(x)) for x in prefix) or "root"


class ClusterTreeExplorer(StaticWidget):
    """Expand/collapse the nodes of a DocidTree; the selected node's documents light up on the map.

    `coords` (n_docs x 2) reuses a map the notebook already computed instead of projecting the embeddings.
    Python API (what a click does): `toggle(prefix)` = select + expand/collapse; also `select`,
    `expand`, `collapse`; state in `selected`, `expanded`; `node_info(prefix)` for one node's facts.
    """

    def __init__(self, tree: DocidTree, collection: Collection, embeddings: np.ndarray | None = None,
                 projection: str = "auto", n_terms: int = 5, n_titles: int = 3, max_children: int = 12,
                 max_listed: int = 12, seed: int = 0, coords: np.ndarray | None = None):
        if not isinstance(tree, DocidTree):
            raise DsilabError(f"ClusterTreeExplorer needs a DocidTree (dsilab.docids.make_docids); got {type(tree).__name__}.")
        missing = [d for d in tree.codes if d not in collection.docs]
        if missing:
            raise DsilabError(f"{len(missing)} docids name documents not in collection {collection.name!r} "
                              f"(e.g. {missing[:2]}); build the tree from the same collection.")
        self.tree, self.collection = tree, collection
        self.doc_ids = list(tree.codes)
        if embeddings is None:
            from ..embed import load_encoder

            embeddings = load_encoder().encode_cached([collection.docs[d].contents for d in self.doc_ids])
        emb = np.asarray(embeddings, dtype=np.float32)
        if emb.ndim != 2 or emb.shape[0] != len(self.doc_ids):
            raise DsilabError(f"embeddings must have one row per docid in tree.codes order ({len(self.doc_ids)} rows); "
                              f"got shape {emb.shape}.")
        if coords is not None:  # a 2-D map the notebook already made (e.g. its own t-SNE): reuse it
            coords = np.asarray(coords, dtype=np.float32)
            if coords.shape != (len(self.doc_ids), 2):
                raise DsilabError(f"coords must be ({len(self.doc_ids)}, 2), one 2-D point per docid; got {coords.shape}.")
        self.coords = coords if coords is not None else project_2d(emb, projection, seed)
        self.n_terms, self.n_titles, self.max_children, self.max_listed = n_terms, n_titles, max_children, max_listed
        self._row = {d: i for i, d in enumerate(self.doc_ids)}
        self._rows_cache: dict[tuple[int, ...], tuple[int, ...]] = {}
        self._tfidf()
        self.expanded: set[tuple[int, ...]] = {()}
        self.selected: tuple[int, ...] = ()
        self.nodes_box = w.VBox(layout=w.Layout(max_height="420px", overflow="auto", width="100%"))
        super().__init__([w.HTML("<style>.dsilab-node{text-align:left !important}</style>"
                                 "<b>Docid tree</b>: click a node to select it and expand/collapse it"), self.nodes_box],
                         title=f"cluster-tree explorer ({tree.kind} docids, {len(tree)} documents)")
        self.add_class("dsilab-cluster-tree")
        self.refresh()

    # -- facts about nodes ------------------------------------------------------------------------------------
    def _tfidf(self) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer

        texts = [self.collection.docs[d].contents for d in self.doc_ids]
        vec = TfidfVectorizer(stop_words="english", token_pattern=r"(?u)\b[a-zA-Z][a-zA-Z]+\b", max_features=20000)
        try:
            self._x = vec.fit_transform(texts)
            self._vocab = np.asarray(vec.get_feature_names_out())
        except ValueError:  # no words at all (e.g. numeric documents): terms stay empty
            self._x, self._vocab = None, np.asarray([])
        self._mean = np.asarray(self._x.mean(axis=0)).ravel() if self._x is not None else None

    def _rows(self, prefix: tuple[int, ...]) -> tuple[int, ...]:
        if prefix not in self._rows_cache:
            self._rows_cache[prefix] = tuple(self._row[d] for d in self.tree.docs_under(prefix))
        return self._rows_cache[prefix]

    def terms(self, prefix: Sequence[int]) -> list[str]:
        """The node's characteristic terms: highest mean TF-IDF in the node minus the collection mean."""
        rows = list(self._rows(tuple(prefix)))
        if self._x is None or not rows:
            return []
        gain = np.asarray(self._x[rows].mean(axis=0)).ravel() - (self._mean if prefix else 0)
        top = np.argsort(-gain, kind="stable")[: self.n_terms]
        return [str(self._vocab[i]) for i in top if gain[i] > 0]

    def node_info(self, prefix: Sequence[int]) -> dict:
        """prefix, size, characteristic terms, sample titles, documents and (for a full docid) the doc."""
        p = tuple(int(x) for x in prefix)
        docs = self.tree.docs_under(p)
        if not docs:
            raise DsilabError(f"no document has a docid starting with {p}; pick a prefix from tree.children().")
        return {"prefix": p, "size": len(docs), "terms": self.terms(p),
                "titles": [self._title_of(d) for d in docs[: self.n_titles]], "docs": docs,
                "doc": self.tree.inverse.get(p)}

    def _title_of(self, doc_id: str) -> str:
        d = self.collection.docs[doc_id]
        return d.title or d.text[:60]

    # -- state changes (what clicks do) ----------------------------------------------------------------------
    def _check(self, prefix: Sequence[int]) -> tuple[int, ...]:
        p = tuple(int(x) for x in prefix)
        if p and not self.tree.docs_under(p):
            raise DsilabError(f"no node {p} in this DocidTree; valid children of the root: {list(self.tree.children(()))}.")
        return p

    def select(self, prefix: Sequence[int]) -> None:
        """Make `prefix` the selected node (its documents are highlighted and listed); its ancestors open."""
        p = self._check(prefix)
        self.selected = p
        self.expanded |= {p[:i] for i in range(len(p))}
        self.refresh()

    def expand(self, prefix: Sequence[int]) -> None:
        self.expanded.add(self._check(prefix))
        self.refresh()

    def collapse(self, prefix: Sequence[int]) -> None:
        p = self._check(prefix)
        self.expanded = {e for e in self.expanded if e[: len(p)] != p}
        self.refresh()

    def toggle(self, prefix: Sequence[int]) -> None:
        """A click: select the node and open it (or close it when it was open and already selected)."""
        p = self._check(prefix)
        if p in self.expanded and self.selected == p and p:
            self.expanded = {e for e in self.expanded if e[: len(p)] != p}
        else:
            self.expanded.add(p)
            self.expanded |= {p[:i] for i in range(len(p))}
        self.selected = p
        self.refresh()

    def visible_nodes(self) -> list[tuple[int, ...]]:
        """Nodes shown in the tree panel, depth first (children of expanded nodes, at most `max_children` each)."""
        out: list[tuple[int, ...]] = []

        def walk(p):
            out.append(p)
            if p in self.expanded:
                for digit in list(self.tree.children(p))[: self.max_children]:
                    walk(p + (digit,))

        walk(())
        return out

    # -- drawing -----------------------------------------------------------------------------------------------
    def _node_button(self, p: tuple[int, ...]) -> w.Button:
        kids = self.tree.children(p)
        info = self.node_info(p)
        mark = ("▾" if p in self.expanded else "▸") if kids else "•"
        name = "".join(self.tree.token(x) for x in p) or "root"
        label = f"{mark} {name} ({info['size']})"
        if info["doc"] is not None:
            label += f" {info['doc']}: {self._title_of(info['doc'])[:40]}"
        elif info["terms"]:
            label += "  " + ", ".join(info["terms"][:3])
        b = w.Button(description=label, tooltip=f"docid prefix {p}: {info['size']} documents, e.g. " + "; ".join(info["titles"]),
                     layout=w.Layout(width="auto", margin=f"0 0 0 {18 * len(p)}px", height="26px"),
                     button_style="info" if p == self.selected else "")
        b.add_class("dsilab-node")
        b.add_class(f"dsilab-node-{_key(p)}")
        b.on_click(lambda _b, p=p: self.toggle(p))
        return b

    def _draw(self) -> tuple[bytes, str]:
        nodes = self.visible_nodes()
        self.nodes_box.children = [self._node_button(p) for p in nodes]
        info = self.node_info(self.selected)
        top = np.array([self.tree.codes[d][0] for d in self.doc_ids])
        fig = new_figure(6.0, 4.2)
        ax = fig.add_subplot()
        ax.scatter(self.coords[:, 0], self.coords[:, 1], c=top % 10, cmap="tab10", vmin=0, vmax=9, s=14, alpha=0.5,
                   linewidths=0)
        rows = list(self._rows(self.selected))
        if self.selected:
            ax.scatter(self.coords[rows, 0], self.coords[rows, 1], c=top[rows] % 10, cmap="tab10", vmin=0, vmax=9,
                       s=28, edgecolors="black", linewidths=0.8)
        where = "all documents" if not self.selected else f"prefix {self.selected}"
        ax.set_title(f"{where}: {info['size']} of {len(self.doc_ids)} docs (colour = top-level cluster)", fontsize=9)
        ax.set_xticks([]), ax.set_yticks([])
        png = figure_png(fig)
        listed = [[d, "".join(self.tree.tokens(d)), self._title_of(d)[:70]] for d in info["docs"][: self.max_listed]]
        more = len(info["docs"]) - len(listed)
        html = (f"<div class='dsilab-node-info'><b>node {esc(info['prefix'])}</b>: {info['size']} documents; "
                f"terms: <i>{esc(', '.join(info['terms']) or '-')}</i>; sample titles: "
                f"<i>{esc('; '.join(info['titles']))}</i><br>"
                + table(["doc", "docid", "title"], listed)
                + (f"<i>... and {more} more</i>" if more > 0 else "") + "</div>")
        return png, html
