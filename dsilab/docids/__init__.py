"""Document identifiers for DSI: atomic, naive string and semantic (recursive k-means) docids.

A docid is a tuple of small integers (its *code*); a model reads and writes it as one token per
digit (`DocidTree.tokens`). Three kinds, as in the DSI paper (Tay et al., 2022):

* ``atomic``: one new token per document, ``(i,)`` -> ``["<a17>"]``; decoding is a single softmax.
* ``naive``: the document's number written as digit tokens, 17 -> ``["<n1>", "<n7>"]``.
* ``semantic``: recursive k-means over document embeddings: k clusters per level, recurse while a
  cluster holds more than c documents, the position inside the final cluster is the last digit.
  Documents that share a prefix are close in embedding space, so the decoder's first steps choose
  a topic, the later steps a document.

A fourth kind, ``residual`` (`dsilab.docids.residual`): residual quantisation of the embeddings, L levels of K codes,
collisions handled (DGI's docids). The package's parts: `tree` (DocidTree), `residual`, and here the builders and
`DocidConfig`, the docid part of a recipe, which may build semantic or residual docids from *relevance*: the
embeddings of MiniLM fine-tuned on the training queries (RIPOR's relevance-based docids), so that documents answering
the same kind of question share a prefix.

`DocidTree` is the bijection doc <-> code plus the tree view the course and the widgets need:

>>> tree = make_docids(collection, "semantic", k=10, c=100)
>>> tree.codes["d000"], tree.tokens("d000"), tree.doc((3, 1, 4))
>>> tree.children(()) ; tree.docs_under((3,)) ; tree.stats()
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

from ..core import DsilabError, check_choice
from ..data import Collection

from .tree import KINDS, TREE_KINDS, DocidTree

__all__ = ["KINDS", "TREE_KINDS", "DOCID_SPACES", "DocidConfig", "DocidTree", "document_embeddings", "make_docids",
           "prefix_similarity"]


# -- builders --------------------------------------------------------------------------------------
def _recursive_kmeans(emb: np.ndarray, idx: np.ndarray, prefix: tuple[int, ...], k: int, c: int, seed: int,
                      out: dict[int, tuple[int, ...]]) -> None:
    """The DSI paper's Algorithm 1: split into k clusters until a cluster holds at most c docs."""
    from sklearn.cluster import KMeans
    from sklearn.exceptions import ConvergenceWarning

    if len(idx) <= c:
        for pos, i in enumerate(idx):
            out[int(i)] = prefix + (pos,)
        return
    k = min(k, len(idx))  # c < k: a cluster of more than c but fewer than k docs splits into one doc per cluster
    with warnings.catch_warnings():  # duplicates: handled just below
        warnings.simplefilter("ignore", ConvergenceWarning)
        labels = KMeans(n_clusters=k, n_init=1, random_state=seed).fit_predict(emb[idx])
    if np.bincount(labels, minlength=k).max() == len(idx):
        # Identical embeddings cannot be separated: split in order so that recursion ends.
        labels = np.arange(len(idx)) * k // len(idx)
    for j in range(k):
        members = idx[labels == j]
        if len(members):
            _recursive_kmeans(emb, members, prefix + (j,), k, c, seed, out)


@dataclass(frozen=True)
class DocidConfig:
    """Which docids a collection gets (the docid part of `dsilab.recipes.Recipe`)."""

    docids: str = "semantic"             # atomic | naive | semantic | residual (`docids.residual`)
    k: int = 10                          # semantic docids: clusters per level; residual: codes per level
    c: int = 100                         # semantic docids: most documents in a leaf cluster
    docid_space: str = "minilm"          # what semantic and residual docids quantise: the MiniLM document embeddings,
    #                                      or "relevance": those of MiniLM fine-tuned on the training queries (RIPOR's
    #                                      relevance-based docids: documents answering the same questions share a prefix)
    seed: int = 0

    def __post_init__(self) -> None:
        check_choice("docids", self.docids, TREE_KINDS)
        check_choice("docid_space", self.docid_space, DOCID_SPACES)
        if self.docid_space != "minilm" and self.docids not in ("semantic", "residual"):
            raise DsilabError(f"docid_space={self.docid_space!r} shapes semantic or residual docids, not "
                              f"{self.docids!r}: set docids='semantic' or 'residual', or leave docid_space='minilm'.")

    def make_docids(self, collection: Collection) -> "DocidTree":
        """The docids of `collection` by this config (`make_docids`; residual: `residual.residual_codes` with
        k codes per level and as many levels as k**levels needs to exceed the documents)."""
        if self.docids in ("atomic", "naive"):
            return make_docids(collection, self.docids, seed=self.seed)
        emb = document_embeddings(collection, self.docid_space, self.seed)
        if self.docids == "semantic":
            return make_docids(collection, self.docids, k=self.k, c=self.c, seed=self.seed, embeddings=emb)
        from .residual import residual_codes

        levels = max(1, math.ceil(math.log(len(collection.docs)) / math.log(self.k)))
        tree = residual_codes(collection.doc_ids, emb, levels, self.k, self.seed).tree()
        return DocidTree("residual", tree.codes, {k: v for k, v in tree.params.items() if k != "quantiser"})


