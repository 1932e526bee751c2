"""How DSI training scales: the training loop's speed against the hardware's ceiling, and what happens to
memorisation and retrieval as the corpus, the model and the indexing : retrieval mix grow.

    throughput(load_collection("lab"), shapes=("minilm-seq2seq",))   # tokens/s of the loop vs a bare step
    corpus_study(["synthetic:1000", "scifact-path", "synthetic:20000"], kinds=("atomic", "semantic"))

`dsilab bench throughput` and `dsilab bench scaling` run them and write JSON; the committed results
(dsilab/results/throughput-*.json, scaling-*.json) come from one H200 (`benchmarks/gpu_dsi/scaling.sh`), and notebook
08 reads them. Each training row is one `dsilab.experiments.dsi.dsi_variant` (train to convergence, then read the test split
once), in its own process.
"""
from __future__ import annotations

from .runner import header, in_processes


import os
import time
from typing import Any, Literal, get_args

from ..core import DsilabError, check_choice
from ..data import Collection, load_collection
from ..recipes import Recipe, _sample
from ..train import Callback

Shape = Literal["minilm-seq2seq", "t5-small", "t5-base"]
SHAPES: tuple[str, ...] = get_args(Shape)


def shape_recipe(shape: str, **changes: Any) -> Recipe:
    """The recipe of one network shape: the MiniLM seq2seq, or t5-small / t5-base built from config (random weights)."""
    from ..models import T5_SHAPES

    check_choice("shape", shape, SHAPES)
    if shape == "minilm-seq2seq":
        return Recipe(**changes)
    return Recipe(backbone="t5-scratch", docid_init="random", arch={**T5_SHAPES[shape], "vocab_size": 8000}, **changes)


class _Clock(Callback):
    """Wall time between the end of step `start` and the end of training, with the device caught up at both ends."""

    def __init__(self, start: int):
        self.start, self.t0, self.seconds, self.steps, self.packed = start, None, None, 0, None

    def on_train_begin(self, trainer) -> None:
        self.packed = trainer.packed  # the tensors the loop trains on (their lengths count the tokens)

    def on_step_end(self, trainer) -> None:
        if trainer.step == self.start:
            trainer._sync()
            self.t0 = time.perf_counter()

    def on_train_end(self, trainer) -> None:
        trainer._sync()
        self.seconds, self.steps = time.perf_counter() - self.t0, trainer.step - self.start


def _bare_step_rate(model, batch: int, src_len: int, tgt_len: int, steps: int, warmup: int, amp) -> float:
    """Optimizer steps per second of the same network on synthetic tensors: no data path, no Python per batch.

    The same computation as the loop's step: a frozen encoder's states (random) into the decoder, or token ids into
    the whole network when the encoder trains; docid labels; forward, backward, clipping and fused AdamW.
    """
    import torch

    device = model.device
    gen = torch.Generator(device="cpu").manual_seed(0)
    docid_tokens = model.docid_vocab.cpu()
    labels = docid_tokens[torch.randint(len(docid_tokens) - 1, (batch, tgt_len), generator=gen)]
    labels[:, -1] = model.eos_id
    kw: dict[str, Any] = {"attention_mask": torch.ones(batch, src_len, dtype=torch.long, device=device),
                          "labels": labels.to(device), "text_rows": torch.zeros(batch, dtype=torch.bool)}
    if model.encoder_frozen:
        hidden = model.net.get_encoder().config.hidden_size
        kw |= {"input_ids": None, "encoder_hidden": torch.randn(batch, src_len, hidden, generator=gen).to(device, amp or torch.float32)}
    else:
        kw["input_ids"] = torch.randint(model.base_vocab, (batch, src_len), generator=gen).to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, fused=True)  # as the loop (dsilab.train)
    model.train()

    def step() -> None:
        with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
            loss = model(**kw)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(warmup):
        step()
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    return steps / (time.perf_counter() - t0)


