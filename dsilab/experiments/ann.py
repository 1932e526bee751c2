"""`dsilab bench ann`: every ANN index on one vector set, FAISS as the anchor, the equal-recall and equal-budget
comparisons, the seed study and the routing ceiling, and the plots.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np

from ..ann.faiss_index import FaissHNSW, FaissIVFFlat
from ..ann.learning import learning_table, routing_ceiling
from ..ann.reference import IVF, Flat
from ..ann.vectors import VectorSet
from ..core import DsilabError, seed_everything
from ..data import Collection
from ..ann.sweeps import BITS, HNSW_BUILD, LAMS, MASS, PLANS, TREE_TRAIN, at_recall, hash_table, plot_curves, sweep, tree_curves, tree_goal
from .runner import header


def lambda_notes(curves: dict[str, Any]) -> list[str]:
    """The tree goal read for every trained lambda (the headline uses the first, fixed beforehand)."""
    out = []
    for lam in LAMS[1:]:
        g = tree_goal(curves["k-means tree"], curves[f"soft tree lambda={lam}"])
        out.append(f"Same budget, soft tree lambda={lam} (not the pre-chosen setting): {100 * g['learned']:.1f}% "
                   f"({g['gain_points']:+.1f} points).")
    return out


def faiss_curves(vs: VectorSet, plan: dict[str, Any], seed: int = 0) -> dict[str, Any]:
    """FAISS IVF-Flat swept over nprobe and HNSW over efSearch, both searching on one thread (like the numpy
    indexes); IVF's k-means builds on every core (same lists: the result does not depend on it)."""
    t0 = time.perf_counter()
    ivf = FaissIVFFlat(vs.database, vs.ids, nlist=plan["faiss_nlist"], seed=seed, threads=1, build_threads=os.cpu_count())
    ivf_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    hnsw = FaissHNSW(vs.database, vs.ids, **HNSW_BUILD, threads=1, build_threads=1)
    hnsw_s = time.perf_counter() - t0
    return {"FAISS IVF-Flat": sweep(ivf, vs, "nprobe", plan["faiss_nprobe"]),
            "FAISS HNSW": sweep(hnsw, vs, "ef_search", plan["ef_search"]),
            "build_s": {"FAISS IVF-Flat": ivf_s, "FAISS HNSW": hnsw_s}}


def equal_recall_notes(curves: dict[str, list[dict[str, Any]]], names: Sequence[str], targets: Sequence[float] = (0.8, 0.9)
                       ) -> tuple[dict[str, Any], list[str]]:
    """Every method read at the same recall@10: its cost in distances/query and ms/query, one note per target."""
    table: dict[str, Any] = {}
    notes = []
    for t in targets:
        table[t] = {n: at_recall(curves[n], t) for n in names if n in curves}
        parts = [f"{n} never (best {max(r['recall@10'] for r in curves[n]):.1%})" if np.isnan(v["distances/query"])
                 else f"{n} {'<= ' if v['upper_bound'] else ''}{v['distances/query']:,.0f} distances, {v['ms/query']:.2f} ms"
                 for n, v in table[t].items()]
        notes.append(f"At equal recall@10 = {t:.0%} (interpolated between swept settings; '<=': already above it at the "
                     "cheapest setting): " + "; ".join(parts) + ".")
    return table, notes


