"""What every study shares: the machine and versions a result records, the one result writer (JSON, and the
docs section only when asked), the table printer, partial rows on disk, and the process pool that trains rows side by
side (a fresh process each: its own peak memory, GPU round-robin).
"""
from __future__ import annotations

import json
import os
import platform
import re
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
import psutil
from ..course import ROOT


BENCH_DOC = ROOT / "docs" / "benchmarks.md"




def environment() -> dict[str, Any]:
    """Machine and library versions, so a number can be reproduced or explained."""
    import importlib.metadata as md

    versions = {}
    for pkg in ("dsilab", "torch", "transformers", "sentence-transformers", "rank-bm25", "ir-measures", "numpy", "faiss-cpu"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": _command(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB RAM, {platform.system()}",
        "accelerator": _accelerator(),
        "python": platform.python_version(),
        "versions": versions,
    }


def header(benchmark: str, collection: Any, split: str, seed: int, n_queries: int,
            environment_: dict[str, Any] | None = None) -> dict[str, Any]:
    """What every result JSON opens with: the study, the collection (a `Collection`, or a name) and its size, the split
    and its query count, the seed, and the machine and versions (`environment()`); a study adds its own keys."""
    name, n_docs = (collection, None) if isinstance(collection, str) else (collection.name, len(collection.docs))
    return {"benchmark": benchmark, "collection": name, "split": split, **({"n_docs": n_docs} if n_docs else {}),
            "n_queries": n_queries, "seed": seed, "environment": environment_ or environment()}


def _command() -> str:
    """The command line as a reader would type it: `dsilab ...` for the console script and `python -m dsilab`."""
    if sys.argv and Path(sys.argv[0]).name in ("dsilab", "__main__.py"):
        return " ".join(["dsilab", *sys.argv[1:]])
    return " ".join(sys.argv)


def _accelerator() -> str:
    """"cpu" or the GPU's name: trained rows reproduce exactly only on the same kind of machine."""
    import torch

    return f"cuda: {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "cpu"


def _cell(v: Any) -> str:
    if isinstance(v, list) and len(v) == 2:
        return f"[{v[0]:.3f}, {v[1]:.3f}]"
    if v is None:
        return "-"
    if isinstance(v, float) and 0 < abs(v) < 0.001:
        return f"{v:.0e}"  # learning rates and the like
    return f"{v:.3f}" if isinstance(v, float) and v < 10 else str(v)