#: What semantic and residual docids may quantise (`DocidConfig.docid_space`).
DOCID_SPACES = ("minilm", "relevance")


def document_embeddings(collection: Collection, space: str = "minilm", seed: int = 0) -> np.ndarray:
    """The document embeddings docids are built from: MiniLM's (cached), or, for "relevance", those of MiniLM
    fine-tuned on the collection's training queries (`baselines.FineTunedDense`, in-batch negatives)."""
    check_choice("docid space", space, DOCID_SPACES)
    if space == "minilm":
        from ..embed import load_encoder

        return load_encoder().encode_cached(collection.contents)
    if "train" not in collection.qrels:
        raise DsilabError(f"relevance-based docids are learned from training queries, and collection "
                          f"{collection.name!r} has none (splits: {collection.splits}): use docid_space='minilm'.")
    from ..baselines import FineTunedDense

    return FineTunedDense(collection, "train", seed=seed).doc_emb


def make_docids(collection: Collection, kind: str = "semantic", k: int = 10, c: int = 100, seed: int = 0,
                embeddings: np.ndarray | None = None) -> DocidTree:
    """Build the docids of a collection; `semantic` embeds the documents with MiniLM unless given `embeddings`.

    k: clusters per level (>= 2); c: most documents in a leaf cluster (>= 1). Deterministic per seed.
    """
    check_choice("docid kind", kind, KINDS)
    doc_ids = collection.doc_ids
    if not doc_ids:
        raise DsilabError("cannot make docids for an empty collection: add documents first.")
    if kind == "atomic":
        return DocidTree("atomic", {d: (i,) for i, d in enumerate(doc_ids)})
    if kind == "naive":
        return DocidTree("naive", {d: tuple(int(ch) for ch in str(i)) for i, d in enumerate(doc_ids)})
    if k < 2:
        raise DsilabError(f"semantic docids need k >= 2 clusters per level, got k={k}.")
    if c < 1:
        raise DsilabError(f"semantic docids need c >= 1 documents per leaf cluster, got c={c}.")
    if embeddings is None:
        embeddings = document_embeddings(collection)
    embeddings = np.asarray(embeddings, dtype=np.float32)
    if embeddings.ndim != 2 or embeddings.shape[0] != len(doc_ids):
        raise DsilabError(f"embeddings must be a (n_docs={len(doc_ids)}, dim) matrix, got shape {embeddings.shape}.")
    from threadpoolctl import threadpool_limits

    out: dict[int, tuple[int, ...]] = {}
    with threadpool_limits(1):  # many small KMeans fits: threads cost far more than they save (same codes)
        _recursive_kmeans(embeddings, np.arange(len(doc_ids)), (), k, c, seed, out)
    return DocidTree("semantic", {doc_ids[i]: out[i] for i in range(len(doc_ids))}, {"k": k, "c": c, "seed": seed})


def prefix_similarity(tree: DocidTree, embeddings: np.ndarray) -> dict[int, float]:
    """Mean cosine similarity of document pairs by the length of their shared docid prefix.

    For semantic docids it rises with the shared prefix (the docid encodes meaning); for atomic
    and naive docids it stays flat. `embeddings`: unit-norm rows in `tree.codes` order.
    """
    codes = list(tree.codes.values())
    emb = np.asarray(embeddings, dtype=np.float32)
    if emb.shape[0] != len(codes):
        raise DsilabError(f"embeddings have {emb.shape[0]} rows for {len(codes)} docids; pass one row per document.")
    depth = max(len(c) for c in codes)
    grid = np.full((len(codes), depth), -1)
    for i, c in enumerate(codes):
        grid[i, : len(c)] = c
    # shared[i, j] = number of leading tokens docids i and j have in common (vectorised: cumprod of equality)
    same = (grid[:, None, :] == grid[None, :, :]) & (grid[:, None, :] >= 0)
    shared = np.cumprod(same, axis=2).sum(axis=2)
    upper = np.triu_indices(len(codes), k=1)
    sim, shared = (emb @ emb.T)[upper], shared[upper]
    return {int(n): float(sim[shared == n].mean()) for n in np.unique(shared)}
