"""Exercise checkers: every notebook's exercises end in `check("NN.k", answer, **context)`.

A checker recomputes the expected result on its own and says, helpfully, what is off. An answer
left as `None` is "not attempted" (the notebook still runs). With `strict=True` (the notebooks
pass `strict=SOLUTIONS`, and CI runs with SOLUTIONS = True) a failing answer raises, so every
reference solution is checked on every CI run; tests/test_exercises.py feeds each checker a
wrong answer too.
"""
from __future__ import annotations

from collections import Counter
from typing import Any, Callable

import numpy as np

from .core import DsilabError, Run
from .data import Collection
from .metrics import evaluate

Checker = Callable[..., tuple[bool, str]]
CHECKERS: dict[str, Checker] = {}


def checker(exercise: str) -> Callable[[Checker], Checker]:
    """Register a function `(answer, **context) -> (ok, message)` for one exercise id."""

    def register(fn: Checker) -> Checker:
        CHECKERS[exercise] = fn
        return fn

    return register


def check(exercise: str, answer: Any, *, strict: bool = False, **context: Any) -> bool:
    """Print feedback on one answer and return whether it is right; raise on a miss when `strict`."""
    if exercise not in CHECKERS:
        raise DsilabError(f"no checker for exercise {exercise!r}; known: {sorted(CHECKERS)}.")
    if answer is None:
        ok, message = False, "not attempted yet: replace `None` with your answer and run the cell again."
    else:
        ok, message = CHECKERS[exercise](answer, **context)
    print(f"{'✅' if ok else '❌'} Exercise {exercise}: {message}")
    if strict and not ok:
        raise DsilabError(f"exercise {exercise}: the reference solution did not pass: {message}")
    return ok


def _close(a: float, b: float, tol: float = 1e-6) -> bool:
    return abs(float(a) - float(b)) <= tol


# -- 00 welcome ---------------------------------------------------------------------------------
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
        return True, f"right: {expected}. No test query is seen in training, and every passage has a training question."
    return False, (f"you have {tuple(answer)}, expected a pair (shared query ids, passages without a train query). "
                   "Use set(collection.qrels['train']) & set(collection.qrels['test']) for the first.")


# -- 01 baselines -------------------------------------------------------------------------------
@checker("01.1")
def _bm25_no_stopwords(answer: Any, collection: Collection) -> tuple[bool, str]:
    """Test Hits@1 of BM25 with stopwords kept."""
    from .baselines import BM25

    queries, qrels = collection.split("test")
    expected = evaluate(BM25(collection, stopwords=False).search(queries, k=10), qrels, ["Hits@1"])["Hits@1"]
    if _close(answer, expected):
        return True, f"right: {expected:.3f}. Stopwords are frequent in every passage, so their IDF is low and they change little."
    return False, f"you have {answer!r}; expected BM25(collection, stopwords=False) on the test split, metric 'Hits@1'."


def reciprocal_rank_fusion(runs: list[Run], k: int = 60, depth: int = 100) -> Run:
    """Fuse runs by summing 1/(k + rank) per document (Cormack et al., 2009); the checker's reference."""
    fused: dict[str, dict[str, float]] = {}
    for run in runs:
        for qid, ranked in run.items():
            scores = fused.setdefault(qid, {})
            for rank, (doc_id, _) in enumerate(ranked, 1):
                scores[doc_id] = scores.get(doc_id, 0.0) + 1.0 / (k + rank)
    return {q: sorted(s.items(), key=lambda x: (-x[1], x[0]))[:depth] for q, s in fused.items()}


