"""DGI against DSI-semantic on the same backbone, per popularity bucket, with the ablations, over seeds:
`dsilab bench dgi`.

    result = bench_dgi(load_collection("lab"), seeds=(0, 1, 2))    # trains every VARIANTS row per seed
    bucket_summary(result)                                          # Hits@10 per bucket, 95% intervals, chance, deltas

Every row is `dsilab.recipes.train_dsi` with one `Recipe` (the same backbone, examples, loop, stopping rule and beam
search): "DSI-semantic" with its recursive k-means docids, the others through `train_dgi` with residual codes and the
switches of `DGIOptions`. A row keeps its per-query scores on the test split (Hits@1, Hits@10, RR@10, popularity bias),
so intervals and paired differences are computed from the JSON, by the notebook as by this module.
"""
from __future__ import annotations

from .runner import environment

import os
import time
from typing import Any

import numpy as np

from ..core import DsilabError
from ..data import Collection, load_collection
from ..dgi.natural import BUCKET_NAMES, bias_band, popularity, popularity_bias, query_buckets, zipf_collection

#: Row name -> DGIOptions changes (None: DSI with semantic docids). The DGI paper's ablations: each switch off alone,
#: and all three off (residual codes trained as plain DSI: what the learned codes give without DGI's training).
VARIANTS: dict[str, dict[str, Any] | None] = {
    "DSI-semantic": None,
    "DGI": {},
    "DGI w/o Gumbel soft TF": {"gumbel": False},
    "DGI w/o weight sharing": {"share_weights": False},
    "DGI inner-product logits": {"cosine": False},
    "residual docids, all three off": {"gumbel": False, "share_weights": False, "cosine": False},
}
BASE = "DSI-semantic"
TAIL = "B3+B4"   # the tail the comparison is judged on: the two least popular buckets, pooled


def long_tail_collection(collection: Collection, zipf: float | None) -> Collection:
    """The collection the comparison trains on: its own training split when `zipf` is None (a natural tail, e.g.
    SciFact's), else a Zipfian one with exponent `zipf` (`zipf_collection`; for the lab, whose queries are uniform)."""
    return collection if zipf is None else zipf_collection(collection, s=zipf)


def default_zipf(collection: Collection) -> float | None:
    """1.0 for the lab and synthetic collections (their training queries are spread evenly), None for real ones."""
    return 1.0 if collection.name.startswith(("lab", "synthetic")) else None


def _train_row(spec: str | Collection, name: str, seed: int, zipf: float | None, recipe: dict[str, Any],
               split: str, partial: str | None = None, threads: int | None = None, gpu: str | None = None) -> dict[str, Any]:
    """One (variant, seed): train, read `split` once, keep per-query scores (runs in its own process); appended to
    the file `partial` when done."""
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    import torch

    if threads:
        torch.set_num_threads(threads)
    from .runner import append_partial
    from ..metrics import per_query
    from ..recipes import Recipe, train_dsi
    from ..dgi.seq2seq import DGIOptions, train_dgi

    coll = long_tail_collection(load_collection(spec) if isinstance(spec, str) else spec, zipf)
    r = Recipe(**{**recipe, "seed": seed})
    options = VARIANTS[name]
    result = train_dsi(coll, r) if options is None else train_dgi(coll, r, DGIOptions(**options))
    queries, qrels = coll.split(split)
    t0 = time.perf_counter()
    run = result.search(queries, k=10)
    ms = 1000 * (time.perf_counter() - t0) / max(len(queries), 1)
    scores = per_query(run, qrels, ("Hits@1", "Hits@10", "MRR@10"))
    pop = popularity(coll)
    summary = result.summary()
    row = {"variant": name, "seed": seed, "memo Hits@1": summary["memo Hits@1"], "steps": summary["steps"],
           "steps_to_memorise": summary["steps_to_memorise"], "stopped": summary["stopped"],
           "train_s": summary["train_s"], "best dev Hits@1": summary["best dev"].get("Hits@1"), "ms_per_query": round(ms, 2),
           "codes": summary.get("codes"),
           "per_query": {m: {q: round(float(v), 4) for q, v in vals.items()} for m, vals in scores.items()},
           "pop bias": {q: round(v, 4) for q, v in popularity_bias(run, qrels, pop, 10, seed=0, per_query=True).items()},
           "bias band": bias_band(run, qrels, pop, 10, seed=0, n_perm=200)}
    append_partial(row, partial)  # on disk as soon as it is done (a device lease may end first)
    print(f"[{name} · seed {seed}] memo {row['memo Hits@1']} steps {row['steps']} ({row['stopped']}) "
          f"Hits@10 {np.mean(list(scores['Hits@10'].values())):.3f}", flush=True)
    return row


