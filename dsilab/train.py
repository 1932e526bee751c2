"""One training loop for every DSI variant: plain PyTorch, readable top to bottom (in the spirit of nanoGPT).

    result = train(model, examples, TrainConfig(max_epochs=30, lr=1e-3), dev=collection.split("dev"))

What it does, in order: shuffle the examples with a per-epoch seed; cut micro-batches; forward with
mixed precision (bf16/fp16 on GPU, bf16 on CPUs with bf16 units, else fp32); accumulate gradients;
clip; AdamW step; linear warm-up then linear decay; every `eval_every` steps score dev queries with
constrained beam search (Hits@1/10) and, given a probe, memorisation; a callback decides when to stop
(`dsilab.recipes.Convergence`); every `checkpoint_every` steps save model, optimizer, scheduler, RNG states, the data
position and the callbacks' state, so that `resume=True` continues exactly where an interrupted run stopped (same
batches, same final weights).

Tensors built once (`PackedExamples`): before the first step every distinct input is tokenised once, or, when
no encoder weight trains (`model.encoder_frozen`), encoded once (exact: the frozen encoder runs without dropout),
and all inputs and labels sit as padded tensors on the training device. A micro-batch is then an index into them,
cut to its longest row: no Python tokenisation, no host-to-device copy and no GPU synchronisation per step (the loss
is read back only every `log_every` steps). That is what keeps a GPU busy (pinned memory and loader workers have
nothing left to do); `bucket` groups inputs of similar length to cut padding, `compile` hands the model to
`torch.compile`.

Accelerate: the model and optimizer go through `accelerate.Accelerator`, so `accelerate launch` on
several GPUs works unchanged; every process reads its own slice of each global batch.

Callbacks (`Callback`): `on_train_begin`, `on_step_end` (after each optimizer step, e.g. to apply a
pruning mask), `on_evaluate(metrics)`, `on_train_end`, `extra_loss` (a term added to each micro-batch's loss, e.g.
distillation); each receives the `Trainer` (model, optimizer, config, step, ...). Metrics go to a JSONL log
(`log_path`) and to `TrainResult.history`.
"""
from __future__ import annotations

import json
import logging
import math
import random
import tempfile
import time
from contextlib import suppress
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import torch

from .core import DsilabError, Qrels, atomic_path, check_choice, map_large_blocks, release_memory, seed_everything, trim_heap
from .tasks import Example

AMP = ("auto", "bf16", "fp16", "off")
LOG = logging.getLogger("dsilab.train")  # every evaluation at INFO: `dsilab bench ... --log-evals` shows them