@checker("01.3")
def _rrf(answer: Any, bm25_run: Run, dense_run: Run, qrels: dict) -> tuple[bool, str]:
    """A reciprocal-rank-fusion run of the BM25 and dense runs (k = 60)."""
    if not isinstance(answer, dict) or not all(isinstance(v, list) for v in answer.values()):
        return False, "the answer should be a Run: {qid: [(doc_id, score), ...]} best first."
    # Compare rankings up to ties: the true fused score of each doc the answer ranks must follow
    # the reference's top-10 scores in order (equal-score docs may come in any order).
    reference = reciprocal_rank_fusion([bm25_run, dense_run])
    for qid, ranked in reference.items():
        fused = dict(ranked)
        mine = [fused.get(d, -1.0) for d, _ in answer.get(qid, [])[:10]]
        want = [score for _, score in ranked[:10]]
        if len(mine) < len(want) or not all(_close(a, b) for a, b in zip(mine, want)):
            return False, (f"query {qid}: your top-10 differs from the fused ranking. Sum 1/(60 + rank) over both "
                           "runs per document (rank starts at 1), then sort by the sum, highest first.")
    want = evaluate(reference, qrels, ["Hits@1", "MRR@10"])
    return True, f"right: fused Hits@1 {want['Hits@1']:.3f}, MRR@10 {want['MRR@10']:.3f}. Compare with each run alone."


# -- shared by the checkers below ---------------------------------------------------------------
def _values_match(got: Any, want: Any, tol: float) -> bool:
    """One value against the recomputed one: numbers within `tol`, tuples element-wise, None only with None."""
    if want is None or got is None:
        return got is None and want is None
    if isinstance(want, tuple):
        return isinstance(got, (tuple, list)) and len(got) == len(want) and all(
            _values_match(g, w, tol) for g, w in zip(got, want))
    if isinstance(got, bool) or not isinstance(got, (int, float, np.number)):
        return False
    return _close(got, want, tol)


def _table_mismatch(answer: Any, expected: dict, shape: str, tol: float = 1e-6) -> str | None:
    """Why `answer` differs from the recomputed `{key: value}` table (extra keys allowed), or None when it matches."""
    if not isinstance(answer, dict):
        return f"the answer should be a dict {shape}; got a {type(answer).__name__}."
    missing = [k for k in expected if k not in answer]
    if missing:
        return f"keys missing: {missing}; the answer is a dict {shape}."
    for key, want in expected.items():
        if not _values_match(answer[key], want, tol):
            return f"the entry for {key!r} ({answer[key]!r}) is not what the recomputation gives."
    return None


def _fmt(table: dict) -> str:
    """A compact one-line view of a {key: number or tuple} table for feedback messages."""
    num = lambda x: str(x) if isinstance(x, (int, np.integer)) else f"{x:.3f}"  # noqa: E731
    show = lambda v: f"({', '.join(num(x) for x in v)})" if isinstance(v, tuple) else num(v)  # noqa: E731
    return ", ".join(f"{k}: {show(v)}" for k, v in table.items())


# -- 02 soft tree traversal ---------------------------------------------------------------------
def _ann_score(index: Any, vs: Any, **search: Any) -> dict[str, float]:
    """recall@10 (against exact search) and distances/query of one search of the test queries."""
    from .ann import score

    return score(index.search_vectors(vs.test_queries, vs.test_qids, k=10, **search), vs.truth)


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


@checker("02.3")
def _multi_assignment(answer: Any, tree: Any, vs: Any, mass: float = 0.9, beams: tuple = (1, 2, 4),
                      assign: int = 2) -> tuple[bool, str]:
    """{beam: (recall@10, distances/query)} of a copy of the trained tree with every document in its top-2 leaves."""
    import copy

    from .ann import recall_at_budget

    twice = copy.deepcopy(tree)          # multi_assign changes the tree in place: never touch the caller's
    twice.multi_assign(assign)
    metrics = ("recall@10", "distances/query")
    expected = {b: tuple(_ann_score(twice, vs, beam=b, mass=mass)[m] for m in metrics) for b in beams}
    problem = _table_mismatch(answer, expected, "{beam: (recall@10, distances/query)}")
    if problem:
        return False, (problem + f" Copy the tree (copy.deepcopy), call .multi_assign({assign}) on the copy, then search "
                       f"with beam=b, mass={mass} and score against vs.truth.")
    single = [_ann_score(tree, vs, beam=b, mass=mass) for b in (1, 2, 4, 8, 16)]
    costs, recalls = [r["distances/query"] for r in single], [r["recall@10"] for r in single]
    gains = {b: 100 * (r - recall_at_budget(costs, recalls, c)) for b, (r, c) in expected.items()}
    shown = ", ".join(f"beam {b}: {g:+.1f}" for b, g in gains.items() if g == g)  # NaN: cheaper than any single point
    return True, (f"right: {_fmt(expected)}. Leaves hold more rows, so each beam costs more; at equal cost (single "
                  f"assignment interpolated between beam widths) the difference in recall@10 points is {shown or 'not measurable'}.")