def save_plots(result: dict[str, Any], path: str | Path) -> Path:
    """recall@10 against distances/query and against ms/query (trees, IVF, FAISS; log x), as one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keep = {n: rows for n, rows in result["curves"].items()
            if n.startswith(("flat", "IVF", "FAISS", "k-means tree", "soft tree"))}
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.6))
    plot_curves(keep, ax=axes[0], title=f"{result['collection']}: recall@10 vs distance computations")
    plot_curves(keep, ax=axes[1], x="ms/query", title="recall@10 vs ms/query (FAISS on 1 thread)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def run_ann_benchmark(vs: VectorSet, seed: int = 0, hash_epochs: int | None = None, progress: bool = False,
                      only: str | None = None) -> dict[str, Any]:
    """Every method on one vector set: result rows for the table, full curves, both goals and FAISS as the anchor.
    (The learned hash trains 20 epochs on small sets, 10 on large ones to keep the run near 10 minutes.)
    only="reference": flat, IVF and FAISS only, skipping the learned structures (for 1M vectors on a laptop);
    only="structures": every index once, without the 3-seed soft-sort / joint comparisons (`learning.learning_table`)."""
    if only not in (None, "reference", "structures"):
        raise DsilabError(f"run_ann_benchmark: only must be None, 'reference' or 'structures'; got {only!r}.")
    n = vs.database.shape[0]
    small = n < 10_000
    plan = PLANS["small" if small else "large" if n < 500_000 else "huge"]
    hash_epochs = hash_epochs or (20 if small else 10)
    na = "-" if vs.test_qrels is None else None

    def row(r: dict[str, Any], train_s: float = 0.0) -> dict[str, Any]:
        return {"recall@10": round(r["recall@10"], 4), "distances/query": round(r["distances/query"], 1),
                "Hits@10": na or round(r["Hits@10"], 4), "ms/query": round(r["ms/query"], 3), "train_s": round(train_s, 1)}

    rows: dict[str, dict[str, Any]] = {}
    curves: dict[str, Any] = {}
    flat = sweep(Flat(vs.database, vs.ids), vs, "k", [10])
    curves["flat (exact)"] = flat
    rows["flat (exact)"] = row(flat[0])
    t0 = time.perf_counter()
    ivf = IVF(vs.database, vs.ids, nlist=plan["nlist"], seed=seed)
    ivf_s = time.perf_counter() - t0
    curves["IVF"] = sweep(ivf, vs, "nprobe", plan["nprobe"])
    for r in curves["IVF"]:
        rows[f"IVF nlist={plan['nlist']} nprobe={r['nprobe']}"] = row(r, ivf_s)
    fc = faiss_curves(vs, plan, seed)
    curves["FAISS IVF-Flat"], curves["FAISS HNSW"] = fc["FAISS IVF-Flat"], fc["FAISS HNSW"]
    for r in fc["FAISS IVF-Flat"]:
        rows[f"FAISS IVF-Flat nlist={plan['faiss_nlist']} nprobe={r['nprobe']}"] = row(r, fc["build_s"]["FAISS IVF-Flat"])
    for r in fc["FAISS HNSW"]:
        rows[f"FAISS HNSW M={HNSW_BUILD['m']} efSearch={r['ef_search']}"] = row(r, fc["build_s"]["FAISS HNSW"])
    signal = vs.meta.get("train_signal", "train queries")
    faiss_note = (f"FAISS {_faiss_version()} anchors: IVF-Flat (nlist={plan['faiss_nlist']}, seeded k-means) swept over nprobe, "
                  f"HNSW (M={HNSW_BUILD['m']}, efConstruction={HNSW_BUILD['ef_construction']}, built on 1 thread) over "
                  "efSearch, inner product on unit vectors. They search on 1 thread (faiss.omp_set_num_threads(1)), one "
                  "FAISS call per query for HNSW so that its distance counter (hnsw_stats.ndis, all layers) is read per "
                  "query; IVF-Flat's cost = nlist centroid products + the sizes of the probed lists. The numpy/torch "
                  "indexes run on the process's threads (DSILAB_THREADS, default every core).")
    common = {"n_docs": int(n), "n_queries": len(vs.test_qids), "n_train_queries": int(len(vs.train_queries)),
              "train_signal": signal, "plan": plan, "hnsw": HNSW_BUILD, "faiss_threads": 1}
    if only == "reference":
        _, eq = equal_recall_notes(curves, ("IVF", "FAISS IVF-Flat", "FAISS HNSW"))
        notes = [*eq, faiss_note, "--only reference: the learned structures (soft tree, learned hash) and the "
                 "k-means tree were skipped on this vector set; only flat, IVF and FAISS ran.",
                 "train_s = index build seconds; ms/query measured on this machine."]
        return {"results": rows, "curves": curves, "notes": notes, "only": "reference", **common}
    trees = tree_curves(vs, plan["k"], plan["depth"], plan["beams"], lams=LAMS, seed=seed, mass=MASS, progress=progress,
                        **TREE_TRAIN)
    curves["k-means tree"] = trees["k-means tree"]
    for r in trees["k-means tree"]:
        rows[f"k-means tree {plan['k']}^{plan['depth']} beam={r['beam']}"] = row(r, trees["build_s"])
    for lam, soft in trees["soft"].items():
        curves[f"soft tree lambda={lam}"] = soft["rows"]
        for r in soft["rows"]:
            rows[f"soft tree lambda={lam} beam={r['beam']}"] = row(r, trees["build_s"] + soft["train_s"])
    hashes = hash_table(vs, BITS, plan["candidates"], seed=seed, epochs=hash_epochs, progress=progress)
    ref = plan["ref_candidates"]
    for b, h in hashes.items():
        for name in ("LSH", "PCA hash (untrained)", "learned hash"):
            curves[f"{name} {b} bits"] = h[name]
            r = next(x for x in h[name] if x["candidates"] == ref)
            rows[f"{name} {b} bits, {ref} candidates"] = row(r, h["train_s"] if name == "learned hash" else 0.0)
    g = trees["goal"]
    lsh32 = next(x for x in hashes[32]["LSH"] if x["candidates"] == ref)["recall@10"]
    ours32 = next(x for x in hashes[32]["learned hash"] if x["candidates"] == ref)["recall@10"]
    goals = {
        "tree": {**g, "met": bool(g["gain_points"] >= 5)},
        "hash": {"bits": 32, "candidates": ref, "LSH": lsh32, "learned": ours32,
                 "gain_points": 100 * (ours32 - lsh32), "met": bool(100 * (ours32 - lsh32) >= 10)},
    }
    eq_table, eq_notes = equal_recall_notes(curves, ("k-means tree", f"soft tree lambda={LAMS[0]}", "IVF", "FAISS IVF-Flat",
                                                     "FAISS HNSW", "learned hash 32 bits"))
    notes = [
        f"Tree at equal cost: at the budget where the k-means tree reaches 80% recall@10 ({g['budget']:.0f} distances/query, "
        f"interpolated between beam widths), the learned soft tree (lambda={LAMS[0]}, mass={MASS}) reaches {100 * g['learned']:.1f}% vs "
        f"{100 * g['unlearned']:.1f}%: {g['gain_points']:+.1f} points.",
        f"Hashing at equal budget: at 32 bits and {ref} candidates, learned hash {100 * ours32:.1f}% vs LSH {100 * lsh32:.1f}% "
        f"recall@10: {goals['hash']['gain_points']:+.1f} points.",
        *lambda_notes(curves),
        *eq_notes,
        anchor_verdict(eq_table, f"soft tree lambda={LAMS[0]}"),
        faiss_note,
        "distances/query counts inner products with stored vectors (documents, centroids, hash hyperplanes); "
        "Hamming comparisons of the hash indexes (n per query, bit operations) are not included. "
        "train_s = index build + training seconds; ms/query of this pure-Python/numpy implementation (FAISS: C++).",
    ]
    learning = None if only == "structures" else learning_table(vs, progress=progress)
    notes.insert(-1, learning_note(learning) if learning else "The 3-seed soft-sort and joint-training comparisons "
                 "and the routing ceiling were skipped on this vector set (only='structures').")
    ceiling = None if only == "structures" else ceiling_row(vs, plan, seed)
    if ceiling:
        notes.insert(-1, ceiling_note(ceiling))
    return {"results": rows, "curves": curves, "goals": goals, "notes": notes, "equal_recall": eq_table,
            "tree_train": TREE_TRAIN, "lams": list(LAMS), "learning": learning,
            "routing_ceiling": ceiling, **({"only": only} if only else {}), **common}


def anchor_verdict(eq_table: dict[float, dict[str, dict[str, float]]], learned: str) -> str:
    """One sentence: how many times more distance computations the learned tree needs than HNSW and IVF-Flat."""
    parts = []
    for t, by in eq_table.items():
        ours = by.get(learned, {}).get("distances/query", float("nan"))
        if np.isnan(ours):
            parts.append(f"at {t:.0%} recall@10 the {learned} never gets there in its sweep")
            continue
        vs = [f"{'at least ' if by[a]['upper_bound'] else ''}{ours / by[a]['distances/query']:.2f}x {a}'s"
              for a in ("FAISS HNSW", "FAISS IVF-Flat")
              if a in by and not np.isnan(by[a]["distances/query"])]
        parts.append(f"at {t:.0%} recall@10 the {learned} needs " + " and ".join(vs) + " distance computations")
    return "Against the anchors: " + "; ".join(parts) + "."


def _faiss_version() -> str:
    import faiss

    return faiss.__version__


def learning_note(learning: dict[str, Any]) -> str:
    """One sentence per training change (soft-sort loss, joint query adapter): its recall@10 difference over seeds."""
    parts = [f"{name}: {100 * d['mean']:+.1f} points [{100 * d['ci95'][0]:+.1f}, {100 * d['ci95'][1]:+.1f}]"
             for name, d in learning["differences"].items()]
    return (f"Training changes, recall@10 differences on the test queries ({len(learning['seeds'])} seeds, "
            f"{learning['interval']}; {learning['note']}): " + "; ".join(parts) + ".")


def ceiling_row(vs: VectorSet, plan: dict[str, Any], seed: int = 0) -> dict[str, Any]:
    """`dsilab.ann.learning.routing_ceiling` of the benchmark's tree (held-out training queries): what an oracle
    router and a soft tree fitted on those very queries gain at the k-means tree's 80% budget, beside the soft tree."""
    try:
        return routing_ceiling(vs, plan["k"], plan["depth"], plan["beams"], seed=seed, mass=MASS, lam=LAMS[0], **TREE_TRAIN)
    except DsilabError as e:  # e.g. the k-means tree never reaches 80% on the held-out queries: say so in the JSON
        return {"error": str(e)}


