"""What training adds to an index, measured honestly: soft-sort vs the default loss, joint (query
adapter) vs frozen encoder, each over several seeds with a 95% interval, and the soft tree's
routing ceiling (an oracle router at the same budget) that bounds what any learned router can gain.
Settings come from held-out *training* queries (`holdout`); test queries are read once.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..core import DsilabError
from .hashing import LearnedHash
from .reference import KMeansTree
from .soft_tree import SoftTree
from .tree import Tree
from .vectors import VectorSet


def holdout(vs: VectorSet, frac: float = 0.2, seed: int = 0) -> VectorSet:
    """A vector set whose 'test' queries are a held-out `frac` of the training queries: for choosing settings."""
    n = len(vs.train_queries)
    if not 0 < frac < 1 or int(frac * n) < 1:
        raise DsilabError(f"holdout: frac must leave at least one query on each side; got frac={frac} of {n} queries.")
    perm = np.random.default_rng(seed).permutation(n)
    cut = n - int(frac * n)
    return VectorSet(name=f"{vs.name} (held-out train)", database=vs.database, ids=vs.ids,
                     train_queries=vs.train_queries[perm[:cut]], test_queries=vs.train_queries[perm[cut:]],
                     test_qids=[f"h{i}" for i in range(n - cut)], k=vs.k, meta={**vs.meta, "holdout": frac})


def t_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """Mean and Student-t confidence interval of a few measurements (one per seed)."""
    from scipy import stats

    x = np.asarray(values, dtype=float)
    if x.size < 2:
        raise DsilabError("t_interval needs at least two values (run at least two seeds).")
    half = stats.t.ppf(0.5 + level / 2, x.size - 1) * x.std(ddof=1) / np.sqrt(x.size)
    return float(x.mean()), float(x.mean() - half), float(x.mean() + half)


def oracle_recall(tree: Tree, neighbours: np.ndarray, budget: float, k: int = 10) -> float:
    """recall@k of a router that knows each query's true neighbours and opens, within `budget`
    distance computations per query, the leaves that cover most of them (greedy by gain per cost;
    opening a leaf pays its unopened ancestors' children and its new rows, as the beam descent does)."""
    leaf_of: dict[int, list[int]] = {}
    for v in tree.leaves:
        for r in tree.items[v]:
            leaf_of.setdefault(int(r), []).append(v)
    total = 0.0
    for nb in neighbours[:, :k]:
        want = {int(r) for r in nb}
        leaves = sorted({v for r in want for v in leaf_of[r]})
        opened, rows, found = {0}, set(), set()
        cost = len(tree.children[0])
        while True:
            best, best_ratio = None, 0.0
            for v in leaves:
                gain = len((set(tree.items[v].tolist()) & want) - found)
                if not gain:
                    continue
                path = [u for u in tree.path_to(v)[:-1] if u not in opened]
                extra = sum(len(tree.children[u]) for u in path) + len(set(tree.items[v].tolist()) - rows)
                if cost + extra <= budget and gain / max(extra, 1) > best_ratio:
                    best, best_ratio = (v, path), gain / max(extra, 1)
            if best is None:
                break
            v, path = best
            cost += sum(len(tree.children[u]) for u in path)
            opened.update(path)
            new = set(tree.items[v].tolist())
            cost += len(new - rows)
            rows |= new
            found |= new & want
        total += len(found) / len(want)
    return total / len(neighbours)


#: Soft-sort and joint settings, chosen on held-out training queries (lab and a 20k synthetic set):
#: the soft top-k aims at the beam where the k-means tree reaches 80% and at the table's candidate count.
SOFTSORT_TOP = {"small": 8, "large": 3}
HASH_SOFTSORT = dict(loss="softsort", width=1.0)
JOINT = dict(adapter=True)  # rank 8, adapter_l2 = 1: the config defaults, chosen on the same held-out queries


def _summary(values: list[float]) -> dict[str, Any]:
    mean, lo, hi = t_interval(values)
    return {"per_seed": [round(v, 4) for v in values], "mean": round(mean, 4), "ci95": [round(lo, 4), round(hi, 4)]}


def learning_table(vs: VectorSet, seeds: Sequence[int] = (0, 1, 2), progress: bool = False,
                   parts: Sequence[str] = ("tree", "hash"), hash_epochs: int | None = None) -> dict[str, Any]:
    """recall@10 on the test queries, per seed: soft tree (at the k-means tree's 80% budget) and 32-bit
    learned hash (at the table's candidate count) with the default loss, the soft-sort loss, and joint
    training; mean and Student-t 95% interval over seeds, for each method and for each paired difference."""
    from .sweeps import LAMS, MASS, PLANS, TREE_TRAIN, sweep, tree_goal

    if len(seeds) < 2:
        raise DsilabError("learning_table needs at least two seeds for an interval.")
    if not parts or not set(parts) <= {"tree", "hash"}:
        raise DsilabError(f"parts must name 'tree' and/or 'hash'; got {parts!r}.")
    size = "small" if vs.database.shape[0] < 10_000 else "large"  # (a "huge" set is read with the large plan)
    plan = PLANS[size]
    beams = plan["beams"] if size == "small" else [2, 3, 4, 6, 8]  # around the 80% budget: keeps 100k in minutes
    cand, epochs = plan["ref_candidates"], hash_epochs or (20 if size == "small" else 10)
    tree_variants = {"soft tree (default loss)": {}, "soft tree (soft-sort loss)": dict(loss="softsort", top=SOFTSORT_TOP[size]),
                     "soft tree (joint, query adapter)": JOINT} if "tree" in parts else {}
    hash_variants = {"learned hash (default loss)": {}, "learned hash (soft-sort loss)": dict(HASH_SOFTSORT, top=cand),
                     "learned hash (joint, query adapter)": JOINT} if "hash" in parts else {}
    per: dict[str, list[float]] = {name: [] for name in (*tree_variants, *hash_variants)}
    budgets = []
    for seed in seeds:
        if tree_variants:
            kmt = KMeansTree(vs.database, vs.ids, k=plan["k"], depth=plan["depth"], seed=seed)
            km = sweep(kmt, vs, "beam", beams)
        for name, extra in tree_variants.items():
            st = SoftTree(tree=kmt.tree, seed=seed, lam=LAMS[0], **{**TREE_TRAIN, **extra})
            st.fit(vs.database, vs.ids, vs.train_queries, vs.train_targets, progress=progress)
            g = tree_goal(km, sweep(st, vs, "beam", beams, mass=MASS))
            per[name].append(g["learned"])
        if tree_variants:
            budgets.append(g["budget"])
        for name, extra in hash_variants.items():
            h = LearnedHash(bits=32, seed=seed, epochs=epochs, **extra)
            h.fit(vs.database, vs.ids, vs.train_queries, vs.train_targets, progress=progress)
            per[name].append(sweep(h, vs, "candidates", [cand])[0]["recall@10"])
    rows = {name: _summary(v) for name, v in per.items()}
    diffs = {}
    for base, others in (("soft tree (default loss)", list(tree_variants)[1:]), ("learned hash (default loss)", list(hash_variants)[1:])):
        for o in others:  # empty for a part that was not asked for
            diffs[f"{o} - {base}"] = _summary([a - b for a, b in zip(per[o], per[base])])
    return {"rows": rows, "differences": diffs, "seeds": list(seeds), "tree_budget": [round(b, 1) for b in budgets],
            "hash_candidates": cand, "interval": "Student t over seeds (mean of per-seed recall@10 on all test queries)",
            "note": "soft tree read at the budget where the k-means tree (same seed) reaches 80% recall@10, beams "
                    f"{beams} with mass {MASS}; hash: 32 bits, {cand} candidates; the adapter folds into the routing "
                    "centroids / query hyperplanes, so every pair compares at equal search cost."}


def routing_ceiling(vs: VectorSet, k: int, depth: int, beams: Sequence[int], seed: int = 0, mass: float | None = 0.9,
                    strong: dict[str, Any] | None = None, **train: Any) -> dict[str, Any]:
    """Why the learned tree gains little at the k-means tree's 80% budget, read on held-out training queries:
    recall there of the k-means tree, the soft tree trained without those queries (what search sees),
    the soft tree fitted *with* them (what its routing can represent for known queries), and an oracle
    router that knows each query's neighbours (what any router could reach in this tree)."""
    from .sweeps import sweep, tree_goal

    ho = holdout(vs, seed=seed)
    kmt = KMeansTree(ho.database, ho.ids, k=k, depth=depth, seed=seed)
    km = sweep(kmt, ho, "beam", beams)
    budget = tree_goal(km, km)["budget"]
    if np.isnan(budget):
        raise DsilabError("routing_ceiling: the k-means tree never reaches 80% recall@10; add wider beams.")
    strong = strong if strong is not None else dict(lam=0.0, lr=1e-3, epochs=40)
    everything = (np.concatenate([ho.train_queries, ho.test_queries]), np.concatenate([ho.train_targets, ho.test_neighbours]))
    out: dict[str, Any] = {"budget": budget, "k-means tree": tree_goal(km, km)["unlearned"]}
    for name, settings, data in (("soft tree", train, (ho.train_queries, ho.train_targets)),
                                 ("soft tree, strong fit", {**train, **strong}, (ho.train_queries, ho.train_targets)),
                                 ("soft tree, strong fit incl. these queries", {**train, **strong}, everything)):
        st = SoftTree(tree=kmt.tree, seed=seed, **settings).fit(ho.database, ho.ids, *data)
        out[name] = tree_goal(km, sweep(st, ho, "beam", beams, mass=mass))["learned"]
    out["oracle router"] = oracle_recall(kmt.tree, ho.test_neighbours, budget)
    out["gain_points"] = {name: round(100 * (out[name] - out["k-means tree"]), 1)
                          for name in ("soft tree", "soft tree, strong fit", "soft tree, strong fit incl. these queries", "oracle router")}
    out["held_out_queries"] = len(ho.test_qids)
    return out


def training_size_curve(vs: VectorSet, k: int, depth: int, beams: Sequence[int], sizes: Sequence[int],
                        seed: int = 0, mass: float | None = 0.9, **train: Any) -> list[dict[str, Any]]:
    """The soft tree's gain over the k-means tree at its 80% budget (on `vs`'s test queries) when trained on
    the first n training queries, for each n in `sizes`: does more training signal close the gap?"""
    from .sweeps import sweep, tree_goal

    if not sizes or max(sizes) > len(vs.train_queries) or min(sizes) < 1:
        raise DsilabError(f"sizes must lie in 1..{len(vs.train_queries)} (the training queries available).")
    kmt = KMeansTree(vs.database, vs.ids, k=k, depth=depth, seed=seed)
    km = sweep(kmt, vs, "beam", beams)
    out = []
    for n in sizes:
        st = SoftTree(tree=kmt.tree, seed=seed, **train).fit(vs.database, vs.ids, vs.train_queries[:n], vs.train_targets[:n])
        g = tree_goal(km, sweep(st, vs, "beam", beams, mass=mass))
        out.append({"train queries": int(n), "budget": g["budget"], "gain_points": round(g["gain_points"], 2)})
    return out
