"""Checkers of chapter 00 · welcome."""
from __future__ import annotations

from typing import Any

from ..data import Collection
from ._registry import _close, checker


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
        shared, without = expected
        return True, (f"right: {expected}. {shared or 'No'} test quer{'y is' if shared == 1 else 'ies are'} seen in "
                      f"training, and {without or 'no'} passage{'' if without == 1 else 's'} lack a training question: "
                      "a retriever trained on the train split meets every test question for the first time.")
    return False, (f"you have {tuple(answer)}, expected a pair (shared query ids, passages without a train query). "
                   "Use set(collection.qrels['train']) & set(collection.qrels['test']) for the first.")


@checker("00.3")
def _random_ranking(answer: Any, measured: float, interval: list[float] | tuple[float, float], n_docs: int,
                    k: int = 10) -> tuple[bool, str]:
    """Predict, then run: the Hits@k of a random ranking, against the one the cell measured (inside its 95% interval)."""
    from ._registry import compare_prediction

    ok, said = compare_prediction(answer, measured, interval=interval)
    why = (f"A question with one relevant passage among {n_docs} finds it in a random top-{k} with probability "
           f"{k}/{n_docs} = {k / n_docs:.4f} (more relevant passages raise it; dsilab.metrics.chance computes the "
           "level), the chance level every table of the course prints. The measured run is "
           "one draw of that coin per query, so it scatters around the chance level, and its interval shows how far "
           "one draw over this many queries can stray. A method counts as better than chance only when its whole "
           "interval lies above that level.")
    return ok, f"{said} {why}"
