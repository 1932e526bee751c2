"""The one DSI pipeline: collection + `Recipe` -> examples -> model -> train to convergence -> search -> evaluate.

    result = train_dsi(collection, Recipe(docids="semantic"))
    result.model, result.memorisation, result.steps_to_memorise, result.search(queries)

`dsilab bench dsi` trains every DSI row with it, and the augmentation ablation takes its optimiser settings. Sizes
are arguments of the recipe; defaults scale with the collection (steps per epoch) and hold on a CPU and on a GPU
alike.

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

import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .core import DsilabError, Qrels, Run, seed_everything
from .data import Collection
from .docids import DocidTree, make_docids
from .train import Callback, TrainConfig, TrainResult, train


@dataclass(frozen=True)
class Recipe:
    """What to train: docids, model, optimiser, and when to stop. Every field has a default that scales."""

    docids: str = "semantic"             # atomic | naive | semantic
    docid_init: str = "random"           # "encoder": docid rows start at document encodings (a dense-initialised variant)
    k: int = 10                          # semantic docids: clusters per level
    c: int = 100                         # semantic docids: most documents in a leaf cluster
    backbone: str = "minilm-seq2seq"
    decoder_layers: int = 2
    arch: dict[str, Any] | None = None   # more backbone sizes, e.g. t5-scratch {"d_model": 512, "layers": 6} (models.T5_SHAPES)
    freeze_encoder: bool = True
    adapter: str = "full"                # "lora" | "qlora": low-rank adapters on the pretrained weights (dsilab.adapters)
    adapter_kwargs: dict[str, Any] | None = None  # e.g. {"r": 8, "alpha": 16}
    prune: float = 0.0                   # final sparsity of gradual magnitude pruning (dsilab.pruning); 0: none
    prune_epochs: int = 10               # pruning ramps from epoch 1 to epoch 1 + prune_epochs; no stop before that
    doc_len: int = 64                    # words of each document read by indexing
    pseudo_per_doc: int = 0              # generated queries per document (0: none): DSI-QG when > 0
    query_generator: str = "span"        # "span" | "trained" | a hub doc2query name (dsilab.querygen)
    query_filter_k: int | None = None    # keep a generated query only if BM25 ranks its document in this top k
    train_queries: bool = True           # use the collection's training queries (when it has any)
    ratio: float | None = None           # indexing examples per retrieval example (None: one per document view)
    lr: float = 1e-3                     # runs long past memorisation: 3e-4 (higher, deep decoders collapse: scaling "stability")
    adam_betas: tuple[float, float] = (0.9, 0.999)  # TrainConfig.betas
    amp: str = "auto"                    # TrainConfig.amp: "off" trains in fp32
    encoder_lr: float | None = None      # when the encoder trains (freeze_encoder=False)
    batch_size: int = 64
    bucket: int = 0                      # TrainConfig.bucket: length-sorted windows of this many batches (0: off)
    compile: bool = False                # TrainConfig.compile
    warmup_steps: int | None = None      # None: two epochs, at most 100 steps
    memo_threshold: float = 0.95         # indexing Hits@1 that counts as "memorised"
    memo_sample: int = 500               # documents in the memorisation probe
    dev_queries: int = 200               # dev queries per evaluation (a seeded random sample)
    dev_holdout: float = 0.1             # share of training queries held out as dev when there is no dev split
    eval_every: int | None = None        # steps between evaluations (None: about 5 epochs, at least 50 steps)
    patience: int = 3                    # evaluations without a dev gain, once memorised, before stopping (0: stop once memorised)
    max_epochs: int = 120                # the cap
    max_steps: int | None = None         # a fixed budget in optimizer steps instead (the same for every corpus size)
    time_limit_s: float | None = None    # a wall-clock cap on training (e.g. a GPU lease); the result says it was hit
    seed: int = 0

    def __post_init__(self) -> None:
        if self.docids not in ("atomic", "naive", "semantic"):
            raise DsilabError(f"Recipe.docids={self.docids!r}; choose 'atomic', 'naive' or 'semantic'.")
        if not 0 < self.memo_threshold <= 1:
            raise DsilabError(f"Recipe.memo_threshold={self.memo_threshold}; use a fraction in (0, 1].")
        if not 0 < self.dev_holdout < 1:
            raise DsilabError(f"Recipe.dev_holdout={self.dev_holdout}; use a fraction in (0, 1).")
        if not 0 <= self.prune < 1:
            raise DsilabError(f"Recipe.prune={self.prune}; use a sparsity in [0, 1), e.g. 0.8.")

    @property
    def label(self) -> str:
        """A short name for tables: docid kind, plus what differs from the pure DSI row."""
        extra = [f"+{self.pseudo_per_doc} {self.query_generator} queries/doc"
                 + (f", BM25 top-{self.query_filter_k} filter" if self.query_filter_k else "")] if self.pseudo_per_doc else []
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
        extra += [f"AdamW beta2 {self.adam_betas[1]:g}"] if tuple(self.adam_betas) != (0.9, 0.999) else []
        extra += ["fp32"] if self.amp == "off" else [f"amp {self.amp}"] if self.amp != "auto" else []
        return f"DSI {self.docids}" + (f" ({', '.join(extra)})" if extra else "")


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
    """What checkpoints are chosen on: a seeded sample of `recipe.dev_queries` dev queries, or, with no dev queries
    (zero-shot), the memorisation probe's documents read back to themselves. A collection without a dev split gets
    the one training held out (`with_dev`, same seed), so the result's own collection can be passed back in."""
    if dev_from == "none":
        return probe, {d: {d: 1} for d in probe}
    queries, qrels = with_dev(collection, recipe.dev_holdout, recipe.seed)[0].split("dev")
    qids = _sample(list(qrels), recipe.dev_queries, recipe.seed)
    return {q: queries[q] for q in qids}, {q: qrels[q] for q in qids}


