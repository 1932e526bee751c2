import math

import numpy as np
import pytest

from dsilab import DsilabError, evaluate
from dsilab.core import run_from_scores
from dsilab.metrics import per_query

QRELS = {"q1": {"d1": 1}, "q2": {"d2": 1, "d3": 1}, "q3": {"d9": 1}}
RUN = {
    "q1": [("d1", 0.9), ("d2", 0.5)],                 # relevant at rank 1
    "q2": [("d4", 0.9), ("d5", 0.8), ("d3", 0.7)],    # first relevant at rank 3, one of two found
    # q3 missing from the run: it must count as a miss, not vanish from the mean
}


def test_hand_checked_values():
    m = evaluate(RUN, QRELS, ["Hits@1", "Hits@5", "MRR@10", "Recall@10", "nDCG@10"])
    assert m["Hits@1"] == pytest.approx(1 / 3)
    assert m["Hits@5"] == pytest.approx(2 / 3)
    assert m["MRR@10"] == pytest.approx((1 + 1 / 3 + 0) / 3)
    assert m["Recall@10"] == pytest.approx((1 + 0.5 + 0) / 3)
    ndcg_q2 = (1 / math.log2(4)) / (1 + 1 / math.log2(3))
    assert m["nDCG@10"] == pytest.approx((1 + ndcg_q2 + 0) / 3)


def test_run_order_is_the_ranking_even_with_ties():
    tied = {"q1": [("d2", 1.0), ("d1", 1.0)]}
    assert per_query(tied, {"q1": {"d1": 1}}, ["MRR@10"])["MRR@10"]["q1"] == pytest.approx(0.5)


def test_cutoffs_and_errors():
    deep = {"q1": [(f"x{i}", 1.0 - i / 100) for i in range(10)] + [("d1", 0.0)]}
    assert evaluate(deep, {"q1": {"d1": 1}}, ["Hits@10", "Recall@100"]) == {"Hits@10": 0.0, "Recall@100": 1.0}
    with pytest.raises(DsilabError, match="unknown metric"):
        evaluate(RUN, QRELS, ["Precision@@3"])
    with pytest.raises(DsilabError, match="qrels are empty"):
        evaluate(RUN, {})


def test_run_from_scores_orders_and_cuts():
    run = run_from_scores(["a", "b"], ["x", "y", "z"], [[0.1, 0.9, 0.5], [3, 2, 1]], k=2)
    assert run == {"a": [("y", 0.9), ("z", 0.5)], "b": [("x", 3.0), ("y", 2.0)]}


def test_run_from_scores_breaks_ties_in_document_order():
    """Equal scores (BM25 gives 0 to every document sharing no query word) come in document order, whatever the CPU:
    the same top k as a stable sort of the whole row."""
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 4, size=(50, 300)).astype(float)  # many ties at every cut
    ids = [f"d{j}" for j in range(300)]
    run = run_from_scores([str(i) for i in range(50)], ids, scores, k=10)
    for i in range(50):
        expected = np.argsort(-scores[i], kind="stable")[:10]
        assert [d for d, _ in run[str(i)]] == [ids[j] for j in expected]
    assert run_from_scores(["q"], ids[:6], [[0, 0, 0, 5, 0, 0]], k=3)["q"] == [("d3", 5.0), ("d0", 0.0), ("d1", 0.0)]


def test_chance_and_bootstrap_interval():
    from dsilab.metrics import bootstrap_ci, chance, summarize

    qrels = {str(i): {"d0": 1} for i in range(40)} | {"two": {"d0": 1, "d1": 1}}
    # one relevant doc among 10: a random ranking puts it in the top 3 with probability 3/10; two: 1 - C(8,3)/C(10,3)
    assert chance({"q": {"d0": 1}}, 10, 3) == pytest.approx(0.3)
    assert chance({"q": {"d0": 1, "d1": 1}}, 10, 3) == pytest.approx(1 - 56 / 120)
    assert chance({"q": {"d0": 1}}, 10, 10) == 1.0
    run = {q: [("d0" if int(q != "two" and int(q) % 4 == 0) else "dx", 1.0)] for q in qrels}
    mean = summarize(run, qrels, ("Hits@1",), ("Hits@1",))
    lo, hi = bootstrap_ci(run, qrels, "Hits@1", seed=0)
    assert lo <= mean["Hits@1"] <= hi and 0 < hi - lo < 0.5
    assert mean["Hits@1 CI"] == [round(lo, 4), round(hi, 4)] and bootstrap_ci(run, qrels, "Hits@1", seed=0) == (lo, hi)


