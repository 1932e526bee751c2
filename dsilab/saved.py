"""A trained DSI model as a folder, and `load_model(dir)` that reopens it in any process and searches with it.

The folder holds everything a search needs: the weights (`model.safetensors`), the tokenizer, the docid tree, how to
rebuild the network (`model.json`), the recipe, the training log and a short model card. The weights are saved whole
(adapters and 4-bit layers included) and loaded into a network rebuilt the same way, so a reloaded model returns the
same ranking as the one that was trained.
"""
from __future__ import annotations

import inspect
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .core import DsilabError, Run, atomic_path
from .docids import DocidTree

FORMAT = 1
#: What a complete model folder holds; `model.json` is written last, so its presence means the rest is there.
FILES = ("model.safetensors", "docids.json", "recipe.json", "log.json", "README.md", "tokenizer", "model.json")


def _write_json(path: Path, data: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, default=str), encoding="utf-8")


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {}
    for pkg in ("dsilab", "torch", "transformers", "peft", "bitsandbytes"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def save_model(model: Any, folder: str | Path, *, arch: dict[str, Any], recipe: dict[str, Any],
               collection: Any, log: dict[str, Any]) -> Path:
    """Write `model` (a trained `DSIModel`) and what it needs into `folder`: weights, tokenizer, docids, the network's
    build arguments (`arch`: the backbone sizes build_model took), recipe, log and model card. Each file is written
    whole and moved into place; `model.json` comes last and marks the folder complete."""
    from safetensors.torch import save_model as save_weights

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.json").unlink(missing_ok=True)  # incomplete until the end
    soft, model.soft_inputs = model.soft_inputs, None  # DGI's Gumbel inputs train only: not part of what searches
    try:
        with atomic_path(folder / "model.safetensors") as tmp:
            save_weights(model, str(tmp))  # shares tied weights once (safetensors' own rule for shared tensors)
    finally:
        model.soft_inputs = soft
    shutil.rmtree(folder / "tokenizer", ignore_errors=True)  # an earlier save's (atomic_path keeps a folder it finds)
    with atomic_path(folder / "tokenizer") as tmp:
        model.tokenizer.save_pretrained(tmp)
    tree = model.docids
    _write_json(folder / "docids.json", {"kind": tree.kind, "params": tree.params,
                                         "codes": {d: list(c) for d, c in tree.codes.items()}})
    _write_json(folder / "recipe.json", recipe)
    _write_json(folder / "log.json", log)
    spec = {"format": FORMAT, "backbone": model.backbone, "arch": arch, "adapter": model.adapter,
            "adapter_kwargs": recipe.get("adapter_kwargs"), "max_source_len": model.max_source_len,
            "max_target_len": model.max_target_len,
            "collection": {"name": collection.name, "fingerprint": collection.fingerprint(), "docs": len(collection.docs)},
            "versions": _versions()}
    card = _card(spec, recipe, log)
    with atomic_path(folder / "README.md") as tmp:
        tmp.write_text(card, encoding="utf-8")
    _write_json(folder / "model.json", spec)
    return folder


def best_dev_text(best: dict[str, Any] | None) -> str:
    """The kept checkpoint's dev scores as a phrase, e.g. "Hits@1 0.683, Hits@10 0.905 at step 30"."""
    if not best:
        return "none (no evaluation)"
    scores = ", ".join(f"{k} {v:.3f}" for k, v in best.items() if k.startswith(("Hits@", "MRR@")) and v is not None)
    return f"{scores} at step {best.get('step')}" if scores else str(best)


def _card(spec: dict[str, Any], recipe: dict[str, Any], log: dict[str, Any]) -> str:
    """A short model card: what was indexed, how, and how well it had learned it when training stopped."""
    c = spec["collection"]
    lines = [f"# DSI model: {c['name']}", "",
             f"- Collection: `{c['name']}`, {c['docs']} documents, fingerprint `{c['fingerprint']}`",
             f"- Docids: {recipe.get('docids')}; backbone: {spec['backbone']}; adapter: {spec['adapter']}",
             f"- Training: {log.get('steps')} steps, stopped: {log.get('stopped')}; memorisation (indexing Hits@1): "
             f"{log.get('memo Hits@1')}; best dev: {best_dev_text(log.get('best dev'))} (dev from {log.get('dev_from')})",
             f"- Versions: {', '.join(f'{k} {v}' for k, v in spec['versions'].items())}", "",
             "Reopen it with `dsilab.load_model(folder)`, or search from the shell with "
             "`dsilab search --model FOLDER --queries FILE --out run.trec`.", ""]
    return "\n".join(lines)


@dataclass
class SavedModel:
    """A DSI model reopened from its folder: `search(queries, k) -> Run`, like every retriever of the course."""

    model: Any
    tree: DocidTree
    recipe: dict[str, Any]
    spec: dict[str, Any]
    log: dict[str, Any]
    folder: Path
    planner: Any = None                  # a LexicalPlanner over the indexed collection, when given to `load_model`

    def search(self, queries: dict[str, str], k: int = 10) -> Run:
        """Constrained beam search over the docid trie: the ranked docids of each query, steered by the lexical plan
        the model was trained with (`Recipe.plan`, at the weight chosen on dev), which reads the collection."""
        from .decode import search

        weight = self.log.get("plan weight") or 0.0
        if not weight:
            return search(self.model, queries, k=k)
        if self.planner is None:
            raise DsilabError(f"{self.folder} searches with a BM25 lexical plan (weight {weight:g}), which reads the "
                              "documents: pass the collection it indexed, `load_model(folder, collection=...)` or "
                              "`dsilab search --collection C`.")
        return search(self.model, queries, k=k, plan=self.planner(queries, weight))


def check_folder(folder: str | Path) -> Path:
    """The folder, if it holds a complete saved model; else a DsilabError naming what is missing."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DsilabError(f"no model folder at {folder}: train one with `dsilab train --collection C --out {folder}`.")
    missing = [f for f in FILES if not (folder / f).exists()]
    if missing:
        raise DsilabError(f"{folder} is not a complete model folder (missing: {', '.join(missing)}): its training did "
                          f"not finish; rerun the same `dsilab train ... --out {folder}` to resume it.")
    return folder


def load_model(folder: str | Path, collection: Any = None, device: str | None = None) -> SavedModel:
    """Reopen a saved DSI model. With `collection`, first check that it is the corpus the model indexed (its
    fingerprint), since docids only mean something for the documents they were built on. It runs on `device`, by default
    the GPU when there is one."""
    import torch
    from safetensors.torch import load_model as load_weights
    from transformers import AutoTokenizer

    from .models import build_model, resolve_adapter
    from .tasks import Example

    folder = check_folder(folder)
    spec = json.loads((folder / "model.json").read_text())
    if spec.get("format") != FORMAT:
        raise DsilabError(f"{folder}: model format {spec.get('format')!r}; this dsilab reads format {FORMAT}.")
    if collection is not None and collection.fingerprint() != spec["collection"]["fingerprint"]:
        raise DsilabError(f"{folder} indexed the collection {spec['collection']['name']!r} "
                          f"({spec['collection']['docs']} documents, fingerprint {spec['collection']['fingerprint']}); "
                          f"{collection.name!r} ({len(collection.docs)} documents, fingerprint {collection.fingerprint()}) "
                          "is another corpus: train a model on it with `dsilab train`.")
    raw = json.loads((folder / "docids.json").read_text())
    tree = DocidTree(raw["kind"], {d: tuple(c) for d, c in raw["codes"].items()}, raw.get("params") or {})
    tokenizer = AutoTokenizer.from_pretrained(folder / "tokenizer")
    # The network is rebuilt as it was built for training (sizes from model.json; no example data needed), then the
    # saved weights replace every parameter and buffer; strict loading fails on any mismatch.
    doc = next(iter(tree.codes))
    stub = [Example(doc, tree.text(doc), "index", doc)]
    # An adapter that rebuilds a saved network differently from a trainable one (DGI: no quantiser) says so by taking
    # `for_search`; the others are rebuilt as they were built.
    rebuilds = "for_search" in inspect.signature(resolve_adapter(spec["adapter"])).parameters
    kwargs = {**(spec["adapter_kwargs"] or {}), **({"for_search": True} if rebuilds else {})}
    model = build_model(spec["backbone"], tree, stub, adapter=spec["adapter"], adapter_kwargs=kwargs,
                        max_source_len=spec["max_source_len"], max_target_len=spec["max_target_len"],
                        docid_init="random", tokenizer=tokenizer, **spec["arch"])
    load_weights(model, str(folder / "model.safetensors"), strict=True)
    model.eval()
    model.to(torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu")))  # the GPU when there is one
    recipe = json.loads((folder / "recipe.json").read_text())
    log = json.loads((folder / "log.json").read_text())
    from .decode import LexicalPlanner

    planner = LexicalPlanner(collection, recipe.get("plan_depth", 100)) if collection is not None else None
    return SavedModel(model, tree, recipe, spec, log, folder, planner)
