"""Checkers of chapter 02 · soft tree traversal."""
from __future__ import annotations

from typing import Any

from ._registry import _ann_score, _fmt, _table_mismatch, checker


@checker("02.1")
def _inference_temperature(answer: Any, tree: Any, vs: Any, temperatures: tuple = (0.02, 0.05, 0.1, 0.3),
                           beams: tuple = (1, 4)) -> tuple[bool, str]:
    """{T: (recall@10 at beam 1, recall@10 at beam 4)} of a trained soft tree searched at temperature T."""
    expected = {t: tuple(_ann_score(tree, vs, beam=b, temperature=t)["recall@10"] for b in beams) for t in temperatures}
    problem = _table_mismatch(answer, expected, "{T: (recall@10 at beam 1, recall@10 at beam 4)}")
    if problem:
        return False, (problem + " Search with tree.search_vectors(vs.test_queries, vs.test_qids, beam=b, temperature=T) and read "
                       "dsilab.ann.score(result, vs.truth)['recall@10'].")
    narrow = {round(v[0], 9) for v in expected.values()}
    wide = {t: v[1] for t, v in expected.items()}
    best = max(wide, key=wide.get)
    beam1 = ("Beam 1 is identical at every T: it only ever compares the children of one node, and dividing their "
             "logits by T never changes which one is largest." if len(narrow) == 1 else
             "Beam 1 moved with T here, which it should not: look for ties between sibling logits.")
    return True, (f"right: {_fmt(expected)}. {beam1} Beam 4 ranks nodes under different parents by their "
                  f"path probabilities, which T reshapes: from {min(wide.values()):.3f} to {max(wide.values()):.3f}, "
                  f"best at T = {best}.")


@checker("02.2")
def _adaptive_beams(answer: Any, trees: dict, vs: Any, beam: int = 16, mass: float = 0.9) -> tuple[bool, str]:
    """{lambda: (recall@10, distances/query)} of every trained tree with mass-limited beams."""
    expected = {lam: tuple(_ann_score(t, vs, beam=beam, mass=mass)[m] for m in ("recall@10", "distances/query"))
                for lam, t in trees.items()}
    problem = _table_mismatch(answer, expected, "{lambda: (recall@10, distances/query)}")
    if problem:
        return False, (problem + f" For each (lam, tree) in res['trees'].items(), search with beam={beam}, mass={mass} "
                       "and read 'recall@10' and 'distances/query' from dsilab.ann.score(result, vs.truth).")
    lams = sorted(expected)
    low, high = expected[lams[0]], expected[lams[-1]]
    verdict = (f"lambda = {lams[-1]} opens fewer nodes ({high[1]:.0f} vs {low[1]:.0f} distances/query) at recall@10 "
               f"{high[0]:.3f} vs {low[0]:.3f}: its sharper routing reaches the {mass:.0%} mass with fewer nodes, a "
               "cheaper point on the trade-off (whether a better one, compare at equal cost)"
               if high[1] < low[1] else
               f"here the larger lambda is not cheaper ({high[1]:.0f} vs {low[1]:.0f} distances/query): its routing is no sharper")
    return True, f"right: {_fmt(expected)}. With the same beam limit, {verdict}."


def multi_assignment_gains(tree: Any, vs: Any, mass: float = 0.9, beams: tuple = (1, 2, 4), assign: int = 2) -> dict:
    """Recall@10 points of a copy of `tree` with every document in its top-`assign` leaves, minus the single-assignment
    tree at the same distances/query (interpolated between its beams 1, 2, 4, 8 and 16), per beam; NaN where the
    multi-assigned search is cheaper than any single-assignment point. Also returns the multi-assigned scores."""
    import copy

    from ..ann import recall_at_budget

    twice = copy.deepcopy(tree)          # multi_assign changes the tree in place: never touch the caller's
    twice.multi_assign(assign)
    metrics = ("recall@10", "distances/query")
    scores = {b: tuple(_ann_score(twice, vs, beam=b, mass=mass)[m] for m in metrics) for b in beams}
    single = [_ann_score(tree, vs, beam=b, mass=mass) for b in (1, 2, 4, 8, 16)]
    costs, recalls = [r["distances/query"] for r in single], [r["recall@10"] for r in single]
    return {"scores": scores, "gains": {b: 100 * (r - recall_at_budget(costs, recalls, c)) for b, (r, c) in scores.items()}}


