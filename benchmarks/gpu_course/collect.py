"""Merge the per-notebook reports of `benchmarks/gpu_course/run.sh course` into one committed JSON.

    python benchmarks/gpu_course/collect.py OUT_JSON MACHINE DIR [DIR ...]

Each DIR holds what one device call returned (course_report_<NN>.json, log_<NN>.txt; a `collect` call's
collected.tgz unpacked), oldest first: a later
call's attempt at a notebook replaces an earlier one. A notebook with no report (stopped at NB_TIMEOUT) is recorded
as such, with the last lines of its log, so the table says what was not measured.
"""
from __future__ import annotations

import datetime
import json
import sys
from pathlib import Path


def collect(dirs: list[Path]) -> tuple[dict, list[dict]]:
    settings, rows = {}, {}  # rows: notebook prefix ("07") -> its row
    for d in dirs:
        names = {p.stem.removeprefix("log_") for p in d.glob("log_*.txt")}
        names |= {p.stem.removeprefix("course_report_") for p in d.glob("course_report_*.json")}
        for nb in sorted(n for n in names if n.isdigit()):  # notebooks only (`dgi-row` is a bench all row)
            report, log = d / f"course_report_{nb}.json", d / f"log_{nb}.txt"
            if report.is_file():
                r = json.loads(report.read_text())
                settings = {"fast": r["fast"], "collection": r["collection"]}
                rows[nb] = r["notebooks"][0]
            else:
                rows[nb] = {"notebook": nb, "status": "not finished", "seconds": None, "peak_rss_mb": None,
                            "error": " | ".join(log.read_text().strip().splitlines()[-2:])[-300:]}
    return settings, [rows[k] for k in sorted(rows)]


def main() -> None:
    out, machine, *dirs = sys.argv[1:]
    settings, rows = collect([Path(d) for d in dirs])
    report = {"machine": machine, "date": datetime.date.today().isoformat(),
              "command": "bash benchmarks/gpu_course/run.sh course --full --collection /tmp/gpu/data/scifact NN ... "
                         "(one notebook per GPU at a time)",
              **settings, "notebooks": rows,
              "total_s": round(sum(r["seconds"] or 0 for r in rows), 1)}
    Path(out).write_text(json.dumps(report, indent=2) + "\n")
    for r in rows:
        print(f"{r['notebook']:34s} {r['status']:13s} {r['seconds'] or '-':>8} s {r['peak_rss_mb'] or '-':>8} MB  {r['error'][:80]}")


if __name__ == "__main__":
    main()
