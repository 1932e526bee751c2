"""Checkers of chapter 08 · DSI at scale."""
from __future__ import annotations

from typing import Any

from ._registry import _close, checker, compare_prediction


@checker("08.1")
def _live_memorisation(answer: Any, memo_a: float, memo_b: float, n: int) -> tuple[bool, str]:
    """Predict, then run: atomic (dense-initialised) against semantic docids' memorisation after the same short
    training, a paired test on the same `n` probe documents under the least favourable pairing."""
    from ..metrics import paired_from_means

    measured = paired_from_means(memo_a, memo_b, n)
    ok, said = compare_prediction(answer, measured["verdict"], choices=("higher", "lower", "too small to tell"))
    lo, hi = measured["CI"]
    why = (f" Atomic {memo_a:.2f} against semantic {memo_b:.2f} of {n} documents: {measured['difference']:+.2f} "
           f"[{lo:+.2f}, {hi:+.2f}]. A dense-initialised atomic docid's output row starts at its document's own "
           "encoding, so before any training a document's text already points near its own row: the decoder only has "
           "to learn one map from its state to the encoder's space, shared by all documents. A semantic docid is "
           "spelled digit by digit, and inside a leaf cluster the last digit is arbitrary: it has to be learned "
           "document by document, and a few epochs teach little of it.")
    if measured["verdict"] == "too small to tell":
        why += " On this many probe documents the kept shares cannot establish the difference."
    return ok, said + why


@checker("08.2")
def _most_favourable(answer: Any, hits_a: float, hits_b: float, n_queries: int) -> tuple[bool, str]:
    """(fewest queries on which A and B can disagree, verdict of the paired test on that pairing)."""
    from ..metrics import paired_from_means

    best = paired_from_means(hits_a, hits_b, n_queries, pairing="most favourable")
    worst = paired_from_means(hits_a, hits_b, n_queries)
    expected = (best["disagreements"], best["verdict"])
    if not isinstance(answer, (tuple, list)) or len(answer) != 2:
        return False, "the answer is a pair (number of disagreeing queries, verdict word)."
    n, word = answer
    if n != expected[0]:
        return False, (f"you have {n!r} disagreeing queries. A gets {round(hits_a * n_queries)} queries right and B "
                       f"{round(hits_b * n_queries)}: at the least, they disagree on the difference of the two counts.")
    if not isinstance(word, str) or word.strip().lower() != expected[1]:
        return False, f"the count is right; the verdict of `paired_from_means(..., pairing='most favourable')` is not {word!r}."
    return True, (f"right: ({expected[0]}, {expected[1]!r}). Under the least favourable pairing ({worst['disagreements']} "
                  f"disagreements) the verdict is {worst['verdict']!r}. Both pairings fit the kept means, so the means "
                  "alone cannot rank the two runs: only the per-query scores, which the committed file did not keep, "
                  "could say which pairing is the real one.")


@checker("08.3")
def _atomic_rows(answer: Any, trainable_M: dict[int, float]) -> tuple[bool, str]:
    """(trainable weights each extra document adds with atomic docids, trainable_M predicted at 100k documents)."""
    small, mid, big = (trainable_M[n] for n in (1000, 20000, 100000))
    per_doc = (mid - small) * 1e6 / (20000 - 1000)
    predicted = small + per_doc * (100000 - 1000) / 1e6
    if not isinstance(answer, (tuple, list)) or len(answer) != 2:
        return False, "the answer is a pair (weights per document, trainable_M at 100k documents)."
    got_per_doc, got_100k = answer
    if not _close(got_per_doc, per_doc, 2.0):
        return False, (f"you have {got_per_doc!r} weights per document. Divide the growth of trainable_M (in weights, "
                       "not millions) from 1k to 20k documents by the number of documents added.")
    if not _close(got_100k, predicted, 0.05):
        return False, f"the weights per document are right; start from the 1k row and add the other 99,000 documents' rows."
    return True, (f"right: {per_doc:.0f} weights per document ({per_doc - 1:.0f} for the docid's embedding row, the "
                  f"decoder's width, plus 1 output bias), so {predicted:.1f}M at 100k documents; the committed run has "
                  f"{big:.1f}M. There the docid rows alone hold {per_doc * 100000 / 1e6:.1f}M weights, more than the "
                  f"rest of the network ({small - per_doc * 1000 / 1e6:.1f}M): an atomic-docid model grows with its "
                  "corpus, a semantic-docid one (a fixed set of digit tokens) does not.")
