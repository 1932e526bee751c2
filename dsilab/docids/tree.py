"""The docid tree: the bijection document <-> code (a tuple of small integers) and the tree view of the codes
that tasks, decoding, the course and the widgets read (`DocidTree`); the kinds a tree may have."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from ..core import DsilabError, check_choice

KINDS = ("atomic", "naive", "semantic")
#: Kinds a DocidTree may have: the three `make_docids` builds, and "residual" for codes built elsewhere (learned
#: residual codes, `dsilab.docids.residual`; one token per (level, code), so its digits are offset by level).
TREE_KINDS = KINDS + ("residual",)
_TOKEN_PREFIX = {"atomic": "a", "naive": "n", "semantic": "s", "residual": "r"}


@dataclass(frozen=True)
class DocidTree:
    """A bijective map doc_id <-> code (tuple of ints) with tree views: children, sizes, depths."""

    kind: str
    codes: dict[str, tuple[int, ...]]
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_choice("docid kind", self.kind, TREE_KINDS)
        if not self.codes:
            raise DsilabError("a DocidTree needs at least one document; the collection is empty.")
        seen: dict[tuple[int, ...], str] = {}
        for doc_id, code in self.codes.items():
            if not code or any((not isinstance(x, (int, np.integer))) or x < 0 for x in code):
                raise DsilabError(f"docid of {doc_id!r} is {code!r}; a docid is a non-empty tuple of ints >= 0.")
            code = tuple(int(x) for x in code)
            if code in seen:
                raise DsilabError(
                    f"docid collision: {seen[code]!r} and {doc_id!r} both have docid {code}; every document "
                    "needs its own docid (check for duplicate documents or use make_docids)."
                )
            seen[code] = doc_id
        object.__setattr__(self, "codes", {d: tuple(int(x) for x in c) for d, c in self.codes.items()})

    # -- the bijection --------------------------------------------------------------------------
    @cached_property
    def inverse(self) -> dict[tuple[int, ...], str]:
        """code -> doc_id."""
        return {c: d for d, c in self.codes.items()}

    def doc(self, code: tuple[int, ...]) -> str:
        """The doc_id of a code; DsilabError when no document has it."""
        try:
            return self.inverse[tuple(code)]
        except KeyError:
            raise DsilabError(f"no document has docid {tuple(code)} in this {self.kind} DocidTree.") from None

    def __len__(self) -> int:
        return len(self.codes)

    # -- tokens, as the model sees them -----------------------------------------------------------
    def token(self, digit: int) -> str:
        """The vocabulary token of one digit, e.g. ``<s3>`` for a semantic docid."""
        return f"<{_TOKEN_PREFIX[self.kind]}{digit}>"

    def tokens(self, doc_id: str) -> list[str]:
        """The docid of a document as model tokens, one per digit."""
        if doc_id not in self.codes:
            raise DsilabError(f"document {doc_id!r} has no docid in this tree; build the tree from the same collection.")
        return [self.token(x) for x in self.codes[doc_id]]

    def text(self, doc_id: str) -> str:
        """The docid as one string of tokens (what a tokenizer with `token_vocab` added reads)."""
        return "".join(self.tokens(doc_id))

    @cached_property
    def token_vocab(self) -> list[str]:
        """Every token any docid uses, sorted by digit: add these to the model's vocabulary."""
        digits = sorted({x for c in self.codes.values() for x in c})
        return [self.token(x) for x in digits]

    @cached_property
    def digit_of(self) -> dict[str, int]:
        """Vocabulary token -> digit (inverse of `token`)."""
        return {self.token(int(t[2:-1])): int(t[2:-1]) for t in self.token_vocab}

    def parse(self, tokens: list[str]) -> str | None:
        """The doc_id spelled by a token sequence, or None if it is not a valid docid."""
        if not tokens or any(t not in self.digit_of for t in tokens):
            return None
        return self.inverse.get(tuple(self.digit_of[t] for t in tokens))

    # -- tree views --------------------------------------------------------------------------------
    def docs_under(self, prefix: tuple[int, ...] = ()) -> list[str]:
        """Documents whose docid starts with `prefix` (all documents for the empty prefix)."""
        p = tuple(prefix)
        return [d for d, c in self.codes.items() if c[: len(p)] == p]

    def children(self, prefix: tuple[int, ...] = ()) -> dict[int, int]:
        """Next digit -> number of documents below it, for the node at `prefix` (empty for a full docid)."""
        p = tuple(prefix)
        counts = Counter(c[len(p)] for c in self.codes.values() if len(c) > len(p) and c[: len(p)] == p)
        return dict(sorted(counts.items()))

    def shared_prefix(self, a: str, b: str) -> int:
        """How many leading docid tokens documents `a` and `b` share (for error analysis: near misses)."""
        x, y = self.codes[a], self.codes[b]
        return next((i for i, (p, q) in enumerate(zip(x, y)) if p != q), min(len(x), len(y)))

    @cached_property
    def depths(self) -> np.ndarray:
        """Length of every docid, in `codes` order."""
        return np.array([len(c) for c in self.codes.values()])

    def level_sizes(self, level: int) -> list[int]:
        """Sizes (documents below) of all nodes at one level: level 1 = the top clusters."""
        return sorted(Counter(c[:level] for c in self.codes.values() if len(c) >= level).values(), reverse=True)

    def stats(self) -> dict[str, Any]:
        """Depth and branching statistics a reader wants first."""
        internal = {c[:i] for c in self.codes.values() for i in range(len(c))}
        fanout = [len(self.children(p)) for p in internal]
        return {
            "kind": self.kind,
            "docs": len(self.codes),
            "depth (min/mean/max)": f"{self.depths.min()}/{self.depths.mean():.2f}/{self.depths.max()}",
            "nodes": len(internal),
            "fan-out (mean/max)": f"{np.mean(fanout):.1f}/{max(fanout)}",
            "distinct tokens": len(self.token_vocab),
            **{k: v for k, v in self.params.items() if k in ("k", "c", "seed")},
        }