def test_published_dsi_table_is_complete():
    # every row has Hits@1 <= Hits@10 on each NQ collection: catches a transposed or shifted quote
    from dsilab.published import DSI_PAPER_SUPERVISED, dsi_paper_table

    assert len(DSI_PAPER_SUPERVISED) == 17
    for cols in DSI_PAPER_SUPERVISED.values():
        assert set(cols) == {"NQ10K", "NQ100K", "NQ320K"} and all(0 < h1 <= h10 <= 100 for h1, h10 in cols.values())
    assert dsi_paper_table().shape == (9, 6)


def test_results_table_says_too_small_to_tell_near_chance():
    # 4 documents, 2 queries: one lucky hit is within chance; 50 perfect queries are not
    from dsilab.metrics import results_table

    small_q = {"q1": {"d1": 1}, "q2": {"d2": 1}}
    small = results_table({"lucky": {"q1": [("d1", 1.0)], "q2": [("d3", 1.0)]}}, small_q, n_docs=4)
    assert small.loc["lucky", "chance Hits@1"] == 0.25 and small.loc["lucky", "Hits@1 vs chance"] == "too small to tell"
    qrels = {f"q{i}": {f"d{i}": 1} for i in range(50)}
    big = results_table({"perfect": {q: [(next(iter(r)), 1.0)] for q, r in qrels.items()}}, qrels, n_docs=100)
    assert big.loc["perfect", "Hits@1"] == 1.0 and big.loc["perfect", "Hits@1 vs chance"] == "above chance"


def test_ir_measures_names_and_course_aliases_agree():
    run = {"q1": [("d2", 2.0), ("d1", 1.0)], "q2": [("d3", 1.0)]}
    qrels = {"q1": {"d1": 1}, "q2": {"d9": 1}}
    got = evaluate(run, qrels, ("Success@1", "Hits@1", "RR@10", "MRR@10", "R@100", "Recall@100", "P@2"))
    assert got["Success@1"] == got["Hits@1"] == 0.0
    assert got["RR@10"] == got["MRR@10"] == 0.25            # q1: first relevant at rank 2; q2: none
    assert got["R@100"] == got["Recall@100"] == 0.5 and got["P@2"] == 0.25
    with pytest.raises(DsilabError, match="unknown metric 'Hitz@1'"):
        evaluate(run, qrels, ("Hitz@1",))


def test_hits_line_prints_interval_chance_and_verdict():
    from dsilab.metrics import hits_line

    qrels = {f"q{i}": {f"d{i}": 1} for i in range(50)}
    perfect = {q: [(next(iter(r)), 1.0)] for q, r in qrels.items()}
    line = hits_line(perfect, qrels, n_docs=100)
    assert line.startswith("Hits@1 1.000 [1.000, 1.000], chance 0.010: above chance; Hits@10 1.000")
    assert line.endswith("(50 queries)") and "chance 0.100" in line
    lucky = hits_line({"q1": [("d1", 1.0)]}, {"q1": {"d1": 1}, "q2": {"d2": 1}}, n_docs=4, ks=(1,))
    assert lucky == "Hits@1 0.500 [0.000, 1.000], chance 0.250: too small to tell (2 queries)"


def test_check_quoted_passes_matching_quotes_and_names_stale_ones():
    from dsilab.metrics import check_quoted

    ok = check_quoted({"atomic Hits@1": (0.733, 0.7333), "its CI": ([0.686, 0.784], [0.6857, 0.7841]),
                       "about 5 points": (0.05, 0.056, 0.01)})
    assert ok["matches"].all() and list(ok.index) == ["atomic Hits@1", "its CI", "about 5 points"]
    with pytest.raises(DsilabError, match="semantic Hits@1: text says 0.505, measured 0.52"):
        check_quoted({"atomic": (0.733, 0.7333), "semantic Hits@1": (0.505, 0.52)})
    with pytest.raises(DsilabError, match="interval"):
        check_quoted({"interval": ([0.1, 0.2], [0.1, 0.3])})
    with pytest.raises(DsilabError, match="missing"):
        check_quoted({"missing": (0.5, None)})


