"""Checkers of chapter 12 · your own collection: train, save and search."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ._registry import checker, compare_prediction


@checker("12.1")
def _beir_by_hand(answer: Any, docs: list[dict[str, str]], queries: dict[str, str],
                  judgements: list[tuple[str, str, int]], split: str = "test") -> tuple[bool, str]:
    """A BEIR folder written by hand: `load_collection(answer)` must read back exactly these documents, queries and
    judgements (in qrels/<split>.tsv)."""
    from ..core import DsilabError
    from ..data import load_collection

    if not isinstance(answer, (str, Path)):
        return False, f"answer with the folder you wrote (a path), not a {type(answer).__name__}."
    folder = Path(answer)
    missing = [p for p in ("corpus.jsonl", "queries.jsonl", f"qrels/{split}.tsv") if not (folder / p).is_file()]
    if missing:
        return False, (f"{folder} lacks {', '.join(missing)}: a BEIR folder holds corpus.jsonl, queries.jsonl and "
                       f"qrels/<split>.tsv (here qrels/{split}.tsv).")
    try:
        coll = load_collection(folder)
    except DsilabError as e:
        return False, f"load_collection cannot read it: {e}"
    want_docs = {d["_id"]: (d.get("title", ""), d["text"]) for d in docs}
    got_docs = {d: (doc.title, doc.text) for d, doc in coll.docs.items()}
    if set(got_docs) != set(want_docs):
        return False, (f"the corpus holds the ids {sorted(got_docs)}; expected {sorted(want_docs)}: one JSON object "
                       "per line, with the document's id under \"_id\".")
    wrong = [d for d in want_docs if got_docs[d] != want_docs[d]]
    if wrong:
        return False, f"the title or text of {wrong[:3]} differs from the records: write \"title\" and \"text\" as given."
    want_qrels: dict[str, dict[str, int]] = {}
    for q, d, g in judgements:
        want_qrels.setdefault(q, {})[d] = int(g)
    got_qrels = coll.qrels.get(split, {})
    if got_qrels != want_qrels:
        return False, (f"qrels/{split}.tsv reads back as {got_qrels}; expected {want_qrels}: one 'query-id<TAB>corpus-id"
                       "<TAB>score' line per judgement, after a header line.")
    wrong_q = [q for q in want_qrels if coll.queries.get(q) != queries[q]]
    if wrong_q:
        return False, (f"the text of query {wrong_q[:3]} is missing or differs: queries.jsonl holds one "
                       "{\"_id\": ..., \"text\": ...} object per line.")
    return True, (f"right: {len(want_docs)} documents, {len(want_qrels)} judged {split} queries, read back by "
                  "load_collection. `dsilab train --collection FOLDER` takes this folder as it is; with a "
                  "qrels/train.tsv beside it, DSI also learns from your training queries.")


def same_rankings(a: dict[str, list], b: dict[str, list]) -> bool:
    """Whether two runs rank the same documents in the same order for the same queries (scores aside: a TREC file
    keeps six decimals)."""
    return set(a) == set(b) and all([d for d, *_ in a[q]] == [d for d, *_ in b[q]] for q in a)


@checker("12.2")
def _resumed_equals_uninterrupted(answer: Any, command_run: dict[str, list], python_run: dict[str, list]) -> tuple[bool, str]:
    """Predict, then run: are the rankings of the interrupted-and-resumed command's model and the uninterrupted
    in-kernel model "identical" or "different"?"""
    measured = "identical" if same_rankings(command_run, python_run) else "different"
    ok, said = compare_prediction(answer, measured, choices=("identical", "different"))
    differ = sum(1 for q in command_run if q in python_run
                 and [d for d, *_ in command_run[q]] != [d for d, *_ in python_run[q]])
    if measured == "identical":
        why = (f" All {len(command_run)} queries are ranked the same. A checkpoint holds the weights, the optimizer's "
               "moments, the learning-rate schedule, the random generators' states, the position in the shuffled data "
               "and the best weights so far, so the resumed run draws the same batches and takes the same steps as an "
               "uninterrupted one; with the same recipe, seed and machine, the arithmetic is the same too. That is "
               "what makes an interrupted training safe to rerun rather than to restart.")
    else:
        why = (f" {differ} of {len(command_run)} queries are ranked differently. Resuming restores the weights, "
               "optimizer, schedule, random states and data position, so a difference comes from elsewhere: another "
               "number of threads or another processor changes the order of floating-point sums, and training "
               "amplifies such tiny differences. Compare the two models by a paired test, not by identity.")
    return ok, said + why