@checker("02.3")
def _multi_assignment(answer: Any, tree: Any, vs: Any, mass: float = 0.9, beams: tuple = (1, 2, 4),
                      assign: int = 2) -> tuple[bool, str]:
    """{beam: (recall@10, distances/query)} of a copy of the trained tree with every document in its top-2 leaves."""
    m = multi_assignment_gains(tree, vs, mass=mass, beams=beams, assign=assign)
    expected, gains = m["scores"], m["gains"]
    problem = _table_mismatch(answer, expected, "{beam: (recall@10, distances/query)}")
    if problem:
        return False, (problem + f" Copy the tree (copy.deepcopy), call .multi_assign({assign}) on the copy, then search "
                       f"with beam=b, mass={mass} and score against vs.truth.")
    measurable = [g for g in gains.values() if g == g]  # NaN: cheaper than any single point
    shown = ", ".join(f"beam {b}: {g:+.1f}" for b, g in gains.items() if g == g)
    net = ("a net gain at every beam measured" if measurable and min(measurable) > 0 else
           "a net loss at every beam measured" if measurable and max(measurable) < 0 else "mixed" if measurable else "")
    return True, (f"right: {_fmt(expected)}. Leaves hold more rows, so each beam costs more; at equal cost (single "
                  f"assignment interpolated between beam widths) the difference in recall@10 points is {shown or 'not measurable'}"
                  + (f": {net} (one run on {len(vs.test_qids)} test queries, no interval)." if net else "."))


VERDICTS = ("higher", "lower", "too small to tell")


@checker("02.4")
def _relaxed_against_hard_cost(answer: Any, tree: Any, queries: Any, beam: int = 8, temperature: float = 0.05,
                               measured: Any = None) -> tuple[bool, str]:
    """Predict, then run: is the relaxed cost (B sampled paths) higher or lower than the hard beam-B cost, paired over
    the queries? `measured` is the notebook's paired_difference; the checker recomputes it."""
    from ..metrics import paired_difference
    from ._registry import compare_prediction

    hard = tree.search_vectors(queries, beam=beam).cost
    relaxed = tree.expected_cost(queries, beam=beam, temperature=temperature)
    d = paired_difference({i: float(x) for i, x in enumerate(relaxed)}, {i: float(x) for i, x in enumerate(hard)})
    if measured is not None and (not isinstance(measured, dict) or measured.get("verdict") != d["verdict"]):
        return False, (f"the measurement passed as `measured` ({measured!r}) is not what the checker recomputes "
                       f"({d['verdict']!r}): pass the paired_difference of the relaxed and the hard costs.")
    ok, said = compare_prediction(answer, d["verdict"], choices=VERDICTS)
    why = (f" Relaxed minus hard: {d['difference']:+.1f} distances/query [{d['CI'][0]:+.1f}, {d['CI'][1]:+.1f}] over "
           f"{d['queries']} queries ({d['A']:.1f} against {d['B']:.1f}). Why: the relaxation samples {beam} paths "
           "independently, and a confident router sends most samples down the same few paths, so far fewer than "
           f"{beam} distinct nodes per level are opened; the beam always opens {beam} distinct nodes per level (where "
           "the level has them). The relaxed term is a smooth surrogate that punishes diffuse routing, not an estimate "
           "of the beam's bill: the lower the temperature, the more samples coincide.")
    return ok, said + why
