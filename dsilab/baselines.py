"""The two retrievers every learned index is measured against: BM25 (lexical) and dense (MiniLM)."""
from __future__ import annotations

import re

import numpy as np
from rank_bm25 import BM25Okapi
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

from .core import DsilabError, Run, run_from_scores
from .data import Collection
from .embed import DEFAULT_ENCODER, load_encoder

_WORD = re.compile(r"\w+", re.UNICODE)


def tokenize(text: str, stopwords: bool = True) -> list[str]:
    """Lower-cased word tokens, English stopwords dropped (scikit-learn's list)."""
    words = _WORD.findall(text.lower())
    return [w for w in words if w not in ENGLISH_STOP_WORDS] if stopwords else words


class BM25:
    """Okapi BM25 over a collection's documents, from `rank-bm25` (k1, b as in the literature)."""

    def __init__(self, collection: Collection, k1: float = 1.2, b: float = 0.75, stopwords: bool = True):
        self.doc_ids = collection.doc_ids
        self.stopwords = stopwords
        self.index = BM25Okapi([tokenize(t, stopwords) for t in collection.contents], k1=k1, b=b)

    def search(self, queries: dict[str, str], k: int = 100) -> Run:
        """Top-k documents per query by BM25 score."""
        qids = list(queries)
        scores = np.vstack([self.index.get_scores(tokenize(queries[q], self.stopwords)) for q in qids]) if qids else np.zeros((0, len(self.doc_ids)))
        return run_from_scores(qids, self.doc_ids, scores, k)


class Dense:
    """Exact inner-product search over unit-norm sentence embeddings (a dual encoder, untrained here)."""

    def __init__(self, collection: Collection, encoder: str = DEFAULT_ENCODER, progress: bool = False):
        self.encoder = load_encoder(encoder)
        self.doc_ids = collection.doc_ids
        self.doc_emb = self.encoder.encode_cached(collection.contents, progress=progress)

    def search(self, queries: dict[str, str], k: int = 100) -> Run:
        """Top-k documents per query by cosine similarity."""
        qids = list(queries)
        if not qids:
            return {}
        q = self.encoder.encode([queries[x] for x in qids])
        if q.shape[1] != self.doc_emb.shape[1]:
            raise DsilabError("query and document embeddings differ in dimension: encode both with the same encoder.")
        return run_from_scores(qids, self.doc_ids, q @ self.doc_emb.T, k)
