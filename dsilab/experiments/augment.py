"""The augmentation ablation: train the same DSI model on none / each augmentation / all, over seeds.

Normalisers (stopwords, num2text) rewrite documents and all queries (train, dev and test), so the
model sees at test time what it saw in training; POS-MLM adds one rewritten copy of a document as an
extra indexing example. Docids are built once on the original collection, so every setting learns
the same targets and only the training text differs.
"""
from __future__ import annotations

from .runner import environment, header

import time
from dataclasses import asdict, replace
from typing import Any, Sequence

import numpy as np

from ..core import DsilabError, seed_everything
from ..data import Collection, Doc
from ..recipes import Recipe
from ..augment.base import Pipeline
from ..augment.mlm import MLMConfig, MaskedLM, train_mlm


#: The DSI recipe the ablation trains (the pure DSI row of `dsilab bench dsi`: atomic docids, random rows).
ABLATION_RECIPE = Recipe(docids="atomic")


#: MLM used by the benchmark: MiniLM-initialised, fully fine-tuned on the collection (see mlm.py for why); the
#: trained model is cached on disk per (texts, config, seed), since on a CPU its training outlasts the rest of the set-up.
BENCH_MLM = MLMConfig()  # the defaults: init="minilm", freeze_encoder=False, lr=1e-4, steps=300, batch_size=32


def variant_examples(variants: dict[str, list[str]], tree, doc_len: int) -> list:
    """Extra indexing examples (variant text -> docid) from expanders such as POS-MLM, first `doc_len` words."""
    from ..tasks import Example

    return [Example(" ".join(v.split()[:doc_len]), tree.text(d), "index", d) for d, vs in variants.items() for v in vs]


def train_and_score(aug_collection: Collection, variants: dict[str, list[str]], tree, recipe: Recipe,
                    seed: int, split: str = "test") -> dict[str, Any]:
    """Train one DSI model to convergence on an augmented collection and score `split` (its queries, normalised
    the same way)."""
    from ..metrics import evaluate
    from ..recipes import train_dsi

    result = train_dsi(aug_collection, replace(recipe, seed=seed), tree=tree,
                       extra_examples=variant_examples(variants, tree, recipe.doc_len))
    queries, qrels = aug_collection.split(split)
    metrics = evaluate(result.search(queries, k=10), qrels)
    summary = result.summary()
    return {"Hits@1": metrics["Hits@1"], "Hits@10": metrics["Hits@10"], "train_s": summary["train_s"],
            "examples": summary["examples"],
            "memo Hits@1": summary["memo Hits@1"], "steps": summary["steps"], "stopped": summary["stopped"]}


def prepare(collection: Collection, pipelines: dict[str, Pipeline], seeds: Sequence[int] = (0, 1, 2),
            progress: bool = False) -> dict[str, dict[str, Any]]:
    """Apply every pipeline for every seed (timed, uncached): a JSON-able record per "name/seed".

    Kept apart from training so that augmentation (spaCy, the masked LM) and DSI training can also
    run on different machines; `run_ablation` does both in one go.
    """
    from tqdm.auto import tqdm

    if not pipelines:
        raise DsilabError("the ablation needs at least one pipeline, e.g. ablation_pipelines(mlm).")
    out = {}
    for pipe in pipelines.values():  # load spaCy, inflect and friends before the clock starts
        pipe.run(["Warm up: 1 run in 1991."], seed=0)
    from ..augment.posmlm import _ANALYSED

    for name, seed in tqdm([(n, s) for s in seeds for n in pipelines], desc="augment", disable=not progress):
        _ANALYSED.clear()  # time every run as a first run: no POS tags memoised from another seed
        t0 = time.perf_counter()
        aug = pipelines[name].apply(collection, seed=seed, cache=False)
        out[f"{name}/{seed}"] = {
            "name": name, "seed": seed, "aug_s": round(time.perf_counter() - t0, 2), "n_changed": aug.n_changed,
            "docs": {d: [doc.title, doc.text] for d, doc in aug.collection.docs.items()},
            "queries": aug.collection.queries, "variants": aug.variants, "pipeline": pipelines[name].config(),
        }
    return out


def _restore(collection: Collection, rec: dict[str, Any]) -> Collection:
    docs = {d: Doc(d, title, text) for d, (title, text) in rec["docs"].items()}
    return Collection(collection.name, docs, rec["queries"], collection.qrels, {**collection.meta, "augmented": rec["name"]})


def run_ablation(collection: Collection, pipelines: dict[str, Pipeline] | None = None, recipe: Recipe = ABLATION_RECIPE,
                 seeds: Sequence[int] = (0, 1, 2), split: str = "test", progress: bool = True,
                 prepared: dict[str, dict[str, Any]] | None = None, embeddings: np.ndarray | None = None) -> dict[str, Any]:
    """Every pipeline x every seed: test Hits@1/Hits@10 (mean, sd over seeds), augmentation and training seconds.

    `prepared` (from `prepare`) skips the augmentation step; `embeddings` (documents x dim) are the
    ones semantic docids cluster (else MiniLM embeds the original documents).
    """
    from tqdm.auto import tqdm

    from ..docids import make_docids

    if prepared is None:
        if not pipelines:
            raise DsilabError("run_ablation needs pipelines (e.g. ablation_pipelines(mlm)) or prepared records.")
        prepared = prepare(collection, pipelines, seeds, progress)
    tree = make_docids(collection, recipe.docids, k=recipe.k, c=recipe.c, seed=0, embeddings=embeddings)
    per_run: dict[str, list[dict[str, Any]]] = {}
    for key, rec in tqdm(prepared.items(), desc="train DSI", disable=not progress):
        seed_everything(rec["seed"])
        row = train_and_score(_restore(collection, rec), rec["variants"], tree, recipe, rec["seed"], split)
        per_run.setdefault(rec["name"], []).append({"seed": rec["seed"], "aug_s": rec["aug_s"], **row, **rec["n_changed"]})
    return summarise(per_run, recipe, tree)


