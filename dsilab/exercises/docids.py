"""Checkers of chapter 04 · semantic docids."""
from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from ..data import Collection
from ._registry import _close, _fmt, _table_mismatch, checker


def _topic_purity(tree: Any, collection: Collection) -> float | None:
    """Share of documents in their top-level cluster's majority topic; None without topic labels."""
    meta = collection.meta.get("docs") or {}
    if not meta:
        return None
    clusters: dict[int, Counter] = {}
    for doc_id, code in tree.codes.items():
        clusters.setdefault(code[0], Counter())[meta[doc_id]["topic"]] += 1
    return sum(c.most_common(1)[0][1] for c in clusters.values()) / len(tree.codes)


def _needs_topics(collection: Collection) -> tuple[bool, str] | None:
    if not collection.meta.get("docs"):
        return False, "this exercise needs topic labels per document: run the notebook on the lab collection."
    return None


@checker("04.1")
def _tree_shapes(answer: Any, collection: Collection, embeddings: Any, k: int = 10, c: int = 30,
                 seed: int = 0) -> tuple[bool, str]:
    """{(k, c): (mean docid length in tokens, top-level topic purity)} for (2, C), (30, C) and (K, K)."""
    if (no := _needs_topics(collection)):
        return no
    from ..docids import make_docids

    built = {(kk, cc): make_docids(collection, "semantic", k=kk, c=cc, seed=seed, embeddings=embeddings)
             for kk, cc in ((2, c), (30, c), (k, k), (k, c))}
    expected = {key: (float(t.depths.mean()), _topic_purity(t, collection)) for key, t in built.items()}
    base = expected.pop((k, c))
    problem = _table_mismatch(answer, expected, "{(k, c): (mean docid length in tokens, top-level purity)}")
    if problem:
        return False, (problem + " Build make_docids(coll, 'semantic', k=..., c=..., seed=SEED, embeddings=emb); the mean "
                       "docid length is tree.depths.mean(); purity as in section 4, on the first docid digit.")
    same = "unchanged" if _close(expected[(k, k)][1], base[1]) else "changed"
    sizes = sorted(Counter(m["topic"] for m in collection.meta["docs"].values()).values(), reverse=True)
    cap = min(1.0, sum(sizes[:2]) / len(collection.doc_ids))   # 2 clusters hold at most 2 majority topics
    return True, (f"right: {_fmt(expected)} (K={k}, C={c}: {base[0]:.2f} tokens, purity {base[1]:.3f}). k = 2 makes long "
                  "docids of easy binary choices, k = 30 short ones with a 30-way first choice. Purity is not comparable "
                  f"across k: with {len(sizes)} topics, 2 clusters can be at most {cap:.2f} pure. A smaller c only adds "
                  f"levels below (the top-level purity is {same}: the first k-means is the same), and the last digit "
                  "becomes a position in a small cluster, which carries no meaning of its own.")


