"""`dsilab bench dsi`: BM25, dense (untrained and fine-tuned) and DSI variants trained to convergence, read once
on the same test queries; `dsi_variant` is one such row, the unit every training study is built from.
"""
from __future__ import annotations

from .baselines import time_retriever
from .runner import header, in_processes

import os
import time
from typing import Any
from ..core import DsilabError, Run, release_memory, seed_everything
from ..data import Collection


#: What `dsilab bench dsi` trains: changes to the default `Recipe`, one row each. The pure DSI rows (random docid rows,
#: as in the DSI paper) first; "dense-initialised" starts atomic docid rows at the document encodings, which makes it a
#: dense retriever with a learned query side, and it is labelled so.
DSI_VARIANTS: list[dict[str, Any]] = [{"docids": "atomic"}, {"docids": "naive"}, {"docids": "semantic"},
                                      {"docids": "atomic", "docid_init": "encoder"}]

#: Rows that try to close the gap on documents no training query points to, named with `--variants`: string docids
#: searched with a BM25 lexical plan (PAG's planner; `dsilab.decode.SearchConfig`), its weight chosen on dev; and
#: relevance-based docids (RIPOR's idea; `dsilab.docids.DocidConfig.docid_space`), semantic or residual, built from
#: MiniLM fine-tuned on the training queries, with and without the plan; and distillation: span queries of every
#: document labelled by that fine-tuned dense teacher (`querygen.teacher_labels`), beside the same queries unlabelled,
#: and its whole top-10 taught at every docid prefix (`dsilab.distill`, RIPOR's idea).
GAP_VARIANTS: list[dict[str, Any]] = [
    {"docids": "semantic", "plan": "bm25"}, {"docids": "naive", "plan": "bm25"},
    {"docids": "semantic", "docid_space": "relevance"}, {"docids": "residual", "docid_space": "relevance"},
    {"docids": "semantic", "docid_space": "relevance", "plan": "bm25"},
    {"docids": "residual", "docid_space": "relevance", "plan": "bm25"},
    {"docids": "semantic", "pseudo_per_doc": 5}, {"docids": "semantic", "pseudo_per_doc": 5, "query_teacher_k": 1},
    {"docids": "semantic", "pseudo_per_doc": 5, "query_teacher_k": 1, "plan": "bm25"},
    {"docids": "semantic", "pseudo_per_doc": 5, "query_teacher_k": 1, "distill_list": 10},
    {"docids": "semantic", "pseudo_per_doc": 5, "query_teacher_k": 1, "distill_list": 10, "plan": "bm25"},
]


DSI_METRICS = ("Hits@1", "Hits@5", "Hits@10", "MRR@10", "nDCG@10")


def _scores(run: Run, qrels: dict, groups: dict[str, list[str]], seed: int) -> dict[str, Any]:
    """Metrics with 95% intervals on all queries, then Hits@10 (with interval) on each group (seen/unseen)."""
    from ..metrics import summarize

    row = summarize(run, qrels, DSI_METRICS, seed=seed)
    for name, qids in groups.items():
        if qids:
            part = summarize({q: run.get(q, []) for q in qids}, {q: qrels[q] for q in qids}, ("Hits@10",),
                             ("Hits@10",), seed=seed)
            row[f"{name} Hits@10"], row[f"{name} Hits@10 CI"] = part["Hits@10"], part["Hits@10 CI"]
    return row


def _per_query(run: Run, qrels: dict) -> dict[str, float]:
    """Each query's Hits@10: what a paired comparison of two rows on the same queries needs."""
    from ..metrics import per_query

    return per_query(run, qrels, ("Hits@10",))["Hits@10"]


def _paired_by_group(a: dict[str, float], b: dict[str, float], groups: dict[str, list[str]],
                     seed: int) -> dict[str, Any]:
    """A minus B from per-query scores on the same queries, paired (`paired_difference`): on all, then on each group."""
    from ..metrics import paired_difference

    parts = {"all": list(a), **groups}
    return {g: paired_difference({q: a[q] for q in qids}, {q: b[q] for q in qids}, seed=seed)
            for g, qids in parts.items() if qids}