class Convergence(Callback):
    """Stops training once memorised (`threshold`) and dev Hits@1 has not gained `min_delta` for `patience` evaluations."""

    def __init__(self, docs: dict[str, str], threshold: float, patience: int, dev_is_memo: bool,
                 min_delta: float = 0.005, not_before: int = 0):
        self.docs, self.threshold, self.patience, self.dev_is_memo = docs, threshold, patience, dev_is_memo
        self.not_before = not_before              # e.g. the step where pruning reaches its target sparsity
        self.min_delta = min_delta                # 0.005 = one query in 200: smaller gains are noise
        self.steps_to_memorise: int | None = None
        self.seconds_to_memorise: float | None = None  # wall time from the first step, evaluations included
        self.t0 = time.perf_counter()
        self.best, self.stalled = -1.0, 0
        self.deadline: float | None = None
        self.out_of_time = False

    def on_train_begin(self, trainer) -> None:
        self.t0 = time.perf_counter()

    def on_step_end(self, trainer) -> None:
        if self.deadline is not None and time.perf_counter() > self.deadline:
            trainer.stopped_early = self.out_of_time = True

    def on_evaluate(self, trainer, metrics: dict[str, float]) -> None:
        # zero-shot: the dev "queries" are the probe documents themselves, so dev Hits@1 is memorisation
        memo = metrics["Hits@1"] if self.dev_is_memo else memorisation(trainer.net, self.docs)
        trainer.history[-1]["memo Hits@1"] = round(memo, 4)
        if os.environ.get("DSILAB_LOG_EVALS"):  # progress of long runs in a log (GPU benchmarks)
            last = trainer.history[-1]
            print(f"[{os.environ.get('DSILAB_ROW', '')}] step {trainer.step}: memo {memo:.3f}, dev Hits@1 {metrics['Hits@1']:.3f}, "
                  f"train loss {last.get('train loss', float('nan')):.4f}, grad norm max {last.get('grad norm max', float('nan')):.3g}",
                  flush=True)
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
    stopped: str = "step cap"            # converged | step cap | time limit
    sparsity: float = 0.0                # share of prunable weights that are zero (recipe.prune)
    n_examples: int = 0                  # training examples (indexing + queries + extra)
    examples_by_task: dict[str, int] = field(default_factory=dict)
    query_filter: dict[str, Any] | None = None  # what the round-trip filter dropped (recipe.query_filter_k)
    seconds_to_memorise: float | None = None    # training wall time (evaluations included) until memorised

    def search(self, queries: dict[str, str], k: int = 10) -> Run:
        """Constrained beam search: the ranked docids of each query."""
        from .decode import search

        return search(self.model, queries, k=k)

    def save(self, folder: str | Path) -> Path:
        """Write the model and everything a later search needs into `folder` (`dsilab.load_model(folder)` reopens it)."""
        from .saved import save_model

        log = {k: v for k, v in self.summary().items() if k != "recipe"}
        return save_model(self.model, folder, arch=model_arch(self.recipe), recipe=asdict(self.recipe),
                          collection=self.collection, log=log)

    def summary(self) -> dict[str, Any]:
        """What a result JSON records of the training run (no test numbers: those are read once, by the caller)."""
        return {"recipe": asdict(self.recipe), "label": self.recipe.label, "dev_from": self.dev_from,
                "steps": self.train.steps, "epochs": self.train.epochs_done, "steps_to_memorise": self.steps_to_memorise,
                "seconds_to_memorise": self.seconds_to_memorise,
                "memo Hits@1": round(self.memorisation, 4), "best dev": self.train.best,
                "stopped": self.stopped, "sparsity": round(self.sparsity, 4), "examples": self.n_examples,
                "examples by task": self.examples_by_task, **({"query filter": self.query_filter} if self.query_filter else {}),
                "train_s": round(self.seconds), "step_ms": round(1000 * self.train.step_time_s),
                "peak_mb": self.train.peak_rss_mb, "history": self.history}


