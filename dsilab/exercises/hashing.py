"""Checkers of chapter 03 · differentiable hashing."""
from __future__ import annotations

from typing import Any

from ._registry import _ann_score, _close, _fmt, _table_mismatch, checker


# 03.1 scores the notebook's own hash when it is passed (trained=...), else retrains one with the notebook model's
# settings. Training is seeded and single-threaded, so it repeats exactly; the tolerance only absorbs a flipped bit.
_TRAINED_TOL = 2e-3


def _hash_recall(model: Any, vs: Any, candidates: int) -> float:
    return _ann_score(model, vs, candidates=candidates)["recall@10"]


def _retrain(model: Any, vs: Any, **changes: Any) -> Any:
    """A learned hash like `model` (bits, epochs, seed...) with `changes` to its config, trained on vs."""
    from dataclasses import replace

    from ..ann import LearnedHash

    return LearnedHash(replace(model.config, **changes)).fit(vs.database, vs.ids, vs.train_queries, vs.train_targets)


@checker("03.1")
def _hash_from_lsh(answer: Any, model: Any, vs: Any, candidates: int = 20, trained: Any = None) -> tuple[bool, str]:
    """recall@10 of a learned hash trained from LSH's hyperplanes (init='lsh'), same bits and epochs as `model`.
    `trained`, the notebook's own such hash, is scored as it is when its config and training match (no second
    training); otherwise the checker trains one."""
    from dataclasses import replace

    from ..ann import LSH

    want = replace(model.config, init="lsh")
    reuse = getattr(trained, "config", None) == want and len(getattr(trained, "history", [])) == want.epochs
    expected = _hash_recall(trained if reuse else _retrain(model, vs, init="lsh"), vs, candidates)
    lsh = _hash_recall(LSH(vs.database, vs.ids, bits=model.config.bits, seed=model.config.seed), vs, candidates)
    if isinstance(answer, (int, float)) and _close(answer, expected, _TRAINED_TOL):
        pca = _hash_recall(model, vs, candidates)
        return True, (f"right: {expected:.3f}. It starts exactly at LSH ({lsh:.3f}: init='lsh' reuses LSH's hyperplanes) "
                      f"and training adds {100 * (expected - lsh):+.1f} points; trained from the PCA start, the same epochs "
                      f"reach {pca:.3f}. Try more epochs to see how much of that gap training closes.")
    if isinstance(answer, (int, float)) and _close(answer, lsh, _TRAINED_TOL):
        return False, "that is LSH's own recall, the starting point: fit the model on the training queries (.fit(vs.database, vs.ids, vs.train_queries, vs.train_targets)) first."
    return False, (f"you have {answer!r}. Build LearnedHash(bits={model.config.bits}, init='lsh', epochs=EPOCHS, seed=SEED), "
                   f"fit it with .fit(vs.database, vs.ids, vs.train_queries, vs.train_targets), then read "
                   f"score(model.search_vectors(vs.test_queries, vs.test_qids, candidates={candidates}), vs.truth)['recall@10'].")


@checker("03.2")
def _relaxations(answer: Any, models: dict, model: Any, vs: Any, candidates: int = 20) -> tuple[bool, str]:
    """{"ste": recall@10, "steep": recall@10} of the two trained variants of `model` passed in `models`
    (training them again here would double the cost; their configs and training are checked instead)."""
    from dataclasses import replace

    end = model.config.slope_end
    want = {"ste": replace(model.config, relaxation="ste"), "steep": replace(model.config, slope_start=end)}
    how = (f"Train one LearnedHash with relaxation='ste' and one with slope_start={end:g} (= slope_end), same bits, "
           "epochs and seed as `model`, and pass them as models={'ste': ..., 'steep': ...}.")
    for name, config in want.items():
        trained = (models or {}).get(name)
        if getattr(trained, "config", None) != config or len(getattr(trained, "history", [])) != config.epochs:
            return False, f"models[{name!r}] is missing, untrained or configured differently. " + how
    expected = {name: _hash_recall(models[name], vs, candidates) for name in want}
    problem = _table_mismatch(answer, expected, '{"ste": recall@10, "steep": recall@10}')
    if problem:
        return False, problem + f" Score each model like the table does, with {candidates} candidates."
    tanh = _hash_recall(model, vs, candidates)
    steep = ("and the steep start ends lowest" if expected["steep"] < min(tanh, expected["ste"]) else
             "and here the steep start does not end lowest")
    return True, (f"right: {_fmt(expected)}, against {tanh:.3f} for the tanh schedule. A slope that is large from the start "
                  f"saturates tanh, so most inputs get almost no gradient, {steep}. The schedule gives gradient early and "
                  "exact codes late.")


