"""The augmentation ablation: train the same DSI model on none / each augmentation / all, over seeds.

Normalisers (stopwords, num2text) rewrite documents and all queries (train, dev and test), so the
model sees at test time what it saw in training; POS-MLM adds one rewritten copy of a document as an
extra indexing example. Docids are built once on the original collection, so every setting learns
the same targets and only the training text differs.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np

from ..core import DsilabError, seed_everything
from ..data import Collection, Doc
from .base import Pipeline
from .mlm import MLMConfig, MaskedLM, train_mlm


@dataclass(frozen=True)
class DSISetting:
    """The DSI configuration the ablation trains. Defaults: the best offline setting of `dsilab bench dsi`
    so far (MiniLM-seq2seq, atomic docids, first 64 words, no pseudo-queries); `from_bench` takes the recipe's
    optimiser settings. The committed ablation (docs/results/augment-lab.json) was trained with the fields' defaults."""

    docids: str = "atomic"
    k: int = 10
    c: int = 100
    backbone: str = "minilm-seq2seq"
    indexing: str = "inputs2targets"
    doc_len: int = 64
    query_split: str = "train"
    pseudo_per_doc: int = 0
    epochs: int = 12
    batch_size: int = 128
    lr: float = 3e-3
    warmup_steps: int = 30
    arch: dict[str, Any] = field(default_factory=lambda: {"decoder_layers": 2})

    @classmethod
    def from_bench(cls, backbone: str = "minilm-seq2seq", docids: str = "atomic", pseudo_per_doc: int = 0,
                   doc_len: int = 64) -> "DSISetting":
        """The optimiser settings of the DSI recipe (`dsilab.recipes.Recipe`), at this ablation's fixed epochs."""
        from ..recipes import Recipe

        recipe = Recipe(docids=docids, backbone=backbone, pseudo_per_doc=pseudo_per_doc, doc_len=doc_len)
        return cls(docids=docids, backbone=backbone, pseudo_per_doc=pseudo_per_doc, doc_len=doc_len,
                   batch_size=recipe.batch_size, lr=recipe.lr, arch={"decoder_layers": recipe.decoder_layers})


#: MLM used by the benchmark: MiniLM-initialised, fully fine-tuned on the collection (see mlm.py for why);
#: 300 steps of 32 windows (about 10 minutes on a laptop CPU, seconds on a GPU; cached on disk).
BENCH_MLM = MLMConfig()  # the defaults: init="minilm", freeze_encoder=False, lr=1e-4, steps=300, batch_size=32


def variant_examples(variants: dict[str, list[str]], tree, doc_len: int) -> list:
    """Extra indexing examples (variant text -> docid) from expanders such as POS-MLM, first `doc_len` words."""
    from ..tasks import Example

    return [Example(" ".join(v.split()[:doc_len]), tree.text(d), "index", d) for d, vs in variants.items() for v in vs]


def train_and_score(aug_collection: Collection, variants: dict[str, list[str]], tree, setting: DSISetting,
                    seed: int, split: str = "test") -> dict[str, Any]:
    """Train one DSI model on an augmented collection and score `split` (its queries, normalised the same way)."""
    from ..decode import search
    from ..metrics import evaluate
    from ..models import build_model
    from ..tasks import TaskConfig, build_examples
    from ..train import TrainConfig, train

    cfg = TaskConfig(indexing=setting.indexing, doc_len=setting.doc_len, query_split=setting.query_split,
                     pseudo_per_doc=setting.pseudo_per_doc, seed=seed)
    examples = build_examples(aug_collection, tree, cfg) + variant_examples(variants, tree, setting.doc_len)
    model = build_model(setting.backbone, tree, examples, seed=seed, **setting.arch)
    result = train(model, examples, TrainConfig(epochs=setting.epochs, batch_size=setting.batch_size, lr=setting.lr,
                                                warmup_steps=setting.warmup_steps, seed=seed, progress=False))
    queries, qrels = aug_collection.split(split)
    metrics = evaluate(search(model, queries, k=10), qrels)
    return {"Hits@1": metrics["Hits@1"], "Hits@10": metrics["Hits@10"], "train_s": result.train_seconds,
            "examples": len(examples)}


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
    from .posmlm import _ANALYSED

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


def run_ablation(collection: Collection, pipelines: dict[str, Pipeline] | None = None, setting: DSISetting = DSISetting(),
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
    tree = make_docids(collection, setting.docids, k=setting.k, c=setting.c, seed=0, embeddings=embeddings)
    per_run: dict[str, list[dict[str, Any]]] = {}
    for key, rec in tqdm(prepared.items(), desc="train DSI", disable=not progress):
        seed_everything(rec["seed"])
        row = train_and_score(_restore(collection, rec), rec["variants"], tree, setting, rec["seed"], split)
        per_run.setdefault(rec["name"], []).append({"seed": rec["seed"], "aug_s": rec["aug_s"], **row, **rec["n_changed"]})
    return summarise(per_run, setting, tree)


def summarise(per_run: dict[str, list[dict[str, Any]]], setting: DSISetting, tree=None) -> dict[str, Any]:
    """Mean and sample standard deviation over seeds per setting, plus mean costs."""
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
        }
    seeds = sorted({r["seed"] for runs in per_run.values() for r in runs})
    return {"results": rows, "runs": per_run, "setting": asdict(setting), "seeds": seeds,
            "docids": tree.stats() if tree is not None else {}}


def bench_mlm(collection: Collection, config: MLMConfig = BENCH_MLM, seed: int = 0) -> MaskedLM:
    """The benchmark's masked LM, trained on the collection's documents (cached on disk)."""
    return train_mlm(collection.contents, config, seed=seed)


def result_record(collection: Collection, out: dict[str, Any], split: str, seed: int, mlm_info: dict[str, Any],
                  mlm_name: str, environment: dict[str, Any], note: str = "") -> dict[str, Any]:
    """The benchmark JSON (bench.write_result's layout) from a `run_ablation` output."""
    from .stopwords import stopword_list

    queries, _ = collection.split(split)
    return {
        "benchmark": "augment", "collection": collection.name, "split": split, "n_docs": len(collection.docs),
        "n_queries": len(queries), "seed": seed, "environment": environment, "results": out["results"],
        "runs": out["runs"], "setting": out["setting"], "seeds": out["seeds"], "docids": out["docids"],
        "stopword_list": stopword_list()[0], "mlm": {"name": mlm_name, **mlm_info}, "note": note,
    }


def bench_augment(collection: Collection, split: str = "test", seed: int = 0, environment: dict[str, Any] | None = None,
                  setting: DSISetting | None = None) -> dict[str, Any]:
    """`dsilab bench augment`: train the bench MLM, then the ablation over seeds seed, seed+1, seed+2."""
    from . import ablation_pipelines

    setting = setting or DSISetting.from_bench()
    mlm = bench_mlm(collection, seed=seed)
    out = run_ablation(collection, ablation_pipelines(mlm), setting, seeds=(seed, seed + 1, seed + 2), split=split)
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
