"""Every benchmark and study of the course, each once, above the library: `dsilab bench NAME` runs one.

The library (`dsilab.*` outside this package) never imports from here. Each study trains its rows with the one DSI
pipeline (`dsilab.recipes.train_dsi`, through `dsi.dsi_variant` where a row is read on a test split), runs rows side
by side with the one process pool (`runner.in_processes`), and saves with the one writer (`runner.write_result`): a JSON
with the command, versions, seed, machine, timings and metrics, written only under `--out`.
"""
from __future__ import annotations

import importlib
from typing import Any, Callable

from ..core import DsilabError
from ..data import load_collection

#: `dsilab bench NAME` -> the function that runs it ("module:function" in this package, imported when run).
BENCHMARKS: dict[str, str] = {
    "baselines": "baselines:bench_baselines",
    "dsi": "dsi:bench_dsi",
    "efficiency": "efficiency:bench_efficiency",
    "qg": "qg:bench_qg",
    "ann": "ann:bench_ann",
    "augment": "augment:benchmark",
    "dgi": "dgi:benchmark",
    "all": "all_methods:bench_all",
    "incremental": "incremental:bench_incremental",
    "throughput": "scaling:bench_throughput",
    "scaling": "scaling:bench_scaling",
}


def benchmark(name: str) -> Callable[..., dict[str, Any]]:
    """The function behind `dsilab bench NAME`."""
    if name not in BENCHMARKS:
        raise DsilabError(f"unknown benchmark {name!r}; choose from {sorted(BENCHMARKS)}.")
    module, _, fn = BENCHMARKS[name].partition(":")
    return getattr(importlib.import_module(f"{__name__}.{module}"), fn)


def run_benchmark(name: str, collection: str = "lab", split: str = "test", seed: int = 0, out_dir: str = "build/bench",
                  update_docs: bool = False) -> dict[str, Any]:
    """Run one named benchmark, print its table and write its JSON (and plot) under `out_dir`; with `update_docs`,
    also rewrite its section of docs/benchmarks.md (what `make bench` asks for)."""
    from .runner import BENCH_DOC, format_table, write_result

    import inspect

    fn = benchmark(name)
    where = {"out_dir": out_dir} if "out_dir" in inspect.signature(fn).parameters else {}  # bench all writes under it too
    result = fn(load_collection(collection), split=split, seed=seed, **where)
    print(format_table(result["results"]))
    path = write_result(result, out_dir, doc=BENCH_DOC if update_docs else None)
    if name == "ann":  # the recall-vs-cost plot beside the JSON
        from .ann import save_plots

        print(f"wrote {save_plots(result, path.with_suffix('.png'))}")
    if result.get("failed"):  # the finished rows are written; the failures must still fail the command
        raise DsilabError(f"{len(result['failed'])} variant(s) failed (rows written to {path}): {result['failed']}")
    print(f"wrote {path}" + (f" and updated {BENCH_DOC}" if update_docs else ""))
    return result


__all__ = ["BENCHMARKS", "benchmark", "run_benchmark"]