# -- 03 differentiable hashing ------------------------------------------------------------------
# 03.1 scores the notebook's own hash when it is passed (trained=...), else retrains one with the notebook model's
# settings. Training is seeded and single-threaded, so it repeats exactly; the tolerance only absorbs a flipped bit.
_TRAINED_TOL = 2e-3


def _hash_recall(model: Any, vs: Any, candidates: int) -> float:
    return _ann_score(model, vs, candidates=candidates)["recall@10"]


def _retrain(model: Any, vs: Any, **changes: Any) -> Any:
    """A learned hash like `model` (bits, epochs, seed...) with `changes` to its config, trained on vs."""
    from dataclasses import replace

    from .ann import LearnedHash

    return LearnedHash(replace(model.config, **changes)).fit(vs.database, vs.ids, vs.train_queries, vs.train_targets)


@checker("03.1")
def _hash_from_lsh(answer: Any, model: Any, vs: Any, candidates: int = 20, trained: Any = None) -> tuple[bool, str]:
    """recall@10 of a learned hash trained from LSH's hyperplanes (init='lsh'), same bits and epochs as `model`.
    `trained`, the notebook's own such hash, is scored as it is when its config and training match (no second
    training); otherwise the checker trains one."""
    from dataclasses import replace

    from .ann import LSH

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
    from .ann import recall_at_k

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


# -- 04 semantic docids -------------------------------------------------------------------------
def _topic_purity(tree: Any, collection: Collection) -> float | None:
    """Share of documents in their top-level cluster's majority topic; None without topic labels."""
    meta = collection.meta.get("docs") or {}
    if not meta:
        return None
    clusters: dict[int, Counter] = {}
    for doc_id, code in tree.codes.items():
        clusters.setdefault(code[0], Counter())[meta[doc_id]["topic"]] += 1
    return sum(c.most_common(1)[0][1] for c in clusters.values()) / len(tree.codes)


def _needs_topics(collection: Collection) -> tuple[bool, str] | None:
    if not collection.meta.get("docs"):
        return False, "this exercise needs topic labels per document: run the notebook on the lab collection."
    return None


@checker("04.1")
def _tree_shapes(answer: Any, collection: Collection, embeddings: Any, k: int = 10, c: int = 30,
                 seed: int = 0) -> tuple[bool, str]:
    """{(k, c): (mean docid length in tokens, top-level topic purity)} for (2, C), (30, C) and (K, K)."""
    if (no := _needs_topics(collection)):
        return no
    from .docids import make_docids

    built = {(kk, cc): make_docids(collection, "semantic", k=kk, c=cc, seed=seed, embeddings=embeddings)
             for kk, cc in ((2, c), (30, c), (k, k), (k, c))}
    expected = {key: (float(t.depths.mean()), _topic_purity(t, collection)) for key, t in built.items()}
    base = expected.pop((k, c))
    problem = _table_mismatch(answer, expected, "{(k, c): (mean docid length in tokens, top-level purity)}")
    if problem:
        return False, (problem + " Build make_docids(coll, 'semantic', k=..., c=..., seed=SEED, embeddings=emb); the mean "
                       "docid length is tree.depths.mean(); purity as in section 4, on the first docid digit.")
    same = "unchanged" if _close(expected[(k, k)][1], base[1]) else "changed"
    sizes = sorted(Counter(m["topic"] for m in collection.meta["docs"].values()).values(), reverse=True)
    cap = min(1.0, sum(sizes[:2]) / len(collection.doc_ids))   # 2 clusters hold at most 2 majority topics
    return True, (f"right: {_fmt(expected)} (K={k}, C={c}: {base[0]:.2f} tokens, purity {base[1]:.3f}). k = 2 makes long "
                  "docids of easy binary choices, k = 30 short ones with a 30-way first choice. Purity is not comparable "
                  f"across k: with {len(sizes)} topics, 2 clusters can be at most {cap:.2f} pure. A smaller c only adds "
                  f"levels below (the top-level purity is {same}: the first k-means is the same), and the last digit "
                  "becomes a position in a small cluster, which carries no meaning of its own.")


