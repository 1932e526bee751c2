"""Checkers of chapter 06 · augmentation and query generation."""
from __future__ import annotations

from typing import Any

from ..data import Collection
from ._registry import _values_match, checker


@checker("06.1")
def _number_words_survive(answer: Any, text: str = "It is 2 km deep and 100 years old") -> tuple[bool, str]:
    """The output of Pipeline([Num2Text(), StopwordRemover(keep_numbers=False, keep=<the number words>)]) on `text`.

    `keep_numbers=False` switches off the list's own protection of number words, as the exercise does, so `plain`
    (no `keep`) is what the raw stopword list makes of the sentence.
    """
    from ..augment import Num2Text, Pipeline, StopwordRemover

    number_words = tuple(w for w in Num2Text()(text).lower().split() if w not in text.lower().split())
    run = lambda keep: Pipeline([Num2Text(), StopwordRemover(keep_numbers=False, keep=keep)]).run(  # noqa: E731
        [text], target="queries")[0][0]
    expected, plain = run(number_words), run(())
    if not isinstance(answer, str):
        return False, "the answer is the pipeline's output for the sentence: a string."
    if answer.split() == expected.split():
        lost = [w for w in number_words if w not in plain.lower().split()]
        if not lost:
            return True, (f"right: {expected!r}. The raw stopword list in use has none of these number words, so "
                          "nothing was lost here even without keep; spaCy's list would have deleted them.")
        return True, (f"right: {expected!r}; without keep it is {plain!r}: the number words {lost} were deleted. "
                      "Num2Text runs first and writes numbers as words; a stopword list that contains number words "
                      "then deletes them, so the order of the steps and the list interact.")
    missing = [w for w in number_words if w not in answer.lower().split()]
    if missing:
        return False, (f"the number words {missing} are gone: Num2Text wrote them, then the stopword list removed them. "
                       f"Pass StopwordRemover(keep_numbers=False, keep=(...)) with the words Num2Text produces ({', '.join(number_words)}).")
    return False, ("the number words survive, but the rest differs: run Pipeline([Num2Text(), StopwordRemover(keep=...)])"
                   ".run([text], target='queries')[0][0] on exactly the exercise's sentence.")


@checker("06.2")
def _num2text_reach(answer: Any, collection: Collection) -> tuple[bool, str]:
    """(share of documents Num2Text changes, share of queries it changes)."""
    from ..augment import Num2Text

    num = Num2Text()
    share = lambda texts: sum(r.changed for r in num.augment_batch(texts)) / len(texts)  # noqa: E731
    expected = (share(collection.contents), share(list(collection.queries.values())))
    if _values_match(answer, expected, 1e-9):
        few = ("An augmentation that rewrites the documents but few queries can help mostly through the documents."
               if expected[1] < expected[0] / 2 else "It reaches queries about as often as documents.")
        return True, f"right: {expected[0]:.1%} of the documents and {expected[1]:.1%} of the queries. {few}"
    return False, (f"you have {answer!r}, expected a pair (documents share, queries share). Use Num2Text().augment_batch(texts) "
                   "on collection.contents and on the query texts, and count the records whose .changed is True.")


@checker("06.3")
def _pos_roles(answer: Any, mlm: Any, texts: list[str], roles: tuple = ("ADJ", "NOUN"), fraction: float = 0.1,
               seed: int = 0) -> tuple[bool, str]:
    """{role: [(before, after), ...]}: the words POS-MLM replaces when it masks that part of speech."""
    from ..augment import PosMLM

    expected = {role: [tuple(ch) for r in PosMLM(mlm, roles=(role,), fraction=fraction).augment_batch(texts, seed=seed)
                       for ch in r.changes] for role in roles}
    if not isinstance(answer, dict) or any(role not in answer for role in roles):
        return False, f"the answer should be a dict {{role: [(before, after), ...]}} with the roles {list(roles)}."
    for role in roles:
        if [tuple(ch) for ch in answer[role]] != expected[role]:
            return False, (f"the pairs for {role!r} differ. Use PosMLM(mlm, roles=({role!r},), fraction=FRACTION)"
                           f".augment_batch(texts[:{len(texts)}], seed=SEED) and collect every record's .changes, in order.")
    sample = "; ".join(f"{role}: " + ", ".join(f"{b} -> {a}" for b, a in expected[role][:4]) for role in roles)
    return True, (f"right ({sample}). Which swaps change what the passage is about? Nouns name the subject, so a noun "
                  "swap tends to, and such a variant teaches the index a wrong association; an ablation (section 5) "
                  "is how to measure it.")


@checker("06.4")
def _bm25_stopwords(answer: Any, measured: dict) -> tuple[bool, str]:
    """A prediction ("higher", "lower" or "too small to tell") of BM25's paired Hits@1 verdict, stopwords removed
    from documents and queries against the original collection; `measured` is `paired_difference`'s result."""
    from ._registry import compare_prediction

    if not isinstance(measured, dict) or any(k not in measured for k in ("verdict", "difference", "CI", "queries")):
        return False, "pass measured=paired_difference(run with the augmentation, run without, qrels, 'Hits@1')."
    ok, said = compare_prediction(answer, measured["verdict"], choices=("higher", "lower", "too small to tell"))
    why = (f"The difference is {measured['difference']:+.3f} {measured['CI']} on {measured['queries']} queries. BM25 "
           "weighs each query word by its inverse document frequency: a word found in nearly every document (\"the\", "
           "\"of\", \"is\") adds almost the same small score to every document, so it hardly moves the ranking, and "
           "deleting it hardly moves it either. The DSI model of section 5 reads the query as a sentence through a "
           "frozen encoder pre-trained on natural text; a keyword list is a different input for it, which is why the "
           "same rewrite costs DSI accuracy and leaves BM25 where it was.")
    if measured["verdict"] != "too small to tell":
        why = (f"The difference is {measured['difference']:+.3f} {measured['CI']}: here the rewrite did move BM25. "
               "BM25's inverse document frequency already gives near-zero weight to words in most documents, so look at "
               "the queries whose top document changed to see which removed words carried information.")
    return ok, f"{said} {why}"
