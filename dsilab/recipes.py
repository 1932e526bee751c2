"""The one DSI pipeline: collection + `Recipe` -> examples -> model -> train to convergence -> search -> evaluate.

    result = train_dsi(collection, Recipe(docids="semantic"))
    result.model, result.memorisation, result.steps_to_memorise, result.search(queries)

`dsilab bench dsi` trains every DSI row with it. A `Recipe` is the config of every stage at once (`PARTS`: docids,
model, examples, distillation, training, stopping, pruning, search); sizes are its fields, and defaults scale with the
collection (steps per epoch) and hold on a CPU and on a GPU alike. `fit` is the one training run: `train_dsi` calls it
for a new index, `dsilab.incremental.add_documents` for an update and the throughput study for a timed loop.

**Training to convergence.** Every `eval_every` steps the model is asked two things: does it *memorise* (a fixed,
seeded sample of documents, read back to their own docid: indexing Hits@1) and does it *retrieve* (Hits@1 on a
seeded random sample of dev queries). Training stops once memorisation has reached `memo_threshold` and dev Hits@1
has not improved for `patience` evaluations, or at `max_epochs`; the weights kept are those with the best dev Hits@1
among the memorised checkpoints (any checkpoint, when none memorised).
A collection without dev queries holds out part of its training queries (`dev_holdout`); one without any
queries (zero-shot) uses memorisation as its dev signal.

**Why lr 1e-3.** The decoder of ``minilm-seq2seq`` is new (post-LN BERT layers from scratch). On SciFact (5,183
abstracts) lr 3e-3, the old default, never leaves chance: naive docids memorise 0.000 after 3,000 steps at batch 64,
while 1e-3 memorises 0.97 (dsilab/results/diagnose-scifact.json, `benchmarks/gpu_dsi/diagnose.py`). On a 200-document
collection 3e-3 still works, which is why the lab collection hid it.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from .core import DsilabError, Qrels, Run, seed_everything
from .data import Collection
from .decode import SearchConfig
from .distill import DistillConfig, PrefixDistillation
from .docids import DocidConfig, DocidTree
from .models import ModelConfig
from .pruning import PruneConfig
from .tasks import TaskConfig
from .train import Callback, TrainConfig, TrainResult, memorisation, train

LOG = logging.getLogger("dsilab.recipes")


@dataclass(frozen=True)
class StopConfig:
    """When a DSI run has converged, and what it is judged on (the stopping part of `Recipe`)."""

    memo_threshold: float = 0.95         # indexing Hits@1 that counts as "memorised"
    memo_sample: int = 500               # documents in the memorisation probe
    dev_queries: int = 200               # dev queries per evaluation (a seeded random sample)
    dev_holdout: float = 0.1             # share of training queries held out as dev when there is no dev split
    patience: int = 3                    # evaluations without a dev gain, once memorised, before stopping (0: stop once memorised)
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.memo_threshold <= 1:
            raise DsilabError(f"memo_threshold={self.memo_threshold}; use a fraction in (0, 1].")
        if not 0 < self.dev_holdout < 1:
            raise DsilabError(f"dev_holdout={self.dev_holdout}; use a fraction in (0, 1).")


#: The parts of a recipe, each the config of one stage of the pipeline (docids, model, examples, distillation,
#: training, stopping, pruning, search). Every field name belongs to exactly one part (`seed` to all), so a name means
#: one thing everywhere.
PARTS = (DocidConfig, ModelConfig, TaskConfig, DistillConfig, TrainConfig, StopConfig, PruneConfig, SearchConfig)


@dataclass(frozen=True)
class Recipe(SearchConfig, PruneConfig, StopConfig, TrainConfig, DistillConfig, TaskConfig, ModelConfig, DocidConfig):
    """What to train: every part of `PARTS` at once. A Recipe *is* its DocidConfig, ModelConfig, TaskConfig,
    DistillConfig, TrainConfig, StopConfig, PruneConfig and SearchConfig (dataclass inheritance), so each stage takes
    the recipe itself as its config and nothing is copied from one to another; flags and JSON keys are the fields'
    names. Every field has a default that scales with the collection."""

    def __post_init__(self) -> None:
        for part in PARTS:
            if hasattr(part, "__post_init__"):
                part.__post_init__(self)

    @property
    def label(self) -> str:
        """A short name for tables: docid kind, plus what differs from the pure DSI row."""
        extra = [f"+{self.pseudo_per_doc} {self.query_generator} queries/doc"
                 + (f", BM25 top-{self.query_filter_k} filter" if self.query_filter_k else "")
                 + (f", dense-teacher top-{self.query_teacher_k} labels" if self.query_teacher_k else "")
                 + (f", dense-teacher top-{self.distill_list} prefix loss" if self.distill_list else "")
                 ] if self.pseudo_per_doc else []
        extra += ["relevance-based docids"] if self.docid_space == "relevance" else []
        extra += ["dense-initialised rows"] if self.docid_init == "encoder" else []
        extra += ["encoder fine-tuned"] if not self.freeze_encoder else []
        if self.adapter in ("lora", "qlora"):
            extra += [f"{'QLoRA' if self.adapter == 'qlora' else 'LoRA'} r={(self.adapter_kwargs or {}).get('r', 8)}"]
        elif self.adapter != "full":  # e.g. "dgi": the adapter names itself
            extra += [self.adapter]
        extra += [f"pruned {100 * self.prune:.0f}%"] if self.prune else []
        extra += [f"{self.decoder_layers}-layer decoder"] if self.decoder_layers != 2 and self.backbone == "minilm-seq2seq" else []
        extra += [", ".join(f"{k} {v}" for k, v in self.arch.items())] if self.arch else []
        extra += [f"indexing:retrieval {self.ratio:g}"] if self.ratio else []
        extra += [self.backbone] if self.backbone != "minilm-seq2seq" else []
        extra += [f"{self.max_steps} steps"] if self.max_steps else []
        extra += [f"AdamW beta2 {self.betas[1]:g}"] if tuple(self.betas) != (0.9, 0.999) else []
        extra += ["fp32"] if self.amp == "off" else [f"amp {self.amp}"] if self.amp != "auto" else []
        extra += ["BM25 lexical plan"] if self.plan == "bm25" else []
        return f"DSI {self.docids}" + (f" ({', '.join(extra)})" if extra else "")


def recipe_fields(record: dict[str, Any]) -> dict[str, Any]:
    """A recipe's fields as a result or a saved model recorded them, under `Recipe`'s names: records written before
    each name meant one thing say `train_queries` (a bool; `query_split` "train" or None) and `adam_betas` (`betas`)."""
    out = {k: v for k, v in record.items() if k not in ("train_queries", "adam_betas")}
    if "train_queries" in record:
        out.setdefault("query_split", "train" if record["train_queries"] else None)
    if "adam_betas" in record:
        out.setdefault("betas", tuple(record["adam_betas"]))
    return out


def with_dev(collection: Collection, holdout: float = 0.1, seed: int = 0) -> tuple[Collection, str]:
    """The collection with a "dev" split, and where dev came from: its own, part of train held out, or none.

    Held-out queries leave "train" (they are never trained on); test is untouched.
    """
    if "dev" in collection.qrels:
        return collection, "dev"
    if "train" not in collection.qrels:
        return collection, "none"
    train_q = sorted(collection.qrels["train"])
    n = max(1, round(holdout * len(train_q)))
    if n >= len(train_q):
        raise DsilabError(f"{collection.name}: {len(train_q)} training queries are too few to hold out a dev set.")
    held = set(np.random.default_rng(seed).choice(train_q, size=n, replace=False).tolist())
    qrels = {**collection.qrels, "train": {q: r for q, r in collection.qrels["train"].items() if q not in held},
             "dev": {q: r for q, r in collection.qrels["train"].items() if q in held}}
    return Collection(collection.name, collection.docs, collection.queries, qrels, collection.meta), "train (held out)"


def _sample(ids: list[str], n: int, seed: int) -> list[str]:
    """A seeded random sample of `ids` (all of them when n >= len): spread over all topics, unlike the first n."""
    ids = sorted(ids)
    return ids if n >= len(ids) else sorted(np.random.default_rng(seed).choice(ids, size=n, replace=False).tolist())


def dev_set(collection: Collection, dev_from: str, recipe: Recipe, probe: dict[str, str]) -> tuple[dict[str, str], Qrels]:
    """What checkpoints are chosen on: a seeded sample of `recipe.dev_queries` of the dev split of `collection` (as
    `with_dev` returned it), or, with no dev queries (zero-shot), the memorisation probe's documents read back to
    themselves."""
    if dev_from == "none":
        return probe, {d: {d: 1} for d in probe}
    queries, qrels = collection.split("dev")
    qids = _sample(list(qrels), recipe.dev_queries, recipe.seed)
    return {q: queries[q] for q in qids}, {q: qrels[q] for q in qids}


class Convergence(Callback):
    """Stops training once memorised (`threshold`) and dev Hits@1 has not gained `min_delta` for `patience` evaluations.

    Memorisation is the trainer's "memo Hits@1" (its probe), or dev Hits@1 itself when dev is the probe (zero-shot).
    It also stops a run that has *diverged*: memorisation fell below half its best after reaching 0.2 (a lr too high
    for a long run; the weights kept are those of the best checkpoint, before the fall)."""

    def __init__(self, threshold: float, patience: int, dev_is_memo: bool, min_delta: float = 0.005, not_before: int = 0):
        self.threshold, self.patience, self.dev_is_memo = threshold, patience, dev_is_memo
        self.not_before = not_before              # e.g. the step where pruning reaches its target sparsity
        self.min_delta = min_delta                # 0.005 = one query in 200: smaller gains are noise
        self.steps_to_memorise: int | None = None
        self.seconds_to_memorise: float | None = None  # wall time from the first step, evaluations included
        self.t0 = time.perf_counter()
        self.best, self.stalled = -1.0, 0
        self.best_memo, self.diverged = 0.0, False

    def on_train_begin(self, trainer) -> None:
        self.t0 = time.perf_counter()

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "stalled": self.stalled, "steps_to_memorise": self.steps_to_memorise,
                "seconds_to_memorise": self.seconds_to_memorise, "best_memo": self.best_memo}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.stalled = state["best"], state["stalled"]
        self.steps_to_memorise, self.seconds_to_memorise = state["steps_to_memorise"], state["seconds_to_memorise"]
        self.best_memo = state.get("best_memo", 0.0)  # checkpoints written before divergence was watched

    def on_evaluate(self, trainer, metrics: dict[str, float]) -> None:
        memo = metrics["Hits@1"] if self.dev_is_memo else metrics["memo Hits@1"]
        trainer.history[-1]["memo Hits@1"] = round(memo, 4)
        done = memo >= self.threshold and trainer.step >= self.not_before
        trainer.history[-1]["eligible"] = done  # keep_best prefers memorised (and fully pruned) checkpoints
        if memo >= self.threshold and self.steps_to_memorise is None:
            self.steps_to_memorise = trainer.step
            self.seconds_to_memorise = round(time.perf_counter() - self.t0, 1)
        if metrics["Hits@1"] >= self.best + self.min_delta:
            self.best, self.stalled = metrics["Hits@1"], 0
        else:
            self.stalled += 1
        if done and self.stalled >= self.patience:
            trainer.stopped_early = True
        self.best_memo = max(self.best_memo, memo)
        if self.best_memo >= 0.2 and memo < self.best_memo / 2 and trainer.step >= self.not_before:
            self.diverged = trainer.stopped_early = True

    def stopped(self, result: TrainResult) -> str:
        """How the run ended: the loop's reason ("converged", "step cap", "time limit"), or "diverged"."""
        return "diverged" if self.diverged else result.stopped


