"""The augmentation interface: an `Augmenter` maps texts to `Augmented` records; a `Pipeline` chains them.

Two kinds of augmenter: *normalisers* rewrite a text in place (stopword removal, numbers to words)
and are applied the same way to documents and queries, at training and at test time; *expanders*
(POS-MLM) add extra variants of a document to train on, keeping the original.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar, Sequence

import numpy as np

from ..core import DsilabError, atomic_path, cache_dir
from ..data import Collection, Doc

TARGETS = ("docs", "queries")


@dataclass(frozen=True)
class Augmented:
    """One text before and after an augmenter: the (before, after) strings it changed and, where
    the augmenter knows them, their (start, end) character spans in the original."""

    original: str
    text: str
    changes: tuple[tuple[str, str], ...] = ()
    spans: tuple[tuple[int, int], ...] = ()

    @property
    def changed(self) -> bool:
        return self.text != self.original


def stable_int(text: str) -> int:
    """A process-independent 64-bit integer from a string (Python's `hash` is salted per process)."""
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little")


def text_rng(seed: int, text: str) -> np.random.Generator:
    """A generator seeded by (seed, text): the same text gets the same choices in any batch order."""
    return np.random.default_rng([seed, stable_int(text)])


class Augmenter:
    """Base class: subclasses are frozen dataclasses that implement `augment_batch`.

    `kind` is "normalize" (rewrite in place) or "expand" (add a variant); `targets` says whether
    a pipeline applies it to documents, queries or both.
    """

    kind: ClassVar[str] = "normalize"
    name: ClassVar[str] = "augmenter"

    def augment_batch(self, texts: Sequence[str], seed: int = 0) -> list[Augmented]:  # pragma: no cover
        raise NotImplementedError

    def augment(self, text: str, seed: int = 0) -> Augmented:
        """One text with the record of what changed."""
        return self.augment_batch([text], seed=seed)[0]

    def __call__(self, text: str, seed: int = 0) -> str:
        """`str -> str`: the augmented text only."""
        return self.augment(text, seed=seed).text

    @property
    def default_targets(self) -> tuple[str, ...]:
        return TARGETS if self.kind == "normalize" else ("docs",)

    def config(self) -> dict[str, Any]:
        """Everything that determines the output, for cache keys and benchmark records."""
        cfg = dataclasses.asdict(self) if dataclasses.is_dataclass(self) else {}
        return {"augmenter": type(self).__name__, **{k: _jsonable(v) for k, v in cfg.items()}}


def _jsonable(v: Any) -> Any:
    if isinstance(v, (frozenset, set)):
        return sorted(v)
    if isinstance(v, tuple):
        return list(v)
    return v


def _check_texts(texts: Sequence[str], who: str) -> None:
    if isinstance(texts, str):
        raise DsilabError(f"{who}.augment_batch expects a list of strings, got one string; wrap it: [text].")
    bad = [type(t).__name__ for t in texts if not isinstance(t, str)]
    if bad:
        raise DsilabError(f"{who} expects strings, got {bad[0]}; convert documents with doc.contents first.")


@dataclass
class AugmentedCollection:
    """A collection after a pipeline: normalised docs and queries, extra doc variants, and costs.

    `variants[doc_id]` holds augmented copies of a document's contents (from expanders) to add as
    extra indexing examples; `records` keeps before/after examples for inspection.
    """

    collection: Collection
    variants: dict[str, list[str]] = field(default_factory=dict)
    seconds: float = 0.0
    cached: bool = False
    n_changed: dict[str, int] = field(default_factory=dict)

    @property
    def n_variants(self) -> int:
        return sum(len(v) for v in self.variants.values())


class Pipeline:
    """Augmenters applied in order; normalisers rewrite, expanders add variants of the docs.

    `targets` maps an augmenter's position to "docs"/"queries"/both; by default normalisers act on
    both and expanders on docs only. Results of `apply` are cached on disk per (config, seed, data).
    """

    def __init__(self, augmenters: Sequence[Augmenter], targets: dict[int, Sequence[str]] | None = None):
        for i, a in enumerate(augmenters):
            if not isinstance(a, Augmenter):
                raise DsilabError(f"Pipeline step {i} is {type(a).__name__}, not an Augmenter (e.g. StopwordRemover()).")
        self.augmenters = list(augmenters)
        self.targets = {i: tuple(a.default_targets) for i, a in enumerate(self.augmenters)}
        for i, t in (targets or {}).items():
            if i not in self.targets:
                raise DsilabError(f"Pipeline targets name step {i}, but there are {len(self.augmenters)} steps.")
            unknown = set(t) - set(TARGETS)
            if unknown:
                raise DsilabError(f"unknown target(s) {sorted(unknown)} for step {i}; use {list(TARGETS)}.")
            self.targets[i] = tuple(t)

    def __repr__(self) -> str:
        return "Pipeline([" + ", ".join(type(a).__name__ for a in self.augmenters) + "])"

    def config(self) -> list[dict[str, Any]]:
        return [{**a.config(), "targets": list(self.targets[i])} for i, a in enumerate(self.augmenters)]

    # -- texts -------------------------------------------------------------------------------
    def run(self, texts: Sequence[str], seed: int = 0, target: str = "docs", expand: bool = True) -> list[list[str]]:
        """Each text -> [normalised text, variant, ...] after all steps that act on `target` (expanders skipped unless `expand`)."""
        _check_texts(texts, "Pipeline")
        groups: list[list[str]] = [[t] for t in texts]
        for i, aug in enumerate(self.augmenters):
            if target not in self.targets[i] or (aug.kind == "expand" and not expand):
                continue
            if aug.kind == "normalize":
                flat = [t for g in groups for t in g]
                out = iter(a.text for a in aug.augment_batch(flat, seed=seed))
                groups = [[next(out) for _ in g] for g in groups]
            else:  # an expander adds one variant per text, from the current normalised original
                new = aug.augment_batch([g[0] for g in groups], seed=seed + i)
                groups = [g + [a.text] if a.changed else g for g, a in zip(groups, new)]
        return groups

    # -- collections ---------------------------------------------------------------------------
    def apply(self, collection: Collection, seed: int = 0, cache: bool = True) -> AugmentedCollection:
        """Augment a collection's documents (title and text) and queries; cached on disk."""
        key = self._key(collection, seed)
        path = cache_dir("augment") / f"{key}.json"
        if cache and path.is_file():
            t0 = time.perf_counter()
            data = json.loads(path.read_text(encoding="utf-8"))
            out = self._rebuild(collection, data)
            out.seconds, out.cached = time.perf_counter() - t0, True
            return out
        t0 = time.perf_counter()
        ids = collection.doc_ids
        titles = self.run([collection.docs[d].title for d in ids], seed=seed, target="docs", expand=False)
        texts = self.run([collection.docs[d].text for d in ids], seed=seed, target="docs")
        qids = list(collection.queries)
        queries = self.run([collection.queries[q] for q in qids], seed=seed, target="queries")
        data = {
            "docs": {d: {"title": ti[0], "text": tx[0], "variants": tx[1:]} for d, ti, tx in zip(ids, titles, texts)},
            "queries": {q: g[0] for q, g in zip(qids, queries)},
            "seconds": 0.0,
        }
        data["seconds"] = round(time.perf_counter() - t0, 3)
        if cache:
            with atomic_path(path) as tmp:
                tmp.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
        out = self._rebuild(collection, data)
        out.seconds, out.cached = data["seconds"], False
        return out

    def _key(self, collection: Collection, seed: int) -> str:
        h = hashlib.sha256()
        h.update(json.dumps({"pipeline": self.config(), "seed": seed}, sort_keys=True).encode())
        for d in collection.docs.values():
            h.update(f"\x1e{d.id}\x1f{d.title}\x1f{d.text}".encode("utf-8"))
        for q, t in collection.queries.items():
            h.update(f"\x1e{q}\x1f{t}".encode("utf-8"))
        return h.hexdigest()[:24]

    @staticmethod
    def _rebuild(collection: Collection, data: dict[str, Any]) -> AugmentedCollection:
        docs = {d: Doc(d, rec["title"], rec["text"]) for d, rec in data["docs"].items()}
        variants = {}
        for d, rec in data["docs"].items():
            if rec["variants"]:
                variants[d] = [Doc(d, rec["title"], v).contents for v in rec["variants"]]
        queries = dict(data["queries"])
        meta = {**collection.meta, "augmented": True}
        new = Collection(collection.name, docs, queries, collection.qrels, meta)
        n_changed = {
            "docs": sum(docs[d].contents != collection.docs[d].contents for d in docs),
            "queries": sum(queries[q] != collection.queries[q] for q in queries),
            "variants": sum(len(v) for v in variants.values()),
        }
        return AugmentedCollection(new, variants, n_changed=n_changed)


def before_after(augmenter: Augmenter, texts: Sequence[str], seed: int = 0, only_changed: bool = True) -> list[dict[str, Any]]:
    """Rows of (before, after, changes) for a table: what an augmenter did to some texts."""
    rows = []
    for a in augmenter.augment_batch(list(texts), seed=seed):
        if a.changed or not only_changed:
            rows.append({"before": a.original, "after": a.text, "changes": "; ".join(f"{b!r}->{c!r}" for b, c in a.changes)})
    return rows


def diff_html(before: str, after: str) -> str:
    """A word-level diff as HTML: removed words struck through in red, added ones in green."""
    import difflib
    import html

    a, b = before.split(), after.split()
    out = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if op in ("delete", "replace"):
            out.append(f"<del style='color:#b00'>{html.escape(' '.join(a[i1:i2]))}</del>")
        if op in ("insert", "replace"):
            out.append(f"<ins style='color:#070'>{html.escape(' '.join(b[j1:j2]))}</ins>")
        if op == "equal":
            out.append(html.escape(" ".join(a[i1:i2])))
    return " ".join(out)


def excerpt(record: Augmented, context: int = 60) -> dict[str, str]:
    """The part of a long text around its changed spans, before and after (needs `record.spans`)."""
    if not record.spans:
        return {"before": record.original, "after": record.text}
    start = max(0, min(s for s, _ in record.spans) - context)
    end = min(len(record.original), max(e for _, e in record.spans) + context)
    shift = len(record.text) - len(record.original)  # every change lies inside [start, end)
    dots = ("…" if start > 0 else "", "…" if end < len(record.original) else "")
    return {"before": dots[0] + record.original[start:end] + dots[1], "after": dots[0] + record.text[start : end + shift] + dots[1]}
