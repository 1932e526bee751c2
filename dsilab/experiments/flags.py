"""The flags of `dsilab bench NAME`, derived from the keyword parameters of the benchmark's function: its type gives
a flag its parsing, its default the default, and the `Args:` block of the function's docstring the help text. A flag
the function does not take is an "unrecognized arguments" error, never ignored.

Plain argparse rather than jsonargparse (which `dsilab train` uses for the dict and tuple fields of `Recipe`): here
every parameter is a number, a string, a list of them or a recipe override, and jsonargparse reads help texts only
through docstring-parser (not a dependency), spells flags with underscores (`--time_limit_s`) and takes a list only
as `[0,1]`, where `--seeds 0 1 2` is what a shell user types. Recipe overrides are still checked by jsonargparse,
against `dsilab.recipes.Recipe` itself (`recipe_changes`).
"""
from __future__ import annotations

import argparse
import inspect
import json
import re
import types
import typing
from pathlib import Path
from typing import Any, Callable

#: Help of the parameters many studies share (a function's own `Args:` entry wins).
COMMON_HELP = {
    "split": "the query split every row is read on once",
    "seed": "the seed of every random choice (docids, sampling, initialisation)",
    "jobs": "rows trained side by side, each in a fresh process (e.g. on a GPU); CPU threads and GPUs are shared out "
            "among them (env DSILAB_THREADS, DSILAB_GPUS)",
    "time_limit_s": "a wall-clock cap on each row's training in seconds (Recipe.time_limit_s, e.g. a GPU lease); "
                    "a row that hits it says so",
    "partial": "a JSON-lines file that receives each row as soon as it is done (a lease may end before the study)",
    "recipe": "changes to the default Recipe for every row: JSON (e.g. '{\"lr\": 3e-4}') or a JSON file; "
              "field names and types are those of dsilab.recipes.Recipe (`dsilab train --help`)",
}

#: Metavariables where the upper-cased name says less.
METAVARS = {"partial": "FILE", "add_rows": "FILE", "time_limit_s": "SECONDS", "n_values": "N", "jobs": "N"}

#: Parameters filled by `dsilab bench` itself, never flags of their own.
NOT_FLAGS = ("collection", "out_dir")


def recipe_changes(text: str) -> dict[str, Any]:
    """A dict of `Recipe` fields from JSON text or a JSON file, checked against `Recipe` (unknown field, wrong type or
    a value `Recipe` refuses: an argparse error naming it); the values come back typed (a list for a tuple field
    becomes a tuple), and only the fields given, so that a study lays them over its own recipe."""
    path = Path(text)
    if not text.lstrip().startswith("{") and not path.is_file():
        raise argparse.ArgumentTypeError(f"{text!r} is neither a JSON object nor a file; e.g. '{{\"lr\": 3e-4}}' or "
                                         "recipe.json")
    try:
        changes = json.loads(text if text.lstrip().startswith("{") else path.read_text())
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"{text!r}: not valid JSON ({e})") from None
    if not isinstance(changes, dict):
        raise argparse.ArgumentTypeError(f"{text!r}: a recipe is a JSON object of Recipe fields, not {type(changes).__name__}")
    from dataclasses import fields

    from jsonargparse import ArgumentParser

    from ..core import DsilabError
    from ..recipes import Recipe

    unknown = sorted(set(changes) - {f.name for f in fields(Recipe)})
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown Recipe field(s) {unknown}; the fields are those of "
                                         "`dsilab train --help` (dsilab.recipes.Recipe)")
    check = ArgumentParser(exit_on_error=False)
    check.add_class_arguments(Recipe, nested_key=None)
    try:
        parsed = check.parse_object(changes)
        Recipe(**{f: parsed[f] for f in changes})  # Recipe's own checks (e.g. docids)
    except (argparse.ArgumentError, DsilabError) as e:
        message = " ".join(str(e).split())
        raise argparse.ArgumentTypeError(f"not a valid Recipe override: {message} (fields: `dsilab train --help`)") from None
    return {f: parsed[f] for f in changes}


def _helps(fn: Callable[..., Any]) -> dict[str, str]:
    """name -> text of the `Args:` block of `fn`'s docstring (Google style: `name: text`, continued on indented lines)."""
    doc = inspect.getdoc(fn) or ""
    block = doc.split("Args:", 1)[1] if "Args:" in doc else ""
    out: dict[str, str] = {}
    for line in block.splitlines()[1:]:
        entry = re.match(r"^ {4}(\w+): (.*)$", line)
        if entry:
            out[entry.group(1)] = entry.group(2).strip()
        elif line.startswith(" " * 5) and out:
            out[list(out)[-1]] += " " + line.strip()
        elif out:  # a blank or unindented line ends the block
            break
    return out


