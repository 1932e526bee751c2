"""`dsilab bench efficiency`: one DSI recipe trained several ways (frozen, full, LoRA, QLoRA, pruned)."""
from __future__ import annotations

from .dsi import bench_dsi

from typing import Any
from ..core import DsilabError
from ..data import Collection


#: `dsilab bench efficiency`: the same DSI recipe trained several ways (changes to EFFICIENCY_BASE, a `Recipe`).
#: "full fine-tuning" unfreezes the pretrained encoder at BERT's usual fine-tuning rate (the new decoder keeps the
#: recipe's 1e-3); LoRA/QLoRA adapt it with rank-8 adapters; the pruned rows are full fine-tuning with gradual
#: magnitude pruning of every linear layer ("frozen encoder": the default, its decoder pruned; notebook 07's FAST
#: run, whose full fine-tuning state does not fit Binder's memory beside the notebook). Each trains to convergence.
EFFICIENCY_BASE: dict[str, Any] = {"docids": "atomic", "docid_init": "encoder", "doc_len": 32, "batch_size": 16}


EFFICIENCY_VARIANTS: dict[str, dict[str, Any]] = {
    "frozen encoder (default)": {},
    "full fine-tuning": {"freeze_encoder": False, "encoder_lr": 5e-5},
    "LoRA r=8": {"adapter": "lora", "adapter_kwargs": {"r": 8, "alpha": 16}},
    "QLoRA r=8 (NF4)": {"adapter": "qlora", "adapter_kwargs": {"r": 8, "alpha": 16, "double_quant": True}},
    "pruned 50%": {"freeze_encoder": False, "encoder_lr": 5e-5, "prune": 0.5},
    "pruned 80%": {"freeze_encoder": False, "encoder_lr": 5e-5, "prune": 0.8},
    "pruned 80% (frozen encoder)": {"prune": 0.8},
}


#: What `dsilab bench efficiency` trains by default (pruned 50% runs in notebook 07's full mode).
EFFICIENCY_BENCH = ["frozen encoder (default)", "full fine-tuning", "LoRA r=8", "QLoRA r=8 (NF4)", "pruned 80%"]


def _efficiency_changes(name: str) -> dict[str, Any]:
    """Recipe changes of one efficiency variant: EFFICIENCY_BASE + its own."""
    if name not in EFFICIENCY_VARIANTS:
        raise DsilabError(f"unknown efficiency variant {name!r}; choose from {list(EFFICIENCY_VARIANTS)}.")
    return {**EFFICIENCY_BASE, **EFFICIENCY_VARIANTS[name]}


def efficiency_recipe(name: str, **changes: Any):
    """The `Recipe` of one efficiency variant (EFFICIENCY_BASE + its changes + yours)."""
    from ..recipes import Recipe

    return Recipe(**{**_efficiency_changes(name), **changes})


def bench_efficiency(collection: Collection, split: str = "test", seed: int = 0, topics: int | None = 3,
                     variants: list[str] | None = None, jobs: int = 1, time_limit_s: float | None = None) -> dict[str, Any]:
    """`dsilab bench efficiency`: frozen vs full vs LoRA vs QLoRA vs pruned DSI training, each to convergence in a
    fresh process (its own peak RSS).

    Every row trains MiniLM to convergence, which on a CPU is slow, so by default the table trains on the documents of
    `topics` lab topics; its baselines are read on the same queries.

    Args:
        topics: train and read on the documents of this many lab topics (0: the whole collection)
        variants: the rows, names of EFFICIENCY_VARIANTS (default: EFFICIENCY_BENCH): "frozen encoder (default)",
            "full fine-tuning", "LoRA r=8", "QLoRA r=8 (NF4)", "pruned 50%", "pruned 80%",
            "pruned 80% (frozen encoder)"
    """
    subset = collection.topics(topics) if topics and collection.meta.get("docs") else collection
    names = variants or EFFICIENCY_BENCH
    result = bench_dsi(subset, split, seed, {n: _efficiency_changes(n) for n in names}, jobs=jobs, time_limit_s=time_limit_s)
    import torch

    result.update({
        "benchmark": "efficiency", "collection": collection.name, "subset": subset.name,
        "setting": f"{result['setting']}; minilm-seq2seq (2-layer decoder), each row = dsilab.recipes.Recipe"
                   f"({', '.join(f'{k}={v!r}' for k, v in EFFICIENCY_BASE.items())}) + the row's changes (`tried`), "
                   f"trained to convergence; on {subset.name} (a MiniLM training step costs about a second on a "
                   "2-core CPU); train_state_mb = weights + gradient + 2 AdamW moments of the trainable weights",
        "torch_threads": torch.get_num_threads()})
    return result
