"""The exercise registry: `checker` registers a chapter's checker, `check` runs it and prints the feedback."""
from __future__ import annotations

import importlib
import pkgutil
from typing import Any, Callable

import numpy as np

from ..core import DsilabError

Checker = Callable[..., tuple[bool, str]]
CHECKERS: dict[str, Checker] = {}


def checker(exercise: str) -> Callable[[Checker], Checker]:
    """Register a function `(answer, **context) -> (ok, message)` for one exercise id ("NN.k")."""

    def register(fn: Checker) -> Checker:
        CHECKERS[exercise] = fn
        return fn

    return register


def load_all() -> dict[str, Checker]:
    """Import every chapter's module (each registers its checkers on import) and return the registry."""
    from . import __path__ as here

    for info in pkgutil.iter_modules(here):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__package__}.{info.name}")
    return CHECKERS


def check(exercise: str, answer: Any, *, strict: bool = False, **context: Any) -> bool:
    """Print feedback on one answer and return whether it is right; raise on a miss when `strict`."""
    if exercise not in load_all():
        raise DsilabError(f"no checker for exercise {exercise!r}; known: {sorted(CHECKERS)}.")
    if answer is None:
        ok, message = False, "not attempted yet: replace `None` with your answer and run the cell again."
    else:
        ok, message = CHECKERS[exercise](answer, **context)
    print(f"{'✅' if ok else '❌'} Exercise {exercise}: {message}")
    if strict and not ok:
        raise DsilabError(f"exercise {exercise}: the reference solution did not pass: {message}")
    return ok


def compare_prediction(predicted: Any, measured: Any, *, choices: tuple[str, ...] | None = None,
                       interval: tuple[float, float] | list[float] | None = None, tolerance: float = 0.0) -> tuple[bool, str]:
    """A "predict, then run" comparison: a word among `choices` against the measured word, or a number against the
    measured number (a match when it lies within the measurement's 95% `interval`, or within `tolerance`).
    Returns (matched, "you predicted ..., the cell measured ...") for a checker to follow with its explanation."""
    if choices is not None:
        if not isinstance(predicted, str) or predicted.strip().lower() not in choices:
            return False, f"predict one of {list(choices)} (a string); you wrote {predicted!r}."
        said = predicted.strip().lower()
        return said == measured, f"you predicted {said!r}; the cell measured {measured!r}."
    if isinstance(predicted, bool) or not isinstance(predicted, (int, float, np.number)):
        return False, f"predict a number; you wrote {predicted!r}."
    lo, hi = interval if interval is not None else (measured, measured)
    inside = lo - tolerance <= float(predicted) <= hi + tolerance
    where = "inside" if inside else ("below" if predicted < lo else "above")
    span = f" (95% interval [{lo:.3f}, {hi:.3f}])" if interval is not None else ""
    return inside, f"you predicted {float(predicted):.3f}; the cell measured {float(measured):.3f}{span}: your guess is {where} it."


# -- small helpers the chapters' checkers share ------------------------------------------------------------------------
def _close(a: float, b: float, tol: float = 1e-6) -> bool:
    return abs(float(a) - float(b)) <= tol



def _values_match(got: Any, want: Any, tol: float) -> bool:
    """One value against the recomputed one: numbers within `tol`, tuples element-wise, None only with None."""
    if want is None or got is None:
        return got is None and want is None
    if isinstance(want, tuple):
        return isinstance(got, (tuple, list)) and len(got) == len(want) and all(
            _values_match(g, w, tol) for g, w in zip(got, want))
    if isinstance(got, bool) or not isinstance(got, (int, float, np.number)):
        return False
    return _close(got, want, tol)


def _table_mismatch(answer: Any, expected: dict, shape: str, tol: float = 1e-6) -> str | None:
    """Why `answer` differs from the recomputed `{key: value}` table (extra keys allowed), or None when it matches."""
    if not isinstance(answer, dict):
        return f"the answer should be a dict {shape}; got a {type(answer).__name__}."
    missing = [k for k in expected if k not in answer]
    if missing:
        return f"keys missing: {missing}; the answer is a dict {shape}."
    for key, want in expected.items():
        if not _values_match(answer[key], want, tol):
            return f"the entry for {key!r} ({answer[key]!r}) is not what the recomputation gives."
    return None


def _fmt(table: dict) -> str:
    """A compact one-line view of a {key: number or tuple} table for feedback messages."""
    num = lambda x: str(x) if isinstance(x, (int, np.integer)) else f"{x:.3f}"  # noqa: E731
    show = lambda v: f"({', '.join(num(x) for x in v)})" if isinstance(v, tuple) else num(v)  # noqa: E731
    return ", ".join(f"{k}: {show(v)}" for k, v in table.items())


def _ann_score(index: Any, vs: Any, **search: Any) -> dict[str, float]:
    """recall@10 (against exact search) and distances/query of one search of the test queries."""
    from ..ann import score

    return score(index.search_vectors(vs.test_queries, vs.test_qids, k=10, **search), vs.truth)
