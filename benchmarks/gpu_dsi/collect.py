"""Merge what device commands of `scaling.sh` brought back into dsilab/results/scaling-scifact.json.

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
EVAL = re.compile(r"^\[(?P<name>[^\]]+)\] step (?P<step>\d+): memo (?P<memo>[\d.]+), dev Hits@1 (?P<dev>[\d.]+)$")


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
                        {"step": int(m["step"]), "memo Hits@1": float(m["memo"]), "dev Hits@1": float(m["dev"])})
            for name, history in evals.items():
                if name not in result["results"]:
                    unfinished[name] = {"source": f"{log.parent.name}/log.txt", "history": history}
    result["studies"] = sorted({n.split(":")[0] for n in [*result["results"], *unfinished]})
    return result


if __name__ == "__main__":
    out = collect([Path(p) for p in sys.argv[1:]])
    RESULT.write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")
    print(f"{len(out['results'])} rows, {len(out['unfinished'])} unfinished -> {RESULT}")
