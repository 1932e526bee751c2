"""Incremental indexing: add documents to a trained DSI index without forgetting the old ones (DSI++).

A DSI model keeps its corpus in its weights, so a new document can only get in by more training. Three ways
(Mehta et al. 2022, *DSI++: Updating Transformer Memory with New Documents*, arXiv:2212.09744):

* ``continue``: train the trained model on the new documents' examples only. Cheap, but gradient descent on the new
  data also moves the weights that held the old documents: *catastrophic forgetting*.
* ``replay``: the new examples plus a seeded sample of the old documents' indexing examples (experience replay):
  the old mappings are rehearsed while the new ones are learned.
* ``retrain``: `train_dsi` from scratch on every document: the reference, and the cost an update wants to avoid.

BM25 and a dense index add a document by adding its postings or its vector (`baseline_updates`).
`bench_incremental` (`dsilab bench incremental`) runs all of it and checks the floors an update should reach.

    split = split_collection(collection, new_share=0.2, seed=0)      # old 80% / new 20% of the documents
    initial = train_dsi(split.old, Recipe(docids="semantic"))          # the index before the update
    update = add_documents(initial, split, "replay", UpdateConfig(replay=1.0))
    measure(update, split, "test", update.model)                       # memorisation + Hits on old/new queries

Docids of new documents (`extend_docids`): atomic and naive docids take the next free numbers; a semantic docid
goes to the leaf cluster whose centroid is nearest (MiniLM, as `make_docids`) and takes that leaf's next free last
digit. The tree is not re-clustered, so old docids never change, but leaves grow past `c` (the stats say how many).
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import numpy as np

from .core import DsilabError, Qrels, Retriever, Run, check_choice, seed_everything
from .data import Collection
from .decode import LexicalPlanner
from .docids import DocidTree
from .recipes import DSIResult, Recipe, dev_set, fit, memorisation, probe_docs, task_for, train_dsi, with_dev
from .tasks import Example, build_examples
from .train import Callback

STRATEGIES = ("continue", "replay", "retrain")


# -- the split -------------------------------------------------------------------------------------------------
@dataclass
class IncrementalSplit:
    """A collection cut in two in time: the documents indexed first (`old`) and those that arrive later (`new_ids`).

    `full` is the whole collection with a dev split (held out of train once, so every model sees the same dev);
    `old` keeps the old documents and, in every split, only the judgements of old documents (a query whose relevant
    documents are all new did not have an answer yet, and is dropped).
    """

    full: Collection
    old: Collection
    new_ids: list[str]
    dev_from: str
    seed: int

    @property
    def old_ids(self) -> list[str]:
        return self.old.doc_ids

    def groups(self, split: str = "test") -> dict[str, list[str]]:
        """Queries of `split` by their relevant documents: all old ("old"), all new ("new"), or both ("mixed")."""
        new = set(self.new_ids)
        out: dict[str, list[str]] = {"old": [], "new": [], "mixed": []}
        for q, rels in self.full.split(split)[1].items():
            kinds = {d in new for d, g in rels.items() if g > 0}
            out["mixed" if len(kinds) > 1 else "new" if kinds == {True} else "old"].append(q)
        return out


def _restrict(collection: Collection, keep: set[str], name: str, splits: tuple[str, ...] | None = None,
              keep_docs: bool = False) -> Collection:
    """The judgements of the documents in `keep` (in `splits`, default every split; queries left without any are
    dropped), and the documents in `keep` (or, with `keep_docs`, every document)."""
    qrels: dict[str, Qrels] = {}
    for split, judged in collection.qrels.items():
        part = {q: {d: g for d, g in rels.items() if d in keep or (splits and split not in splits)}
                for q, rels in judged.items()}
        part = {q: rels for q, rels in part.items() if any(g > 0 for g in rels.values())}
        if part:
            qrels[split] = part
    queries = {q: collection.queries[q] for judged in qrels.values() for q in judged}
    docs = {d: doc for d, doc in collection.docs.items() if keep_docs or d in keep}
    return Collection(name, docs, queries, qrels, collection.meta)


def split_collection(collection: Collection, new_share: float = 0.2, seed: int = 0,
                     holdout: float = 0.1, new_queries: bool = True) -> IncrementalSplit:
    """Split the documents into an old (1 - new_share) and a new (new_share) part, seeded.

    holdout: share of training queries held out as dev when the collection has no dev split (as `train_dsi` does).
    new_queries: False drops the training judgements of new documents, so that they arrive as text alone (DSI++'s
    setting: nobody has asked about them yet); every update, retraining included, then trains without those queries.
    """
    if not 0 < new_share < 1:
        raise DsilabError(f"new_share={new_share}; use a fraction in (0, 1), e.g. 0.2 for 20% new documents.")
    n_new = round(new_share * len(collection.docs))
    if not 1 <= n_new < len(collection.docs):
        raise DsilabError(f"new_share={new_share} of {len(collection.docs)} documents leaves {n_new} new and "
                          f"{len(collection.docs) - n_new} old; both parts need at least one document.")
    full, dev_from = with_dev(collection, holdout, seed)
    chosen = set(np.random.default_rng(seed).choice(full.doc_ids, size=n_new, replace=False).tolist())
    new_ids = [d for d in full.doc_ids if d in chosen]
    if not new_queries:
        full = _restrict(full, set(full.doc_ids) - chosen, full.name, splits=("train",), keep_docs=True)
    old = _restrict(full, set(full.doc_ids) - chosen, f"{collection.name}-old{100 - round(100 * new_share)}%")
    return IncrementalSplit(full, old, new_ids, dev_from, seed)


# -- docids of new documents -----------------------------------------------------------------------------------
def extend_docids(tree: DocidTree, collection: Collection, new_ids: list[str],
                  embed: Callable[[list[str]], np.ndarray] | None = None) -> tuple[DocidTree, dict[str, Any]]:
    """A tree with docids for `new_ids` added and every existing docid kept; and what the growth did to the tree.

    atomic: the next free numbers (one new token each); naive: the next free numbers, written digit by digit;
    semantic: each new document joins the leaf cluster (a docid minus its last digit) whose centroid of document
    embeddings is nearest by cosine, and takes that leaf's next free last digit. Nothing is re-clustered, so a leaf
    can grow past `c` documents and a last digit past any seen so far (a new token): the stats count both.
    embed: texts -> unit-norm rows (default: the packaged MiniLM, cached, as `make_docids` uses).
    """
    if not new_ids:
        raise DsilabError("no new documents to add: pass at least one document id.")
    if len(set(new_ids)) != len(new_ids):
        raise DsilabError("the new document ids contain duplicates; each document is added once.")
    indexed = [d for d in new_ids if d in tree.codes]
    if indexed:
        raise DsilabError(f"{len(indexed)} document(s) are already indexed (e.g. {indexed[0]!r}); "
                          "add only documents the tree does not hold.")
    unknown = [d for d in new_ids if d not in collection.docs] + [d for d in tree.codes if d not in collection.docs]
    if unknown:
        raise DsilabError(f"document {unknown[0]!r} is not in collection {collection.name!r}; pass the collection "
                          "that holds both the indexed and the new documents (IncrementalSplit.full).")
    codes = dict(tree.codes)
    stats: dict[str, Any] = {"kind": tree.kind, "old docs": len(tree), "new docs": len(new_ids)}
    if tree.kind == "atomic":
        start = max(c[0] for c in tree.codes.values()) + 1
        codes.update({d: (start + i,) for i, d in enumerate(new_ids)})
    elif tree.kind == "naive":
        start = max(int("".join(map(str, c))) for c in tree.codes.values()) + 1
        codes.update({d: tuple(int(ch) for ch in str(start + i)) for i, d in enumerate(new_ids)})
    else:
        codes.update(_join_nearest_leaves(tree, collection, new_ids, embed, stats))
    grown = DocidTree(tree.kind, codes, {**tree.params, "added": len(new_ids)})
    stats["new tokens"] = [t for t in grown.token_vocab if t not in set(tree.token_vocab)]
    return grown, stats


def _join_nearest_leaves(tree: DocidTree, collection: Collection, new_ids: list[str],
                         embed: Callable[[list[str]], np.ndarray] | None, stats: dict[str, Any]) -> dict[str, tuple]:
    """Semantic docids for new documents: nearest leaf centroid + the leaf's next free last digit (fills `stats`)."""
    if embed is None:
        from .embed import load_encoder

        embed = load_encoder().encode_cached
    old_ids = list(tree.codes)
    old_emb = np.asarray(embed([collection.docs[d].contents for d in old_ids]), dtype=np.float32)
    new_emb = np.asarray(embed([collection.docs[d].contents for d in new_ids]), dtype=np.float32)
    leaves = sorted({c[:-1] for c in tree.codes.values()})
    row = {leaf: i for i, leaf in enumerate(leaves)}
    member = np.array([row[tree.codes[d][:-1]] for d in old_ids])
    centroids = np.zeros((len(leaves), old_emb.shape[1]), dtype=np.float32)
    np.add.at(centroids, member, old_emb)
    centroids /= np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
    nearest = (new_emb @ centroids.T).argmax(axis=1)
    next_digit = {leaf: 0 for leaf in leaves}
    for c in tree.codes.values():
        next_digit[c[:-1]] = max(next_digit[c[:-1]], c[-1] + 1)
    before = np.bincount(member, minlength=len(leaves))
    out: dict[str, tuple] = {}
    for d, i in zip(new_ids, nearest):
        leaf = leaves[int(i)]
        out[d] = leaf + (next_digit[leaf],)
        next_digit[leaf] += 1
    after = before + np.bincount(nearest, minlength=len(leaves))
    c = tree.params.get("c")
    stats.update({"leaves": len(leaves), "leaves that took new docs": int((after > before).sum()),
                  "largest leaf (before/after)": f"{before.max()}/{after.max()}", "c": c,
                  "leaves over c (before/after)": f"{int((before > c).sum())}/{int((after > c).sum())}" if c else None})
    return out