def memorisation(model, docs: dict[str, str]) -> float:
    """Indexing Hits@1: the share of documents whose indexed text (`docs`: doc_id -> text) decodes to their own docid."""
    from .decode import search
    from .metrics import evaluate

    return evaluate(search(model, docs, k=1, batch_size=128), {d: {d: 1} for d in docs}, ("Hits@1",))["Hits@1"]


def model_arch(recipe: Recipe) -> dict[str, Any]:
    """The backbone sizes `build_model` takes for this recipe (a saved model records them to rebuild its network)."""
    arch: dict[str, Any] = dict(recipe.arch or {})
    if recipe.backbone == "minilm-seq2seq":
        arch = {"decoder_layers": recipe.decoder_layers, "freeze_encoder": recipe.freeze_encoder, **arch}
    return arch


def prepare(collection: Collection, recipe: Recipe, tree: DocidTree | None = None, extra_examples: list | None = None,
            progress: bool = False) -> tuple[Collection, str, DocidTree, list, Any, dict[str, Any] | None]:
    """Everything `train_dsi` trains on: the collection with its dev split (and where dev came from), the docids,
    the training examples, the untrained model, and what the query filter dropped (None without one)."""
    from .models import build_model
    from .tasks import TaskConfig, build_examples

    seed_everything(recipe.seed)
    coll, dev_from = with_dev(collection, recipe.dev_holdout, recipe.seed)
    tree = tree or make_docids(coll, recipe.docids, k=recipe.k, c=recipe.c, seed=recipe.seed)
    use_queries = recipe.train_queries and "train" in coll.qrels
    task = TaskConfig(doc_len=recipe.doc_len, query_split="train" if use_queries else None, ratio=recipe.ratio,
                      seed=recipe.seed)
    pseudo, filtered = None, None
    if recipe.pseudo_per_doc:  # generated from the training split only: dev and test queries stay unseen
        from .querygen import generate_queries, roundtrip_filter

        pseudo = generate_queries(coll, recipe.pseudo_per_doc, recipe.query_generator, seed=recipe.seed, progress=progress)
        if recipe.query_filter_k:
            pseudo, filtered = roundtrip_filter(coll, pseudo, recipe.query_filter_k)
    examples = build_examples(coll, tree, task, pseudo=pseudo) + list(extra_examples or [])
    model = build_model(recipe.backbone, tree, examples, seed=recipe.seed, docid_init=recipe.docid_init,
                        adapter=recipe.adapter, adapter_kwargs=recipe.adapter_kwargs, **model_arch(recipe))
    return coll, dev_from, tree, examples, model, filtered