def description(fn: Callable[..., Any]) -> str:
    """The text of `fn`'s docstring before its `Args:` block, without a leading "`dsilab bench NAME`: "."""
    return re.sub(r"^`dsilab bench \w+`: ", "", (inspect.getdoc(fn) or "").split("Args:", 1)[0].strip())


def summary(fn: Callable[..., Any], width: int = 100) -> str:
    """The first sentence of `fn`'s docstring on one line, without a leading "`dsilab bench NAME`: "."""
    text = " ".join(description(fn).split("\n\n")[0].split())
    text = text.split(". ")[0].rstrip(".")
    return text if len(text) <= width else text[: width - 3].rsplit(" ", 1)[0] + " ..."


def _flag_kwargs(name: str, hint: Any) -> dict[str, Any]:
    """argparse keywords for one parameter's type (`X | None` as X; None stays the default)."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and len(args) == 1:
        hint = args[0]
    origin, inner = typing.get_origin(hint), typing.get_args(hint)
    if name == "recipe" and (hint is dict or origin is dict):
        return {"type": recipe_changes, "metavar": "JSON|FILE"}
    if hint is bool:
        return {"action": argparse.BooleanOptionalAction}
    if hint in (int, float, str):
        return {"type": hint, "metavar": METAVARS.get(name, name.upper())}
    if origin is typing.Literal:
        return {"type": type(inner[0]), "choices": list(inner)}
    if origin in (list, tuple) and inner and (origin is list or inner[1:] in ((), (Ellipsis,))):
        item = _flag_kwargs(name, inner[0])
        if "action" in item or item.get("type") is recipe_changes:
            raise TypeError(f"{name}: a list of {inner[0]} has no flag form")
        return {**item, "nargs": "+"}
    raise TypeError(f"{name}: type {hint} has no flag form (use numbers, strings, Literal, lists of them, or a dict "
                    "named `recipe`)")


def add_flags(parser: argparse.ArgumentParser, fn: Callable[..., Any], skip: tuple[str, ...] = NOT_FLAGS) -> list[str]:
    """Add one flag per keyword parameter of `fn` (but `skip`) to `parser`; returns the parameter names."""
    hints = typing.get_type_hints(fn)
    helps = {**COMMON_HELP, **_helps(fn)}
    names = []
    for p in inspect.signature(fn).parameters.values():
        if p.name in skip or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if p.default is p.empty:
            raise TypeError(f"{fn.__qualname__}: parameter {p.name!r} has no default; a benchmark's flags are optional")
        if p.name not in helps:
            raise TypeError(f"{fn.__qualname__}: parameter {p.name!r} has no help text (its docstring's `Args:` block)")
        kw = _flag_kwargs(p.name, hints.get(p.name, type(p.default)))
        default = p.default
        shown = " ".join(map(str, default)) if isinstance(default, (list, tuple)) else default
        text = helps[p.name] + ("" if default is None or "action" in kw else f" (default: {shown})")
        text = text.replace("%", "%%")  # argparse formats help with %
        parser.add_argument(f"--{p.name.replace('_', '-')}", dest=p.name, default=default, help=text, **kw)
        names.append(p.name)
    return names


def bench_parser(name: str, fn: Callable[..., Any]) -> argparse.ArgumentParser:
    """The parser of `dsilab bench NAME`: --collection, the function's own flags, then --out and --update-docs."""
    parser = argparse.ArgumentParser(prog=f"dsilab bench {name}", description=description(fn), allow_abbrev=False,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--collection", default="lab", help='"lab", "synthetic", "msmarco-v1.1" or a BEIR folder '
                        "(default: lab)")
    add_flags(parser, fn)
    parser.add_argument("--out", default="build/bench", help="folder for the JSON (and plot); nothing else is "
                        "written (default: build/bench)")
    parser.add_argument("--update-docs", action="store_true", help="also rewrite this benchmark's section of "
                        "docs/benchmarks.md (what `make bench` does)")
    parser.add_argument("--log-evals", action="store_true", help="print every dev evaluation of every training run "
                        "as it happens (step, dev Hits@1, memorisation, loss): the progress of a long run in its log")
    return parser