# -- the update ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class UpdateConfig:
    """How an update trains (strategies "continue" and "replay"; "retrain" is `train_dsi` with the initial recipe).

    replay: old examples replayed per new example; replay_queries: draw them from the old documents' indexing *and*
    training-query examples (everything the initial model learned), not from indexing alone; stopping as `train_dsi`:
    once the new documents are memorised (the recipe's memo_threshold) and dev Hits@1 has not gained for `patience`
    evaluations, or at `max_epochs` epochs of the update's examples (or `max_steps` steps); the best dev checkpoint
    among the memorised ones is kept.
    """

    replay: float = 1.0
    replay_queries: bool = False
    lr: float | None = None               # None: the initial recipe's
    warmup_steps: int = 10
    max_epochs: int = 60
    max_steps: int | None = None          # a cap in optimizer steps as well (None: max_epochs alone)
    eval_every: int | None = None         # steps between dev evaluations (None: about 5 epochs, at least 20 steps)
    patience: int = 2
    curve_every: int = 10                 # steps between points of the forgetting curve (0: none)
    curve_docs: int = 200                 # documents per curve probe, old and new each (a seeded sample)

    def recipe(self, initial: Recipe, n_examples: int) -> Recipe:
        """The initial recipe with this update's training settings (the one DSI run, `recipes.fit`, trains by it)."""
        steps_per_epoch = max(1, math.ceil(n_examples / initial.batch_size))
        return replace(initial, lr=self.lr or initial.lr, warmup_steps=self.warmup_steps, max_epochs=self.max_epochs,
                       max_steps=self.max_steps, eval_every=self.eval_every or max(20, 5 * steps_per_epoch),
                       patience=self.patience, prune=0.0)

    def __post_init__(self) -> None:
        if self.replay < 0:
            raise DsilabError(f"UpdateConfig.replay={self.replay}; use >= 0 old examples per new example (e.g. 1.0).")
        if self.max_epochs < 1 or self.patience < 0 or self.curve_every < 0 or self.curve_docs < 1:
            raise DsilabError("UpdateConfig: max_epochs and curve_docs must be >= 1, patience and curve_every >= 0.")