@checker("04.2")
def _tfidf_docids(answer: Any, collection: Collection, embeddings: Any, k: int = 10, c: int = 30,
                  seed: int = 0) -> tuple[bool, str]:
    """Top-level topic purity of semantic docids built from TF-IDF vectors instead of MiniLM embeddings."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    from .docids import make_docids

    if (no := _needs_topics(collection)):
        return no
    tfidf = TfidfVectorizer().fit_transform(collection.contents).toarray()   # rows are unit-norm already (norm="l2")
    expected = _topic_purity(make_docids(collection, "semantic", k=k, c=c, seed=seed, embeddings=tfidf), collection)
    minilm = _topic_purity(make_docids(collection, "semantic", k=k, c=c, seed=seed, embeddings=embeddings), collection)
    if isinstance(answer, (int, float)) and _close(answer, expected):
        why = ("passages written per topic share their vocabulary, a strong topic signal" if expected > minilm else
               "exact words miss synonyms and paraphrases that the sentence encoder places together")
        return True, (f"right: {expected:.3f} with TF-IDF against {minilm:.3f} with MiniLM: "
                      f"{'higher' if expected > minilm else 'not higher'}. TF-IDF clusters by shared words, MiniLM by "
                      f"meaning; a likely reason to test: {why}.")
    return False, (f"you have {answer!r}. Use TfidfVectorizer() with its defaults: emb_tfidf = "
                   "TfidfVectorizer().fit_transform(coll.contents).toarray(), then make_docids(coll, 'semantic', k=K, c=C, "
                   "seed=SEED, embeddings=emb_tfidf) and the purity of its first digit.")


@checker("04.3")
def _shuffled_naive(answer: Any, collection: Collection, embeddings: Any, seed: int = 0) -> tuple[bool, str]:
    """prefix_similarity of naive docids where document i gets the number perm[i] (a seeded permutation)."""
    from .docids import DocidTree, make_docids, prefix_similarity

    perm = np.random.default_rng(seed).permutation(len(collection.doc_ids))
    shuffled = DocidTree("naive", {d: tuple(int(ch) for ch in str(int(perm[i]))) for i, d in enumerate(collection.doc_ids)})
    expected = prefix_similarity(shuffled, embeddings)
    ordered = prefix_similarity(make_docids(collection, "naive"), embeddings)
    problem = _table_mismatch(answer, expected, "{shared prefix length: mean cosine similarity}")
    if problem:
        if _table_mismatch(answer, ordered, "") is None:
            return False, "that is the curve of the collection order: number the documents by the permutation first."
        return False, (problem + " Give document i the number perm[i], perm = np.random.default_rng(SEED).permutation(n), "
                       "as a DocidTree('naive', {doc_id: tuple of its digits}), then call prefix_similarity(tree, emb).")
    values, before = list(expected.values()), list(ordered.values())
    flat = "is flat" if max(values) - min(values) < 0.02 else "still moves"
    rise = (", so the rise of the ordered curve came from the storage order, not from the docids"
            if before[-1] - before[0] > max(values) - min(values) + 0.02 else "")
    return True, (f"right: {_fmt(expected)} against {_fmt(ordered)} in collection order. Shuffled, the curve {flat}: "
                  f"a shared leading digit says nothing about meaning{rise}.")


# -- 05 augmentation ----------------------------------------------------------------------------
@checker("05.1")
def _number_words_survive(answer: Any, text: str = "It is 2 km deep and 100 years old") -> tuple[bool, str]:
    """The output of Pipeline([Num2Text(), StopwordRemover(keep=<the number words>)]) on `text`."""
    from .augment import Num2Text, Pipeline, StopwordRemover

    number_words = tuple(w for w in Num2Text()(text).lower().split() if w not in text.lower().split())
    run = lambda keep: Pipeline([Num2Text(), StopwordRemover(keep=keep)]).run([text], target="queries")[0][0]  # noqa: E731
    expected, plain = run(number_words), run(())
    if not isinstance(answer, str):
        return False, "the answer is the pipeline's output for the sentence: a string."
    if answer.split() == expected.split():
        if plain == expected:
            return True, (f"right: {expected!r}. The stopword list in use has no number words, so nothing was lost "
                          "here; spaCy's list (the offline fallback) would have deleted them.")
        return True, (f"right: {expected!r}; without keep it is {plain!r}. Num2Text runs first and writes numbers as "
                      "words; a stopword list that contains number words then deletes them, so order and lists interact.")
    missing = [w for w in number_words if w not in answer.lower().split()]
    if missing:
        return False, (f"the number words {missing} are gone: Num2Text wrote them, then the stopword list removed them. "
                       f"Pass StopwordRemover(keep=(...)) with the words Num2Text produces ({', '.join(number_words)}).")
    return False, ("the number words survive, but the rest differs: run Pipeline([Num2Text(), StopwordRemover(keep=...)])"
                   ".run([text], target='queries')[0][0] on exactly the exercise's sentence.")


@checker("05.2")
def _num2text_reach(answer: Any, collection: Collection) -> tuple[bool, str]:
    """(share of documents Num2Text changes, share of queries it changes)."""
    from .augment import Num2Text

    num = Num2Text()
    share = lambda texts: sum(r.changed for r in num.augment_batch(texts)) / len(texts)  # noqa: E731
    expected = (share(collection.contents), share(list(collection.queries.values())))
    if _values_match(answer, expected, 1e-9):
        few = ("An augmentation that rewrites the documents but few queries can help mostly through the documents."
               if expected[1] < expected[0] / 2 else "It reaches queries about as often as documents.")
        return True, f"right: {expected[0]:.1%} of the documents and {expected[1]:.1%} of the queries. {few}"
    return False, (f"you have {answer!r}, expected a pair (documents share, queries share). Use Num2Text().augment_batch(texts) "
                   "on collection.contents and on the query texts, and count the records whose .changed is True.")


@checker("05.3")
def _pos_roles(answer: Any, mlm: Any, texts: list[str], roles: tuple = ("ADJ", "NOUN"), fraction: float = 0.1,
               seed: int = 0) -> tuple[bool, str]:
    """{role: [(before, after), ...]}: the words POS-MLM replaces when it masks that part of speech."""
    from .augment import PosMLM

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
                  "swap tends to, and such a variant teaches the index a wrong association; the ablation (exercise 4) "
                  "is how to measure it.")


# -- 06 DSI training ---------------------------------------------------------------------------------------
@checker("06.1")
def _greedy_hits(answer: Any, model: Any, queries: dict[str, str], qrels: Any) -> tuple[bool, str]:
    """Test Hits@1 of greedy (beam 1) constrained decoding."""
    from .decode import search

    expected = evaluate(search(model, queries, k=1, beam_size=1), qrels, ("Hits@1",))["Hits@1"]
    if _close(answer, expected, 1e-4):
        return True, (f"right: {expected:.4f}. With atomic docids a docid is one token, so greedy decoding takes the "
                      "argmax of a single softmax: the same top-1 as any beam. With multi-token (semantic, naive) "
                      "docids a greedy first step can commit to the wrong cluster, and a wider beam can recover.")
    return False, (f"you have {answer!r}. Run search(model, queries, k=1, beam_size=1) and read 'Hits@1' from "
                   "dsilab.evaluate(run, qrels, ('Hits@1',)).")


@checker("06.2")
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


# -- 07 efficient training -----------------------------------------------------------------------------------
@checker("07.1")
def _lora_count(answer: Any, counted: int, layers: int = 6, projections: int = 4, d: int = 384, r: int = 8) -> tuple[bool, str]:
    """LoRA adds r * (d_in + d_out) weights to each target projection."""
    expected = layers * projections * r * (d + d)
    if expected != counted:
        return False, f"the formula gives {expected} but the model has {counted} adapter weights: the notebook's set-up changed."
    if answer == expected:
        return True, (f"right: {expected:,} = {layers} layers x {projections} projections x r={r} x ({d} + {d}). "
                      f"A full {d}x{d} projection has {d * d:,} weights: LoRA trains {2 * r / d:.1%} of each.")
    return False, (f"you have {answer!r}. Each target gets A (r x d_in) and B (d_out x r): r * (d_in + d_out) weights; "
                   "multiply by the number of target projections.")


@checker("07.2")
def _nf4_bits(answer: Any, weight: Any, blocksize: int = 128) -> tuple[bool, str]:
    """Bits per weight of NF4 with double quantisation at a given block size (lookup table aside)."""
    from .adapters import quantization_error

    expected = 4 + 8 / blocksize + 32 / (blocksize * 256)
    measured = quantization_error(weight, "nf4", True, blocksize=blocksize)["bits_per_weight"]
    table = measured - expected  # what bitsandbytes stores once per matrix: the 256-entry fp32 table and an offset
    if _close(answer, expected, 0.005):
        return True, (f"right: {expected:.4f}. bitsandbytes measures {measured:.4f} on this {weight.numel():,}-weight "
                      f"matrix: the extra {table:.4f} bit is the fixed lookup table, spread over all weights. Bigger "
                      "blocks mean fewer scales, but one outlier then stretches the scale of more weights.")
    return False, (f"you have {answer!r}. Add 4 bits, the 8-bit scale shared by {blocksize} weights, and the fp32 "
                   "scale shared by 256 blocks.")


# -- 08 DGI -------------------------------------------------------------------------------------
@checker("08.1")
def _two_levels(answer: Any, codes: Any) -> tuple[bool, str]:
    """(collision rate of the nearest codes, of the learned codes, levels in the end) of 2 x 16 residual codes."""
    if codes is None:
        return False, "build the codes first and pass them: check('08.1', answer, codes=<your ResidualCodes>)."
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


@checker("08.2")
def _steeper_tail(answer: Any, collection: Collection, s: float = 1.3) -> tuple[bool, str]:
    """(training queries, documents without one, BM25's popularity bias on the test split) at Zipf exponent s."""
    from .baselines import BM25
    from .dgi.natural import popularity, popularity_bias

    if collection is None:
        return False, "build the collection first and pass it: check('08.2', answer, collection=<your collection>)."
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


@checker("08.3")
def _best_tail_variant(answer: Any, result: dict[str, Any]) -> tuple[bool, str]:
    """(the variant with the highest tail (B3+B4) Hits@10, its difference to DGI's verdict) in a committed comparison."""
    from .dgi.study import TAIL, bucket_summary

    if result is None:
        return False, "load the committed result and pass it: check('08.3', answer, result=<the JSON as a dict>)."
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


# -- 09 capstone -------------------------------------------------------------------------------------------
def _table(results: dict[str, dict[str, Any]]) -> dict[str, dict[str, float]]:
    return {n: {k: float(v) for k, v in r.items() if isinstance(v, (int, float))} for n, r in results.items()}


@checker("09.1")
def _per_ms(answer: Any, results: dict[str, dict[str, Any]]) -> tuple[bool, str]:
    """The row with the highest Hits@10 per millisecond of query latency."""
    t = _table(results)
    expected = max(t, key=lambda n: t[n]["Hits@10"] / max(t[n]["ms_per_query"], 1e-6))
    if answer == expected:
        return True, (f"right: {expected!r}. Fast is not enough: compare its Hits@10 ({t[expected]['Hits@10']:.3f}) with "
                      "the best row's before deploying it.")
    if answer not in t:
        return False, f"{answer!r} is not a row of the table; use one of its index names."
    return False, f"not {answer!r}: divide the Hits@10 column by ms_per_query and take the row with the largest ratio."


@checker("09.2")
def _dsi_gap(answer: Any, results: dict[str, dict[str, Any]]) -> tuple[bool, str]:
    """Points of Hits@1 between the best baseline row and the best DSI row."""
    fam = {n: r["family"] for n, r in results.items()}
    t = _table(results)
    dsi = max(t[n]["Hits@1"] for n in t if fam[n] == "DSI")
    expected = 100 * (max(t[n]["Hits@1"] for n in t if fam[n] == "baseline") - dsi)
    if _close(answer, expected, 0.05):
        return True, (f"right: {expected:.1f} points. " + ("DSI still trails the best baseline here." if expected > 0
                                                          else "DSI beats the baselines here."))
    if _close(answer, expected / 100, 5e-4):
        return False, "close: give the answer in points (x 100), not as a fraction."
    return False, (f"you have {answer!r}. Take the best Hits@1 among family 'baseline' rows minus the best among "
                   "'DSI' rows, in points (x 100).")
