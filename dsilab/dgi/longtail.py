"""Long-tail settings and their evaluation: Zipfian training queries, popularity buckets, popularity bias.

A *long-tail setting* gives each document a popularity rank (a seeded random permutation) and keeps
round(n_max / (rank+1)^s) training queries for it (Zipf's law): the collection's own training
queries first, then span pseudo-queries (dsilab.querygen.generate_queries) when a popular document
needs more. Every document also has its indexing example (its own embedding), so tail documents
are learnable, but from far less signal. Test queries stay one per document and are grouped by the
popularity rank of their relevant document: head (top 20% of documents), torso (next 30%), tail.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ..core import DsilabError, Qrels, Run, run_from_scores
from ..data import Collection, synthetic_collection
from ..metrics import evaluate
from .model import DGIConfig

BUCKETS = ("head", "torso", "tail")

#: The compared systems: DSI on k-means semantic docids (same decoder, fixed codes, hard teacher
#: forcing, untied tables, inner-product logits), DGI, and DGI with one ingredient removed.
METHODS: dict[str, dict[str, Any]] = {
    "DSI-semantic (k-means)": {"index": "fixed", "gumbel": False, "share_weights": False, "logits": "inner"},
    "DGI": {},
    "DGI w/o Gumbel soft TF": {"gumbel": False},
    "DGI w/o weight sharing": {"share_weights": False},
    "DGI inner-product logits": {"logits": "inner"},
}


@dataclass
class LongTailSetting:
    """Everything a run needs: doc and query embeddings, Zipfian training pairs, test queries, buckets."""

    name: str
    collection: Collection
    doc_ids: list[str]
    doc_emb: np.ndarray
    train_emb: np.ndarray
    train_doc: np.ndarray            # index into doc_ids, one per training query
    popularity: np.ndarray           # training queries per document (Zipf counts actually kept)
    rank: np.ndarray                 # popularity rank per document (0 = most popular)
    test_qids: list[str]
    test_emb: np.ndarray
    qrels: Qrels
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def bucket(self) -> dict[str, str]:
        """doc_id -> head / torso / tail, by popularity rank (fractions in params['fractions'])."""
        head, torso = self.params.get("fractions", (0.2, 0.3))
        n = len(self.doc_ids)
        cut1, cut2 = round(head * n), round((head + torso) * n)
        return {d: ("head" if r < cut1 else "torso" if r < cut2 else "tail") for d, r in zip(self.doc_ids, self.rank)}

    def describe(self) -> dict[str, Any]:
        """Counts per bucket: documents, training queries, test queries."""
        b = self.bucket
        rel = [next(iter(r)) for r in self.qrels.values()]
        out: dict[str, Any] = {"setting": self.name, "docs": len(self.doc_ids), "training queries": int(self.popularity.sum())}
        for name in BUCKETS:
            docs = [i for i, d in enumerate(self.doc_ids) if b[d] == name]
            out[f"{name}: docs / train q / test q"] = f"{len(docs)} / {int(self.popularity[docs].sum())} / {sum(b[d] == name for d in rel)}"
        return out


def zipf_counts(n_docs: int, s: float = 1.0, n_max: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Popularity rank per document (seeded permutation) and round(n_max / (rank+1)^s) queries each."""
    if n_docs < 1 or n_max < 1 or s < 0:
        raise DsilabError(f"zipf_counts needs n_docs >= 1, n_max >= 1, s >= 0; got {n_docs}, {n_max}, {s}.")
    rank = np.random.default_rng(seed).permutation(n_docs)
    counts = np.floor(n_max / (rank + 1.0) ** s + 0.5).astype(int)
    return rank, counts