@dataclass
class Update(Retriever):
    """The index after adding documents: model, tree, what it cost, and how memorisation moved during training."""

    strategy: str
    model: Any
    tree: DocidTree
    seconds: float                        # wall time of the update (docids, model growth, training); no curve probes
    steps: int
    n_examples: int
    stopped: str
    curve: list[dict[str, float]] = field(default_factory=list)
    tree_stats: dict[str, Any] = field(default_factory=dict)
    best_dev: dict[str, Any] = field(default_factory=dict)   # the kept checkpoint's dev scores
    plan_weight: float = 0.0              # the lexical plan's weight (the recipe's `plan`; 0: none)
    planner: Any = None                   # a LexicalPlanner over every indexed document, old and new

    def search(self, queries: dict[str, str], k: int = 10) -> Run:
        """Constrained beam search of the updated model: the ranked docids of each query, steered by the lexical plan
        when the recipe has one."""
        from .decode import search

        plan = self.planner(queries, self.plan_weight) if self.plan_weight else None
        return search(self.model, queries, k=k, plan=plan)


class ForgettingCurve(Callback):
    """Every `every` steps: memorisation (indexing Hits@1) of a sample of old and of new documents.

    The time it takes is kept in `seconds`, so that an update's cost leaves the measurement out.
    """

    def __init__(self, old: dict[str, str], new: dict[str, str], every: int):
        self.old, self.new, self.every = old, new, every
        self.points: list[dict[str, float]] = []
        self.seconds = 0.0

    def _measure(self, trainer) -> None:
        t0 = time.perf_counter()
        self.points.append({"step": trainer.step, "old memo": round(memorisation(trainer.net, self.old), 4),
                            "new memo": round(memorisation(trainer.net, self.new), 4)})
        self.seconds += time.perf_counter() - t0

    def on_train_begin(self, trainer) -> None:
        if self.every:
            self._measure(trainer)

    def on_step_end(self, trainer) -> None:
        if self.every and trainer.step % self.every == 0:
            self._measure(trainer)


