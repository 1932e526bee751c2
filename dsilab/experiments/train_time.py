"""`dsilab bench train`: how long `dsilab train` takes on a collection, from the collection to a saved model folder."""
from __future__ import annotations

import json
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

from ..data import Collection
from .runner import header


def bench_train(collection: Collection, recipe: dict[str, Any] | None = None,
                out_dir: str | Path = "build/bench") -> dict[str, Any]:
    """`dsilab bench train`: time `dsilab train` (`dsilab.recipes.train_to_folder`: docids, training examples, training
    to convergence, the saved model folder) with the default Recipe or yours, in a temporary folder under --out that
    is deleted afterwards; wall seconds, steps, why it stopped, memorisation, best dev scores and peak memory.

    Args:
        recipe: changes to the default Recipe: JSON (e.g. '{"docids": "atomic"}') or a JSON file of
            dsilab.recipes.Recipe fields, as `dsilab train --recipe FILE` reads
    """
    import torch

    from ..recipes import Recipe, train_to_folder, with_dev

    rec = Recipe(**(recipe or {}))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="train-", dir=out) as tmp:
        t0 = time.perf_counter()
        folder = train_to_folder(collection, rec, Path(tmp) / "model", progress=False)
        wall = time.perf_counter() - t0
        log = json.loads((folder / "log.json").read_text())
        model_mb = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 2**20
    best = log.get("best dev") or {}
    peak_gpu = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None
    row = {"wall_s": round(wall, 1), "train_s": log["train_s"], "steps": log["steps"], "epochs": log["epochs"],
           "stopped": log["stopped"], "memo Hits@1": log["memo Hits@1"], "best dev Hits@1": best.get("Hits@1"),
           "best dev Hits@10": best.get("Hits@10"), "best dev step": best.get("step"), "step_ms": log["step_ms"],
           "peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
           **({"gpu_peak_mb": round(peak_gpu)} if peak_gpu else {}), "model_mb": round(model_mb, 1),
           "examples": log["examples"]}
    dev = with_dev(collection, rec.dev_holdout, rec.seed)[0].qrels.get("dev", {})
    return {**header("train", collection, "dev", rec.seed, len(dev)), "recipe": recipe or {}, "dev_from": log["dev_from"],
            "setting": f"`dsilab train --collection {collection.name}`"
                       + (f" with {json.dumps(recipe)}" if recipe else " with the default Recipe")
                       + f" ({rec.label}), one process",
            "notes": ["wall_s: the whole `dsilab.recipes.train_to_folder` call (docids, examples, training with its dev "
                      "evaluations, saving the folder), the collection already loaded; train_s: `train_dsi` alone "
                      "(the same without saving); step_ms: one optimizer step; peak_mb: peak RSS of the process "
                      "(ru_maxrss)."],
            "results": {rec.label: row}}