def long_tail(collection: Collection, s: float = 1.0, n_max: int = 64, seed: int = 0, split: str = "test",
              train_split: str = "train", fractions: tuple[float, float] = (0.2, 0.3), encoder: str = "minilm") -> LongTailSetting:
    """A Zipfian long-tail setting of any collection (see the module docstring). Deterministic per seed."""
    from ..embed import load_encoder
    from ..querygen import generate_queries

    doc_ids = collection.doc_ids
    rank, counts = zipf_counts(len(doc_ids), s, n_max, seed)
    real: dict[str, list[str]] = {d: [] for d in doc_ids}
    if train_split in collection.qrels:
        queries, judged = collection.split(train_split)
        for q, rels in judged.items():
            for d, g in rels.items():
                if g > 0:
                    real[d].append(queries[q])
    short = int(max((c - len(real[d]) for d, c in zip(doc_ids, counts)), default=0))
    pseudo = generate_queries(collection, short, "span", seed=seed) if short > 0 else {}
    texts, owner = [], []
    for i, d in enumerate(doc_ids):
        pool = real[d] + list(pseudo.get(d, []))
        texts += pool[: counts[i]]
        owner += [i] * min(counts[i], len(pool))
    kept = np.bincount(np.array(owner, dtype=int), minlength=len(doc_ids))
    test_q, test_rels = collection.split(split)
    qrels: Qrels = {}
    taken: set[str] = set()
    for q, rels in test_rels.items():          # one test query per relevant document
        d = next(iter(rels))
        if d not in taken:
            qrels[q] = rels
            taken.add(d)
    enc = load_encoder(encoder)
    return LongTailSetting(
        name=f"{collection.name}-zipf{s:g}", collection=collection, doc_ids=doc_ids,
        doc_emb=enc.encode_cached(collection.contents), train_emb=enc.encode_cached(texts) if texts else np.zeros((0, enc.dim), np.float32),
        train_doc=np.array(owner, dtype=np.int64), popularity=kept, rank=rank, test_qids=list(qrels),
        test_emb=enc.encode_cached([test_q[q] for q in qrels]), qrels=qrels,
        params={"s": s, "n_max": n_max, "seed": seed, "split": split, "fractions": fractions,
                "pseudo_queries": int(max(0, len(texts) - sum(min(len(real[d]), c) for d, c in zip(doc_ids, counts))))},
    )


def synthetic_long_tail(n_docs: int = 500, s: float = 1.0, n_max: int = 64, seed: int = 0, **kwargs: Any) -> LongTailSetting:
    """The synthetic collection with Zipfian popularity: n_max training queries generated per document,
    then subsampled by `long_tail` (no pseudo-queries needed)."""
    coll = synthetic_collection(n_docs=n_docs, queries_per_doc=3 * n_max, seed=seed)
    return long_tail(coll, s=s, n_max=n_max, seed=seed, **kwargs)


def report(run: Run, setting: LongTailSetting) -> dict[str, float]:
    """Hits@1/10 overall and per bucket, and popularity bias of the top-1 document.

    pop bias = mean training-query count of the top-1 retrieved documents divided by that of the
    relevant documents (1 = no bias; > 1 = the retriever favours popular documents).
    """
    overall = evaluate(run, setting.qrels, ("Hits@1", "Hits@10"))
    out = {"Hits@1": overall["Hits@1"], "Hits@10": overall["Hits@10"]}
    bucket = setting.bucket
    for name in BUCKETS:
        sub = {q: r for q, r in setting.qrels.items() if bucket[next(iter(r))] == name}
        if sub:
            m = evaluate(run, sub, ("Hits@1", "Hits@10"))
            out[f"{name} Hits@1"], out[f"{name} Hits@10"] = m["Hits@1"], m["Hits@10"]
    pop = dict(zip(setting.doc_ids, setting.popularity))
    top1 = [pop[run[q][0][0]] if run.get(q) else 0 for q in setting.qrels]
    rel = [pop[next(iter(r))] for r in setting.qrels.values()]
    out["pop@1"] = float(np.mean(top1))
    out["pop(relevant)"] = float(np.mean(rel))
    out["pop bias"] = out["pop@1"] / max(out["pop(relevant)"], 1e-9)
    return out


