"""Exercise checkers: every notebook's exercises end in `check("NN.k", answer, **context)`.

A checker recomputes the expected result on its own and says, helpfully, what is off. An answer
left as `None` is "not attempted" (the notebook still runs). With `strict=True` (the notebooks
pass `strict=SOLUTIONS`, and CI runs with SOLUTIONS = True) a failing answer raises, so every
reference solution is checked on every CI run; tests/test_exercises.py feeds each checker a
wrong answer too.
"""
from __future__ import annotations

from typing import Any, Callable

from .core import DsilabError, Run
from .data import Collection
from .metrics import evaluate

Checker = Callable[..., tuple[bool, str]]
CHECKERS: dict[str, Checker] = {}


def checker(exercise: str) -> Callable[[Checker], Checker]:
    """Register a function `(answer, **context) -> (ok, message)` for one exercise id."""

    def register(fn: Checker) -> Checker:
        CHECKERS[exercise] = fn
        return fn

    return register


def check(exercise: str, answer: Any, *, strict: bool = False, **context: Any) -> bool:
    """Print feedback on one answer and return whether it is right; raise on a miss when `strict`."""
    if exercise not in CHECKERS:
        raise DsilabError(f"no checker for exercise {exercise!r}; known: {sorted(CHECKERS)}.")
    if answer is None:
        ok, message = False, "not attempted yet: replace `None` with your answer and run the cell again."
    else:
        ok, message = CHECKERS[exercise](answer, **context)
    print(f"{'✅' if ok else '❌'} Exercise {exercise}: {message}")
    if strict and not ok:
        raise DsilabError(f"exercise {exercise}: the reference solution did not pass: {message}")
    return ok


def _close(a: float, b: float, tol: float = 1e-6) -> bool:
    return abs(float(a) - float(b)) <= tol


# -- 00 welcome ---------------------------------------------------------------------------------
@checker("00.1")
def _constant_run(answer: Any, collection: Collection, doc_id: str = "d000") -> tuple[bool, str]:
    """Hits@1 of a run that answers every test query with `doc_id`."""
    queries, qrels = collection.split("test")
    expected = sum(doc_id in rels for rels in qrels.values()) / len(qrels)
    if _close(answer, expected):
        return True, (f"right: {expected:.4f}. Only the queries whose relevant passage is {doc_id} can hit, "
                      "and MRR@10 equals Hits@1 here because there is a single candidate per query.")
    return False, (f"you have {answer!r}. Build {{qid: [({doc_id!r}, 1.0)] for qid in queries}} for the test "
                   "split and pass it with the test qrels to dsilab.evaluate; read off 'Hits@1'.")


@checker("00.2")
def _split_hygiene(answer: Any, collection: Collection) -> tuple[bool, str]:
    """(queries shared by train and test, passages without a training question)."""
    train, test = set(collection.qrels["train"]), set(collection.qrels["test"])
    with_train = {d for rels in collection.qrels["train"].values() for d in rels}
    expected = (len(train & test), len(set(collection.docs) - with_train))
    if tuple(answer) == expected:
        return True, f"right: {expected}. No test query is seen in training, and every passage has a training question."
    return False, (f"you have {tuple(answer)}, expected a pair (shared query ids, passages without a train query). "
                   "Use set(collection.qrels['train']) & set(collection.qrels['test']) for the first.")


# -- 01 baselines -------------------------------------------------------------------------------
@checker("01.1")
def _bm25_no_stopwords(answer: Any, collection: Collection) -> tuple[bool, str]:
    """Test Hits@1 of BM25 with stopwords kept."""
    from .baselines import BM25

    queries, qrels = collection.split("test")
    expected = evaluate(BM25(collection, stopwords=False).search(queries, k=10), qrels, ["Hits@1"])["Hits@1"]
    if _close(answer, expected):
        return True, f"right: {expected:.3f}. Stopwords are frequent in every passage, so their IDF is low and they change little."
    return False, f"you have {answer!r}; expected BM25(collection, stopwords=False) on the test split, metric 'Hits@1'."


def reciprocal_rank_fusion(runs: list[Run], k: int = 60, depth: int = 100) -> Run:
    """Fuse runs by summing 1/(k + rank) per document (Cormack et al., 2009); the checker's reference."""
    fused: dict[str, dict[str, float]] = {}
    for run in runs:
        for qid, ranked in run.items():
            scores = fused.setdefault(qid, {})
            for rank, (doc_id, _) in enumerate(ranked, 1):
                scores[doc_id] = scores.get(doc_id, 0.0) + 1.0 / (k + rank)
    return {q: sorted(s.items(), key=lambda x: (-x[1], x[0]))[:depth] for q, s in fused.items()}


@checker("01.3")
def _rrf(answer: Any, bm25_run: Run, dense_run: Run, qrels: dict) -> tuple[bool, str]:
    """A reciprocal-rank-fusion run of the BM25 and dense runs (k = 60)."""
    if not isinstance(answer, dict) or not all(isinstance(v, list) for v in answer.values()):
        return False, "the answer should be a Run: {qid: [(doc_id, score), ...]} best first."
    # Compare rankings up to ties: the true fused score of each doc the answer ranks must follow
    # the reference's top-10 scores in order (equal-score docs may come in any order).
    reference = reciprocal_rank_fusion([bm25_run, dense_run])
    for qid, ranked in reference.items():
        fused = dict(ranked)
        mine = [fused.get(d, -1.0) for d, _ in answer.get(qid, [])[:10]]
        want = [score for _, score in ranked[:10]]
        if len(mine) < len(want) or not all(_close(a, b) for a, b in zip(mine, want)):
            return False, (f"query {qid}: your top-10 differs from the fused ranking. Sum 1/(60 + rank) over both "
                           "runs per document (rank starts at 1), then sort by the sum, highest first.")
    want = evaluate(reference, qrels, ["Hits@1", "MRR@10"])
    return True, f"right: fused Hits@1 {want['Hits@1']:.3f}, MRR@10 {want['MRR@10']:.3f}. Compare with each run alone."