@dataclass
class DSIResult:
    """A trained DSI model with everything a table needs about how it got there."""

    recipe: Recipe
    model: Any
    tree: DocidTree
    collection: Collection
    dev_from: str
    train: TrainResult
    steps_to_memorise: int | None
    memorisation: float
    seconds: float
    history: list[dict[str, Any]] = field(default_factory=list)
    stopped: str = "step cap"            # converged | step cap | time limit | diverged
    sparsity: float = 0.0                # share of prunable weights that are zero (recipe.prune)
    n_examples: int = 0                  # training examples (indexing + queries + extra)
    examples_by_task: dict[str, int] = field(default_factory=dict)
    query_filter: dict[str, Any] | None = None  # what the round-trip filter dropped and the teacher relabelled
    seconds_to_memorise: float | None = None    # training wall time (evaluations included) until memorised
    plan_weight: float = 0.0                    # the lexical plan's weight, chosen on dev (recipe.plan; 0: no plan)
    plan_dev: dict[str, float] = field(default_factory=dict)  # dev Hits@10 by plan weight (how it was chosen)
    planner: Any = None                         # the recipe's LexicalPlanner over `collection` (recipe.plan)

    def search(self, queries: dict[str, str], k: int = 10, plan_weight: float | None = None) -> Run:
        """Constrained beam search: the ranked docids of each query, steered by the recipe's lexical plan at
        `plan_weight` (default: the weight chosen on dev; 0: plain beam search)."""
        from .decode import search

        weight = self.plan_weight if plan_weight is None else plan_weight
        return search(self.model, queries, k=k, plan=self.lexical_planner()(queries, weight) if weight else None)

    def lexical_planner(self) -> Any:
        """The lexical planner over this model's collection, made on first use."""
        from .decode import LexicalPlanner

        self.planner = self.planner or LexicalPlanner(self.collection, self.recipe.plan_depth)
        return self.planner

    def choose_plan(self, dev: tuple[dict[str, str], Qrels], dev_is_memo: bool) -> None:
        """Set `plan_weight` to the recipe's plan weight (or 0) with the best dev Hits@10, the smaller on a tie. Without
        dev queries (zero-shot) the dev set is documents read back to themselves, where BM25 always wins: the plan then
        keeps its middle weight, unchosen."""
        from .decode import choose_plan_weight

        if not self.recipe.plan:
            return
        weights = self.recipe.plan_weights
        if dev_is_memo:
            self.plan_weight = sorted(weights)[len(weights) // 2]
            return
        self.plan_weight, self.plan_dev = choose_plan_weight(self.model, self.lexical_planner(), dev, weights)

    def save(self, folder: str | Path) -> Path:
        """Write the model and everything a later search needs into `folder` (`dsilab.load_model(folder)` reopens it)."""
        from .saved import save_model

        log = {k: v for k, v in self.summary().items() if k != "recipe"}
        return save_model(self.model, folder, arch=self.recipe.arch_sizes(), recipe=asdict(self.recipe),
                          collection=self.collection, log=log)

    def summary(self) -> dict[str, Any]:
        """What a result JSON records of the training run (no test numbers: those are read once, by the caller)."""
        return {"recipe": asdict(self.recipe), "label": self.recipe.label, "dev_from": self.dev_from,
                "steps": self.train.steps, "epochs": self.train.epochs_done, "steps_to_memorise": self.steps_to_memorise,
                "seconds_to_memorise": self.seconds_to_memorise,
                "memo Hits@1": round(self.memorisation, 4), "best dev": self.train.best,
                "stopped": self.stopped, "sparsity": round(self.sparsity, 4), "examples": self.n_examples,
                "examples by task": self.examples_by_task, **({"query filter": self.query_filter} if self.query_filter else {}),
                **({"plan weight": self.plan_weight, "plan dev Hits@10": self.plan_dev} if self.recipe.plan else {}),
                "train_s": round(self.seconds), "step_ms": round(1000 * self.train.step_time_s),
                "peak_mb": self.train.peak_rss_mb, "history": self.history}


def prepare(collection: Collection, recipe: Recipe, tree: DocidTree | None = None, extra_examples: list | None = None,
            progress: bool = False) -> tuple[Collection, str, DocidTree, list, Any, dict[str, Any] | None]:
    """Everything `train_dsi` trains on: the collection with its dev split (and where dev came from), the docids,
    the training examples, the untrained model, and what the query filter dropped (None without one)."""
    from .tasks import build_examples

    seed_everything(recipe.seed)
    coll, dev_from = with_dev(collection, recipe.dev_holdout, recipe.seed)
    tree = tree or recipe.make_docids(coll)
    task = task_for(recipe, coll)
    pseudo, filtered = task.pseudo_queries(coll, progress) if task.pseudo_per_doc else (None, None)
    examples = build_examples(coll, tree, task, pseudo=pseudo) + list(extra_examples or [])
    return coll, dev_from, tree, examples, recipe.build_model(tree, examples), filtered


def task_for(recipe: Recipe, collection: Collection) -> Recipe:
    """The recipe as its examples are built on `collection`: one without training queries (zero-shot) trains on its
    documents alone."""
    no_queries = recipe.query_split == "train" and "train" not in collection.qrels
    return replace(recipe, query_split=None) if no_queries else recipe


def probe_docs(collection: Collection, recipe: Recipe, doc_ids: list[str] | None = None, n: int | None = None,
               seed: int | None = None) -> dict[str, str]:
    """A seeded sample (`recipe.memo_sample` by default) of documents, each as the text its indexing example reads:
    what memorisation is measured on."""
    from .tasks import doc_views

    ids = _sample(collection.doc_ids if doc_ids is None else doc_ids, n or recipe.memo_sample,
                  recipe.seed if seed is None else seed)
    views = doc_views(collection, "first", recipe.doc_len)
    return {d: views[d][0] for d in ids}


def fit(model: Any, examples: list, recipe: Recipe, dev: tuple[dict[str, str], Qrels] | None, probe: dict[str, str],
        dev_is_memo: bool = False, callbacks: list[Callback] = (), progress: bool = False,
        checkpoint_dir: str | None = None, **run: Any) -> tuple[TrainResult, Convergence, Any]:
    """The one DSI training run, for a new index, an update and a throughput study alike: `recipe`'s loop with
    its stopping rule (`Convergence` on dev and on memorisation of `probe`), its pruning schedule and any extra
    `callbacks`; checkpoints in `checkpoint_dir` (resumed from when present); `run`: more of `Trainer`'s keywords.
    Returns the loop's result, the stopping rule (when memorised) and the pruner (None without pruning)."""
    from .embed import release_encoders

    release_encoders()  # the sentence encoder has done its part (docids, dense rows): one network in memory, not two
    steps_per_epoch = max(1, math.ceil(len(examples) / recipe.batch_size) // recipe.grad_accum)
    pruner = recipe.pruner(steps_per_epoch, recipe.max_epochs)
    stop = Convergence(recipe.memo_threshold, recipe.patience, dev_is_memo, not_before=pruner.end if pruner else 0)
    eval_every = recipe.schedule(steps_per_epoch)[2]
    result = train(model, examples, recipe, dev=dev, callbacks=[*([pruner] if pruner else []), *callbacks, stop],
                   probe=None if dev_is_memo else probe, dev_k=1 if dev_is_memo else 10, progress=progress,
                   checkpoint_every=eval_every if checkpoint_dir else 0, checkpoint_dir=checkpoint_dir, **run)
    return result, stop, pruner


def train_dsi(collection: Collection, recipe: Recipe = Recipe(), tree: DocidTree | None = None,
              extra_examples: list | None = None, progress: bool = False, checkpoint_dir: str | None = None,
              callbacks: list[Callback] = ()) -> DSIResult:
    """Train one DSI model on `collection` by `recipe` until it has converged (or hit the cap).

    tree: docids built elsewhere (default: the recipe's); extra_examples: more training examples (e.g. augmented
    document views) added to those the recipe builds; callbacks: more hooks into the loop (`fit`).
    """
    from .tasks import describe_examples

    t0 = time.perf_counter()
    coll, dev_from, tree, examples, model, filtered = prepare(collection, recipe, tree, extra_examples, progress)
    LOG.info("docids, %d examples and the model ready after %.0f s", len(examples), time.perf_counter() - t0)
    probe = probe_docs(coll, recipe)
    dev = dev_set(coll, dev_from, recipe, probe)
    if recipe.distill_list:  # the teacher's ranking of each generated query, learned at every docid prefix
        callbacks = [*callbacks, PrefixDistillation.from_examples(coll, examples, recipe)]
    result, stop, pruner = fit(model, examples, recipe, dev, probe, dev_is_memo=dev_from == "none",
                               callbacks=callbacks, progress=progress, checkpoint_dir=checkpoint_dir)
    # the whole corpus, not the probe (beyond 10k documents a seeded 10k sample: +-0.6 points at 0.9)
    memo = memorisation(model, probe_docs(coll, recipe, n=10_000, seed=recipe.seed + 1))
    out = DSIResult(recipe, model, tree, coll, dev_from, result, stop.steps_to_memorise, memo,
                    time.perf_counter() - t0, [h for h in result.history if "Hits@1" in h], stop.stopped(result),
                    pruner.report()["total"]["sparsity"] if pruner else 0.0, len(examples),
                    describe_examples(examples), filtered, stop.seconds_to_memorise)
    out.choose_plan(dev, dev_is_memo=dev_from == "none")
    return out


def seen_unseen(collection: Collection, split: str = "test", trained_on: str = "train") -> dict[str, list[str]]:
    """Test queries grouped by whether some relevant document has a training query ("seen") or not ("unseen")."""
    if trained_on not in collection.qrels:
        return {}
    seen_docs = {d for rels in collection.qrels[trained_on].values() for d, g in rels.items() if g > 0}
    groups: dict[str, list[str]] = {"seen": [], "unseen": []}
    for q, rels in collection.qrels[split].items():
        groups["seen" if any(g > 0 and d in seen_docs for d, g in rels.items()) else "unseen"].append(q)
    return groups



def train_to_folder(collection: str | Collection, recipe: Recipe, out: str | Path, progress: bool = True) -> Path:
    """`dsilab train`: train `recipe` on `collection` to convergence, checkpointing into `out/checkpoints` (a rerun
    with the same `out` resumes there), then save the model to `out` and drop the checkpoints. A folder that holds
    another collection's or another recipe's run is refused rather than mixed."""
    import json
    import shutil

    from .data import load_collection
    from .saved import best_dev_text

    coll = load_collection(collection) if isinstance(collection, str) else collection
    out = Path(out)
    run_card = {"collection": coll.name, "fingerprint": coll.fingerprint(), "recipe": asdict(recipe)}
    started = out / "training.json"
    if started.is_file():
        before = json.loads(started.read_text())
        if before != json.loads(json.dumps(run_card)):
            raise DsilabError(f"{out} holds a run of another collection or recipe ({before['collection']}, "
                              f"{Recipe(**recipe_fields(before['recipe'])).label}); choose another --out, or delete {out} to start over.")
        if (out / "model.json").is_file():
            print(f"{out} already holds this trained model; nothing to do.")
            return out
    elif out.exists() and any(out.iterdir()):
        raise DsilabError(f"{out} exists and is not a dsilab training folder; choose an empty or new --out.")
    out.mkdir(parents=True, exist_ok=True)
    started.write_text(json.dumps(run_card, indent=2))
    result = train_dsi(coll, recipe, progress=progress, checkpoint_dir=str(out / "checkpoints"))
    result.save(out)
    shutil.rmtree(out / "checkpoints", ignore_errors=True)
    s = result.summary()
    print(f"saved to {out}: {s['steps']} steps ({s['stopped']}), memorisation {s['memo Hits@1']}, "
          f"best dev {best_dev_text(s['best dev'])} (dev from {s['dev_from']}), {s['train_s']} s of training")
    return out
