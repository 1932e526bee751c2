"""Merge what `gap_runs.sh` brought back into dsilab/results and write their sections of docs/benchmarks.md.

    python benchmarks/gpu_course/gap_collect.py DIR "MACHINE"   # DIR: an untarred collected.tgz; MACHINE: where it ran

- dsi0-dsi-scifact.json joins dsilab/results/dsi-gap-scifact.json as the run "seed 0, lr 3e-4", dsi1-dsi-scifact.json
  (`gap_runs.sh prefix`) as "seed 0, lr 3e-4, prefix loss";
- qg1-qg-scifact.json becomes dsilab/results/qg-scifact-filter1.json (the committed qg-scifact.json is the unfiltered run);
- inc0-incremental-scifact.json becomes dsilab/results/incremental-scifact.json.
Each docs section is rendered from the JSON alone (`--docs-only` re-renders without merging).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from dsilab.experiments.runner import BENCH_DOC, format_table, update_doc_section  # noqa: E402

RESULTS = ROOT / "dsilab" / "results"
FT = "Dense (MiniLM fine-tuned on train queries)"
#: Each merged run, from the file `gap_runs.sh` brought back.
RUNS = {"dsi0-dsi-scifact.json": "seed 0, lr 3e-4", "dsi1-dsi-scifact.json": "seed 0, lr 3e-4, prefix loss"}


GAP_NOTES = [
    "Runs \"seed 0\" and \"seed 1\" train at the default lr 1e-3. There the two span-query rows diverged: "
    "memorisation rose to 0.10 and 0.62, then fell to 0.00 while the largest gradient norm rose to about 10^6 "
    "and 3,000 (their `history`); the run's time limit then stopped them (their `stopped` says \"time limit\") and "
    "kept their best checkpoints, which had not memorised, so their numbers are not a verdict on the technique.",
    "Run \"seed 0, lr 3e-4\" trains the span-query rows again at lr 3e-4 (evaluations every 1,000 steps) beside "
    "their control, the plain semantic row at the same lr: every row memorised (0.97 to 1.00 of its documents "
    "read back; the span-only row then stopped at the time limit while its dev Hits@1 still moved, so it had not "
    "converged by the recipe's rule) and the largest gradient norm stayed below 6 after the first 1,000 steps (18 "
    "during warm-up).",
    "Run \"seed 0, lr 3e-4, prefix loss\" trains the same rows with a longer time limit, beside the rows that also "
    "learn the teacher's top 10 of each span query at every docid prefix (`dsilab.distill`; list 10, weight 1, "
    "temperature 0.05: defaults, not tuned on dev).",
]


def _diff(d: dict) -> str:
    """A paired difference and its interval."""
    return f"{d['difference']:+.3f} [{d['CI'][0]:+.3f}, {d['CI'][1]:+.3f}]"


def _pair(d: dict, converged: bool = True) -> str:
    """A paired difference, its interval and verdict; "not converged" in place of the verdict where a row had not."""
    return f"{_diff(d)} {d['verdict'] if converged else 'not converged'}"


def _converged(res: dict, name: str) -> bool:
    """A row compared by the course: converged, or a baseline (which trains nothing)."""
    return res["results"][name].get("stopped") in (None, "converged")


def merge(src: Path, machine: str) -> None:
    """What `src` holds joins dsilab/results, each run and result labelled with the `machine` it ran on."""
    gap_path = RESULTS / "dsi-gap-scifact.json"
    gap = json.loads(gap_path.read_text())
    for name, run_name in RUNS.items():
        if (src / name).is_file():
            gap["runs"][run_name] = {**json.loads((src / name).read_text()), "machine": machine}
    gap["command"] = (gap["command"].split(" · ")[0] + " · runs \"seed 0, lr 3e-4\" and \"seed 0, lr 3e-4, prefix "
                      "loss\": benchmarks/gpu_course/gap_runs.sh first and prefix (each command in its run's environment)")
    gap["notes"] = GAP_NOTES
    gap_path.write_text(json.dumps(gap, indent=2) + "\n")
    for name, out in (("qg1-qg-scifact.json", "qg-scifact-filter1.json"),
                      ("inc0-incremental-scifact.json", "incremental-scifact.json")):
        if (src / name).is_file():
            res = {**json.loads((src / name).read_text()), "machine": machine}
            (RESULTS / out).write_text(json.dumps(res, indent=2) + "\n")


def _gap_section(gap: dict) -> str:
    cols = ("Hits@1", "Hits@1 CI", "Hits@10", "Hits@10 CI", "seen Hits@10", "unseen Hits@10", "unseen Hits@10 CI",
            "train_s", "memo Hits@1", "steps", "stopped")
    parts = [f"### dsi-gap on scifact (test split: {gap['n_queries']} queries, {gap['n_docs']} docs; seeds 0 and 1)\n"]
    for name, res in gap["runs"].items():
        g = res["groups"]
        lr = res["tried"][next(iter(res["tried"]))].get("lr", 1e-3)
        parts.append(f"**{name}** ({g['seen']} seen / {g['unseen']} unseen test queries; lr {lr:.0e})\n".replace("e-0", "e-"))
        rows = {}
        for row, r in res["results"].items():
            ft = res.get("paired", {}).get(f"{row} minus {FT}")
            rows[row] = {**{c: r.get(c) for c in cols},
                         "plan weight": r["plan"]["weight"] if isinstance(r.get("plan"), dict) else None,
                         "all: minus fine-tuned dense": _diff(ft["all"]) if ft else None,
                         "unseen: minus fine-tuned dense": _diff(ft["unseen"]) if ft else None}
        parts.append(format_table(rows) + "\n")
        controls = [(k, d) for k, d in res.get("paired", {}).items() if not k.endswith((" minus BM25", f" minus {FT}"))]
        if controls:
            both = {k: all(_converged(res, n) for n in k.split(" minus ")) for k, _ in controls}
            parts.append("| row minus its control (Hits@10, paired) | all | unseen | seen |\n|---|---|---|---|\n"
                         + "\n".join(f"| {k} | " + " | ".join(_pair(d[g], both[k]) for g in ("all", "unseen", "seen")) + " |"
                                     for k, d in controls) + "\n")
    parts.append(
        "Each DSI row is one model trained by the default Recipe with the row's changes (`dsilab.recipes.Recipe`; the "
        "row's label names them, the run's heading its lr); a planned row's weight was chosen on dev Hits@10 among 0 (no "
        "plan), 1, 2, 4, 8, 16, 32 and 64. A row's control is a row of the same run whose recipe has some of its changes "
        "and no others; `minus` = paired difference on the same test queries, 95% paired bootstrap interval, and "
        "\"not converged\" in place of the verdict where either row had not converged. `stopped`: converged (memorised, "
        "then dev Hits@1 without gain for 3 evaluations), or the time limit. The columns \"minus fine-tuned dense\" give "
        "differences only; read them as verdicts only for converged rows.\n")
    parts.append("Seen / unseen: test queries with a relevant abstract that a trained-on query points to (dev queries "
                 "are held out of train per seed, so the split moves with the seed).\n")
    parts += [n + "\n" for n in gap["notes"]]
    parts.append(f"Command: `{gap['command']}` · {gap['machine'].replace(' lent through the device tool', '')}; "
                 + "; ".join(f"run \"{n}\": {r['machine']}" for n, r in gap["runs"].items() if "machine" in r) + "\n")
    return "\n".join(parts)


def _qg_section(res: dict) -> str:
    cols = ("Hits@1", "Hits@1 CI", "Hits@10", "Hits@10 CI", "seen Hits@10", "unseen Hits@10", "unseen Hits@10 CI",
            "memo Hits@1", "steps", "stopped", "train_s")
    rows = {n: {c: r.get(c) for c in cols} for n, r in res["results"].items()}
    q = res["quality"]
    lines = [f"### qg on scifact with the round-trip filter (test split: {res['n_queries']} queries, {res['n_docs']} docs; "
             f"seed {res['seed']})\n", format_table(rows) + "\n",
             "| row minus (Hits@10, paired) | all | unseen | seen |\n|---|---|---|---|\n"
             + "\n".join(f"| {k} | {_pair(d['all'])} | {_pair(d['unseen'])} | {_pair(d['seen'])} |"
                         for k, d in res["paired"].items()) + "\n",
             f"Setting: {res['setting']}. `query_filter_k=1`: a generated query is kept only when BM25 ranks its "
             f"source document first. The generated queries kept: {q['trained']['distinct per doc (mean)']} distinct "
             f"per document on average ({q['trained']['queries']} in all), where the unfiltered run "
             "(qg-scifact.json) trains on about 5 per document, of which 11% pass this test."
             + ("" if any(" minus DSI " in k for k in res["paired"]) else " This run pairs each row against the "
                "baselines only: DSI-QG and the plain DSI row are not compared here.") + "\n",
             *[n + "\n" for n in res["notes"] if not n.startswith("Quality:")],
             f"Command: `{res['environment']['command']}` · {res['machine']}\n"]
    return "\n".join(lines)


def _incremental_section(res: dict) -> str:
    cols = ("old memo", "new memo", "old Hits@1", "old Hits@1 CI", "old Hits@10", "old Hits@10 CI", "new Hits@1",
            "new Hits@1 CI", "new Hits@10", "new Hits@10 CI", "new chance Hits@10", "seconds", "steps", "stopped")
    rows = {n: {c: r.get(c) for c in cols} for n, r in res["results"].items()}
    g = res["groups"]
    lines = [f"### incremental on scifact (test split: {g['old']} old-document and {g['new']} new-document queries, "
             f"{g['mixed']} mixed; seed {res['seed']})\n", format_table(rows) + "\n",
             "| A minus B (Hits@10, paired) | queries | difference [95% CI] |\n|---|---|---|\n"
             + "\n".join(f"| {p['A']} minus {p['B']} | {p['group']} ({p['queries']}) | {_pair(p)} |" for p in res["paired"])
             + "\n",
             "| check | measured | holds |\n|---|---|---|\n"
             + "\n".join(f"| {f['floor']} | {f['measured']} | {'yes' if f['holds'] else 'no'} |" for f in res["floors"]) + "\n",
             f"Setting: {res['setting']}; every updated model searches with the plan over all {res['n_docs']} documents "
             f"at the weight the initial model chose on dev. Updates capped at {res['update']['max_steps']} steps "
             "(a fixed budget: \"step cap\" is their intended stop); from-scratch trainings capped by `--time-limit-s 200` (both "
             "converged before it). Seconds are one timing each, taken while other runs shared the GPU.\n",
             *[n + "\n" for n in res["notes"]],
             f"Command: `{res['environment']['command']}` · {res['machine']}\n"]
    return "\n".join(lines)


def render() -> None:
    gap = json.loads((RESULTS / "dsi-gap-scifact.json").read_text())
    update_doc_section(BENCH_DOC, "dsi-gap-scifact", _gap_section(gap))
    update_doc_section(BENCH_DOC, "qg-scifact-filter1", _qg_section(json.loads((RESULTS / "qg-scifact-filter1.json").read_text())))
    update_doc_section(BENCH_DOC, "incremental-scifact",
                       _incremental_section(json.loads((RESULTS / "incremental-scifact.json").read_text())))


if __name__ == "__main__":
    if sys.argv[1:] != ["--docs-only"]:
        merge(Path(sys.argv[1]), sys.argv[2])
    render()