def dsi_variant(collection: Collection, changes: Any, split: str = "test", seed: int = 0,
                threads: int | None = None, name: str | None = None, return_result: bool = False,
                gpu: str | None = None) -> Any:
    """Train one DSI recipe to convergence (`dsilab.recipes.train_dsi`) and read it once on `split`: its table row.

    changes: a `Recipe`, or changes to the default one; threads: this process's share of the CPU cores when several
    variants run side by side (each defaults to all); name: the row's label (default: the recipe's);
    return_result: also return the `DSIResult` (model, history), as (row, result); gpu: the GPU this process uses
    (`runner.in_processes` deals them out).
    """
    if gpu is not None:  # before torch initialises CUDA in this (fresh) process
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    import torch

    if threads:
        torch.set_num_threads(threads)

    from ..adapters import parameter_report
    from ..recipes import Recipe, seen_unseen, train_dsi

    recipe = changes if isinstance(changes, Recipe) else Recipe(**{"seed": seed, **changes})
    result = train_dsi(collection, recipe)
    queries, qrels = collection.split(split)
    t0 = time.perf_counter()
    run = result.search(queries, k=10)
    ms = 1000 * (time.perf_counter() - t0) / max(len(queries), 1)
    groups = seen_unseen(result.collection, split)
    row = _scores(run, qrels, groups, seed)
    if recipe.plan:  # the same model searched without its plan, on the same queries: what the plan adds, paired
        plain = result.search(queries, k=10, plan_weight=0)
        row["plan"] = {"weight": result.plan_weight, "chosen on": "dev Hits@10", "dev Hits@10": result.plan_dev,
                       "no plan Hits@10": _scores(plain, qrels, groups, seed)["Hits@10"],
                       **{f"{g} Hits@10 minus no plan": d for g, d in _paired_by_group(
                           _per_query(run, qrels), _per_query(plain, qrels), groups, seed).items()}}
    summary = result.summary()
    peak = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None
    params = parameter_report(result.model)
    # training state: the weights, plus a gradient and AdamW's 2 fp32 moments per trainable weight
    state_mb = params["weights_mb"] + 3 * 4 * params["trainable"] / 2**20
    row = {**row, "memo Hits@1": summary["memo Hits@1"], "steps": summary["steps"],
            "per query Hits@10": _per_query(run, qrels),
            "steps_to_memorise": summary["steps_to_memorise"], "seconds_to_memorise": summary["seconds_to_memorise"],
            "stopped": summary["stopped"],
            "best dev Hits@1": summary["best dev"].get("Hits@1"), "train_s": summary["train_s"],
            "step_ms": summary["step_ms"], "ms_per_query": round(ms, 2), "peak_mb": summary["peak_mb"],
            **({"gpu_peak_mb": round(peak)} if peak else {}), "trainable_M": round(params["trainable"] / 1e6, 3),
            "trainable_pct": params["trainable_pct"], "weights_mb": params["weights_mb"], "train_state_mb": round(state_mb, 1),
            **({"sparsity": summary["sparsity"]} if recipe.prune else {}),
            "label": name or recipe.label, "dev_from": summary["dev_from"], "history": summary["history"]}
    if return_result:
        return row, result
    del result, run
    release_memory()  # the network is done with: a notebook training variants one after another holds one at a time
    return row


def _variant_row(collection: Collection, changes: Any, split: str, seed: int, name: str, threads: int | None = None,
                 gpu: str | None = None) -> dict[str, Any]:
    """One row of `bench_dsi` in its own process (the call `runner.in_processes` makes)."""
    return dsi_variant(collection, changes, split, seed, threads, name, gpu=gpu)