def train_dsi(collection: Collection, recipe: Recipe = Recipe(), tree: DocidTree | None = None,
              extra_examples: list | None = None, progress: bool = False,
              checkpoint_dir: str | None = None) -> DSIResult:
    """Train one DSI model on `collection` by `recipe` until it has converged (or hit the cap).

    tree: docids built elsewhere (default: `make_docids` by the recipe); extra_examples: more training examples
    (e.g. augmented document views) added to those the recipe builds.
    """
    from .pruning import MagnitudePruning
    from .tasks import describe_examples, doc_views

    t0 = time.perf_counter()
    coll, dev_from, tree, examples, model, filtered = prepare(collection, recipe, tree, extra_examples, progress)
    if os.environ.get("DSILAB_LOG_EVALS"):  # where a long GPU run's setup time goes
        print(f"docids, {len(examples)} examples and the model ready after {time.perf_counter() - t0:.0f} s", flush=True)
    views = doc_views(coll, "first", recipe.doc_len)
    probe = {d: views[d][0] for d in _sample(coll.doc_ids, recipe.memo_sample, recipe.seed)}
    dev = dev_set(coll, dev_from, recipe, probe)
    steps_per_epoch = max(1, math.ceil(len(examples) / recipe.batch_size))
    eval_every = recipe.eval_every or max(50, 5 * steps_per_epoch)
    callbacks: list[Callback] = []
    if recipe.prune:  # from epoch 1, 20 threshold updates, target reached after prune_epochs more (or at the cap)
        end = min(1 + recipe.prune_epochs, recipe.max_epochs) * steps_per_epoch
        start = min(steps_per_epoch, end // 2)
        callbacks.append(MagnitudePruning(recipe.prune, start=start, end=end, every=max(1, (end - start) // 20)))
    stop = Convergence(probe, recipe.memo_threshold, recipe.patience, dev_is_memo=dev_from == "none",
                       not_before=callbacks[0].end if callbacks else 0)
    if recipe.time_limit_s:
        stop.deadline = t0 + recipe.time_limit_s
    cfg = TrainConfig(max_steps=recipe.max_steps or recipe.max_epochs * steps_per_epoch, lr=recipe.lr, betas=tuple(recipe.adam_betas),
                      amp=recipe.amp, encoder_lr=recipe.encoder_lr,
                      batch_size=recipe.batch_size, eval_every=eval_every, bucket=recipe.bucket, compile=recipe.compile,
                      warmup_steps=recipe.warmup_steps if recipe.warmup_steps is not None else min(100, 2 * steps_per_epoch),
                      eval_queries=len(dev[0]), eval_k=1 if dev_from == "none" else 10, patience=0, keep_best=True, progress=progress, seed=recipe.seed,
                      checkpoint_every=eval_every if checkpoint_dir else 0, checkpoint_dir=checkpoint_dir)
    result = train(model, examples, cfg, dev=dev, callbacks=[*callbacks, stop])
    # the whole corpus, not the probe (beyond 10k documents a seeded 10k sample: +-0.6 points at 0.9)
    memo = memorisation(model, {d: views[d][0] for d in _sample(coll.doc_ids, 10_000, recipe.seed + 1)})
    return DSIResult(recipe, model, tree, coll, dev_from, result, stop.steps_to_memorise, memo,
                     time.perf_counter() - t0, [h for h in result.history if "Hits@1" in h],
                     "time limit" if stop.out_of_time else "converged" if result.stopped_early else "step cap",
                     callbacks[0].report()["total"]["sparsity"] if callbacks else 0.0, len(examples),
                     describe_examples(examples), filtered, stop.seconds_to_memorise)


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
                              f"{Recipe(**before['recipe']).label}); choose another --out, or delete {out} to start over.")
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
