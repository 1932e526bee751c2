"""`dsilab bench incremental`: an update measured (memorisation and Hits on old and new documents), BM25 and dense
updates beside it, and continue vs replay vs retrain on one split.
"""
from __future__ import annotations


import time
from dataclasses import asdict, replace
from typing import Any, Literal
import numpy as np
from ..data import Collection
from ..recipes import Recipe, memorisation, train_dsi
from ..tasks import doc_views
from .runner import header
from ..incremental import CONTINUE, INITIAL, IncrementalSplit, RETRAIN, UpdateConfig, add_documents, split_collection


# -- measuring -------------------------------------------------------------------------------------------------
def _memo_per_doc(model: Any, docs: dict[str, str]) -> dict[str, float]:
    """Memorisation document by document: 1.0 when a document's indexed text decodes to its own docid, else 0.0."""
    from ..decode import search
    from ..metrics import per_query

    return per_query(search(model, docs, k=1, batch_size=128), {d: {d: 1} for d in docs}, ("Hits@1",))["Hits@1"]


def measure(retriever: Any, split: IncrementalSplit, which: str = "test", model: Any = None, doc_len: int = 64,
            seed: int = 0, *, keep: dict[str, Any] | None = None) -> dict[str, Any]:
    """Hits@1/10 (95% intervals, chance) on the queries about old documents and about new ones; with a DSI `model`,
    also memorisation (indexing Hits@1) of every old and every new document it has indexed.

    retriever: anything with `search(queries, k)`; model: the DSI model behind it (its docids say what is indexed;
    without one, every document of `split.full` is); doc_len: words of each document the model indexed (the recipe's).
    The chance levels are those of a random ranking of the indexed documents (0 for a query none of whose relevant
    documents is indexed).
    keep: a dict that receives the per-query and per-document scores behind the row, for paired tests between rows
    measured on the same queries (`dsilab.metrics.paired_difference`): "run" (the retriever's run on `which`),
    "qrels" ({group: qrels of that group's queries}) and, with a `model`, "memo" ({"old"/"new": {doc_id: 0 or 1}}).
    """
    from ..metrics import chance, summarize

    queries, qrels = split.full.split(which)
    run = retriever.search(queries, k=10)
    if keep is not None:
        keep["run"] = run
    indexed = set(model.docids.codes) if model is not None else set(split.full.docs)
    row: dict[str, Any] = {}
    if model is not None:
        views = doc_views(split.full, "first", doc_len)
        for name, ids in (("old", split.old_ids), ("new", split.new_ids)):
            ids = [d for d in ids if d in indexed]
            if keep is not None and ids:  # the same number as `memorisation`, kept document by document
                hits = _memo_per_doc(model, {d: views[d][0] for d in ids})
                keep.setdefault("memo", {})[name] = hits
                row[f"{name} memo"] = round(sum(hits.values()) / len(hits), 4)
                continue
            row[f"{name} memo"] = round(memorisation(model, {d: views[d][0] for d in ids}), 4) if ids else None
    for name, qids in split.groups(which).items():
        if not qids:
            continue
        part = {q: qrels[q] for q in qids}
        if keep is not None:
            keep.setdefault("qrels", {})[name] = part
        scores = summarize({q: run.get(q, []) for q in qids}, part, ("Hits@1", "Hits@10"), seed=seed)
        findable = {q: {d: g for d, g in rels.items() if d in indexed} for q, rels in part.items()}
        for k in (1, 10):
            row[f"{name} Hits@{k}"], row[f"{name} Hits@{k} CI"] = scores[f"Hits@{k}"], scores[f"Hits@{k} CI"]
            row[f"{name} chance Hits@{k}"] = round(chance(findable, len(indexed), k), 4)
    return row


