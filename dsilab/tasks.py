"""Training examples for DSI: indexing (doc <-> docid), retrieval (query -> docid) and pseudo-queries.

DSI learns two things with one seq2seq model (Tay et al., 2022): *indexing* (read a document,
write its docid) and *retrieval* (read a query, write the docid of a relevant document).

* ``inputs2targets``: doc text -> docid (the paper's best indexing task);
* ``targets2inputs``: ``"docid2text: <docid>"`` -> doc text (the model learns what a docid means);
* ``bidirectional``: both, told apart by the task prefix on the docid side (queries and documents
  never carry a prefix, so a query at test time looks exactly like training input);
* retrieval examples come from the real queries of a split and/or from pseudo-queries (DSI-QG's
  union of original and generated queries), mixed with indexing at a chosen `ratio`.

Documents are represented by their first L words or by n random spans of L words (`doc_views`).
Pseudo-queries (queries without labels, one docid each) come from `dsilab.querygen.generate_queries`:
spans of the document, a generator trained here, or docT5query from the hub.

>>> cfg = TaskConfig(indexing="inputs2targets", doc_len=64, pseudo_per_doc=4)
>>> examples = build_examples(collection, tree, cfg)        # list[Example]
"""
from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from .core import DsilabError, check_choice
from .data import Collection
from .docids import DocidTree

if TYPE_CHECKING:
    from .querygen import QGConfig

INDEXING = ("inputs2targets", "targets2inputs", "bidirectional", "none")
DOC_REPR = ("first", "spans")
REVERSE_PREFIX = "docid2text: "


@dataclass(frozen=True)
class Example:
    """One seq2seq pair. `target` is docid tokens (e.g. ``<s3><s1>``) or text (for targets2inputs)."""

    source: str
    target: str
    task: Literal["index", "retrieval", "pseudo", "docid2text"]
    doc_id: str


@dataclass(frozen=True)
class TaskConfig:
    """How to turn a collection into training examples.

    indexing: one of INDEXING; doc_repr: "first" (first `doc_len` words) or "spans" (`n_spans` random
    spans of `doc_len` words); query_split: the split whose real queries are retrieval examples
    (None for the zero-shot setting); pseudo_per_doc: generated
    queries per document (0 = none), by `query_generator` ("span", "trained" or a hub name: dsilab.querygen), kept only
    when BM25 ranks their document in the top `query_filter_k` (the round-trip filter; None: all), and with
    `query_teacher_k` trained towards the top k documents of a dense teacher instead of their source (distillation:
    `querygen.teacher_labels`; None: their source); generator_steps: the
    most training steps of the "trained" generator (None: `QGConfig`'s cap; it stops earlier on held-out loss);
    ratio: indexing examples per retrieval example (None keeps the natural counts). The task part of
    `dsilab.recipes.Recipe`.
    """

    indexing: str = "inputs2targets"
    doc_repr: str = "first"
    doc_len: int = 64
    n_spans: int = 2
    query_split: str | None = "train"
    pseudo_per_doc: int = 0
    query_generator: str = "span"
    query_filter_k: int | None = None
    query_teacher_k: int | None = None
    generator_steps: int | None = None
    ratio: float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        check_choice("TaskConfig.indexing", self.indexing, INDEXING)
        check_choice("TaskConfig.doc_repr", self.doc_repr, DOC_REPR)
        if self.doc_len < 1 or self.n_spans < 1 or self.pseudo_per_doc < 0:
            raise DsilabError("TaskConfig: doc_len and n_spans must be >= 1 and pseudo_per_doc >= 0.")
        if self.generator_steps is not None and self.generator_steps < 1:
            raise DsilabError(f"generator_steps={self.generator_steps}; use a positive number of steps, or None.")
        if self.query_teacher_k is not None and (self.query_teacher_k < 1 or not self.pseudo_per_doc):
            raise DsilabError(f"query_teacher_k={self.query_teacher_k} labels generated queries: use k >= 1 with "
                              "pseudo_per_doc >= 1, or None.")
        if self.ratio is not None and self.ratio <= 0:
            raise DsilabError(f"ratio={self.ratio}; use a positive number of indexing examples per retrieval example, or None.")

    @property
    def generator_config(self) -> QGConfig:
        """The "trained" query generator's settings: `QGConfig`'s, with this task's seed and step cap."""
        from .querygen import QGConfig

        return QGConfig(seed=self.seed, **({"max_steps": self.generator_steps} if self.generator_steps else {}))

    def pseudo_queries(self, collection: Collection, progress: bool = False
                       ) -> tuple[dict[str, list[str]], dict | None]:
        """doc_id -> the generated queries this task trains on (generated from the training split only, so dev and
        test queries stay unseen), after the round-trip filter and the teacher's labels; and what the filter dropped
        and the teacher changed (None without either)."""
        from .querygen import generate_queries, roundtrip_filter, teacher_labels

        pseudo = generate_queries(collection, self.pseudo_per_doc, self.query_generator, seed=self.seed,
                                  config=self.generator_config, progress=progress)
        pseudo, report = roundtrip_filter(collection, pseudo, self.query_filter_k) if self.query_filter_k else (pseudo, None)
        if self.query_teacher_k:
            pseudo, taught = teacher_labels(collection, pseudo, self.query_teacher_k, self.seed)
            report = {**(report or {}), "teacher": taught}
        return pseudo, report