@dataclass(frozen=True)
class TrainConfig:
    """How to train: the optimiser, the schedule and when to evaluate; sizes are per process, `batch_size` is one
    micro-batch. `dsilab.recipes.Recipe` is a TrainConfig too (its training part), so these names are the recipe's."""

    max_epochs: int = 120                 # the cap, in epochs of the examples
    max_steps: int | None = None          # a fixed budget in optimizer steps instead (overrides max_epochs)
    batch_size: int = 64
    grad_accum: int = 1                   # micro-batches per optimizer step
    lr: float = 1e-3                      # runs long past memorisation: 3e-4 (higher, deep decoders collapse: scaling "stability")
    betas: tuple[float, float] = (0.9, 0.999)  # AdamW's moment decays; a lower beta2 reacts faster to a gradient spike
    encoder_lr: float | None = None       # the pretrained encoder's step when it trains (None: lr); new parts keep lr
    weight_decay: float = 0.01
    warmup_steps: int | None = None       # None: two epochs, at most 100 steps
    grad_clip: float = 1.0
    amp: str = "auto"                     # "off" trains in fp32
    eval_every: int | None = None         # steps between dev evaluations (None: about 5 epochs, at least 50 steps; 0: only at the end)
    bucket: int = 0                       # >0: sort each window of `bucket` micro-batches by input length (less padding)
    compile: bool = False                 # torch.compile the model (GPU; the first steps pay for compilation)
    cache_encoder: bool = True            # encode each input once when the encoder is frozen
    checkpoint_activations: bool | None = None  # recompute activations in backward: less memory, same numbers (None: on a CPU)
    time_limit_s: float | None = None     # a wall-clock cap on training (e.g. a GPU lease); the result says it was hit
    seed: int = 0

    def __post_init__(self) -> None:
        check_choice("amp", self.amp, AMP)
        if self.batch_size < 1 or self.grad_accum < 1 or self.max_epochs < 1:
            raise DsilabError("batch_size, grad_accum and max_epochs must be >= 1.")
        if not all(0 <= b < 1 for b in self.betas):
            raise DsilabError(f"betas={self.betas}; AdamW's decays lie in [0, 1), e.g. (0.9, 0.999).")

    def schedule(self, steps_per_epoch: int) -> tuple[int, int, int]:
        """(total steps, warm-up steps, steps between evaluations) for epochs of `steps_per_epoch` optimizer steps."""
        total = self.max_steps or self.max_epochs * steps_per_epoch
        warmup = self.warmup_steps if self.warmup_steps is not None else min(100, 2 * steps_per_epoch)
        every = self.eval_every if self.eval_every is not None else max(50, 5 * steps_per_epoch)
        return total, min(warmup, total // 2), every


class Callback:
    """Hooks into the loop; override what you need (each gets the Trainer)."""

    def on_train_begin(self, trainer: "Trainer") -> None: ...
    def on_step_end(self, trainer: "Trainer") -> None: ...
    def on_evaluate(self, trainer: "Trainer", metrics: dict[str, float]) -> None: ...
    def on_train_end(self, trainer: "Trainer") -> None: ...
    def extra_loss(self, trainer: "Trainer") -> torch.Tensor | None:
        """A term added to each micro-batch's loss (e.g. `dsilab.distill.PrefixDistillation`); None: nothing."""
        return None
    def state_dict(self) -> dict[str, Any]:
        """What the callback must remember across a resume (saved in each checkpoint)."""
        return {}
    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@dataclass
class TrainResult:
    """What happened: metrics per evaluation, best dev score, cost."""

    steps: int
    epochs_done: float
    best: dict[str, float]
    history: list[dict[str, Any]]
    train_seconds: float                  # wall time in forward/backward/step (no evaluation)
    step_time_s: float                    # mean seconds per optimizer step
    peak_rss_mb: float
    stopped_early: bool
    final_loss: float
    cache_seconds: float = 0.0
    out_of_time: bool = False             # stopped by `time_limit_s`

    @property
    def stopped(self) -> str:
        """How the run ended: "time limit", "converged" (a callback stopped it) or "step cap"."""
        return "time limit" if self.out_of_time else "converged" if self.stopped_early else "step cap"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """bf16/fp16 autocast where it helps: GPUs, and CPUs with bf16 units (AMX / AVX512-BF16)."""
    if amp == "off":
        return None
    if amp == "fp16":
        return torch.float16
    if amp == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    return torch.bfloat16 if ("amx_bf16" in flags or "avx512_bf16" in flags) else None


def _rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _param_groups(model, params: list[torch.nn.Parameter], cfg: TrainConfig) -> list[dict]:
    """AdamW groups: no weight decay on biases and norms; `encoder_lr` for the pretrained encoder's weights.

    A pretrained encoder fine-tunes at a small step (large ones wreck what it knows) while the new decoder and
    docid rows need a large one to learn at all; one shared lr has to sacrifice one of them. Weights the decoder
    shares (T5's embedding matrix, which holds the docid rows) keep `lr`.
    """
    encoder = set()
    if cfg.encoder_lr is not None:
        if not hasattr(model, "net"):
            raise DsilabError("TrainConfig.encoder_lr needs a DSI model (one with an encoder); leave it None here.")
        encoder = {id(p) for p in model.net.get_encoder().parameters()}
        encoder -= {id(p) for p in model.net.get_decoder().parameters()}
    groups = []
    for in_encoder in (False, True):
        for decays in (True, False):
            ps = [p for p in params if (id(p) in encoder) == in_encoder and (p.ndim >= 2) == decays]
            if ps:
                groups.append({"params": ps, "weight_decay": cfg.weight_decay if decays else 0.0,
                               "lr": cfg.encoder_lr if in_encoder else cfg.lr})
    return groups


class PackedExamples:
    """Every example as rows of tensors built once on the model's device: the inputs (token ids, or the frozen
    encoder's states when `encode`), the labels, and which rows have text targets (docid2text)."""

    def __init__(self, model, examples: list[Example], encode: bool, dtype: torch.dtype | None = None,
                 chunk: int = 256):
        device = model.device
        sources = list(dict.fromkeys(e.source for e in examples))
        where = {t: i for i, t in enumerate(sources)}
        self.encode, self.device = encode, device
        self.source_row = torch.tensor([where[e.source] for e in examples])
        self.source_len = torch.zeros(len(sources), dtype=torch.long)
        by_len = sorted(range(len(sources)), key=lambda i: len(sources[i]))
        chunks = []  # (rows, token ids, mask) in chunks of similar length, to limit padding
        for i in range(0, len(by_len), chunk):
            rows = by_len[i : i + chunk]
            enc = model.tokenize_sources([sources[j] for j in rows])
            self.source_len[rows] = enc["attention_mask"].sum(1)
            chunks.append((rows, enc["input_ids"], enc["attention_mask"]))
        width = int(self.source_len.max())
        if encode:  # the frozen encoder's states, written straight into one device tensor (no host round trip)
            hidden = model.net.get_encoder().config.hidden_size
            self.inputs = torch.zeros(len(sources), width, hidden, dtype=dtype or torch.float32, device=device)
        else:
            self.inputs = torch.full((len(sources), width), model.pad_id, dtype=torch.long, device=device)
        was = model.training
        model.eval()
        with torch.no_grad():
            for rows, ids, mask in chunks:
                if not encode:
                    x = ids.to(device)
                elif device.type == "cpu":  # through the process-wide memo: notebooks train many models on one corpus
                    x = model.encode_texts([sources[j] for j in rows])[0]
                else:
                    x = model.encode(ids.to(device), mask.to(device))
                self.inputs[torch.tensor(rows, device=device), : x.shape[1]] = x.to(self.inputs.dtype)
        model.train(was)
        labels = model.tokenize_targets(examples)
        self.label_len = (labels != -100).sum(1)
        self.labels = labels.to(device)
        self.text_rows = torch.tensor([e.task == "docid2text" for e in examples])
        self._rows = self.source_row.to(device)
        self._len = self.source_len.to(device)

    def lengths_of(self, idx: np.ndarray) -> np.ndarray:
        """Input length (tokens) of the examples at `idx`."""
        return self.source_len[self.source_row[idx]].numpy()

    def batch(self, idx: np.ndarray) -> dict[str, Any]:
        """The model's keyword arguments for the examples at `idx`, each tensor cut to the batch's longest row."""
        idx_cpu = torch.as_tensor(idx)
        width = int(self.source_len[self.source_row[idx_cpu]].max())
        if self.device.type == "cuda":  # widths in steps of 8: few distinct shapes, each met (and tuned for) often
            width = min(-(-width // 8) * 8, self.inputs.shape[1])
        depth = int(self.label_len[idx_cpu].max())
        at = idx_cpu.to(self.device, non_blocking=True)
        rows = self._rows[at]
        mask = (torch.arange(width, device=self.device) < self._len[rows, None]).long()
        inputs = self.inputs[rows, :width]
        out = {"input_ids": None if self.encode else inputs, "attention_mask": mask,
               "labels": self.labels[at, :depth], "text_rows": self.text_rows[idx_cpu]}
        if self.encode:
            out["encoder_hidden"] = inputs
        return out


class Trainer:
    """The loop's state, visible to callbacks: model, optimizer, scheduler, config, step, epoch, position.

    dev: (queries, qrels) scored at every evaluation (Hits@1, and Hits@10 when `dev_k` >= 10); probe: doc_id -> indexed
    text, read back at every evaluation as "memo Hits@1" (memorisation). The rest says how this run is kept and shown:
    checkpoints every `checkpoint_every` steps in `checkpoint_dir` (resumed from when `resume`), the best dev weights
    restored at the end (`keep_best`), metrics to a JSONL log, a progress bar.
    """

    def __init__(self, model, examples: list[Example], cfg: TrainConfig, dev: tuple[dict[str, str], Qrels] | None = None,
                 callbacks: list[Callback] = (), *, probe: dict[str, str] | None = None, dev_k: int = 10,
                 keep_best: bool = True, checkpoint_every: int = 0, checkpoint_dir: str | None = None,
                 resume: bool = True, log_path: str | None = None, log_every: int = 10, progress: bool = False):
        from accelerate import Accelerator
        from transformers import get_linear_schedule_with_warmup

        if not examples:
            raise DsilabError("train() got no examples: build them with dsilab.tasks.build_examples.")
        if checkpoint_every and not checkpoint_dir:
            raise DsilabError("checkpoint_every needs checkpoint_dir (where to save).")
        self.cfg, self.examples, self.callbacks = cfg, examples, list(callbacks)
        self.probe, self.dev_k, self.keep_best = probe, dev_k, keep_best
        self.checkpoint_every, self.checkpoint_dir, self.resume = checkpoint_every, checkpoint_dir, resume
        self.log_path, self.log_every, self.progress = log_path, log_every, progress
        self.acc = Accelerator()
        seed_everything(cfg.seed)
        self.model = model
        net = getattr(model, "net", model)
        on_cpu = self.acc.device.type == "cpu"  # where it will train (`prepare` moves a model built on the CPU)
        if (cfg.checkpoint_activations if cfg.checkpoint_activations is not None else on_cpu) \
                and getattr(net, "supports_gradient_checkpointing", False):  # a laptop or Binder is short of memory
            net.activation_checkpointing_enable()  # non-reentrant torch.utils.checkpoint: dropout masks replayed
        params = [p for p in model.parameters() if p.requires_grad]
        if not params:
            raise DsilabError("the model has no trainable parameters: unfreeze something or use another adapter.")
        try:  # the fused kernel: one pass over all weights (CPU: 0.09 -> 0.02 s per step for minilm-seq2seq)
            self.optimizer = torch.optim.AdamW(_param_groups(model, params, cfg), lr=cfg.lr, betas=cfg.betas, fused=True)
        except (RuntimeError, TypeError):  # e.g. weights on several devices or of a type the kernel does not take
            self.optimizer = torch.optim.AdamW(_param_groups(model, params, cfg), lr=cfg.lr, betas=cfg.betas)
        self.model, self.optimizer = self.acc.prepare(self.model, self.optimizer)
        self.world, self.rank = self.acc.num_processes, self.acc.process_index
        self.micro_per_epoch = math.ceil(len(examples) / (cfg.batch_size * self.world))
        self.steps_per_epoch = max(1, self.micro_per_epoch // cfg.grad_accum)
        self.total_steps, warmup, self.eval_every = cfg.schedule(self.steps_per_epoch)
        self.scheduler = get_linear_schedule_with_warmup(self.optimizer, warmup, self.total_steps)
        self.amp = _amp_dtype(cfg.amp, self.acc.device)
        # fp16 needs loss scaling so that small gradients do not underflow; bf16 and fp32 do not.
        self.scaler = torch.amp.GradScaler(self.acc.device.type) if self.amp == torch.float16 else None
        self.dev = dev
        self.step, self.epoch, self.micro = 0, 0, 0   # optimizer steps done; data position (epoch, micro-batch)
        self.best: dict[str, float] = {}
        self.best_state: dict[str, torch.Tensor] | None = None
        self._best_dir: tempfile.TemporaryDirectory | None = None  # where a CPU run's best weights wait (`_keep`)
        self.history, self.stopped_early, self.out_of_time = [], False, False
        self.packed: PackedExamples | None = None
        self._order: tuple[int, np.ndarray | None] = (-1, None)
        self._reset_since_eval()

    @property
    def net(self):
        """The DSIModel without any distributed wrapper."""
        return self.acc.unwrap_model(self.model)

    # -- data ----------------------------------------------------------------------------------------------
    def order(self, epoch: int) -> np.ndarray:
        """The example order of one epoch: a permutation seeded by (seed, epoch), the same after a resume.

        With `bucket`, each window of `bucket` global micro-batches is sorted by input length, cut into micro-batches,
        and the batches of the whole epoch are shuffled (seeded): every batch holds inputs of similar length.
        """
        rng = np.random.default_rng([self.cfg.seed, epoch])
        perm = rng.permutation(len(self.examples))
        if not self.cfg.bucket or self.packed is None:
            return perm
        size = self.cfg.batch_size * self.world
        window = size * self.cfg.bucket
        lengths = self.packed.lengths_of(perm)
        chunks = []
        for i in range(0, len(perm), window):
            part = perm[i : i + window][np.argsort(lengths[i : i + window], kind="stable")]
            chunks += [part[j : j + size] for j in range(0, len(part), size)]
        full = [c for c in chunks if len(c) == size]
        batches = [full[i] for i in rng.permutation(len(full))] + [c for c in chunks if len(c) < size]
        return np.concatenate(batches)

    def micro_batch(self, epoch: int, micro: int) -> np.ndarray:
        """This process's share (example indices) of global micro-batch `micro` of `epoch`."""
        if self._order[0] != epoch:
            self._order = (epoch, self.order(epoch))
        size = self.cfg.batch_size * self.world
        return self._order[1][micro * size : (micro + 1) * size][self.rank :: self.world]

    def tensors(self, idx: np.ndarray) -> dict[str, Any]:
        """The model's inputs for the examples at `idx`, cut from the packed tensors."""
        return self.packed.batch(idx)

    # -- checkpoints -----------------------------------------------------------------------------------------
    def save(self) -> Path:
        path = Path(self.checkpoint_dir) / "last.pt"
        if self.acc.is_main_process:
            path.parent.mkdir(parents=True, exist_ok=True)
            state = {"model": self.net.state_dict(), "optimizer": self.optimizer.state_dict(),
                     "scheduler": self.scheduler.state_dict(), "rng": _rng_state(), "step": self.step,
                     "epoch": self.epoch, "micro": self.micro, "best": self.best, "best_state": self.best_state,
                     "history": self.history, "config": asdict(self.cfg),
                     "callbacks": {key: cb.state_dict() for key, cb in self._keyed_callbacks().items()},
                     "scaler": self.scaler.state_dict() if self.scaler else None}
            with atomic_path(path) as tmp:  # an interruption mid-save leaves the previous checkpoint intact
                torch.save(state, tmp)
        self.acc.wait_for_everyone()
        return path

    def load(self, path: Path) -> None:
        state = torch.load(path, map_location="cpu", weights_only=False)
        self.net.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        _set_rng_state(state["rng"])
        self.step, self.epoch, self.micro = state["step"], state["epoch"], state["micro"]
        self.best, self.best_state = state["best"], state["best_state"]
        self.history = state["history"]
        saved = state.get("callbacks", {})
        for key, cb in self._keyed_callbacks().items():  # by class: a resumed run may pass other callbacks beside
            if key in saved:
                cb.load_state_dict(saved[key])
        if self.scaler and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])

    def _keyed_callbacks(self) -> dict[str, Callback]:
        """Each callback under its class name (and its rank among callbacks of that class)."""
        seen: dict[str, int] = {}
        out = {}
        for cb in self.callbacks:
            name = type(cb).__qualname__
            out[f"{name}#{seen.get(name, 0)}"] = cb
            seen[name] = seen.get(name, 0) + 1
        return out

    # -- evaluation --------------------------------------------------------------------------------------------
    def evaluate(self) -> dict[str, float]:
        """Hits@1 (and Hits@10) on the dev queries, and memorisation of the probe, by constrained beam search: one
        evaluation, two beam widths (`dev_k` ranks for dev, the top docid alone for memorisation)."""
        from .decode import search
        from .metrics import evaluate

        queries, qrels = self.dev
        metrics = evaluate(search(self.net, queries, k=self.dev_k), qrels,
                           ("Hits@1", "Hits@10") if self.dev_k >= 10 else ("Hits@1",))
        if self.probe:
            metrics["memo Hits@1"] = memorisation(self.net, self.probe)
        return metrics

    def log(self, record: dict[str, Any]) -> None:
        self.history.append(record)
        if self.log_path and self.acc.is_main_process:
            with open(self.log_path, "a") as f:
                f.write(json.dumps(record) + "\n")

    def _reset_since_eval(self) -> None:
        self._loss_since_eval = torch.zeros((), device=self.acc.device)
        self._grad_max = torch.zeros((), device=self.acc.device)
        self._steps_since_eval = 0

    def maybe_evaluate(self, final: bool = False) -> None:
        if self.dev is None:
            return
        metrics = self.evaluate()
        # how training went since the last evaluation: a collapse shows as a loss jump after a gradient-norm spike
        train = ({"train loss": round(float(self._loss_since_eval) / self._steps_since_eval, 5),
                  "grad norm max": round(float(self._grad_max), 4)} if self._steps_since_eval else {})
        self._reset_since_eval()
        memo = {"memo Hits@1": metrics.pop("memo Hits@1")} if "memo Hits@1" in metrics else {}
        self.log({"step": self.step, "epoch": round(self.epoch + self.micro / self.micro_per_epoch, 3), **metrics, **train,
                  **{k: round(v, 4) for k, v in memo.items()}})
        LOG.info("step %d: %s", self.step, ", ".join(f"{k} {v:.4g}" for k, v in self.history[-1].items() if k != "step"))
        for cb in self.callbacks:
            cb.on_evaluate(self, {**metrics, **memo})
        # A callback may mark this checkpoint not eligible (e.g. not yet memorised); eligible ones always rank first.
        record = {"step": self.step, **metrics, "eligible": self.history[-1].get("eligible", True)}
        key = lambda rec: (rec.get("eligible", True), rec["Hits@1"])
        if not self.best or key(record) > key(self.best):
            self.best = record
            if self.keep_best and not final:
                names = self._trainable_names()
                self._keep({k: v.detach() for k, v in self.net.state_dict().items() if k in names})

    def _keep(self, state: dict[str, torch.Tensor]) -> None:
        """Hold the best checkpoint's trainable weights: on a CPU in a file mapped back lazily (no memory until it is
        restored: Binder's 2 GB), on a GPU in host memory, updated in place (a second copy would raise the peak)."""
        if self.acc.device.type == "cpu":  # as `checkpoint_activations`: the training device, not the model's now
            if self._best_dir is None:
                self._best_dir = tempfile.TemporaryDirectory(prefix="dsilab-best-", ignore_cleanup_errors=True)
            path = Path(self._best_dir.name) / f"best-{self.step}.pt"
            torch.save(state, path)
            self.best_state = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
            for old in Path(self._best_dir.name).glob("best-*.pt"):
                if old != path:
                    with suppress(OSError):  # (Windows keeps a file that is still mapped: removed with the folder)
                        old.unlink()
        elif self.best_state is not None and self.best_state.keys() == state.keys():
            for k, v in state.items():
                self.best_state[k].copy_(v)
        else:
            self.best_state = {k: v.clone().cpu() for k, v in state.items()}

    def _trainable_names(self) -> set[str]:
        return {n for n, p in self.net.named_parameters() if p.requires_grad}

    def _sync(self) -> None:
        if self.acc.device.type == "cuda":
            torch.cuda.synchronize(self.acc.device)

    # -- the loop ------------------------------------------------------------------------------------------------
    def fit(self) -> TrainResult:
        from tqdm.auto import tqdm

        cfg = self.cfg
        last = Path(self.checkpoint_dir) / "last.pt" if self.checkpoint_dir else None
        if self.resume and last is not None and last.is_file():
            self.load(last)
        t_cache = time.perf_counter()
        states = cfg.cache_encoder and self.net.encoder_frozen
        self.packed = PackedExamples(self.net, self.examples, encode=states,
                                     dtype=self.amp if states and self.acc.device.type == "cuda" else None)
        release_memory()  # the encoder's activations (batch x heads x length^2) would otherwise stay under the loop's
        cache_seconds = time.perf_counter() - t_cache
        LOG.info("inputs packed in %.0f s: %s", cache_seconds, tuple(self.packed.inputs.shape))
        if cfg.compile:
            self.model = torch.compile(self.model, dynamic=True)
        for cb in self.callbacks:
            cb.on_train_begin(self)
        self.model.train()
        bar = tqdm(total=self.total_steps, initial=self.step, disable=not self.progress or not self.acc.is_main_process,
                   desc="train", leave=False)
        deadline = time.perf_counter() + cfg.time_limit_s if cfg.time_limit_s else None
        peak = psutil.Process().memory_info().rss
        trim = self.acc.device.type == "cpu"  # a GPU step's tensors live in the GPU's own allocator
        if trim:
            map_large_blocks()
        loss_n, final_loss, steps_here = 0, float("nan"), 0
        loss_sum = torch.zeros((), device=self.acc.device)  # summed on the device: reading it back would wait for the GPU
        # Training time = the loop's wall time minus evaluations and checkpoints. Not a sum of per-step times: on a GPU
        # a step returns before its kernels have run; the clock is read where the device has caught up.
        t_start, paused = time.perf_counter(), 0.0
        train_time = lambda: (self._sync(), time.perf_counter() - t_start - paused)[1]
        while self.step < self.total_steps and not self.stopped_early:
            step_loss = torch.zeros((), device=self.acc.device)
            for a in range(cfg.grad_accum):
                batch = self.tensors(self.micro_batch(self.epoch, self.micro))
                sync = a == cfg.grad_accum - 1
                ctx = self.acc.no_sync(self.model) if not sync and self.world > 1 else _nullcontext()
                with ctx, torch.autocast(self.acc.device.type, dtype=self.amp or torch.float32, enabled=self.amp is not None):
                    loss = self.model(**batch)
                    for cb in self.callbacks:
                        extra = cb.extra_loss(self)
                        loss = loss if extra is None else loss + extra
                    loss = loss / cfg.grad_accum
                    self.acc.backward(self.scaler.scale(loss) if self.scaler else loss)
                step_loss += loss.detach().float()
                self.micro += 1
                if self.micro >= self.micro_per_epoch:
                    self.epoch, self.micro = self.epoch + 1, 0
            if self.scaler:
                self.scaler.unscale_(self.optimizer)
            if cfg.grad_clip:
                norm = self.acc.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
                if norm is not None:  # the largest pre-clip norm since the last evaluation: spikes show there
                    self._grad_max = torch.maximum(self._grad_max, norm.detach().float())
            if self.scaler:
                self.scaler.step(self.optimizer)
                self.scaler.update()
            else:
                self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.step += 1
            if trim and self.step % 10 == 0:  # every step would cost ~10% of a 1-thread run's time, for little more
                trim_heap()
            steps_here += 1
            loss_sum, loss_n = loss_sum + step_loss, loss_n + 1
            self._loss_since_eval, self._steps_since_eval = self._loss_since_eval + step_loss, self._steps_since_eval + 1
            bar.update(1)
            for cb in self.callbacks:
                cb.on_step_end(self)
            if deadline is not None and time.perf_counter() > deadline:
                self.stopped_early = self.out_of_time = True
            if self.step % self.log_every == 0 or self.step == self.total_steps:
                final_loss = float(step_loss)
                peak = max(peak, psutil.Process().memory_info().rss)
                bar.set_postfix(self._postfix(final_loss))
                self.log({"step": self.step, "epoch": round(self.epoch + self.micro / self.micro_per_epoch, 3),
                          "loss": round(float(loss_sum) / loss_n, 5), "lr": self.scheduler.get_last_lr()[0],
                          "step_time_s": round(train_time() / steps_here, 4)})
                loss_sum, loss_n = torch.zeros((), device=self.acc.device), 0
            evaluate = self.eval_every and self.step % self.eval_every == 0 and self.step < self.total_steps
            save = self.checkpoint_every and self.step % self.checkpoint_every == 0
            if evaluate or save:
                t_pause = (self._sync(), time.perf_counter())[1]
                if evaluate:
                    self.maybe_evaluate()
                    self.model.train()
                    bar.set_postfix(self._postfix(final_loss))
                if save:
                    self.save()
                paused += time.perf_counter() - t_pause
        train_seconds = train_time()
        bar.close()
        if steps_here and math.isnan(final_loss):
            final_loss = float(step_loss)
        evaluated = [h["step"] for h in self.history if "Hits@1" in h]
        if not evaluated or evaluated[-1] != self.step:
            self.maybe_evaluate(final=True)
        if self.keep_best and self.best_state is not None and self.history and self.best.get("step") != self.step:
            self.net.load_state_dict(self.best_state, strict=False)
        self.model.eval()
        for cb in self.callbacks:
            cb.on_train_end(self)
        return TrainResult(self.step, round(self.epoch + self.micro / self.micro_per_epoch, 3), self.best, self.history,
                           round(train_seconds, 2), round(train_seconds / max(steps_here, 1), 4),
                           round(peak / 2**20), self.stopped_early, round(final_loss, 5), round(cache_seconds, 2),
                           self.out_of_time)


    def _postfix(self, loss: float) -> dict[str, str]:
        """What the progress bar shows: the loss, and the last evaluation's dev Hits@1 and memorisation."""
        last = next((h for h in reversed(self.history) if "Hits@1" in h), {})
        shown = {"loss": f"{loss:.3f}"}
        if "Hits@1" in last:
            shown["dev H@1"] = f"{last['Hits@1']:.3f}"
        if "memo Hits@1" in last:
            shown["memo"] = f"{last['memo Hits@1']:.3f}"
        return shown


def memorisation(model, docs: dict[str, str]) -> float:
    """Indexing Hits@1: the share of documents whose indexed text (`docs`: doc_id -> text) decodes to their own docid."""
    from .decode import search
    from .metrics import evaluate

    return evaluate(search(model, docs, k=1, batch_size=128), {d: {d: 1} for d in docs}, ("Hits@1",))["Hits@1"]


class _nullcontext:
    def __enter__(self): return None
    def __exit__(self, *exc): return False


def train(model, examples: list[Example], cfg: TrainConfig = TrainConfig(),
          dev: tuple[dict[str, str], Qrels] | None = None, callbacks: list[Callback] = (), **run: Any) -> TrainResult:
    """Train `model` (a DSIModel) on `examples`; `dev` = (queries, qrels) to evaluate on (a callback such as
    `dsilab.recipes.Convergence` stops on it); `run`: how the run is kept and shown (`Trainer`'s keywords)."""
    result = Trainer(model, examples, cfg, dev, list(callbacks), **run).fit()
    release_memory()  # the optimizer state, gradients and packed examples are garbage once the trainer is gone
    return result
