"""The retrievers every learned index is measured against: BM25 (lexical), dense MiniLM, and MiniLM fine-tuned."""
from __future__ import annotations

import re
import tempfile
import time

import numpy as np
from rank_bm25 import BM25Okapi
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

from .core import DsilabError, Retriever, Run, run_from_scores, seed_everything
from .data import Collection
from .embed import DEFAULT_ENCODER, Encoder, load_encoder

_WORD = re.compile(r"\w+", re.UNICODE)


def tokenize(text: str, stopwords: bool = True) -> list[str]:
    """Lower-cased word tokens, English stopwords dropped (scikit-learn's list)."""
    words = _WORD.findall(text.lower())
    return [w for w in words if w not in ENGLISH_STOP_WORDS] if stopwords else words


class BM25(Retriever):
    """Okapi BM25 over a collection's documents, from `rank-bm25` (k1, b as in the literature).

    rank-bm25 scores one query at a time in Python (15 ms a query on SciFact's 5,183 abstracts); `search` computes the
    same scores from rank-bm25's own statistics as one sparse product, so 100k generated queries take seconds.
    """

    def __init__(self, collection: Collection, k1: float = 1.2, b: float = 0.75, stopwords: bool = True):
        from scipy.sparse import csr_matrix

        self.doc_ids = collection.doc_ids
        self.stopwords = stopwords
        self.index = ix = BM25Okapi([tokenize(t, stopwords) for t in collection.contents], k1=k1, b=b)
        self.vocab = {w: i for i, w in enumerate(ix.idf)}
        rows, cols, vals = [], [], []
        norm = ix.k1 * (1 - ix.b + ix.b * np.asarray(ix.doc_len) / ix.avgdl)
        for d, freqs in enumerate(ix.doc_freqs):  # one BM25 term weight per (document, word): rank-bm25's formula
            for w, f in freqs.items():
                rows.append(d), cols.append(self.vocab[w]), vals.append(ix.idf[w] * f * (ix.k1 + 1) / (f + norm[d]))
        self.weights = csr_matrix((vals, (rows, cols)), shape=(len(self.doc_ids), len(self.vocab)))

    def scores(self, queries: list[str]):
        """(queries x docs) BM25 scores, equal to rank-bm25's `get_scores` (a repeated query word counts again)."""
        from scipy.sparse import csr_matrix

        rows, cols = [], []
        for i, q in enumerate(queries):
            ids = [self.vocab[w] for w in tokenize(q, self.stopwords) if w in self.vocab]
            rows += [i] * len(ids)
            cols += ids
        counts = csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(queries), len(self.vocab)))
        return (counts @ self.weights.T).toarray()

    def search(self, queries: dict[str, str], k: int = 100, batch_size: int = 1024) -> Run:
        """Top-k documents per query by BM25 score."""
        qids, run = list(queries), {}
        for i in range(0, len(qids), batch_size):  # batches bound the dense (queries x docs) score matrix
            chunk = qids[i : i + batch_size]
            run.update(run_from_scores(chunk, self.doc_ids, self.scores([queries[q] for q in chunk]), k))
        return run


class Dense(Retriever):
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


class FineTunedDense(Dense):
    """MiniLM fine-tuned on a split's (query, relevant doc) pairs with in-batch negatives
    (MultipleNegativesRankingLoss): the trained dual encoder that DSI papers compare against."""

    def __init__(self, collection: Collection, split: str = "train", epochs: int = 1, batch_size: int = 32,
                 lr: float = 2e-5, seed: int = 0, device: str | None = None, progress: bool = False,
                 exclude: set[str] | None = None):
        if epochs < 1 or batch_size < 2 or lr <= 0:
            raise DsilabError(f"FineTunedDense: need epochs >= 1, batch_size >= 2 (in-batch negatives) and lr > 0; "
                              f"got epochs={epochs}, batch_size={batch_size}, lr={lr}.")
        queries, qrels = collection.split(split)
        skip = exclude or set()
        pairs = [(queries[q], collection.docs[d].contents)
                 for q, rels in qrels.items() if q not in skip for d, grade in rels.items() if grade > 0]
        if not pairs:
            raise DsilabError(
                f"FineTunedDense: split {split!r} of collection {collection.name!r} gives no (query, relevant doc) "
                f"pairs{' once `exclude` is applied' if skip else ''}; fine-tuning needs a collection with training "
                f"queries: pick a split that has them (available: {collection.splits}) or use Dense."
            )
        self.n_pairs = len(pairs)
        self.encoder = self._train(pairs, epochs, batch_size, lr, seed, device, progress)
        self.doc_ids = collection.doc_ids
        # Not encode_cached: that cache is keyed by encoder name, which would serve the untrained embeddings.
        self.doc_emb = self.encoder.encode(collection.contents, progress=progress)

    def _train(self, pairs: list[tuple[str, str]], epochs: int, batch_size: int, lr: float, seed: int,
               device: str | None, progress: bool) -> Encoder:
        import torch
        from datasets import Dataset
        from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
        from sentence_transformers.base.sampler import BatchSamplers
        from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
        from transformers import PrinterCallback

        class _Trainer(SentenceTransformerTrainer):
            def add_model_card_callback(self, default_args_dict: dict) -> None:
                pass  # the documented opt-out: no model card is ever written, so skip its data pass and progress bar

        seed_everything(seed)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        encoder = Encoder(DEFAULT_ENCODER, device=device)  # a fresh copy: the shared `load_encoder` one stays untrained
        data = Dataset.from_dict({"anchor": [q for q, _ in pairs], "positive": [d for _, d in pairs]})
        with tempfile.TemporaryDirectory(prefix="dsilab-ft-") as out:
            args = SentenceTransformerTrainingArguments(
                output_dir=out, num_train_epochs=epochs, per_device_train_batch_size=batch_size, learning_rate=lr,
                warmup_steps=0.1, seed=seed, use_cpu=device == "cpu",  # 10% warmup; seed also drives the shuffle
                dataloader_pin_memory=device != "cpu", batch_sampler=BatchSamplers.NO_DUPLICATES,  # no false negatives
                save_strategy="no", eval_strategy="no", logging_strategy="no", report_to="none",
                disable_tqdm=not progress,
            )
            trainer = _Trainer(model=encoder.model, args=args, train_dataset=data,
                               loss=MultipleNegativesRankingLoss(encoder.model))
            trainer.remove_callback(PrinterCallback)  # it prints the final metrics dict when tqdm is off
            start = time.perf_counter()
            trainer.train()
            self.train_seconds = time.perf_counter() - start
        encoder.model.eval()
        return encoder


def reciprocal_rank_fusion(runs: list[Run], k: int = 60, depth: int = 100) -> Run:
    """Fuse runs by summing 1/(k + rank) per document (Cormack et al., 2009); a hybrid of lexical and dense runs."""
    fused: dict[str, dict[str, float]] = {}
    for run in runs:
        for qid, ranked in run.items():
            scores = fused.setdefault(qid, {})
            for rank, (doc_id, _) in enumerate(ranked, 1):
                scores[doc_id] = scores.get(doc_id, 0.0) + 1.0 / (k + rank)
    return {q: sorted(s.items(), key=lambda x: (-x[1], x[0]))[:depth] for q, s in fused.items()}