@checker("04.2")
def _tfidf_docids(answer: Any, collection: Collection, embeddings: Any, k: int = 10, c: int = 30,
                  seed: int = 0) -> tuple[bool, str]:
    """Top-level topic purity of semantic docids built from TF-IDF vectors instead of MiniLM embeddings."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    from ..docids import make_docids

    if (no := _needs_topics(collection)):
        return no
    tfidf = TfidfVectorizer().fit_transform(collection.contents).toarray()   # rows are unit-norm already (norm="l2")
    expected = _topic_purity(make_docids(collection, "semantic", k=k, c=c, seed=seed, embeddings=tfidf), collection)
    minilm = _topic_purity(make_docids(collection, "semantic", k=k, c=c, seed=seed, embeddings=embeddings), collection)
    if isinstance(answer, (int, float)) and _close(answer, expected):
        why = ("passages written per topic share their vocabulary, a strong topic signal" if expected > minilm else
               "exact words miss synonyms and paraphrases that the sentence encoder places together")
        word = "higher" if expected > minilm else "lower" if expected < minilm else "the same"
        return True, (f"right: {expected:.3f} with TF-IDF against {minilm:.3f} with MiniLM: {word} on this seed. TF-IDF "
                      f"clusters by shared words, MiniLM by meaning; a likely reason to test: {why}. This is one k-means "
                      f"seed: rebuild both with a few other seeds before calling it a general difference.")
    return False, (f"you have {answer!r}. Use TfidfVectorizer() with its defaults: emb_tfidf = "
                   "TfidfVectorizer().fit_transform(coll.contents).toarray(), then make_docids(coll, 'semantic', k=K, c=C, "
                   "seed=SEED, embeddings=emb_tfidf) and the purity of its first digit.")


@checker("04.3")
def _shuffled_naive(answer: Any, collection: Collection, embeddings: Any, seed: int = 0) -> tuple[bool, str]:
    """prefix_similarity of naive docids where document i gets the number perm[i] (a seeded permutation)."""
    from ..docids import DocidTree, make_docids, prefix_similarity

    perm = np.random.default_rng(seed).permutation(len(collection.doc_ids))
    shuffled = DocidTree("naive", {d: tuple(int(ch) for ch in str(int(perm[i]))) for i, d in enumerate(collection.doc_ids)})
    expected = prefix_similarity(shuffled, embeddings)
    ordered = prefix_similarity(make_docids(collection, "naive"), embeddings)
    problem = _table_mismatch(answer, expected, "{shared prefix length: mean cosine similarity}")
    if problem:
        if _table_mismatch(answer, ordered, "") is None:
            return False, "that is the curve of the collection order: number the documents by the permutation first."
        return False, (problem + " Give document i the number perm[i], perm = np.random.default_rng(SEED).permutation(n), "
                       "as a DocidTree('naive', {doc_id: tuple of its digits}), then call prefix_similarity(tree, emb).")
    values, before = list(expected.values()), list(ordered.values())
    flat = "is flat" if max(values) - min(values) < 0.02 else "still moves"
    rise = (", so the rise of the ordered curve came from the storage order, not from the docids"
            if before[-1] - before[0] > max(values) - min(values) + 0.02 else "")
    return True, (f"right: {_fmt(expected)} against {_fmt(ordered)} in collection order. Shuffled, the curve {flat}: "
                  f"a shared leading digit says nothing about meaning{rise}.")


@checker("04.4")
def _another_seed(answer: Any, measured: float, collection: Collection, embeddings: Any, k: int = 10, c: int = 30,
                  seed: int = 0) -> tuple[bool, str]:
    """Predict, then run: the share of documents whose semantic docid stays the same when the tree is rebuilt with
    seed + 1 (a prediction within 0.1 of the measurement counts)."""
    from sklearn.metrics import adjusted_rand_score

    from ..docids import make_docids
    from ._registry import compare_prediction

    a = make_docids(collection, "semantic", k=k, c=c, seed=seed, embeddings=embeddings)
    b = make_docids(collection, "semantic", k=k, c=c, seed=seed + 1, embeddings=embeddings)
    docs = collection.doc_ids
    expected = float(np.mean([a.codes[d] == b.codes[d] for d in docs]))
    if not _close(measured, expected, 1e-9):
        return False, (f"the cell measured {measured!r}, the recomputation gives {expected:.3f}: compare sem.codes[d] with "
                       "the codes of make_docids(coll, 'semantic', k=K, c=C, seed=SEED + 1, embeddings=emb) for every d.")
    tol = 0.1
    ok, said = compare_prediction(answer, expected, tolerance=tol)
    if isinstance(answer, (int, float, np.number)) and not isinstance(answer, bool):
        # one measurement of two seeded trees, no interval: say "within the tolerance", never "inside an interval"
        off = float(answer) - expected
        said = (f"you predicted {float(answer):.3f}; the cell measured {expected:.3f} (one pair of seeds, so no interval): "
                f"your guess is {abs(off):.3f} {'above' if off > 0 else 'below'} it, "
                f"{'within' if ok else 'outside'} the tolerance of {tol} that this exercise accepts.")
    ari = adjusted_rand_score([a.codes[d][0] for d in docs], [b.codes[d][0] for d in docs])
    first = float(np.mean([a.codes[d][0] == b.codes[d][0] for d in docs]))
    why = (f"Why: k-means numbers its clusters in an arbitrary order, so the first digit is the same for only {first:.3f} of "
           f"the documents, and the top-level groups themselves agree only partly (adjusted Rand index {ari:.3f}; 1 would be "
           "the same grouping under other names). The last token, a position in the leaf, moves with any change to the leaf. "
           "A DSI model learns one tree: docids are fixed once, before training.")
    return ok, f"{said} {'Right, to that tolerance' if ok else 'Not right'}. {why}"
