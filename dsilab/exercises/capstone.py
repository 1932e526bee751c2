"""Checkers of chapter 11 · capstone."""
from __future__ import annotations

from typing import Any

from ._registry import _close, checker, compare_prediction


def _table(results: dict[str, dict[str, Any]]) -> dict[str, dict[str, float]]:
    return {n: {k: float(v) for k, v in r.items() if isinstance(v, (int, float))} for n, r in results.items()}


def end_to_end_cpu(results: dict[str, dict[str, Any]]) -> list[str]:
    """Rows whose query latency is end to end (query text in, ranked list out) on the table's CPU: not the ANN rows
    (their latency is the index's search alone, the query vector given) and not a row measured elsewhere (its
    `source` names another machine in parentheses, e.g. "bench all (H200)")."""
    return [n for n, r in results.items()
            if r.get("family") != "ANN over dense" and "(" not in str(r.get("source", ""))]


@checker("11.1")
def _per_ms(answer: Any, results: dict[str, dict[str, Any]]) -> tuple[bool, str]:
    """Among the rows timed end to end on the CPU, the one with the highest Hits@10 per millisecond of latency."""
    t = _table(results)
    fair = end_to_end_cpu(results)
    expected = max(fair, key=lambda n: t[n]["Hits@10"] / max(t[n]["ms_per_query"], 1e-6))
    if answer == expected:
        return True, (f"right: {expected!r}. Fast is not enough: compare its Hits@10 ({t[expected]['Hits@10']:.3f}) with "
                      "the other rows' (with their intervals) before deploying it.")
    if answer in t and answer not in fair:
        return False, (f"{answer!r} is timed differently (index only, or on another machine): a ratio against "
                       "end-to-end CPU rows would compare unlike timings. Keep only the rows end_to_end_cpu lists.")
    if answer not in t:
        return False, f"{answer!r} is not a row of the table; use one of its index names."
    return False, f"not {answer!r}: divide the Hits@10 column by ms_per_query and take the row with the largest ratio."


@checker("11.2")
def _dsi_gap(answer: Any, results: dict[str, dict[str, Any]], n_queries: int | None = None) -> tuple[bool, str]:
    """Points of Hits@1 between the best baseline row and the best DSI row."""
    fam = {n: r["family"] for n, r in results.items()}
    t = _table(results)
    dsi = max(t[n]["Hits@1"] for n in t if fam[n] == "DSI")
    expected = 100 * (max(t[n]["Hits@1"] for n in t if fam[n] == "baseline") - dsi)
    if _close(answer, expected, 0.05):
        from ..metrics import paired_bounds

        best_b = max((n for n in t if fam[n] == "baseline"), key=lambda n: t[n]["Hits@1"])
        best_d = max((n for n in t if fam[n] == "DSI"), key=lambda n: t[n]["Hits@1"])
        word = None
        if n_queries:
            word = paired_bounds(t[best_b]["Hits@1"], t[best_d]["Hits@1"], n_queries)["verdict"]
        return True, (f"right: {expected:.1f} points. The stored table keeps means, not per-query scores, but both rows "
                      "are Hits@1 on the same test queries, so dsilab.metrics.paired_bounds can run the paired test "
                      "under every pairing the two means allow"
                      + (f": {best_b} against {best_d} is {word!r} on {n_queries} queries." if word else ".")
                      + " Re-running both rows with per-query scores (dsilab.metrics.paired_difference) gives the "
                        "ordinary paired interval.")
    if _close(answer, expected / 100, 5e-4):
        return False, "close: give the answer in points (x 100), not as a fraction."
    return False, (f"you have {answer!r}. Take the best Hits@1 among family 'baseline' rows minus the best among "
                   "'DSI' rows, in points (x 100).")


@checker("11.3")
def _paired_live(answer: Any, runs: dict[str, Any], qrels: dict[str, Any], a: str = "BM25",
                 b: str = "Dense (MiniLM, exact)", metric: str = "Hits@1") -> tuple[bool, str]:
    """Predict, then run: the paired verdict of row `a` against row `b` on the live runs (same queries)."""
    from ..metrics import paired_difference, per_query

    p = paired_difference(runs[a], runs[b], qrels, metric)
    ok, said = compare_prediction(answer, p["verdict"], choices=("higher", "lower", "too small to tell"))
    sa, sb = (per_query(runs[n], qrels, (metric,))[metric] for n in (a, b))
    only_a = sum(sa[q] > sb[q] for q in sa)
    only_b = sum(sb[q] > sa[q] for q in sa)
    return ok, said + (
        f" {a} - {b}: {p['difference']:+.3f}, 95% paired interval [{p['CI'][0]:.3f}, {p['CI'][1]:.3f}] on "
        f"{p['queries']} queries. Only the queries where the two disagree move the difference: {a} alone is right on "
        f"{only_a}, {b} alone on {only_b}; every other query scores the same for both. Whether the gap counts "
        "depends on how many disagreements there are and how lopsided they are, not on the two means alone.")