def throughput(collection: Collection, shapes: tuple[str, ...] = SHAPES, batch_sizes: tuple[int, ...] = (64, 256),
               steps: int = 60, warmup: int = 20, docids: str = "semantic", buckets: tuple[int, ...] = (0, 50),
               seed: int = 0, verbose: bool = False, compile: bool = False) -> list[dict[str, Any]]:
    """Training tokens/s of the DSI loop (`dsilab.train`, on `collection`'s real examples; without and with length
    bucketing) beside a bare forward+backward+step of the same network on synthetic tensors (the ceiling).

    Tokens per step = batch x (mean input tokens + mean docid tokens) of the training examples, for all: padding
    is waste, so the loop is charged for it. compile: also time the loop under torch.compile (the MiniLM seq2seq on
    a GPU only).
    """
    import torch

    from dataclasses import replace

    from ..recipes import fit, prepare
    from ..train import _amp_dtype

    rows = []
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    for shape in shapes:
        for batch in batch_sizes:
            recipe = shape_recipe(shape, docids=docids, batch_size=batch, seed=seed)
            _, _, _, examples, model, _ = prepare(collection, recipe)
            loops = {}
            # torch.compile (`compile`): the MiniLM seq2seq on a GPU only. Off by default: with batch shapes that vary,
            # it recompiled and ran 10x slower than eager on an H200 (188-272 ms vs 17-20 ms per step).
            with_compile = device.type == "cuda" and shape == "minilm-seq2seq" and compile
            for bucket, compiled in [(b, False) for b in buckets] + [(buckets[-1], True)] * with_compile:
                clock = _Clock(warmup)
                timed = replace(recipe, max_steps=warmup + steps, warmup_steps=0, eval_every=0, bucket=bucket,
                                compile=compiled)
                try:  # the one DSI run (`recipes.fit`) without evaluations; loss read back never (no sync per step)
                    res = fit(model, examples, timed, None, {}, callbacks=[clock], keep_best=False, log_every=10**9)[0]
                    loops[bucket, compiled] = (clock.steps / clock.seconds, res.cache_seconds, None)
                except Exception as e:  # noqa: BLE001  (compilation can fail on a backbone: the row says why)
                    loops[bucket, compiled] = (float("nan"), float("nan"), f"{type(e).__name__}: {str(e)[:200]}")
            packed = clock.packed
            src = float(packed.source_len[packed.source_row].float().mean())
            tgt = float(packed.label_len.float().mean())
            tokens = batch * (src + tgt)
            bare = _bare_step_rate(model, batch, round(src), round(tgt), steps, warmup, _amp_dtype("auto", device))
            base = {"shape": shape, "batch": batch, "params_M": round(sum(p.numel() for p in model.parameters()) / 1e6, 1),
                    "trainable_M": round(model.num_parameters(True) / 1e6, 1),
                    "encoder": "frozen, states cached" if model.encoder_frozen else "trains",
                    "mean_input_tokens": round(src, 1), "mean_docid_tokens": round(tgt, 2),
                    "bare_step_ms": round(1000 / bare, 2), "bare_tokens_per_s": round(tokens * bare),
                    "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu"}
            for (bucket, compiled), (rate, pack_s, error) in loops.items():
                if error:
                    rows.append({**base, "bucket": bucket, "compiled": compiled, "error": error})
                    continue
                rows.append({**base, "bucket": bucket, "compiled": compiled, "loop_step_ms": round(1000 / rate, 2),
                             "loop_tokens_per_s": round(tokens * rate), "loop_vs_bare": round(rate / bare, 3),
                             "pack_s": pack_s})
                if verbose:  # a long GPU run's progress, in its log
                    print({k: rows[-1][k] for k in ("shape", "batch", "bucket", "compiled", "loop_step_ms", "bare_step_ms",
                                                    "loop_vs_bare")}, flush=True)
            del model, packed, clock
            if device.type == "cuda":
                torch.cuda.empty_cache()
    return rows