def describe(collection: Collection, split: str = "test", zipf: float | None | str = "default") -> dict[str, Any]:
    """What every row of a comparison shares: the long-tail collection, each test query's bucket, the chance levels."""
    from ..metrics import chance

    zipf = default_zipf(collection) if zipf == "default" else zipf
    coll = long_tail_collection(collection, zipf)
    _, qrels = coll.split(split)
    pop = popularity(coll)
    bucket_of = query_buckets(qrels, pop, len(BUCKET_NAMES), seed=0)
    groups = {"all": list(qrels), **{b: [q for q in qrels if bucket_of[q] == b] for b in BUCKET_NAMES}}
    n_docs = len(coll.docs)
    return {"benchmark": "dgi", "collection": coll.name, "split": split, "n_docs": n_docs, "n_queries": len(qrels),
            "zipf": zipf, "training queries": sum(pop.values()),
            "docs without a training query": sum(v == 0 for v in pop.values()), "query bucket": bucket_of,
            **{f"chance Hits@{k}": {b: round(chance({q: qrels[q] for q in g}, n_docs, k), 5) for b, g in groups.items() if g}
               for k in (1, 10)}}


def baseline_bias(collection: Collection, split: str = "test", zipf: float | None | str = "default") -> dict[str, Any]:
    """BM25's and dense retrieval's popularity bias on the comparison's queries, with the neutral band (`bias_band`):
    the yardstick where popularity follows content (a real query log), since neither baseline sees popularity."""
    from ..baselines import BM25, Dense

    zipf = default_zipf(collection) if zipf == "default" else zipf
    coll = long_tail_collection(collection, zipf)
    queries, qrels = coll.split(split)
    pop = popularity(coll)
    return {name: {k: round(v, 4) for k, v in bias_band(cls(coll).search(queries, k=10), qrels, pop, 10, 0, 200).items()}
            for name, cls in (("BM25", BM25), ("Dense (MiniLM)", Dense))}


def bench_dgi(collection: Collection, split: str = "test", seeds: tuple[int, ...] = (0, 1, 2),
              variants: tuple[str, ...] | None = None, zipf: float | None | str = "default",
              recipe: dict[str, Any] | None = None, jobs: int | None = None,
              partial: str | None = None) -> dict[str, Any]:
    """Train every variant x seed with one recipe (each row in its own process: `dsilab.experiments.runner.in_processes`), and
    keep what `bucket_summary` needs: per-query scores, each query's bucket, chance levels.

    zipf: "default" (`default_zipf`), None (the collection's own training split) or an exponent; partial: a file that
    receives each row as one JSON line when it is done.
    """
    from .runner import in_processes

    variants = tuple(variants or VARIANTS)
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise DsilabError(f"bench_dgi: unknown variant(s) {unknown}; choose from {list(VARIANTS)}.")
    meta = describe(collection, split, zipf)
    recipe = dict(recipe or {})
    todo = {(v, s): (collection, v, s, meta["zipf"], recipe, split, partial) for s in seeds for v in variants}
    t0 = time.perf_counter()
    done = in_processes(_train_row, todo, jobs)
    for (v, s), row in done.items():
        if "error" in row:
            row.update(variant=v, seed=s)
            print(f"[{v} · seed {s}] failed: {row['error']}", flush=True)
    rows = [_compact(r, list(meta["query bucket"])) for r in done.values()]
    meta["baseline pop bias"] = baseline_bias(collection, split, meta["zipf"])
    return {**meta, "seed": min(seeds), "seeds": list(seeds), "variants": list(variants), "recipe": recipe, "rows": rows,
            "total_s": round(time.perf_counter() - t0, 1)}


