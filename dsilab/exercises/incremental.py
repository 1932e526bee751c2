"""Checkers of chapter 10 · incremental indexing."""
from __future__ import annotations

from typing import Any

from ._registry import checker, compare_prediction

WORDS = ("higher", "lower", "too small to tell")


def bm25_before_after(split: Any, metric: str = "Hits@1") -> dict[str, Any]:
    """BM25 on the test queries about old documents, indexing the old documents only (before) and every document
    (after): the paired difference after - before, and how many of those queries changed their top document."""
    from ..baselines import BM25
    from ..metrics import paired_difference

    queries, qrels = split.full.split("test")
    old = {q: queries[q] for q in split.groups("test")["old"]}
    part = {q: qrels[q] for q in old}
    before = BM25(split.old).search(old, k=10)
    after = BM25(split.full).search(old, k=10)
    top = lambda run, q: run[q][0][0] if run.get(q) else None  # noqa: E731
    changed = [q for q in old if top(before, q) != top(after, q)]
    new = set(split.new_ids)
    return {"paired": paired_difference(after, before, part, metric), "queries": len(old), "changed": len(changed),
            "to a new document": sum(top(after, q) in new for q in changed)}


@checker("10.1")
def _bm25_adding(answer: Any, split: Any) -> tuple[bool, str]:
    """Predict, then run: BM25's Hits@1 on old queries after adding the new documents, against before."""
    m = bm25_before_after(split)
    ok, said = compare_prediction(answer, m["paired"]["verdict"], choices=WORDS)
    diff, (lo, hi) = m["paired"]["difference"], m["paired"]["CI"]
    why = (f" After - before: {diff:+.3f}, 95% paired interval [{lo:.3f}, {hi:.3f}] on "
           f"{m['queries']} old queries. BM25 cannot forget: every old document keeps its postings. What adding "
           "documents changes is the collection statistics (idf, average length) and the competition: "
           f"{m['changed']} of the {m['queries']} old queries changed their top document, {m['to a new document']} "
           "of them to a new one. A paired test reads only the queries whose outcome changed"
           + (": here none did, so the difference is exactly zero." if not m["changed"] else
              ", so a handful of changes among many queries stays inside the noise; many changes, or lopsided ones, "
              "would not."))
    return ok, said + why


@checker("10.2")
def _replay_examples(answer: Any, initial: Any, split: Any, tree: Any, replay: float = 2.0) -> tuple[bool, str]:
    """Training examples in one epoch of a replay update with `replay` old examples per new example."""
    from ..incremental import UpdateConfig, update_examples

    examples = update_examples(initial, split, tree, "replay", UpdateConfig(replay=replay))
    new = sum(e.doc_id in set(split.new_ids) for e in examples)
    expected = len(examples)
    if isinstance(answer, bool) or not isinstance(answer, (int, float)):
        return False, f"answer with a number of examples; you wrote {answer!r}."
    if int(answer) == expected:
        return True, (f"right: {expected} examples, {new} of the new documents and {expected - new} replayed old ones "
                      f"(round({replay} x {new})). An epoch of replay costs (1 + REPLAY) times an epoch of continued "
                      "training, whatever the size of the old collection: that is why replay stays cheap next to "
                      "retraining, which trains on every document's examples.")
    if int(answer) == new:
        return False, f"{answer} are the new documents' examples only (continued training); replay adds old ones."
    return False, (f"you have {answer!r}. Count the new documents' examples (indexing, plus their training "
                   f"questions), then add round({replay} x that) replayed old examples; or call "
                   "len(update_examples(initial, split, tree, 'replay', UpdateConfig(replay=...))).")
