"""Checkers of chapter 05 · DSI training."""
from __future__ import annotations

from typing import Any

from ..core import Run
from ..metrics import evaluate
from ._registry import _close, checker


@checker("05.1")
def _greedy_hits(answer: Any, model: Any, queries: dict[str, str], qrels: Any) -> tuple[bool, str]:
    """Test Hits@1 of greedy (beam 1) constrained decoding."""
    from ..decode import search

    expected = evaluate(search(model, queries, k=1, beam_size=1), qrels, ("Hits@1",))["Hits@1"]
    if _close(answer, expected, 1e-4):
        return True, (f"right: {expected:.4f}. With atomic docids a docid is one token, so greedy decoding takes the "
                      "argmax of a single softmax: the same top-1 as any beam. With multi-token (semantic, naive) "
                      "docids a greedy first step can commit to the wrong cluster, and a wider beam can recover.")
    return False, (f"you have {answer!r}. Run search(model, queries, k=1, beam_size=1) and read 'Hits@1' from "
                   "dsilab.evaluate(run, qrels, ('Hits@1',)).")


@checker("05.2")
def _complementary(answer: Any, dsi_run: Run, bm25_run: Run, qrels: Any) -> tuple[bool, str]:
    """(queries DSI misses but BM25 hits at rank 1, queries BM25 misses but DSI hits)."""
    def hit(run: Run, q: str) -> bool:
        return bool(run.get(q)) and run[q][0][0] in qrels[q]

    expected = (sum(hit(bm25_run, q) and not hit(dsi_run, q) for q in qrels),
                sum(hit(dsi_run, q) and not hit(bm25_run, q) for q in qrels))
    try:
        got = tuple(int(x) for x in answer)
    except (TypeError, ValueError):
        return False, f"answer with a pair of counts (dsi_only_misses, bm25_only_misses); you have {answer!r}."
    if got == expected:
        return True, (f"right: {expected}. DSI misses {expected[0]} queries BM25 answers, and answers {expected[1]} "
                      "that BM25 misses: " + ("they are complementary, so fusion can beat both." if expected[1] >= max(1, expected[0] // 4)
                                              else "BM25 (almost) dominates DSI at rank 1 here; fusion has little to gain."))
    if got == expected[::-1]:
        return False, "you have the pair the wrong way round: first the queries only DSI misses."
    return False, (f"you have {got}. A query 'hits' when the run's first document is in qrels[q]; count the queries "
                   "where BM25 hits and DSI does not, then the reverse.")


def hits1_by_document(run: Run, qrels: Any) -> dict[str, float]:
    """Mean Hits@1 per relevant document: the share of the queries about document d whose first answer is relevant."""
    got: dict[str, list[float]] = {}
    for q, rel in qrels.items():
        hit = float(bool(run.get(q)) and run[q][0][0] in rel)
        for d in rel:
            got.setdefault(d, []).append(hit)
    return {d: sum(v) / len(v) for d, v in got.items()}


@checker("05.3")
def _seen_queries(answer: Any, measured: str, train_run: Run, train_qrels: Any, test_run: Run,
                  test_qrels: Any) -> tuple[bool, str]:
    """Predict, then run: Hits@1 on the training queries against the test queries, paired by relevant document:
    "higher", "lower" or "too small to tell" (the verdict of dsilab.metrics.paired_difference)."""
    from ..metrics import paired_difference
    from ._registry import compare_prediction

    train, test = hits1_by_document(train_run, train_qrels), hits1_by_document(test_run, test_qrels)
    docs = sorted(set(train) & set(test))
    d = paired_difference({x: train[x] for x in docs}, {x: test[x] for x in docs})
    if measured != d["verdict"]:
        return False, (f"the cell measured {measured!r}, the recomputation gives {d['verdict']!r}: compare the per-document "
                       "Hits@1 of the two runs with paired_difference on the documents both sets of queries point to.")
    ok, said = compare_prediction(answer, d["verdict"], choices=("higher", "lower", "too small to tell"))
    why = (f"Training queries score {d['A']:.3f} and test queries {d['B']:.3f} on the same {d['queries']} documents "
           f"(difference {d['difference']:+.3f}, 95% paired interval [{d['CI'][0]:.3f}, {d['CI'][1]:.3f}]). The model was "
           "fitted to the training questions themselves: for them it only has to recall a mapping it was taught. A test "
           "question about the same document is new wording, and DSI must generalise from the document text and its "
           "other questions. The gap between the two is how much of the retrieval score is memorised rather than learned; "
           "pairing by document removes the differences between easy and hard documents.")
    return ok, f"{said} {'Right' if ok else 'Not this time'}. {why}"


def top1_agreement(run: Run, other: Run) -> float:
    """Share of the queries of `run` whose first document is also `other`'s first."""
    same = [bool(run[q]) and bool(other.get(q)) and run[q][0][0] == other[q][0][0] for q in run]
    return sum(same) / max(1, len(same))


@checker("05.5")
def _whose_ranking(answer: Any, plan_run: Run, dsi_run: Run, bm25_run: Run) -> tuple[bool, str]:
    """(share of queries where the planned run's first document is BM25's first, the same share without the plan)."""
    expected = (top1_agreement(plan_run, bm25_run), top1_agreement(dsi_run, bm25_run))
    try:
        got = tuple(float(x) for x in answer)
    except (TypeError, ValueError):
        return False, f"answer with a pair of shares (with the plan, without it); you have {answer!r}."
    if len(got) == 2 and all(_close(g, e, 1e-3) for g, e in zip(got, expected)):
        return True, (f"right: {expected[0]:.3f} with the plan against {expected[1]:.3f} without. The plan adds up to w "
                      "to a document's log-probability: the larger the weight chosen on dev, the more often BM25's first "
                      "document comes first. Whatever the plan gains over the plain model then has to be judged against "
                      "BM25 alone, paired, before it is credited to the model.")
    return False, (f"you have {answer!r}. For each test query, compare the run's first document with BM25's first; the "
                   "share of queries where they are the same, once for plan_run, once for dsi_run.")


@checker("05.6")
def _teacher_temperature(answer: Any, model: Any, query: str, teacher_list: list[tuple[str, float]]) -> tuple[bool, str]:
    """(prefix loss at teacher temperature 0.01, at 1.0) for one question and its teacher list."""
    from ..distill import prefix_distributions

    first = lambda rows: next(r["teacher p"] for r in reversed(rows) if r["documents"] == [teacher_list[0][0]])
    (cold, loss_cold), (warm, loss_warm) = (prefix_distributions(model, query, teacher_list, t) for t in (0.01, 1.0))
    try:
        got = tuple(float(x) for x in answer)
    except (TypeError, ValueError):
        return False, f"answer with a pair of losses (T = 0.01, T = 1); you have {answer!r}."
    if len(got) == 2 and all(_close(g, e, 1e-3) for g, e in zip(got, (loss_cold, loss_warm))):
        return True, (f"right: {loss_cold:.3f} at T = 0.01 and {loss_warm:.3f} at T = 1. The teacher gives its first "
                      f"document {first(cold):.3f} of its probability at T = 0.01 and {first(warm):.3f} at T = 1 (of "
                      f"{len(teacher_list)} documents). A small T turns the list into (almost) a top-1 label: the loss is "
                      "then close to the model's cross-entropy on that one document. A large T flattens the teacher "
                      "towards no preference, and the loss mostly asks the model to spread its probability evenly.")
    return False, (f"you have {answer!r}. Call prefix_distributions(model, queries[qid], teacher_list, T) at T = 0.01 "
                   "and T = 1.0; its second value is the loss.")
