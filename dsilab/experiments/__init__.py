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

#: `dsilab bench NAME` -> the function that runs it ("module:function" in this package, imported when run). Its keyword
#: parameters (but `collection` and `out_dir`) are the flags of `dsilab bench NAME` (`flags.bench_parser`).
BENCHMARKS: dict[str, str] = {
    "baselines": "baselines:bench_baselines",
    "dsi": "dsi:benchmark",
    "efficiency": "efficiency:bench_efficiency",
    "qg": "qg:bench_qg",
    "ann": "ann:bench_ann",
    "augment": "augment:benchmark",
    "dgi": "dgi:benchmark",
    "all": "all_methods:bench_all",
    "incremental": "incremental:benchmark",
    "throughput": "scaling:bench_throughput",
    "scaling": "scaling:bench_scaling",
    "train": "train_time:bench_train",
}


def benchmark(name: str) -> Callable[..., dict[str, Any]]:
    """The function behind `dsilab bench NAME`."""
    if name not in BENCHMARKS:
        raise DsilabError(f"unknown benchmark {name!r}; choose from {sorted(BENCHMARKS)}.")
    module, _, fn = BENCHMARKS[name].partition(":")
    return getattr(importlib.import_module(f"{__name__}.{module}"), fn)


def bench_parser(name: str) -> Any:
    """The argparse parser of `dsilab bench NAME`: exactly the flags that benchmark honours."""
    from .flags import bench_parser as build

    return build(name, benchmark(name))


def run_benchmark(name: str, collection: str = "lab", out_dir: str = "build/bench", update_docs: bool = False,
                  **options: Any) -> dict[str, Any]:
    """Run one named benchmark with `options` (its flags, e.g. split="test", seed=0), print its table and write its
    JSON (and plot) under `out_dir`; with `update_docs`, also rewrite its section of docs/benchmarks.md (what
    `make bench` asks for)."""
    from .runner import BENCH_DOC, format_table, write_result

    import inspect

    fn = benchmark(name)
    params = inspect.signature(fn).parameters
    unknown = sorted(set(options) - set(params) - {"collection", "out_dir"})
    if unknown:
        raise DsilabError(f"bench {name} takes no option {unknown}; it takes {sorted(set(params) - {'collection', 'out_dir'})} "
                          f"(`dsilab bench {name} --help`).")
    where = {"out_dir": out_dir} if "out_dir" in params else {}  # bench all and bench train write under it too
    result = fn(load_collection(collection), **options, **where)
    print(format_table(result["results"]))
    path = write_result(result, out_dir, doc=BENCH_DOC if update_docs else None)
    if name == "ann":  # the recall-vs-cost plot beside the JSON
        from .ann import save_plots

        print(f"wrote {save_plots(result, path.with_suffix('.png'))}")
    if result.get("failed"):  # the finished rows are written; the failures must still fail the command
        raise DsilabError(f"{len(result['failed'])} variant(s) failed (rows written to {path}): {result['failed']}")
    print(f"wrote {path}" + (f" and updated {BENCH_DOC}" if update_docs else ""))
    return result


__all__ = ["BENCHMARKS", "bench_parser", "benchmark", "run_benchmark"]