@checker("03.3")
def _total_work(answer: Any, model: Any, vs: Any, candidates: tuple = (10, 20, 40, 80),
                hamming_per_product: int = 64) -> tuple[bool, str]:
    """{candidates: (total work per query in inner products, recall@10)}, Hamming comparisons counted 64 per product."""
    from ..ann import recall_at_k

    expected = {}
    for c in candidates:
        res = model.search_vectors(vs.test_queries, vs.test_qids, k=10, candidates=c)
        expected[c] = (res.mean_cost + float(res.extra["hamming"].mean()) / hamming_per_product, recall_at_k(res.run, vs.truth))
    problem = _table_mismatch(answer, expected, "{candidates: (total work, recall@10)}")
    if problem:
        return False, (problem + " Total work = distances/query (bits + candidates) + Hamming comparisons / "
                       f"{hamming_per_product}; the comparisons are in result.extra['hamming'].")
    n = vs.database.shape[0]
    return True, (f"right: {_fmt(expected)}. Exact search costs {n} products for recall 1. Here the Hamming scan adds only "
                  f"{n / hamming_per_product:.1f}, so every point is far cheaper than exact search but none is exact; the scan "
                  "grows with the collection (1,563 products at 100,000 vectors) while bits + candidates do not.")


VERDICTS = ("higher", "lower", "too small to tell")


def _synthetic_pca(few: int = 32, many: int = 64) -> str:
    """The committed synthetic PCA-hash means at 32 and 64 bits (the settings that result holds), as a sentence."""
    import json

    from ..results import RESULTS_DIR

    d = json.loads((RESULTS_DIR / "ann-synthetic-vectors-100000x384.json").read_text())["results"]
    at = {b: 100 * d[f"PCA hash (untrained) {b} bits, 1000 candidates"]["recall@10"] for b in (few, many)}
    return (f"on the committed 100,000 synthetic vectors the PCA hash goes from {at[few]:.1f}% at {few} bits to "
            f"{at[many]:.1f}% at {many} (single-run means, untested), its low-variance bits adding noise there.")


@checker("03.4")
def _pca_bits(answer: Any, vs: Any, candidates: int = 20, bits: tuple = (32, 64), seed: int = 0,
              measured: Any = None, models: dict | None = None) -> tuple[bool, str]:
    """Predict, then run: does the untrained PCA hash gain recall@10 from bits[0] to bits[1] (paired over the test
    queries)? LSH's own gain is given beside it. `measured` is the notebook's paired_difference; it is recomputed.
    `models` ({bits: untrained hash}), the notebook's own, are scored as they are when their config matches and they
    were never trained; otherwise the checker builds them."""
    from ..ann import LSH, LearnedHash
    from ..ann.evaluation import per_query_recall
    from ..metrics import paired_difference
    from ._registry import compare_prediction

    def per_query(index):
        return per_query_recall(index.search_vectors(vs.test_queries, vs.test_qids, k=10, candidates=candidates).run, vs.truth)

    few, many = bits
    def untrained(b):
        given = (models or {}).get(b)
        if getattr(given, "config", None) == LearnedHash(bits=b, seed=seed).config and getattr(given, "history", None) == []:
            return given
        return LearnedHash(bits=b, seed=seed).fit(vs.database, vs.ids)

    pca = {b: per_query(untrained(b)) for b in bits}
    d = paired_difference(pca[many], pca[few])
    if measured is not None and (not isinstance(measured, dict) or measured.get("verdict") != d["verdict"]):
        return False, (f"the measurement passed as `measured` ({measured!r}) is not what the checker recomputes "
                       f"({d['verdict']!r}): pass the paired_difference of the {many}-bit and the {few}-bit PCA hash.")
    ok, said = compare_prediction(answer, d["verdict"], choices=VERDICTS)
    lsh = paired_difference(*(per_query(LSH(vs.database, vs.ids, bits=b, seed=seed)) for b in (many, few)))
    why = (f" PCA hash, {many} minus {few} bits: {100 * d['difference']:+.1f} points [{100 * d['CI'][0]:+.1f}, "
           f"{100 * d['CI'][1]:+.1f}]; LSH, the same: {100 * lsh['difference']:+.1f} points [{100 * lsh['CI'][0]:+.1f}, "
           f"{100 * lsh['CI'][1]:+.1f}] ({lsh['verdict']}). Why: each random hyperplane of LSH is an independent cut, so "
           "more of them sharpen the Hamming ranking on average. The PCA hash's extra bits are the principal axes ranked "
           f"after the first {few}: directions of little variance, where the sign of a vector is mostly noise. Hamming "
           "distance counts every bit alike, so such bits can add little (the difference above, on these vectors) or "
           "blur the ranking: " + _synthetic_pca() + " Training (the learned hash) is what makes the later "
           "bits useful.")
    return ok, said + why