def dense_run(setting: LongTailSetting, k: int = 10) -> Run:
    """The untrained MiniLM dual encoder on the same test queries (a reference, no training at all)."""
    return run_from_scores(setting.test_qids, setting.doc_ids, setting.test_emb @ setting.doc_emb.T, k)


def run_method(setting: LongTailSetting, method: str, seed: int = 0, config: DGIConfig = DGIConfig()):
    """Fit one of METHODS on a setting; returns (retriever, run, report + seconds)."""
    from ..docids import make_docids
    from .retriever import DGIRetriever

    if method not in METHODS:
        raise DsilabError(f"unknown method {method!r}; choose one of {list(METHODS)}.")
    cfg = replace(config, seed=seed, **METHODS[method])
    fixed = None
    if cfg.index == "fixed":
        # DSI's semantic docids: recursive k-means with k = c = codes, on the same MiniLM embeddings
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1):  # see DGIRetriever._init_codebooks
            fixed = make_docids(setting.collection, "semantic", k=cfg.codes, c=cfg.codes, seed=seed, embeddings=setting.doc_emb).codes
    t0 = time.perf_counter()
    retriever = DGIRetriever(cfg).fit(setting.doc_ids, setting.doc_emb, setting.train_emb, setting.train_doc, fixed_codes=fixed)
    t1 = time.perf_counter()
    run = retriever.search_embeddings(setting.test_qids, setting.test_emb, k=10)
    row = report(run, setting)
    row.update({"fit_s": round(t1 - t0, 1), "search_s": round(time.perf_counter() - t1, 1)})
    return retriever, run, row


def compare(setting: LongTailSetting, methods: list[str] | None = None, seeds: tuple[int, ...] = (0, 1, 2),
            config: DGIConfig = DGIConfig(), dense: bool = True, progress: bool = False, keep_models: bool = False):
    """Every method x seed on one setting: a DataFrame with one row per run (plus the dense reference).

    keep_models=True also returns {(method, seed): fitted DGIRetriever}.
    """
    import pandas as pd
    from tqdm.auto import tqdm

    rows, models = [], {}
    if dense:
        rows.append({"method": "Dense MiniLM (reference)", "seed": -1, **report(dense_run(setting), setting)})
    jobs = [(m, s) for m in (methods or list(METHODS)) for s in seeds]
    for m, s in tqdm(jobs, disable=not progress, desc=setting.name):
        retriever, _, row = run_method(setting, m, s, config)
        rows.append({"method": m, "seed": s, **row})
        if keep_models:
            models[(m, s)] = retriever
    return (pd.DataFrame(rows), models) if keep_models else pd.DataFrame(rows)


def code_norms(retriever, position: int = 0):
    """Per code of one position: how many training targets fall under it and the norm of its classifier vector
    (the quantity inner-product logits reward and cosine logits ignore)."""
    import pandas as pd

    codes = retriever.code_matrix[:, position]
    targets = np.bincount(np.repeat(codes, retriever.target_counts), minlength=retriever.model.sizes[position])
    norms = retriever.model.output_table(position).detach().norm(dim=1).numpy()
    used = np.bincount(codes[codes >= 0], minlength=len(norms)) > 0
    return pd.DataFrame({"targets": targets, "norm": norms})[used]


def summarise(df, cols: tuple[str, ...] = ("Hits@1", "Hits@10", "head Hits@10", "torso Hits@10", "tail Hits@10", "pop bias")):
    """Mean and standard deviation over seeds, one row per method, in the order methods first appear."""
    order = list(dict.fromkeys(df["method"]))
    g = df.groupby("method", sort=False)[list(cols)]
    out = g.mean().round(4).join(g.std(ddof=0).round(4), rsuffix=" sd")
    return out.loc[order]
