"""Checkers of chapter 09 · DGI."""
from __future__ import annotations

from typing import Any

from ..data import Collection
from ._registry import _values_match, checker


@checker("09.1")
def _two_levels(answer: Any, codes: Any) -> tuple[bool, str]:
    """(collision rate of the nearest codes, of the learned codes, levels in the end) of 2 x 16 residual codes."""
    if codes is None:
        return False, "build the codes first and pass them: check('09.1', answer, codes=<your ResidualCodes>)."
    rep = codes.report()
    if rep["base levels"] != 2 or rep["codes per level"] != 16:
        return False, (f"these codes have {rep['base levels']} levels of {rep['codes per level']} codes: build "
                       "collection_codes(coll, levels=2, codes=16, seed=SEED).")
    expected = (rep["collision rate (nearest codes)"], rep["collision rate (learned codes)"], rep["levels"])
    if not _values_match(answer, expected, 1e-4):
        return False, (f"you have {answer!r}, expected (nearest collision rate, learned collision rate, levels): read "
                       "them from codes.report().")
    paths = rep["codes per level"] ** rep["base levels"]
    return True, (f"right: {expected}. Two levels of 16 codes give {paths} paths for {rep['docs']} documents, so the "
                  "nearest codes must collide whatever k-means does; the collision-aware assignment moves what it can, "
                  f"and {'an extra level separates the rest' if rep['levels'] > 2 else 'no extra level was needed'}.")


@checker("09.2")
def _steeper_tail(answer: Any, collection: Collection, s: float = 1.3) -> tuple[bool, str]:
    """(training queries, documents without one, BM25's popularity bias on the test split) at Zipf exponent s."""
    from ..baselines import BM25
    from ..dgi.natural import popularity, popularity_bias

    if collection is None:
        return False, "build the collection first and pass it: check('09.2', answer, collection=<your collection>)."
    got_s = collection.meta.get("zipf", {}).get("s")
    if got_s != s:
        return False, f"this collection has Zipf exponent {got_s}: build zipf_collection(coll, s={s})."
    pop = popularity(collection)
    queries, qrels = collection.split("test")
    bias = popularity_bias(BM25(collection).search(queries, k=10), qrels, pop, k=10)
    expected = (sum(pop.values()), sum(v == 0 for v in pop.values()), bias)
    if not _values_match(answer, expected, 1e-6):
        return False, (f"you have {answer!r}, expected (training queries, documents with none, BM25 pop bias): sum and "
                       "count popularity(steep); the bias is popularity_bias(BM25(steep).search(queries, 10), qrels, pop).")
    return True, (f"right: {expected[0]} training queries, {expected[1]} documents without one, BM25 bias {expected[2]:+.3f}. "
                  "BM25 never sees popularity, so whatever the exponent its bias is what chance gives (compare "
                  "bias_band): the level a trained model's bias is read against.")


@checker("09.3")
def _best_tail_variant(answer: Any, result: dict[str, Any]) -> tuple[bool, str]:
    """(the variant with the highest tail (B3+B4) Hits@10, its difference to DGI's verdict) in a committed comparison."""
    from ..experiments.dgi import TAIL, bucket_summary

    if result is None:
        return False, "load the committed result and pass it: check('09.3', answer, result=<the JSON as a dict>)."
    t = bucket_summary(result, base="DGI")
    tail = t[t["bucket"] == TAIL].set_index("variant")
    best = str(tail["Hits@10"].idxmax())
    verdict = "—" if best == "DGI" else str(tail.loc[best, "Δ verdict"])
    expected = (best, verdict)
    if not (isinstance(answer, tuple) and len(answer) == 2 and tuple(answer) == expected):
        return False, (f"you have {answer!r}, expected a pair (variant name, verdict of its difference to DGI): take "
                       f"bucket_summary(result, base='DGI'), keep the bucket {TAIL!r}, find the highest Hits@10 and read "
                       "its 'Δ verdict' ('—' if DGI itself is highest).")
    return True, (f"right: {expected}. On {tail.loc[best, 'queries']} tail queries, "
                  + ("the difference cannot be told from noise: no ablation is shown to help or hurt the tail."
                     if verdict == "too small to tell" else "the difference is larger than the noise."))


@checker("09.4")
def _predict_weight_sharing_tail(prediction: Any, result: dict[str, Any], measured: dict[str, Any] | None = None,
                                 variant: str = "DGI w/o weight sharing", bucket: str = "B3+B4") -> tuple[bool, str]:
    """Predict, then run: the verdict of (variant - DGI) in tail Hits@10 on a committed comparison, paired by query."""
    from ..experiments.dgi import per_query_scores
    from ..metrics import paired_difference
    from ._registry import compare_prediction

    if result is None:
        return False, "load the committed result and pass it: check('09.4', prediction, result=<the JSON as a dict>)."
    a, b = per_query_scores(result, variant, "Hits@10", bucket), per_query_scores(result, "DGI", "Hits@10", bucket)
    d = paired_difference(a, b)
    if measured is not None and (not isinstance(measured, dict) or measured.get("verdict") != d["verdict"]
                                 or abs(float(measured.get("difference", float("nan"))) - d["difference"]) > 1e-3):
        return False, (f"your measurement {measured!r} is not the paired difference of {variant!r} minus 'DGI' on the "
                       f"{bucket} queries: paired_difference(per_query_scores(result, {variant!r}, 'Hits@10', {bucket!r}), "
                       f"per_query_scores(result, 'DGI', 'Hits@10', {bucket!r})).")
    ok, said = compare_prediction(prediction, d["verdict"], choices=("higher", "lower", "too small to tell"))
    n = d["queries"]
    differ = sum(abs(a[q] - b[q]) > 1e-9 for q in a)
    lo, hi = d["CI"]
    why = (f"The difference is {d['difference']:+.3f} [{lo:+.3f}, {hi:+.3f}] on {n} queries. One query is 1/{n} = "
           f"{1 / n:.3f} of the mean, and the two variants give a different seed-averaged score on only {differ} of the {n}: "
           + ("they share the codes, the trie, the recipe and the decoder's input rows, and differ only in whether the "
              "output rows are tied to them" if variant == "DGI w/o weight sharing" else
              "they share the codes, the trie and the recipe, and differ in one switch")
           + ", so on most queries they find (or miss) the same abstract. A switch would have "
           f"to change several tail queries the same way before the interval left 0; "
           + ("here it does not, so no effect can be told, in either direction." if d["verdict"] == "too small to tell"
              else f"here it does: {variant} scores {d['verdict']} than DGI."))
    return ok, f"{said} {why}"