# -- document representation -------------------------------------------------------------------------
def doc_views(collection: Collection, doc_repr: str = "first", length: int = 64, n_spans: int = 2,
              seed: int = 0) -> dict[str, list[str]]:
    """doc_id -> the text(s) that stand for the document in indexing: first L words or random spans."""
    check_choice("doc_repr", doc_repr, DOC_REPR)
    rng = np.random.default_rng(seed)
    out: dict[str, list[str]] = {}
    for doc_id, text in zip(collection.doc_ids, collection.contents):
        words = text.split()
        if doc_repr == "first" or len(words) <= length:
            out[doc_id] = [" ".join(words[:length])]
        else:
            starts = rng.integers(0, len(words) - length + 1, size=n_spans)
            out[doc_id] = [" ".join(words[s : s + length]) for s in starts]
    return out


# -- examples ----------------------------------------------------------------------------------------------
def indexing_examples(collection: Collection, tree: DocidTree, cfg: TaskConfig) -> list[Example]:
    """inputs2targets / targets2inputs / bidirectional examples for every document."""
    views = doc_views(collection, cfg.doc_repr, cfg.doc_len, cfg.n_spans, cfg.seed)
    out: list[Example] = []
    for doc_id, texts in views.items():
        docid = tree.text(doc_id)
        for text in texts:
            if cfg.indexing in ("inputs2targets", "bidirectional"):
                out.append(Example(text, docid, "index", doc_id))
            if cfg.indexing in ("targets2inputs", "bidirectional"):
                out.append(Example(REVERSE_PREFIX + docid, text, "docid2text", doc_id))
    return out


def retrieval_examples(queries: dict[str, str], qrels: dict[str, dict[str, int]], tree: DocidTree,
                       task: str = "retrieval") -> list[Example]:
    """query -> docid, one example per relevant (grade > 0) document."""
    return [Example(queries[q], tree.text(d), task, d) for q, rels in qrels.items() for d, g in rels.items() if g > 0]


def build_examples(collection: Collection, tree: DocidTree, cfg: TaskConfig = TaskConfig(),
                   pseudo: dict[str, list[str]] | None = None) -> list[Example]:
    """The full training mix: indexing + real retrieval queries + pseudo-queries, mixed at `cfg.ratio`.

    `pseudo` overrides the pseudo-queries (else `cfg.pseudo_per_doc` are generated by `cfg.query_generator`).
    The order is deterministic; the training loop shuffles.
    """
    if set(tree.codes) != set(collection.doc_ids):
        raise DsilabError("the DocidTree was built for another collection: call make_docids on this collection.")
    index = indexing_examples(collection, tree, cfg) if cfg.indexing != "none" else []
    retrieval: list[Example] = []
    if cfg.query_split is not None:
        queries, qrels = collection.split(cfg.query_split)
        retrieval += retrieval_examples(queries, qrels, tree)
    if pseudo is None and cfg.pseudo_per_doc > 0:
        pseudo, _ = cfg.pseudo_queries(collection)
    for doc_id, qs in (pseudo or {}).items():
        retrieval += [Example(q, tree.text(doc_id), "pseudo", doc_id) for q in qs]
    if not index and not retrieval:
        raise DsilabError("no training examples: enable indexing, a query_split or pseudo-queries in TaskConfig.")
    if cfg.ratio is not None and index and retrieval:
        want = max(1, round(cfg.ratio * len(retrieval)))
        rng = np.random.default_rng(cfg.seed)
        reps, rest = divmod(want, len(index))
        index = index * reps + [index[i] for i in sorted(rng.choice(len(index), size=rest, replace=False))]
    return index + retrieval


def describe_examples(examples: list[Example]) -> dict[str, int]:
    """Counts per task, for a quick look at the mix."""
    return dict(Counter(e.task for e in examples))


def config_dict(cfg: TaskConfig) -> dict:
    """A TaskConfig as a plain dict (for logs and benchmark JSON)."""
    return asdict(cfg)