def ceiling_note(ceiling: dict[str, Any]) -> str:
    """The routing ceiling in one sentence (points of recall@10 over the k-means tree at its 80% budget)."""
    if "error" in ceiling:
        return f"Routing ceiling not measured: {ceiling['error']}"
    g = ceiling["gain_points"]
    return (f"Routing ceiling, on {ceiling['held_out_queries']} held-out training queries at the k-means tree's 80% "
            f"budget ({ceiling['budget']:.0f} distances/query): an oracle router that knows each query's neighbours "
            f"gains {g['oracle router']:+.1f} points, the soft tree fitted with those queries "
            f"{g['soft tree, strong fit incl. these queries']:+.1f}, the soft tree that never saw them "
            f"{g['soft tree']:+.1f} ({g['soft tree, strong fit']:+.1f} with a stronger fit): " + (
                "even an oracle gains less than 5 points, so +5 is out of reach in this tree."
                if g["oracle router"] < 5 else
                "the routing can represent a large gain for queries it has seen, but what it learns carries over to "
                "new queries only in part." if g["soft tree, strong fit incl. these queries"] >= g["soft tree"] + 5 else
                "fitting those very queries gains little more, so the linear routing itself is the limit here."))


def bench_ann(collection: Collection, split: str = "test", seed: int = 0,
              train_on: Literal["auto", "train queries", "document spans"] = "auto", n: int | None = None,
              only: Literal["reference", "structures"] | None = None) -> dict[str, Any]:
    """`dsilab bench ann`: soft tree and learned hashing vs flat / IVF / k-means tree / LSH, with FAISS IVF-Flat and
    HNSW as the industrial anchor: recall@10 against distance computations per query and ms/query, training time,
    and the two goals the soft tree and the learned hash were set.

    Vectors are MiniLM embeddings of `collection` (docs = database); the index learns from the train split, or, for
    a collection without one, from spans of its documents. `--collection synthetic` instead uses 100,000 x 384
    clustered synthetic vectors (`dsilab.ann.synthetic_vectors`), whose queries are perturbed database vectors.

    Args:
        split: the queries that are searched, never trained on (not with --collection synthetic, whose queries are
            its own)
        train_on: what the index learns from: "train queries", "document spans" or "auto" (train queries when the
            collection has any, else spans; not with --collection synthetic)
        n: vectors of --collection synthetic (default 100,000)
        only: "reference" runs flat, IVF and FAISS only (e.g. at 1M vectors, where training the learned structures
            does not fit a laptop run); "structures" every index once, without the 3-seed soft-sort / joint-training
            comparisons
    """
    from ..ann import lab_vectors, synthetic_vectors

    seed_everything(seed)
    if collection.name.startswith("synthetic"):
        if split != "test" or train_on != "auto":
            raise DsilabError("bench ann --collection synthetic searches its own perturbed database vectors and "
                              "trains on their neighbours: drop --split and --train-on.")
        vs = synthetic_vectors(n=n or 100_000, seed=seed)
        name, split = vs.name, "synthetic queries"
    else:
        if n is not None:
            raise DsilabError(f"bench ann --n sets the size of --collection synthetic; {collection.name!r} has its own "
                              f"{len(collection.docs)} documents: drop --n.")
        vs, name = lab_vectors(collection, split=split, train_on=train_on, seed=seed), collection.name
    out = run_ann_benchmark(vs, seed=seed, only=only)
    tested = split if split.endswith("queries") else f"{split} queries"
    setting = (f"index trained on {vs.meta.get('train_signal')} ({len(vs.train_queries)} training queries, each with its "
               f"exact top-{vs.k} database vectors as targets); the {tested} are only searched")
    slug = f"-{out['only']}" if out.get("only") else ""
    return {**header("ann", f"{name}{slug}", split, seed, out.get("n_queries", 0)), "setting": setting, **out}