def bench_throughput(collection: Collection, seed: int = 0, shapes: tuple[Shape, ...] = SHAPES,
                     batches: tuple[int, ...] = (64, 256), steps: int = 60, compile: bool = False) -> dict[str, Any]:
    """`dsilab bench throughput`: training tokens/s of the DSI loop vs a bare forward+backward+step of the same
    network, for every shape and batch size, on the collection's training examples.

    Args:
        shapes: network shapes: minilm-seq2seq (frozen MiniLM encoder, 2-layer decoder), t5-small, t5-base (from
            config, random weights)
        batches: batch sizes, one row per shape each
        steps: timed steps per row, after 20 warm-up steps
        compile: also time the loop under torch.compile (minilm-seq2seq on a GPU only)
    """
    rows = throughput(collection, tuple(shapes), tuple(batches), steps=steps, seed=seed, verbose=True, compile=compile)
    return {**header("throughput", collection, "train", seed, 0),
            "notes": ["Training tokens/s of the DSI loop (dsilab.train: packed tensors, bf16 autocast on a GPU, fused "
                      "AdamW) on the collection's training examples, and of a bare forward+backward+step of the same "
                      f"network on synthetic tensors of the same mean lengths; {steps} timed steps after 20 warm-up steps. "
                      "t5-small / t5-base: the T5 v1 shapes built from config (random weights, encoder trains); "
                      "minilm-seq2seq: frozen MiniLM encoder (its states computed once, `pack_s`), new 2-layer decoder."],
            "results": {f"{r['shape']} batch {r['batch']}" + (" bucketed" if r["bucket"] else "")
                        + (" compiled" if r["compiled"] else ""): r for r in rows}}


# -- scaling studies -----------------------------------------------------------------------------------------------
def resolve(spec: str, max_eval_queries: int = 2000) -> Collection:
    """A collection from a study's spec: "synthetic:N" (N documents, 3 queries each: train / dev / test), "lab",
    or a BEIR folder path. Dev and test keep a seeded sample of at most `max_eval_queries` queries (100k test queries
    would cost more beam search than training; 2,000 give a 95% interval of about +-2 points)."""
    if not spec.startswith("synthetic:"):
        return load_collection(spec)
    coll = load_collection("synthetic", n_docs=int(spec.split(":")[1]), queries_per_doc=3, seed=0)
    qrels = {**coll.qrels, **{split: {q: coll.qrels[split][q] for q in _sample(list(coll.qrels[split]), max_eval_queries, 0)}
                              for split in ("dev", "test")}}
    return Collection(coll.name, coll.docs, coll.queries, qrels, {**coll.meta, "eval_queries_sampled": max_eval_queries})


def _row(spec: str | Collection, changes: dict[str, Any], split: str, seed: int, name: str, partial: str | None = None,
         threads: int | None = None, gpu: str | None = None) -> dict[str, Any]:
    """One study row in its own process: train to convergence, read `split` once; appended to the file `partial`."""
    if gpu is not None:  # before this process first touches CUDA: it sees one GPU, its own
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    from .runner import append_partial
    from .dsi import dsi_variant
    from ..metrics import chance

    t0 = time.perf_counter()
    coll = resolve(spec) if isinstance(spec, str) else spec
    print(f"[{name}] {coll.name} ready after {time.perf_counter() - t0:.0f} s; training", flush=True)
    changes = dict(changes)
    shape = changes.pop("_shape", None)
    recipe = shape_recipe(shape, seed=seed, **changes) if shape else Recipe(**{"seed": seed, **changes})
    row = dsi_variant(coll, recipe, split, seed, threads, name)
    _, qrels = coll.split(split)
    row = {**row, "collection": coll.name, "n_docs": len(coll.docs), "n_test_queries": len(qrels),
           "chance Hits@1": round(chance(qrels, len(coll.docs), 1), 5),
           "chance Hits@10": round(chance(qrels, len(coll.docs), 10), 5)}
    append_partial({"name": name, **row}, partial)  # on disk as soon as it is done (a lease may end first)
    print(f"[{name}] done after {time.perf_counter() - t0:.0f} s", flush=True)
    return row