def baseline_updates(split: IncrementalSplit, which: str = "test", seed: int = 0, *,
                     keep: dict[str, dict[str, Any]] | None = None) -> dict[str, dict[str, Any]]:
    """BM25 and dense (MiniLM) retrieval indexing the old documents, then adding the new ones: time to add, Hits.
    keep: a dict that receives, per row name, what `measure(..., keep=...)` keeps (the run, for paired tests).

    Dense adds a document by encoding it and appending its vector. rank-bm25 has no add, so BM25's "add" rebuilds
    its index over all documents (an inverted index would append the new postings: cheaper still).
    """
    from ..baselines import BM25, Dense

    new_docs = [split.full.docs[d].contents for d in split.new_ids]
    rows: dict[str, dict[str, Any]] = {}
    bm25 = BM25(split.old)
    t0 = time.perf_counter()
    bm25 = BM25(Collection(split.full.name, {**split.old.docs, **{d: split.full.docs[d] for d in split.new_ids}},
                           {}, {}))
    rows["BM25 + new docs (index rebuilt)"] = {"seconds": round(time.perf_counter() - t0, 3)}
    dense = Dense(split.old)
    t0 = time.perf_counter()
    dense.doc_emb = np.vstack([dense.doc_emb, dense.encoder.encode(new_docs)])
    dense.doc_ids = dense.doc_ids + list(split.new_ids)
    rows["Dense (MiniLM) + new docs (vectors appended)"] = {"seconds": round(time.perf_counter() - t0, 3)}
    for name, retriever in zip(rows, (bm25, dense)):
        kept = keep.setdefault(name, {}) if keep is not None else None
        rows[name] = {**measure(retriever, split, which, seed=seed, keep=kept), **rows[name]}
    return rows


def table(rows: dict[str, dict[str, Any]], group: str = "old") -> Any:
    """Rows of `measure` (plus cost) as a table for one query group ("old" or "new"): Hits@1/10 with their 95%
    intervals, the chance level of each row's index, a verdict ("too small to tell" when the interval reaches down to
    chance), that group's memorisation, seconds and steps."""
    import pandas as pd

    from ..metrics import verdict

    out = {}
    for name, r in rows.items():
        if f"{group} Hits@10" not in r:
            continue
        row: dict[str, Any] = {}
        for k in (1, 10):
            ci, level = r[f"{group} Hits@{k} CI"], r[f"{group} chance Hits@{k}"]
            row.update({f"Hits@{k}": r[f"{group} Hits@{k}"], f"Hits@{k} CI": ci, f"chance Hits@{k}": level,
                        f"Hits@{k} vs chance": verdict(ci, level)})
        row.update({"memorisation": r.get(f"{group} memo"), "seconds": r.get("seconds"), "steps": r.get("steps")})
        out[name] = row
    return pd.DataFrame(out).T


REPLAYS = {"DSI + replay (old indexing)": False, "DSI + replay (old indexing + queries)": True}


def check_floors(rows: dict[str, dict[str, Any]], replay: str = "DSI + replay") -> list[dict[str, Any]]:
    """What an update should reach (DSI++'s question, on our numbers): each line with the measured value and whether
    it holds. rows: INITIAL, CONTINUE, RETRAIN and the replay row named `replay`."""
    init, cont, rep, ret = rows[INITIAL], rows[CONTINUE], rows[replay], rows[RETRAIN]
    kept = rep["old memo"] / max(init["old memo"], 1e-9)
    gap = ret["old Hits@10"] - rep["old Hits@10"]
    before = init["old Hits@10"] - rep["old Hits@10"]
    new = rep.get("new Hits@10")
    cost = rep["seconds"] / max(ret["seconds"], 1e-9)
    drop = init["old memo"] - cont["old memo"]
    return [
        {"floor": "replay keeps >= 90% of the old documents' memorisation", "measured": round(kept, 3), "holds": kept >= 0.9},
        {"floor": "replay's old-query Hits@10 within 3 points of retraining", "measured": round(gap, 4), "holds": gap <= 0.03},
        {"floor": "replay's old-query Hits@10 within 3 points of the model before the update", "measured": round(before, 4),
         "holds": before <= 0.03},
        {"floor": "replay's new-document Hits@10 >= 0.40", "measured": new, "holds": new is not None and new >= 0.4},
        {"floor": "replay costs <= 30% of retraining's seconds", "measured": round(cost, 3), "holds": cost <= 0.3},
        {"floor": "continued training without replay forgets (old memorisation drops >= 5 points)",
         "measured": round(drop, 4), "holds": drop >= 0.05},
    ]