def replay_sample(examples: list[Example], n: int, seed: int = 0) -> list[Example]:
    """`n` examples drawn from `examples`, seeded: whole copies first when n exceeds them, then a sample without
    replacement (every old document is rehearsed about equally often)."""
    if n <= 0 or not examples:
        return []
    reps, rest = divmod(n, len(examples))
    picked = np.sort(np.random.default_rng(seed).choice(len(examples), size=rest, replace=False))
    return examples * reps + [examples[i] for i in picked]


def grow(model: Any, tree: DocidTree, sources: list[str] = (), in_place: bool = False) -> Any:
    """A copy of `model` that also knows the docids of `tree` (the original is left untouched), or with `in_place`
    `model` itself, grown.

    The copy shares the weights that do not train (the frozen pretrained encoder) instead of copying them, so an
    update holds one encoder, not two: nothing writes to them (an update never prunes, `UpdateConfig.recipe`)."""
    net = model.net
    # never the token embeddings: `add_docids` resizes them, and transformers resizes a Parameter's data in place
    resized = {id(p) for part in ([net.get_encoder(), net.get_decoder()] if hasattr(net, "get_encoder") else [net])
               for p in part.get_input_embeddings().parameters()}
    shared = {id(p): p for p in model.parameters() if not p.requires_grad and id(p) not in resized}
    grown = model if in_place else copy.deepcopy(model, memo=shared)
    longest = max((len(grown.tokenizer(s, add_special_tokens=False)["input_ids"]) for s in sources), default=0)
    grown.add_docids(tree, max_source_len=longest + 1 if longest else None)
    return grown


