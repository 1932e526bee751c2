"""The `dsilab bench dgi` measurement: every method x 3 seeds on two Zipfian long-tail settings.

Settings: the given collection (lab by default) and a synthetic collection with Zipfian popularity.
Rows give mean ± standard deviation over seeds; a last row per setting gives DGI minus DSI-semantic,
and `goal` says whether DGI beats DSI-semantic on tail Hits@10 without losing more than 1 point of
head Hits@10 (on both settings).
"""
from __future__ import annotations

import time
from typing import Any

from ..data import Collection
from .longtail import METHODS, compare, long_tail, synthetic_long_tail
from .model import DGIConfig

COLS = ("Hits@1", "Hits@10", "head Hits@10", "torso Hits@10", "tail Hits@10", "pop bias")
DSI, DGI = "DSI-semantic (k-means)", "DGI"


def _rows(df, tag: str) -> dict[str, dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    g = df.groupby("method", sort=False)
    for method, part in g:
        row = {c: f"{part[c].mean():.3f} ± {part[c].std(ddof=0):.3f}" for c in COLS}
        row["fit s/seed"] = f"{part['fit_s'].mean():.0f}" if "fit_s" in part and part["fit_s"].notna().all() else "-"
        rows[f"{tag} · {method}"] = row
    mean = g[list(COLS)].mean()
    delta = mean.loc[DGI] - mean.loc[DSI]
    rows[f"{tag} · Δ DGI − DSI-semantic"] = {**{c: f"{delta[c]:+.3f}" for c in COLS}, "fit s/seed": "-"}
    return rows


def bench_dgi(collection: Collection, split: str = "test", seed: int = 0, synthetic_docs: int = 500,
              config: DGIConfig = DGIConfig()) -> dict[str, Any]:
    """Run the comparison; seeds are seed, seed+1, seed+2 (the long-tail sampling itself uses seed 0)."""
    seeds = (seed, seed + 1, seed + 2)
    settings = [long_tail(collection, split=split), synthetic_long_tail(synthetic_docs, split="test")]
    rows: dict[str, dict[str, Any]] = {}
    goal: dict[str, Any] = {}
    raw = {}
    t0 = time.perf_counter()
    for st in settings:
        df = compare(st, list(METHODS), seeds, config, dense=True)
        raw[st.name] = df.round(4).to_dict(orient="records")
        rows.update(_rows(df, st.name))
        mean = df.groupby("method")[list(COLS)].mean()
        tail = float(mean.loc[DGI, "tail Hits@10"] - mean.loc[DSI, "tail Hits@10"])
        head = float(mean.loc[DGI, "head Hits@10"] - mean.loc[DSI, "head Hits@10"])
        goal[st.name] = {"tail_delta": round(tail, 4), "head_delta": round(head, 4), "met": bool(tail > 0 and head >= -0.01),
                         "setting": st.describe()}
    goal["met_everywhere"] = all(v["met"] for k, v in goal.items() if isinstance(v, dict))
    print("goal (DGI beats DSI-semantic on tail Hits@10, head Hits@10 within 1 point):",
          {k: (v["met"], v["tail_delta"], v["head_delta"]) if isinstance(v, dict) else v for k, v in goal.items()})
    return {
        "benchmark": "dgi",
        "collection": collection.name,
        "split": split,
        "n_docs": len(collection.docs),
        "n_queries": len(settings[0].qrels),
        "seed": seed,
        "seeds": list(seeds),
        "config": config.as_dict(),
        "settings": {st.name: st.params for st in settings},
        "goal": goal,
        "results": rows,
        "runs": raw,
        "total_s": round(time.perf_counter() - t0, 1),
    }


def goal_section(result: dict[str, Any]) -> str:
    """The docs/benchmarks.md paragraph that says whether the DGI goal was met, from a bench_dgi result."""
    g = result["goal"]
    lines = ["**DGI goal** (beat DSI-semantic on tail Hits@10 without losing more than 1 point of head Hits@10), "
             f"mean over seeds {result['seeds']}:", ""]
    for name, v in g.items():
        if isinstance(v, dict):
            lines.append(f"- {name}: tail Hits@10 DGI − DSI-semantic = {v['tail_delta']:+.3f}, head Hits@10 = "
                         f"{v['head_delta']:+.3f} → " + ("**met**" if v["met"] else "**not met**"))
    lines += ["", "Met on every setting: " + ("yes" if g["met_everywhere"] else "**no**") + ". See notebooks/08_dgi.ipynb, section 7."]
    return "\n".join(lines) + "\n"
