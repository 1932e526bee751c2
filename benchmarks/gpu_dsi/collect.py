"""Merge what device commands of `scaling.sh` brought back into dsilab/results/scaling-scifact.json (and its table in
docs/benchmarks.md).

    python benchmarks/gpu_dsi/collect.py DIR [DIR ...]

Each DIR holds <part>/rows.jsonl (finished rows, one JSON line each) and <part>/log.txt. Finished rows join the
results (a newer row replaces an older one of the same name); rows a command's time limit cut short are kept under
"unfinished" with the evaluations their log printed (`[row] step N: memo M, dev Hits@1 H`), never as results.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

RESULT = Path(__file__).resolve().parents[2] / "dsilab" / "results" / "scaling-scifact.json"
EVAL = re.compile(r"^\[(?P<name>[^\]]+)\] step (?P<step>\d+): memo (?P<memo>[\d.]+), dev Hits@1 (?P<dev>[\d.]+)"
                  r"(?:, train loss (?P<loss>[\d.naif]+), grad norm max (?P<grad>[\d.e+naif-]+))?$")


def collect(dirs: list[Path]) -> dict:
    result = json.loads(RESULT.read_text())
    unfinished = result.setdefault("unfinished", {})
    for d in dirs:
        for rows in sorted(d.glob("*/rows.jsonl")):
            for line in rows.read_text().splitlines():
                row = json.loads(line)
                name = row.pop("name")
                result["results"][name] = row
                unfinished.pop(name, None)
        for log in sorted(d.glob("*/log.txt")):
            evals: dict[str, list[dict]] = {}
            for line in log.read_text().splitlines():
                m = EVAL.match(line.strip())
                if m:
                    evals.setdefault(m["name"], []).append(
                        {"step": int(m["step"]), "memo Hits@1": float(m["memo"]), "dev Hits@1": float(m["dev"]),
                         **({"train loss": float(m["loss"]), "grad norm max": float(m["grad"])} if m["loss"] else {})})
            for name, history in evals.items():
                if name not in result["results"]:
                    unfinished[name] = {"source": f"{log.parent.name}/log.txt", "history": history}
    # rows no study of dsilab.experiments.scaling defines any more (e.g. settings replaced) leave: each row has its command
    from dsilab.experiments.scaling import STUDIES

    defined = {f"{study}: {label.format(real=result['collection'])}" for study, rows in STUDIES.items() for label in rows}
    for group in (result["results"], unfinished):
        for name in [n for n in group if n not in defined]:
            print(f"dropped (no study defines it now): {name}")
            del group[name]
    result["studies"] = sorted({n.split(":")[0] for n in [*result["results"], *unfinished]})
    return result


#: the columns of the docs table (the JSON keeps every field, the evaluation histories included)
COLUMNS = ("n_docs", "Hits@1", "Hits@1 CI", "chance Hits@1", "Hits@10", "Hits@10 CI", "memo Hits@1", "steps",
           "steps_to_memorise", "seconds_to_memorise", "stopped", "best dev Hits@1", "train_s")


def doc_section(result: dict) -> str:
    """docs/benchmarks.md's scaling section: one row per study row, the notes, the command."""
    from dsilab.experiments.runner import format_table

    rows = {name: {c: row[c] for c in COLUMNS if c in row} for name, row in sorted(result["results"].items())}
    return (f"### scaling on {result['collection']} (SciFact rows: {result['n_queries']} test queries, {result['n_docs']} docs; "
            "synthetic rows: their own corpora and test queries)\n\n" + format_table(rows) + "\n\n"
            + "".join(f"{note}\n\n" for note in result["notes"])
            + "Commands: `bash benchmarks/gpu_dsi/run.sh bash benchmarks/gpu_dsi/scaling.sh A|B|C|D|E|F`, then "
            "`python benchmarks/gpu_dsi/collect.py DIRS` (dsilab/results/scaling-scifact.json)\n")


if __name__ == "__main__":
    from dsilab.experiments.runner import BENCH_DOC, update_doc_section

    out = collect([Path(p) for p in sys.argv[1:]])
    RESULT.write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")
    update_doc_section(BENCH_DOC, "scaling-scifact", doc_section(out))
    print(f"{len(out['results'])} rows, {len(out['unfinished'])} unfinished -> {RESULT} and {BENCH_DOC}")