def update_examples(initial: DSIResult, split: IncrementalSplit, tree: DocidTree, strategy: str,
                    cfg: UpdateConfig = UpdateConfig()) -> list[Example]:
    """What an update trains on: the new documents' examples (indexing, and their training queries when the recipe
    uses them), plus for "replay" `cfg.replay` x as many old examples (indexing ones, or with `cfg.replay_queries`
    any the initial model trained on), seeded."""
    new = set(split.new_ids)
    # the examples `train_dsi` builds for the recipe (generated queries too, without its round-trip filter)
    everything = build_examples(split.full, tree, task_for(initial.recipe, split.full))
    examples = [e for e in everything if e.doc_id in new]
    if strategy == "replay":
        old = [e for e in everything if e.doc_id not in new and (cfg.replay_queries or e.task == "index")]
        examples += replay_sample(old, round(cfg.replay * len(examples)), initial.recipe.seed)
    return examples


def add_documents(initial: DSIResult, split: IncrementalSplit, strategy: str = "replay",
                  cfg: UpdateConfig = UpdateConfig(), progress: bool = False, in_place: bool = False) -> Update:
    """Add `split.new_ids` to the index `initial` (trained on `split.old`) by one of STRATEGIES.

    in_place: "continue" and "replay" train `initial.model` itself instead of a copy, which then holds the update (one
    network in memory, not two); read the initial model back from disk (`initial.save`, `load_model`) to use it again.
    """
    check_choice("strategy", strategy, STRATEGIES)
    if set(initial.tree.codes) != set(split.old_ids):
        raise DsilabError("the initial model was not trained on split.old: train it with train_dsi(split.old, recipe).")
    recipe = initial.recipe
    if strategy == "retrain":
        res = train_dsi(split.full, recipe, progress=progress)
        return Update(strategy, res.model, res.tree, res.seconds, res.train.steps, res.n_examples, res.stopped,
                      best_dev=res.train.best, plan_weight=res.plan_weight,
                      planner=res.lexical_planner() if res.plan_weight else None)
    if initial.model is None:
        raise DsilabError("initial.model is None (parked on disk?): read it back with load_model(folder).model first.")
    t0 = time.perf_counter()
    seed_everything(recipe.seed)
    tree, stats = extend_docids(initial.tree, split.full, split.new_ids)
    examples = update_examples(initial, split, tree, strategy, cfg)
    model = grow(initial.model, tree, [e.source for e in examples], in_place=in_place)
    if recipe.docid_init == "encoder" and tree.kind == "atomic":  # a new document's own token starts at its encoding
        model.init_docid_embeddings([e for e in examples if e.doc_id in set(split.new_ids)])
    probe_new = probe_docs(split.full, recipe, split.new_ids)
    curve = ForgettingCurve(probe_docs(split.full, recipe, split.old_ids, n=cfg.curve_docs),
                            probe_docs(split.full, recipe, split.new_ids, n=cfg.curve_docs), cfg.curve_every)
    result, stop, _ = fit(model, examples, cfg.recipe(recipe, len(examples)), dev_set(split.full, split.dev_from, recipe, probe_new),
                       probe_new, dev_is_memo=split.dev_from == "none", callbacks=[curve], progress=progress)
    seconds = time.perf_counter() - t0 - curve.seconds
    # the plan reads BM25 over every indexed document, at the weight the initial model chose on dev
    planner = LexicalPlanner(split.full, recipe.plan_depth) if initial.plan_weight else None
    return Update(strategy, model, tree, seconds, result.steps, len(examples), stop.stopped(result), curve.points,
                  stats, result.best, initial.plan_weight, planner)


# -- the benchmark ---------------------------------------------------------------------------------------------
INITIAL, CONTINUE, RETRAIN = "DSI initial (old docs only)", "DSI + continue", "DSI + retrain"