def format_table(rows: dict[str, dict[str, Any]]) -> str:
    """A Markdown table, one row per method, one column per metric/cost."""
    seen = list(dict.fromkeys(c for row in rows.values() for c in row))  # every column, in order of first use
    cols = [x for c in seen if not c.endswith(" CI") for x in (c, f"{c} CI") if x in seen]  # an interval after its metric
    lines = ["| method | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, row in rows.items():
        lines.append(f"| {name} | " + " | ".join(_cell(row.get(c, "-")) for c in cols) + " |")
    return "\n".join(lines)


def append_partial(row: dict[str, Any], path: str | Path | None) -> None:
    """Append a finished row as one JSON line to `path` (a study's --partial FILE), if given: on a device lease that
    may end before the whole benchmark does, every finished row is already on disk (in one file: a lease returns
    only a few files). Rows of processes side by side are appended under a lock."""
    if not path:
        return
    import fcntl

    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.write(json.dumps(row) + "\n")


def write_result(result: dict[str, Any], out_dir: str | Path = "build/bench", doc: Path | None = None) -> Path:
    """Save the JSON in `out_dir`; the docs section is rewritten only for an explicit `doc`, or when `out_dir` is
    dsilab/results (what `make bench` passes): a user's `dsilab bench ...` never edits the repository's docs."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{result['benchmark']}-{result['collection']}")
    path = out / f"{slug}.json"
    path.write_text(json.dumps(result, indent=2))
    if doc is None:  # docs/benchmarks.md changes only when asked (`make bench`: --update-docs)
        return path
    env = result["environment"]
    section = (
        f"### {result['benchmark']} on {result['collection']} ({result['split']} split: "
        f"{result['n_queries']} queries, {result['n_docs']} docs)\n\n"
        f"{format_table(result['results'])}\n\n"
        + (f"Setting: {result['setting']}.\n\n" if isinstance(result.get("setting"), str) else "")
        + "".join(f"{note}\n\n" for note in result.get("notes", []))
        + f"Command: `{env['command']}` · seed {result['seed']} · {env['machine']} · {env['date']} · "
        + ", ".join(f"{k} {v}" for k, v in env["versions"].items())
        + "\n"
    )
    update_doc_section(doc or BENCH_DOC, slug, section)
    return path


def update_doc_section(doc: Path, key: str, body: str) -> None:
    """Replace (or append) the block between `<!-- bench:key -->` markers, leaving the rest alone."""
    begin, end = f"<!-- bench:{key} -->", f"<!-- /bench:{key} -->"
    text = doc.read_text(encoding="utf-8") if doc.is_file() else "# Benchmarks\n"
    block = f"{begin}\n{body}{end}"
    if begin in text and end in text:
        text = text[: text.index(begin)] + block + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(text, encoding="utf-8")


def log_evals(row: str = "") -> None:
    """Show the training loop's INFO lines (every evaluation, where setup time goes) on stderr, each named by `row`;
    `in_processes` passes the setting on to the rows it starts."""
    import logging

    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(f"[{row}] %(message)s" if row else "%(message)s"))
    log = logging.getLogger("dsilab")
    log.handlers[:] = [handler]
    log.setLevel(logging.INFO)


def _start_row(fn: Any, name: Any, logged: bool, *args: Any, **kw: Any) -> Any:
    """A row in its fresh process: the parent's --log-evals (`logged`), its lines named by the row."""
    if logged:
        log_evals(str(name))
    return fn(*args, **kw)


#: What the process that starts the rows imports once (torch, transformers and the training code: ~5 s on 2 cores).
PRELOAD = ["torch", "transformers", "dsilab.recipes", "dsilab.experiments.dsi"]


def _fresh_processes() -> Any:
    """Where rows start: a fork server that has imported PRELOAD, so that each row is a fresh process of its own
    (its own memory, seeds and threads) without paying the imports again; a spawned interpreter where there is no
    fork server (Windows). The server neither starts threads nor touches CUDA before it forks."""
    import multiprocessing as mp

    if "forkserver" not in mp.get_all_start_methods():
        return mp.get_context("spawn")
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    return ctx


def in_processes(fn: Any, calls: dict[Any, tuple], jobs: int | None = None) -> dict[Any, dict[str, Any]]:
    """name -> fn(*args, threads=, gpu=) for every name -> args of `calls`, each in a fresh process (`_fresh_processes`), `jobs`
    at a time (a study's --jobs; default 1), round-robin over the GPUs in env DSILAB_GPUS (e.g. "0,1";
    default: every visible one), with env DSILAB_THREADS (default: the cores shared out) CPU threads each.
    A call that raises gives {"error": ...}: the others' rows stay."""
    from concurrent.futures import ProcessPoolExecutor

    jobs = jobs or 1
    threads = int(os.environ.get("DSILAB_THREADS", 0)) or (max(1, (os.cpu_count() or 1) // jobs) if jobs > 1 else None)
    gpus = os.environ.get("DSILAB_GPUS")
    if gpus is None:
        import torch

        gpus = ",".join(str(i) for i in range(torch.cuda.device_count()))
    gpu_list = gpus.split(",") if gpus else [None]
    out: dict[str, dict[str, Any]] = {}
    with ProcessPoolExecutor(jobs, mp_context=_fresh_processes(), max_tasks_per_child=1) as pool:
        import logging

        logged = logging.getLogger("dsilab").isEnabledFor(logging.INFO)
        futures = {name: pool.submit(_start_row, fn, name, logged, *args, threads=threads, gpu=gpu_list[i % len(gpu_list)])
                   for i, (name, args) in enumerate(calls.items())}
        for name, fut in futures.items():
            try:
                out[name] = fut.result()
            except Exception as e:  # noqa: BLE001  (kept in the JSON as the row's error; the others stay)
                out[name] = {"error": f"{type(e).__name__}: {e}"}
    return out