def bench_dsi(collection: Collection, split: str = "test", seed: int = 0,
              variants: list[dict[str, Any]] | dict[str, dict[str, Any]] | None = None,
              jobs: int | None = None, time_limit_s: float | None = None) -> dict[str, Any]:
    """BM25, dense (untrained and fine-tuned) and DSI variants trained to convergence, all read on `split` once.

    variants: Recipe changes, one per row (a dict names the rows; a list takes each recipe's label);
    time_limit_s: a cap on each variant's training (its Recipe's `time_limit_s`).

    Each DSI variant trains in a fresh process (its own peak memory); `jobs` (default 1) run side by side, e.g. on a GPU. Settings are the default `Recipe` for every collection; the best DSI variant is
    chosen on dev Hits@1 (`selected_on`). Every Hits@k carries a 95% bootstrap interval; the chance row is what a
    random ranking scores; "seen"/"unseen" split the test queries by whether a training query points to a relevant doc.
    """
    from ..baselines import BM25, Dense
    from ..metrics import chance
    from ..recipes import Recipe, seen_unseen, with_dev

    seed_everything(seed)
    queries, qrels = collection.split(split)
    trained_on, dev_from = with_dev(collection, seed=seed)
    groups = seen_unseen(trained_on, split)
    rows: dict[str, dict[str, Any]] = {"chance (random ranking)": {
        "Hits@1": round(chance(qrels, len(collection.docs), 1), 4), "Hits@10": round(chance(qrels, len(collection.docs), 10), 4)}}
    baselines: dict[str, Any] = {"BM25": lambda: BM25(collection), "Dense (MiniLM)": lambda: Dense(collection)}
    if "train" in trained_on.qrels:
        from ..baselines import FineTunedDense

        baselines["Dense (MiniLM fine-tuned on train queries)"] = lambda: FineTunedDense(trained_on, seed=seed)
    for name, build in baselines.items():
        t0 = time.perf_counter()
        run, cost = time_retriever(build, queries)
        rows[name] = {**_scores(run, qrels, groups, seed), "train_s": round(time.perf_counter() - t0),
                      "ms_per_query": cost["ms_per_query"], "per query Hits@10": _per_query(run, qrels)}
        print(name, {k: v for k, v in rows[name].items() if "CI" not in k and k != "per query Hits@10"}, flush=True)
    variants = variants or DSI_VARIANTS
    names = list(variants) if isinstance(variants, dict) else [None] * len(variants)
    changes = list(variants.values()) if isinstance(variants, dict) else variants
    labels = [n or Recipe(**v).label for n, v in zip(names, changes)]
    capped = [{**v, "time_limit_s": time_limit_s} if time_limit_s else v for v in changes]
    done = in_processes(_variant_row, {label: (collection, v, split, seed, label) for label, v in zip(labels, capped)}, jobs)
    failed: dict[str, str] = {}  # a variant that fails is reported, and the others' rows are kept
    for label, row in done.items():
        if "error" in row:
            failed[label] = row["error"]
            print(f"{label}: FAILED {failed[label]}", flush=True)
            continue
        rows[row.pop("label")] = row
        print(f"{label}: " + ", ".join(f"{k} {row[k]}" for k in ("Hits@1", "Hits@10", "memo Hits@1", "steps", "stopped",
                                                                 "train_s")), flush=True)
    dsi = {name: r for name, r in rows.items() if "memo Hits@1" in r}
    best = max(dsi, key=lambda n: (dsi[n]["best dev Hits@1"] or 0)) if dsi and dev_from != "none" else None
    history = {name: r.pop("history") for name, r in dsi.items()}
    by_query = {name: r.pop("per query Hits@10") for name, r in rows.items() if "per query Hits@10" in r}
    named = variants if isinstance(variants, dict) else {Recipe(**v).label: v for v in variants or ()}
    paired = {**_against_baselines(by_query, dsi, groups, seed), **_against_controls(by_query, named, groups, seed)}
    return {
        **header("dsi", collection, split, seed, len(queries)),
        "groups": {g: len(q) for g, q in groups.items()},
        "setting": "supervised (indexing + training queries)" if "train" in trained_on.qrels
                   else "zero-shot (indexing only: the collection has no training queries)",
        "tried": variants,
        **({"time_limit_s": time_limit_s} if time_limit_s else {}),
        "recipe": "dsilab.recipes.Recipe() defaults, changed per row as in `tried`",
        "dev_from": dev_from,
        "selected_on": "dev" if best else None,
        "best_dsi": best,
        "notes": [f"Best DSI variant by dev Hits@1 (dev from {dev_from}): {best}." if best else
                  "No dev queries: no variant is selected; the rows are compared as they are.",
                  "Hits@k = ir-measures' Success@k; [a, b] = 95% bootstrap interval over queries; "
                  "the chance row is a uniformly random ranking."],
        "results": rows,
        "history": history,
        **({"paired": paired} if paired else {}),
        "per query Hits@10": by_query,  # any two rows can be paired later on the same queries (metrics.paired_difference)
        **({"failed": failed} if failed else {}),
    }