def paired(kept: dict[str, dict[str, Any]], pairs: list[tuple[str, str, str]]) -> list[dict[str, Any]]:
    """Paired differences between rows on the same queries: (A, B, group) -> Hits@10 of A minus B on that group's
    test queries, with its 95% paired bootstrap interval (`dsilab.metrics.paired_difference`)."""
    from ..metrics import paired_difference

    out = []
    for a, b, group in pairs:
        qrels = kept[a].get("qrels", {}).get(group)
        if qrels:
            runs = [{q: kept[x]["run"].get(q, []) for q in qrels} for x in (a, b)]
            out.append({"A": a, "B": b, "group": group, **{k: v for k, v in
                        paired_difference(*runs, qrels, "Hits@10").items() if k not in ("A", "B")}})
    return out


def bench_incremental(collection: Collection, split: str = "test", seed: int = 0, docids: str = "semantic",
                      new_share: float = 0.2, update: UpdateConfig = UpdateConfig(curve_every=20),
                      topics: int | None = None, recipe: dict[str, Any] | None = None,
                      progress: bool = False, new_queries: bool = True) -> dict[str, Any]:
    """Index 80% of the documents, add the other 20% by continue / replay / retrain, and BM25 and dense beside them.

    Every DSI model trains with `train_dsi`'s recipe (`docids`, plus `recipe` changes); rows report memorisation of
    old and new documents, Hits@1/10 (95% intervals, chance) on the test queries about old and about new documents,
    and the cost in seconds and steps. Replay runs twice, from old indexing examples (DSI++'s setting) and from
    indexing + training-query examples; the one with the better dev Hits@1 is the one the checks read.
    `topics`: only the documents of that many lab topics; `new_queries`: False adds the new documents as text alone
    (their training queries are dropped for every model).
    """
    import gc

    coll = collection.topics(topics) if topics else collection
    parts = split_collection(coll, new_share, seed, new_queries=new_queries)
    rec = Recipe(**{"docids": docids, "seed": seed, **(recipe or {})})
    groups = {g: len(q) for g, q in parts.groups(split).items() if q}
    print(f"{coll.name}: {len(parts.old_ids)} old + {len(parts.new_ids)} new documents; {split} queries {groups}",
          flush=True)
    rows: dict[str, dict[str, Any]] = {}
    curves: dict[str, list] = {}
    best_dev: dict[str, Any] = {}
    tree_stats: dict[str, Any] = {}
    kept: dict[str, dict[str, Any]] = {}

    def record(name: str, index: Any, model: Any, seconds: float, steps: int, examples: int, stopped: str) -> None:
        kept[name] = {}
        rows[name] = {**measure(index, parts, split, model, rec.doc_len, seed, keep=kept[name]),
                      "seconds": round(seconds, 1),
                      "steps": steps, "examples": examples, "stopped": stopped}
        print(f"{name}: " + ", ".join(f"{k} {rows[name].get(k)}" for k in
                                      ("old memo", "new memo", "old Hits@10", "new Hits@10", "seconds", "steps")), flush=True)

    initial = train_dsi(parts.old, rec, progress=progress)
    record(INITIAL, initial, initial.model, initial.seconds, initial.train.steps, initial.n_examples, initial.stopped)
    plan = [(CONTINUE, "continue", update)] + [(n, "replay", replace(update, replay_queries=q)) for n, q in REPLAYS.items()]
    for name, strategy, cfg in plan + [(RETRAIN, "retrain", update)]:
        up = add_documents(initial, parts, strategy, cfg, progress)
        record(name, up, up.model, up.seconds, up.steps, up.n_examples, up.stopped)
        curves[name], best_dev[name] = up.curve, up.best_dev
        tree_stats = tree_stats or up.tree_stats
        del up
        gc.collect()
    rows.update(baseline_updates(parts, split, seed, keep=kept))
    chosen = max(REPLAYS, key=lambda n: best_dev[n].get("Hits@1", 0.0)) if parts.dev_from != "none" else list(REPLAYS)[0]
    floors = check_floors(rows, chosen)
    bm25 = "BM25 + new docs (index rebuilt)"
    differences = paired(kept, [(chosen, INITIAL, "old"), (chosen, RETRAIN, "old"), (chosen, RETRAIN, "new"),
                                (chosen, bm25, "new"), (RETRAIN, bm25, "new")])
    return {
        **header("incremental", coll, split, seed, sum(groups.values())),
        "old_docs": len(parts.old_ids),
        "new_docs": len(parts.new_ids),
        "groups": groups,
        "setting": (f"{rec.label}: trained with dsilab.recipes.train_dsi on the old {100 - round(100 * new_share)}% "
                    f"of the documents, then the new {round(100 * new_share)}% added by continued training (new "
                    f"documents' examples only), replay ({update.replay} old examples per new example) or "
                    "retraining from scratch; "
                    + ("new documents bring their training queries when the recipe uses them" if new_queries else
                       "new documents arrive as text alone: no model trains on a query about them")),
        "recipe": asdict(rec),
        "update": asdict(update),
        "dev_from": parts.dev_from,
        "best_dev": best_dev,
        "selected_on": "dev" if parts.dev_from != "none" else None,
        "selected_replay": chosen,
        "tree_growth": tree_stats,
        "floors": floors,
        "paired": differences,
        "notes": ["old/new = test queries whose relevant documents are all old / all new; [a, b] = 95% bootstrap "
                  "interval over queries; chance = a random ranking of the documents that row's index holds.",
                  "seconds: wall time of training (for updates also of giving docids to the new documents and growing "
                  "the model); the forgetting-curve probes are not counted. Baselines: time to add the new documents.",
                  f"Replay variant checked, chosen on dev Hits@1: {chosen}. Checks: "
                  + "; ".join(f"{f['floor']}: {f['measured']} ({'holds' if f['holds'] else 'does not hold'})"
                              for f in floors) + ".",
                  "Paired Hits@10 differences on the same test queries (95% paired bootstrap): "
                  + "; ".join(f"{d['A']} minus {d['B']}, {d['group']} queries ({d['queries']}): {d['difference']:+.3f} "
                              f"[{d['CI'][0]:+.3f}, {d['CI'][1]:+.3f}], {d['verdict']}" for d in differences) + "."],
        "results": rows,
        "curves": curves,
    }


