"""Merge what device commands of `dgi.sh` brought back into dsilab/results/dgi-<collection>.json (one file per
collection, every seed) and their tables in docs/benchmarks.md.

    python benchmarks/gpu_dsi/collect_dgi.py DIR [DIR ...] [scifact=../shared/data/scifact]

Each DIR holds <part>/dgi-<collection>.json (a finished `dsilab bench dgi`); parts of one collection (seeds run in
separate commands) are merged with `dsilab.experiments.dgi.merge`, which refuses parts of different queries or recipes.
"""
from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

from dsilab.experiments.runner import BENCH_DOC, update_doc_section, write_result
from dsilab.results import RESULTS_DIR
from dsilab.experiments.dgi import baseline_bias, goal, merge, results_rows, save


def collect(dirs: list[Path], specs: dict[str, str]) -> list[Path]:
    """specs: result collection name -> load_collection spec (e.g. scifact=../shared/data/scifact), for the BM25 and
    dense popularity bias of parts that lack it (runs made before bench_dgi recorded it)."""
    parts: dict[str, list[dict]] = defaultdict(list)
    for d in dirs:
        for f in sorted(d.glob("*/dgi-*.json")):
            r = json.loads(f.read_text())
            parts[r["collection"]].append(r)
    written, goals = [], []
    for name, results in parts.items():
        merged = merge(results)
        if "baseline pop bias" not in merged:
            from dsilab import load_collection

            merged["baseline pop bias"] = baseline_bias(load_collection(specs.get(name, name.split("-zipf")[0])),
                                                        merged["split"], merged["zipf"])
        merged["results"] = results_rows(merged)
        merged["environment"] = {**results[0]["environment"], "command": "bash benchmarks/gpu_dsi/run.sh bash benchmarks/gpu_dsi/dgi.sh 1 (and 2)"}
        merged["seed"] = min(merged["seeds"])
        merged["failed"] = [f"{r['variant']} · seed {r['seed']}: {r['error']}" for r in merged["rows"] if "error" in r]
        path = write_result(merged, RESULTS_DIR)
        save(merged, path)  # the per-query lists one row per line
        written.append(path)
        goals.append(goal(merged))
        print(f"{name}: {len(merged['rows'])} rows, seeds {merged['seeds']} -> {written[-1]}")
    update_doc_section(BENCH_DOC, "dgi-tail", goal_section(goals))
    return written


def goal_section(goals: list[dict]) -> str:
    """The docs paragraph: DGI against DSI-semantic on the tail and the head of each collection, paired."""
    lines = ["**DGI against DSI-semantic on the tail**: tail (B3+B4) and head (B0) Hits@10, the paired difference "
             "DGI − DSI-semantic with its 95% interval; DGI and DSI-semantic on the same backbone and recipe, "
             "mean over 3 seeds:", ""]
    for g in goals:
        lines.append(f"- {g['collection']}: tail Δ {g['tail Δ']:+.3f} {g['tail Δ CI']}, head Δ {g['head Δ']:+.3f} "
                     f"{g['head Δ CI']}")
    return "\n".join(lines) + "\n\nThe ablations (docs tables above, notebook 09) say how much of it DGI's training switches give.\n"


if __name__ == "__main__":
    args = sys.argv[1:]
    collect([Path(a) for a in args if "=" not in a], dict(a.split("=", 1) for a in args if "=" in a))