def _against_controls(by_query: dict[str, dict[str, float]], variants: dict[str, dict[str, Any]],
                       groups: dict[str, list[str]], seed: int) -> dict[str, Any]:
    """Each DSI row minus each of its controls: a row of the same run whose recipe changes are some of this row's
    (e.g. the teacher's labels minus the same span queries without them; span queries with the teacher's labels minus
    neither). What the changes it lacks add, paired."""
    out = {}
    for name, v in variants.items():
        for base, b in variants.items():
            fewer = len(b) < len(v) and all(v.get(k) == x for k, x in b.items())
            if fewer and name in by_query and base in by_query:
                out[f"{name} minus {base}"] = _paired_by_group(by_query[name], by_query[base], groups, seed)
    return out


def _against_baselines(by_query: dict[str, dict[str, float]], dsi: dict[str, Any], groups: dict[str, list[str]],
                       seed: int) -> dict[str, Any]:
    """Every DSI row minus BM25 and minus the fine-tuned dense retriever (where there are training queries) in
    Hits@10, paired on the same test queries: on all of them and on each group (seen/unseen)."""
    return {f"{name} minus {base}": _paired_by_group(by_query[name], by_query[base], groups, seed)
            for base in ("BM25", "Dense (MiniLM fine-tuned on train queries)") if base in by_query for name in dsi}


def benchmark(collection: Collection, split: str = "test", seed: int = 0, variants: list[str] | None = None,
              recipe: dict[str, Any] | None = None, jobs: int = 1, time_limit_s: float | None = None) -> dict[str, Any]:
    """`dsilab bench dsi`: BM25, dense (untrained and fine-tuned) and the DSI variants of DSI_VARIANTS (atomic, naive,
    semantic and dense-initialised docids, the default Recipe otherwise), each trained to convergence, all read on
    the test queries once.

    Args:
        variants: the DSI rows, by name (default: the first four): "DSI atomic", "DSI naive", "DSI semantic",
            "DSI atomic (dense-initialised rows)", and the rows of GAP_VARIANTS: "DSI semantic (BM25 lexical plan)",
            "DSI naive (BM25 lexical plan)", "DSI semantic (relevance-based docids)", "DSI residual (relevance-based
            docids)", "DSI semantic (relevance-based docids, BM25 lexical plan)", "DSI residual (relevance-based docids,
            BM25 lexical plan)", "DSI semantic (+5 span queries/doc)",
            "DSI semantic (+5 span queries/doc, dense-teacher top-1 labels)",
            "DSI semantic (+5 span queries/doc, dense-teacher top-1 labels, BM25 lexical plan)",
            "DSI semantic (+5 span queries/doc, dense-teacher top-1 labels, dense-teacher top-10 prefix loss)",
            "DSI semantic (+5 span queries/doc, dense-teacher top-1 labels, dense-teacher top-10 prefix loss, BM25
            lexical plan)"
        recipe: changes to the default Recipe under every DSI row (a row's own change wins): JSON (e.g.
            '{"lr": 3e-4}') or a JSON file of dsilab.recipes.Recipe fields
        jobs: DSI variants trained side by side, each in a fresh process (e.g. 4 on one GPU); CPU threads and GPUs
            are shared out among them (env DSILAB_THREADS, DSILAB_GPUS)
    """
    from ..recipes import Recipe

    rows = {Recipe(**v).label: v for v in DSI_VARIANTS + GAP_VARIANTS}
    unknown = sorted(set(variants or ()) - set(rows))
    if unknown:
        raise DsilabError(f"bench dsi has no variant {unknown}; choose from {list(rows)}.")
    chosen = {name: {**(recipe or {}), **rows[name]} for name in (variants or [Recipe(**v).label for v in DSI_VARIANTS])}
    return bench_dsi(collection, split, seed, chosen, jobs=jobs, time_limit_s=time_limit_s)