def benchmark(collection: Collection, split: str = "test", seed: int = 0,
              docids: Literal["atomic", "naive", "semantic"] = "semantic", new_share: float = 0.2,
              topics: int | None = None, recipe: dict[str, Any] | None = None,
              time_limit_s: float | None = None, new_queries: bool = True,
              update_max_steps: int | None = None) -> dict[str, Any]:
    """`dsilab bench incremental`: index 80% of the documents, add the other 20% by continue / replay / retrain, with
    BM25 and dense updates beside them; memorisation and Hits on old and new documents, and the cost of each update.

    Args:
        docids: the docid kind of every DSI model
        new_share: the share of the documents added after the first indexing
        topics: only the documents of this many lab topics (default: the whole collection)
        recipe: changes to the DSI recipe (Recipe(docids=...)): JSON or a JSON file of dsilab.recipes.Recipe fields
        time_limit_s: a wall-clock cap on each from-scratch training in seconds (Recipe.time_limit_s)
        new_queries: false: the new documents arrive as text alone (no model trains on a query about them)
        update_max_steps: a cap in optimizer steps on each continue / replay update (UpdateConfig.max_steps)
    """
    recipe = {**(recipe or {}), **({"time_limit_s": time_limit_s} if time_limit_s else {})}
    update = UpdateConfig(curve_every=20, max_steps=update_max_steps)
    return bench_incremental(collection, split, seed, docids, new_share, update, topics=topics, recipe=recipe,
                             new_queries=new_queries)