def run_study(rows: dict[str, tuple[str | Collection, dict[str, Any]]], split: str = "test", seed: int = 0,
              jobs: int | None = None, time_limit_s: float | None = None,
              partial: str | None = None) -> dict[str, dict[str, Any]]:
    """Train every (collection spec, recipe changes) row to convergence (or `time_limit_s` of training), each in its own
    process (`in_processes`), each appended to the file `partial` when done."""
    cap = {"time_limit_s": time_limit_s} if time_limit_s else {}
    out = in_processes(_row, {name: (spec, {**changes, **cap}, split, seed, name, partial)
                              for name, (spec, changes) in rows.items()}, jobs)
    for name, row in out.items():
        print(name, {k: row.get(k) for k in ("Hits@1", "Hits@10", "memo Hits@1", "seconds_to_memorise",
                                             "steps", "stopped", "train_s", "error") if k in row}, flush=True)
    return out


def forgetting(history: list[dict[str, Any]]) -> dict[str, Any]:
    """Best vs last checkpoint of one training run (its evaluation history): dev Hits@1 and memorisation at each."""
    evals = [h for h in history if "Hits@1" in h]
    if not evals:
        raise DsilabError("forgetting: the history holds no evaluation (train with eval_every > 0).")
    best = max(evals, key=lambda h: h["Hits@1"])
    last = evals[-1]
    return {"best step": best["step"], "best dev Hits@1": best["Hits@1"], "best memo": best.get("memo Hits@1"),
            "last step": last["step"], "last dev Hits@1": last["Hits@1"], "last memo": last.get("memo Hits@1"),
            "drop": round(best["Hits@1"] - last["Hits@1"], 4)}


#: The studies `dsilab bench scaling` runs: name -> rows (collection spec, recipe changes). "{real}" stands for the
#: real supervised collection given with --collection (SciFact on the GPU); synthetic sizes go beyond it. Corpus rows
#: train at batch 256 (a 100k-document epoch is 800 steps instead of 3,100) with the default lr.
_BIG = {"batch_size": 256}
_KINDS = (("atomic", {"docid_init": "encoder"}), ("semantic", {}))
_LR3 = {"docids": "semantic", "lr": 3e-4, "eval_every": 470}
STUDIES: dict[str, dict[str, tuple[str, dict[str, Any]]]] = {
    **{f"corpus{n // 1000}k": {f"{kind} · synthetic {n // 1000}k": (f"synthetic:{n}", {"docids": kind, **extra, **_BIG})
                               for kind, extra in _KINDS} for n in (1000, 20000, 100000)},
    "corpus-real": {f"{kind} · {{real}}": ("{real}", {"docids": kind, **extra, **_BIG}) for kind, extra in _KINDS},
    # The same sizes at a fixed budget: 2,000 steps of 256 examples whatever the corpus (no early stop; the kept weights
    # are the best dev ones among 8 evaluations), where the rows above train each size to convergence.
    "corpus-fixed": {f"{kind} · {name} · 2,000 steps": (spec, {"docids": kind, **extra, **_BIG, "max_steps": 2000,
                                                               "eval_every": 250, "patience": 10**6})
                     for name, spec in (("synthetic 100k", "synthetic:100000"), ("synthetic 20k", "synthetic:20000"),
                                        ("synthetic 1k", "synthetic:1000"), ("{real}", "{real}"))
                     for kind, extra in _KINDS},
    # Model size, the indexing:retrieval mix and the batch size against one reference row: semantic docids, 2-layer
    # decoder, natural mix, batch 64, lr 3e-4. Not the default lr 1e-3: there the 4-layer decoder and the 16 and 32
    # ratio rows memorised, then collapsed (study "stability"). Rows at batch 64 evaluate every 470 steps (5 reference
    # epochs), so a larger epoch (a higher ratio) does not make its early stop coarser.
    "reference": {"semantic, 2-layer decoder, natural mix, batch 64, lr 3e-4": ("{real}", _LR3)},
    "batch": {"batch 256, lr 3e-4": ("{real}", {**_LR3, "batch_size": 256, "eval_every": None}),
              "batch 256, lr 6e-4 (square-root rule)": ("{real}", {**_LR3, "batch_size": 256, "eval_every": None, "lr": 6e-4})},
    "model": {
        **{f"minilm-seq2seq, {n}-layer decoder, lr 3e-4": ("{real}", {**_LR3, "decoder_layers": n}) for n in (1, 4)},
        "t5-small shape (from config, encoder trains)": ("{real}", {"_shape": "t5-small", "docids": "semantic"}),
        "t5-small shape (from config, encoder trains), lr 3e-4": ("{real}", {"_shape": "t5-small", "docids": "semantic", "lr": 3e-4}),
    },
    "ratio": {f"indexing:retrieval {r}, lr 3e-4": ("{real}", {**_LR3, "ratio": float(r)}) for r in (16, 32)},
    # Why runs that had memorised collapsed (the 4-layer decoder and the 16 and 32 ratio rows): one change at a time
    # against a base row (lr 1e-3 decayed to 0 by epoch 80), each trained past the step where they did, no early stop.
    "stability": {f"4-layer decoder, {name}": ("{real}", {"docids": "semantic", "decoder_layers": 4, "patience": 10**6,
                                                          "max_epochs": 80, **change})
                  for name, change in (("bf16 autocast, AdamW beta2 0.999, lr 1e-3 decayed to 0 by epoch 80", {}), ("fp32", {"amp": "off"}),
                                       ("AdamW beta2 0.99", {"betas": (0.9, 0.99)}),
                                       ("AdamW beta2 0.95", {"betas": (0.9, 0.95)}), ("lr 3e-4", {"lr": 3e-4}),
                                       ("lr decayed to 0 by epoch 60", {"max_epochs": 60}),
                                       ("lr decayed to 0 by epoch 120, as in the runs that collapsed", {"max_epochs": 120}))},
    "forgetting": {f"{kind}, no early stop": ("{real}", {"docids": kind, "patience": 10**6, "max_epochs": 200})
                   for kind in ("atomic", "naive", "semantic")},
}