def summarise(per_run: dict[str, list[dict[str, Any]]], recipe: Recipe, tree=None) -> dict[str, Any]:
    """Mean and sample standard deviation over seeds per setting, plus mean costs and the worst memorisation."""
    rows = {}
    for name, runs in per_run.items():
        h1, h10 = np.array([r["Hits@1"] for r in runs]), np.array([r["Hits@10"] for r in runs])
        sd = (lambda x: round(float(x.std(ddof=1)), 4)) if len(runs) > 1 else (lambda x: 0.0)
        rows[name] = {
            "Hits@1": round(float(h1.mean()), 4), "Hits@1 sd": sd(h1),
            "Hits@10": round(float(h10.mean()), 4), "Hits@10 sd": sd(h10),
            "aug_s": round(float(np.mean([r["aug_s"] for r in runs])), 2),
            "train_s": round(float(np.mean([r["train_s"] for r in runs])), 1),
            "examples": int(np.mean([r["examples"] for r in runs])),
            **({"min memo Hits@1": min(r["memo Hits@1"] for r in runs),
                "steps": round(float(np.mean([r["steps"] for r in runs])))} if "memo Hits@1" in runs[0] else {}),
        }
    seeds = sorted({r["seed"] for runs in per_run.values() for r in runs})
    return {"results": rows, "runs": per_run, "setting": asdict(recipe), "seeds": seeds,
            "docids": tree.stats() if tree is not None else {}}


def bench_mlm(collection: Collection, config: MLMConfig = BENCH_MLM, seed: int = 0) -> MaskedLM:
    """The benchmark's masked LM, trained on the collection's documents (cached on disk)."""
    return train_mlm(collection.contents, config, seed=seed)


def result_record(collection: Collection, out: dict[str, Any], split: str, seed: int, mlm_info: dict[str, Any],
                  mlm_name: str, environment: dict[str, Any], note: str = "") -> dict[str, Any]:
    """The benchmark JSON (bench.write_result's layout) from a `run_ablation` output."""
    from ..augment.stopwords import stopword_list

    queries, _ = collection.split(split)
    verdicts = {m: effects(out["results"], m) for m in ("Hits@1", "Hits@10")}
    notes = [f"{m} against `none` (an effect is called only beyond 2 sd over seeds): "
             + "; ".join(f"{n} {v[f'{m} - none']:+.3f} ({v['verdict']})" for n, v in verdicts[m].items())
             for m in verdicts if "none" in out["results"]]
    notes.append(f"POS-MLM's masked LM: {mlm_name}, held-out top-1 {mlm_info.get('heldout_top1')}, "
                 f"top-5 {mlm_info.get('heldout_top5')}." + (f" {note}" if note else ""))
    return {
        **header("augment", collection, split, seed, len(queries), environment), "results": out["results"],
        "runs": out["runs"], "setting": out["setting"], "seeds": out["seeds"], "docids": out["docids"],
        "stopword_list": stopword_list()[0], "mlm": {"name": mlm_name, **mlm_info}, "note": note, "notes": notes,
    }


def bench_augment(collection: Collection, split: str = "test", seed: int = 0, environment: dict[str, Any] | None = None,
                  recipe: Recipe = ABLATION_RECIPE) -> dict[str, Any]:
    """`dsilab bench augment`: train the bench MLM, then the ablation over seeds seed, seed+1, seed+2."""
    from ..augment import ablation_pipelines

    mlm = bench_mlm(collection, seed=seed)
    out = run_ablation(collection, ablation_pipelines(mlm), recipe, seeds=(seed, seed + 1, seed + 2), split=split)
    return result_record(collection, out, split, seed, mlm.info, mlm.name, environment or {})


def effects(results: dict[str, dict[str, float]], metric: str = "Hits@1", baseline: str = "none") -> dict[str, dict[str, Any]]:
    """Each setting against the baseline: the difference in `metric` and a verdict that respects the seed spread.

    "helps"/"hurts" only when the difference exceeds twice the larger of the two standard deviations
    over seeds; otherwise "no clear effect" (three seeds cannot show less).
    """
    if baseline not in results:
        raise DsilabError(f"no {baseline!r} row to compare with; rows: {sorted(results)}.")
    base = results[baseline]
    out = {}
    for name, row in results.items():
        if name == baseline:
            continue
        delta = row[metric] - base[metric]
        noise = 2 * max(row.get(f"{metric} sd", 0.0), base.get(f"{metric} sd", 0.0))
        verdict = "helps" if delta > noise else "hurts" if delta < -noise else "no clear effect"
        out[name] = {f"{metric} - {baseline}": round(delta, 4), "2 sd": round(noise, 4), "verdict": verdict}
    return out


def benchmark(collection: Collection, split: str = "test", seed: int = 0) -> dict[str, Any]:
    """`dsilab bench augment`: the ablation (none / stopwords / num2text / POS-MLM / all) with DSI over 3 seeds.

    Args:
        seed: the first of the 3 seeds (seed, seed + 1, seed + 2) of every setting; the masked LM's seed
    """
    return bench_augment(collection, split=split, seed=seed, environment=environment())