def merge(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Several `bench_dgi` results of one collection and recipe (e.g. seeds run in separate device commands) as one."""
    first = results[0]
    for r in results[1:]:
        if (r["collection"], r["query bucket"], r["recipe"]) != (first["collection"], first["query bucket"], first["recipe"]):
            raise DsilabError("merge: the results differ in collection, queries or recipe; only seeds may differ.")
    rows = [_compact(row, list(first["query bucket"])) for r in results for row in r["rows"]]
    seen = [(row["variant"], row["seed"]) for row in rows]
    if len(set(seen)) < len(seen):
        raise DsilabError(f"merge: a (variant, seed) appears twice: {sorted(x for x in set(seen) if seen.count(x) > 1)}.")
    variants = [v for v in VARIANTS if any(row["variant"] == v for row in rows)]
    return {**first, "seeds": sorted({row["seed"] for row in rows}), "variants": variants, "rows": rows,
            "total_s": sum(r.get("total_s", 0) for r in results)}


def save(result: dict[str, Any], path: Any) -> None:
    """Write a result as JSON with one line per row: a tenth of the size of an indented dump of its per-query lists."""
    import json
    from pathlib import Path

    rows = ",\n".join("    " + json.dumps(r) for r in result["rows"])
    top = ",\n".join(f"  {json.dumps(k)}: " + (f"[\n{rows}\n  ]" if k == "rows" else json.dumps(v)) for k, v in result.items())
    Path(path).write_text("{\n" + top + "\n}\n")


def _boot(values: np.ndarray) -> tuple[float, float]:
    """`metrics.mean_ci` with 2,000 resamples (the committed tables' setting)."""
    from ..metrics import mean_ci

    return mean_ci(values, n=2000)


def _compact(row: dict[str, Any], queries: list[str]) -> dict[str, Any]:
    """A row's per-query scores as lists in the order of `queries` (the result's "query bucket" keys): a tenth of the
    JSON of {qid: value} maps. Bias is None where a query had no wrong document in its top 10. Idempotent."""
    if "per_query" not in row or isinstance(row["pop bias"], list):
        return row
    return {**row, "per_query": {m: [v[q] for q in queries] for m, v in row["per_query"].items()},
            "pop bias": [row["pop bias"].get(q) for q in queries]}


def _chance(result: dict[str, Any], metric: str, bucket: str) -> float | None:
    """A bucket's chance level; a pooled bucket's is the query-weighted mean of its parts'."""
    levels = result.get(f"chance {metric}", {})
    if bucket in levels:
        return levels[bucket]
    parts = bucket.split("+")
    if not all(p in levels for p in parts):
        return None
    n = {p: sum(b == p for b in result["query bucket"].values()) for p in parts}
    return round(sum(levels[p] * n[p] for p in parts) / max(sum(n.values()), 1), 5)


def goal(result: dict[str, Any], variant: str = "DGI") -> dict[str, Any]:
    """The comparison's goal: `variant` better than DSI-semantic on the tail (B3+B4: the interval of the paired
    difference above 0) with head (B0) Hits@10 at most 1 point lower (the point estimate)."""
    table = bucket_summary(result).set_index(["variant", "bucket"])
    col = f"Δ vs {BASE}"
    tail, head = table.loc[(variant, TAIL)], table.loc[(variant, "B0")]
    return {"collection": result["collection"], "tail Δ": tail[col], "tail Δ CI": tail[f"{col} CI"],
            "head Δ": head[col], "head Δ CI": head[f"{col} CI"],
            "met": bool(tail[f"{col} CI"][0] > 0 and head[col] >= -0.01)}


def bucket_summary(result: dict[str, Any], metric: str = "Hits@10", base: str = BASE) -> Any:
    """One row per (variant, bucket): `metric` averaged over seeds with its 95% interval (bootstrap over queries of the
    per-query mean over seeds), chance, the paired difference to `base` with its interval, and popularity bias.

    Rows that failed or did not memorise (memo Hits@1 below 0.9) are left out of the means and counted in "seeds used",
    so that an unconverged run never enters a comparison silently."""
    import pandas as pd

    bucket_of = result["query bucket"]
    queries = list(bucket_of)
    ok = [_compact(r, queries) for r in result["rows"] if "error" not in r and (r.get("memo Hits@1") or 0) >= 0.9]
    by_variant: dict[str, np.ndarray] = {}
    bias: dict[str, np.ndarray] = {}
    for v in result["variants"]:
        rs = [r for r in ok if r["variant"] == v]
        if rs:
            by_variant[v] = np.array([r["per_query"][metric] for r in rs], dtype=float).mean(axis=0)
            bias[v] = np.nanmean(np.array([[np.nan if b is None else b for b in r["pop bias"]] for r in rs], dtype=float), axis=0)
    used = {v: sum(r["variant"] == v for r in ok) for v in result["variants"]}
    total = {v: sum(r["variant"] == v for r in result["rows"]) for v in result["variants"]}
    out = []
    for v, values in by_variant.items():
        for b in ("all",) + BUCKET_NAMES + (TAIL,):
            mask = np.array([b == "all" or bucket_of[q] in b.split("+") for q in queries])
            if not mask.any():
                continue
            row = {"variant": v, "bucket": b, "queries": int(mask.sum()), metric: round(float(values[mask].mean()), 4),
                   f"{metric} CI": [round(x, 3) for x in _boot(values[mask])],
                   "chance": _chance(result, metric, b), "seeds used": f"{used[v]}/{total[v]}"}
            if v != base and base in by_variant:
                diff = values[mask] - by_variant[base][mask]
                lo, hi = _boot(diff)
                row[f"Δ vs {base}"] = round(float(diff.mean()), 4)
                row[f"Δ vs {base} CI"] = [round(lo, 3), round(hi, 3)]
                row["Δ verdict"] = "too small to tell" if lo <= 0 <= hi else ("higher" if lo > 0 else "lower")
            kept = bias[v][mask]
            row["pop bias"] = round(float(np.nanmean(kept)), 3) if np.isfinite(kept).any() else None
            out.append(row)
    return pd.DataFrame(out)


def training_summary(result: dict[str, Any]) -> Any:
    """One row per (variant, seed): memorisation, steps, why it stopped, seconds, and the codes' collisions."""
    import pandas as pd

    rows = []
    for r in result["rows"]:
        codes = r.get("codes") or {}
        rows.append({"variant": r["variant"], "seed": r["seed"], "memo Hits@1": r.get("memo Hits@1"), "steps": r.get("steps"),
                     "stopped": r.get("stopped", r.get("error")), "train s": r.get("train_s"),
                     "collisions (learned codes)": codes.get("collision rate (learned codes)"), "levels": codes.get("levels")})
    return pd.DataFrame(rows)


def results_rows(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The printed table of `dsilab bench dgi`: "variant · bucket" -> Hits@10 with interval, chance and the difference
    to DSI-semantic, and the variant's training (memorisation and steps, means over its seeds; why its seeds stopped)."""
    table = bucket_summary(result)
    training: dict[str, dict[str, Any]] = {}
    for v in result["variants"]:
        rs = [r for r in result["rows"] if r["variant"] == v and "error" not in r]
        training[v] = {"memo Hits@1": round(float(np.mean([r["memo Hits@1"] for r in rs])), 4) if rs else None,
                       "steps": int(np.mean([r["steps"] for r in rs])) if rs else None,
                       "stopped": ", ".join(sorted({str(r["stopped"]) for r in rs})) or "failed"}
    out: dict[str, dict[str, Any]] = {}
    for rec in table.to_dict(orient="records"):
        v = rec.pop("variant")
        out[f"{v} · {rec.pop('bucket')}"] = {**rec, **training[v]}
    for v, t in training.items():  # variants with no converged seed still get a line
        if not any(k.startswith(f"{v} · ") for k in out):
            out[f"{v} · not converged"] = t
    return out


def per_query_scores(result: dict[str, Any], variant: str, metric: str = "Hits@10", bucket: str = "all") -> dict[str, float]:
    """{qid: `metric` averaged over the variant's converged seeds} for the test queries of `bucket` ("all", "B0", ...,
    or a pooled "B3+B4"), from a committed comparison: what `metrics.paired_difference` takes to compare two variants
    on the same queries. `metric` may be "pop bias" (queries with no wrong document in any seed's top 10 are left out).
    The seeds kept are `bucket_summary`'s (memo Hits@1 at least 0.9)."""
    bucket_of = result["query bucket"]
    queries = list(bucket_of)
    rows = [_compact(r, queries) for r in result["rows"] if r.get("variant") == variant and "error" not in r
            and (r.get("memo Hits@1") or 0) >= 0.9]
    if not rows:
        raise DsilabError(f"per_query_scores: no converged run of {variant!r}; variants: {result.get('variants')}.")
    if metric == "pop bias":
        values = np.array([[np.nan if b is None else b for b in r["pop bias"]] for r in rows], dtype=float)
    else:
        values = np.array([r["per_query"][metric] for r in rows], dtype=float)
    seen = np.isfinite(values).any(axis=0)  # a query with no wrong document in any seed's top 10 has no bias
    mean = np.full(len(queries), np.nan)
    mean[seen] = np.nanmean(values[:, seen], axis=0)
    keep = bucket.split("+")
    return {q: float(v) for q, v in zip(queries, mean)
            if (bucket == "all" or bucket_of[q] in keep) and np.isfinite(v)}


def benchmark(collection: Collection, split: str = "test", seeds: tuple[int, ...] = (0, 1, 2),
              variants: list[str] | None = None, recipe: dict[str, Any] | None = None, jobs: int = 1,
              time_limit_s: float | None = None, partial: str | None = None) -> dict[str, Any]:
    """`dsilab bench dgi`: DGI vs DSI-semantic on the same backbone, with the ablations, per popularity bucket, over
    seeds (a device run can split the seeds and variants over several commands; `merge` joins their results).

    Args:
        seeds: the seeds every variant trains with, one row each
        variants: the rows (default: all of VARIANTS): "DSI-semantic", "DGI", "DGI w/o Gumbel soft TF",
            "DGI w/o weight sharing", "DGI inner-product logits", "residual docids, all three off"
        recipe: changes to the default Recipe, the same for every row: JSON (e.g. '{"lr": 3e-4}') or a JSON file of
            dsilab.recipes.Recipe fields
    """
    recipe = {**(recipe or {}), **({"time_limit_s": time_limit_s} if time_limit_s else {})}
    result = bench_dgi(collection, split, tuple(seeds), tuple(variants) if variants else None, recipe=recipe, jobs=jobs,
                       partial=partial)
    return {**result, "results": results_rows(result), "environment": environment(),
            "failed": [f"{r['variant']} · seed {r['seed']}: {r['error']}" for r in result["rows"] if "error" in r]}