def test_results_table_gives_every_hits_k_its_interval_chance_and_verdict_beside_it():
    from dsilab.metrics import results_table

    qrels = {f"q{i}": {f"d{i}": 1} for i in range(50)}
    table = results_table({"perfect": {q: [(next(iter(r)), 1.0)] for q, r in qrels.items()}}, qrels, n_docs=100,
                          metrics=("Hits@1", "Hits@5", "MRR@10"))
    assert list(table.columns) == ["Hits@1", "Hits@1 CI", "chance Hits@1", "Hits@1 vs chance",
                                   "Hits@5", "Hits@5 CI", "chance Hits@5", "Hits@5 vs chance", "MRR@10"]
    assert table.loc["perfect", "chance Hits@5"] == 0.05 and table.loc["perfect", "Hits@5 vs chance"] == "above chance"
    # under ir-measures' own names the same columns follow, named as asked
    own = results_table({"perfect": {q: [(next(iter(r)), 1.0)] for q, r in qrels.items()}}, qrels, n_docs=100,
                        metrics=("Success@1", "RR@10"))
    assert list(own.columns) == ["Success@1", "Success@1 CI", "chance Success@1", "Success@1 vs chance", "RR@10"]
    assert own.loc["perfect", "Success@1 vs chance"] == "above chance"


def test_committed_table_sets_every_hits_k_against_the_chance_row():
    from dsilab.metrics import committed_table

    results = {"chance (random ranking)": {"Hits@1": 0.01, "Hits@10": 0.1},
               "BM25": {"Hits@1": 0.5, "Hits@1 CI": [0.4, 0.6], "Hits@10": 0.8, "Hits@10 CI": [0.7, 0.9],
                        "seen Hits@10": 0.12, "seen Hits@10 CI": [0.05, 0.2], "steps": None},
               "DSI": {"Hits@1": 0.02, "Hits@1 CI": [0.0, 0.05], "Hits@10": 0.3, "Hits@10 CI": [0.2, 0.4],
                       "seen Hits@10": 0.5, "seen Hits@10 CI": [0.4, 0.6], "steps": 100}}
    t = committed_table(results)
    assert list(t.index) == ["BM25", "DSI"]
    assert list(t.columns[:4]) == ["Hits@1", "Hits@1 CI", "chance Hits@1", "Hits@1 vs chance"]
    assert t.loc["DSI", "Hits@1 vs chance"] == "too small to tell" and t.loc["BM25", "Hits@1 vs chance"] == "above chance"
    assert t.loc["BM25", "chance seen Hits@10"] == 0.1 and t.loc["BM25", "seen Hits@10 vs chance"] == "too small to tell"
    with pytest.raises(DsilabError, match="chance"):
        committed_table({"BM25": results["BM25"]})


def test_share_ci_is_wilson_and_close_to_the_bootstrap():
    from dsilab.metrics import bootstrap_ci, share_ci

    assert share_ci(0.5, 100) == [0.4038, 0.5962]                  # Wilson, z = 1.96
    assert share_ci(0.0, 20)[0] == 0.0 and share_ci(1.0, 20)[1] == 1.0 and share_ci(0.0, 20)[1] > 0.1
    qrels = {f"q{i}": {"d": 1} for i in range(315)}
    run = {q: [("d" if i % 4 else "x", 1.0)] for i, q in enumerate(qrels)}  # Hits@1 = 0.75 on 315 queries
    lo, hi = bootstrap_ci(run, qrels, "Hits@1")
    wlo, whi = share_ci(0.75, 315)
    assert abs(lo - wlo) < 0.01 and abs(hi - whi) < 0.01
    with pytest.raises(DsilabError, match="share_ci"):
        share_ci(1.5, 10)


def test_share_row_adds_an_interval_to_each_hits_k_for_against_chance():
    from dsilab.metrics import against_chance, share_ci, share_row

    row = share_row({"step": 45, "Hits@1": 0.5, "Hits@10": 0.9, "memo": 0.8}, 100)
    assert row["Hits@1 CI"] == share_ci(0.5, 100) and row["Hits@10 CI"] == share_ci(0.9, 100) and "memo CI" not in row
    qrels = {f"q{i}": {f"d{i}": 1} for i in range(100)}
    table = against_chance({"run": row}, qrels, n_docs=200)
    assert table.loc["run", "Hits@1 vs chance"] == "above chance" and table.loc["run", "chance Hits@1"] == 0.005