def bench_scaling(collection: Collection, split: str = "test", seed: int = 0, studies: tuple[str, ...] = tuple(STUDIES),
                  rows: tuple[str, ...] | None = None, jobs: int = 1, time_limit_s: float | None = None,
                  partial: str | None = None) -> dict[str, Any]:
    """`dsilab bench scaling`: how memorisation and retrieval scale with the corpus, the model and the indexing :
    retrieval mix; `{real}` rows on `collection`, synthetic ones beside it; each row trained to convergence (or the
    --time-limit-s cap) and read on `split` once.

    Args:
        studies: the studies to run (dsilab.experiments.scaling.STUDIES)
        rows: keep only the rows whose name holds one of these parts (e.g. atomic t5)
        time_limit_s: a wall-clock cap on each row's training in seconds, setup included (Recipe.time_limit_s)
    """
    names = list(studies)
    unknown = [n for n in names if n not in STUDIES]
    if unknown:
        raise DsilabError(f"--studies: unknown stud{'y' if len(unknown) == 1 else 'ies'} {unknown}; choose from {list(STUDIES)}.")
    todo = {f"{study}: {label.format(real=collection.name)}": (collection if spec == "{real}" else spec, changes)
            for study in names for label, (spec, changes) in STUDIES[study].items()}
    if rows:
        todo = {n: r for n, r in todo.items() if any(w in n for w in rows)}
        if not todo:
            raise DsilabError(f"--rows {list(rows)} matches no row of {names}.")
    results = run_study(todo, split, seed, jobs, time_limit_s, partial)
    for name, row in results.items():
        if name.startswith("forgetting") and "history" in row:
            row["forgetting"] = forgetting(row["history"])
    return {**header("scaling", collection, split, seed, len(collection.split(split)[1])), "studies": names,
            "notes": ["Each row: dsilab.recipes.train_dsi to convergence (memorised, then dev Hits@1 without gain for "
                      "`patience` evaluations) or the time cap, then the test split read once. Hits@k = ir-measures' "
                      "Success@k with a 95% bootstrap interval; chance = a random ranking over the row's corpus. "
                      "Synthetic rows: dsilab.data.synthetic_collection with 3 queries per document (train / dev / "
                      "test), dev and test sampled to 2,000 queries."],
            "results": results}


