"""What every module shares: the error family, the `Run` type and the `Retriever` protocol, seeding, caches and hub
access."""
from __future__ import annotations

import os
import random
import socket
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Iterator, Protocol, runtime_checkable

import numpy as np

#: A ranked result list per query: qid -> [(docid, score), ...], best first.
Run = dict[str, list[tuple[str, float]]]

#: Relevance judgements: qid -> {docid: grade}.
Qrels = dict[str, dict[str, int]]


@runtime_checkable
class Retriever(Protocol):
    """What every retriever of the course answers, classic or learned: query texts in, a `Run` out, so that one
    `evaluate(retriever.search(queries, k), qrels)` scores any of them (`isinstance(x, Retriever)` checks the method)."""

    def search(self, queries: dict[str, str], k: int = 10) -> Run:
        """The top-k (docid, score) pairs of every query (qid -> text), best first."""
        ...


class DsilabError(Exception):
    """Bad input or an impossible request; the message says what was wrong and what to do."""


def check_choice(name: str, value: object, choices: object) -> None:
    """Refuse a `value` of option `name` that is not among `choices`, naming every allowed one (one message for all)."""
    if value not in choices:
        raise DsilabError(f"{name}={value!r}; choose one of {list(choices)}.")


def seed_everything(seed: int = 0) -> None:
    """Seed Python, NumPy and (if imported) torch so that a run repeats exactly."""
    random.seed(seed)
    np.random.seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)
    try:
        import torch
    except ImportError:  # torch is optional for the data and baseline layers
        return
    torch.manual_seed(seed)


def configure_threads(n: int | None = None) -> int:
    """Set the CPU threads of torch (and BLAS, via threadpoolctl) once, for the whole session; returns the number.

    n: None takes env DSILAB_THREADS, else every core of this machine (a laptop, a Colab VM, a GPU host alike).
    """
    import torch
    from threadpoolctl import threadpool_limits

    n = n or int(os.environ.get("DSILAB_THREADS", 0)) or os.cpu_count() or 1
    torch.set_num_threads(n)
    threadpool_limits(n)
    map_large_blocks()  # the session's other CPU setting: large blocks back to the system when freed
    return n


def release_memory() -> None:
    """Collect garbage and hand the C heap's free pages back to the system (glibc's `malloc_trim`), so that what a
    finished training run or a deleted model held stops counting against a notebook's memory (Binder's 2 GB).

    Why by hand: glibc keeps freed blocks for reuse, and after a training run they are most of the process' memory
    (measured: 1,160 -> 905 MB after one FAST DSI run); no library call returns them. A no-op off glibc."""
    import gc

    gc.collect()
    trim_heap()


def trim_heap() -> None:
    """Hand the C heap's free pages back to the system now (glibc's `malloc_trim`; a no-op elsewhere). The CPU training
    loop calls it every 10 steps: a step frees and reallocates hundreds of MB of differently shaped tensors, and
    without it the freed pages stay counted (measured: 1,178 -> 980 MB resident between the steps of a FAST run)."""
    libc = _glibc()
    if libc:
        libc.malloc_trim(0)


def map_large_blocks(threshold_mb: int = 8) -> bool:
    """Have glibc give every block of `threshold_mb` MB or more its own memory map, returned to the system when freed
    (`mallopt(M_MMAP_THRESHOLD)`); False where there is no glibc. Called by `configure_threads` and CPU training.

    Why: glibc raises that threshold by itself (up to 32 MB) each time such a block is freed, so a training step's
    tensors of 8-32 MB then come from the heap, and its peak holds them and the gaps between them. Measured on the
    FAST notebooks (2 cores, fresh cache): 05 1,316-1,369 -> 1,254 MB (114 -> 127 s), 10 1,285 -> 1,233 MB (166 ->
    163 s). At 16 MB, 05 kept 1,329 MB; at 1 MB every activation costs page faults and 10 ran several times slower."""
    libc = _glibc()
    return bool(libc) and libc.mallopt(-3, threshold_mb << 20) == 1  # -3: M_MMAP_THRESHOLD in malloc.h


def _glibc():
    """glibc through ctypes, loaded once; False on macOS, Windows or musl."""
    global _LIBC
    if _LIBC is None:
        import ctypes

        try:
            _LIBC = ctypes.CDLL("libc.so.6")
            _LIBC.malloc_trim, _LIBC.mallopt
        except (OSError, AttributeError):
            _LIBC = False
    return _LIBC


_LIBC = None  # glibc, once loaded; False where there is none


@contextmanager
def quiet_hf_loading() -> Iterator[None]:
    """Load transformers models without their load reports and progress bars: building a new head or decoder on a
    pretrained encoder is expected to leave keys unused or new, and the report would only clutter a notebook."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        hf_logging.enable_progress_bar()


def cache_dir(kind: str) -> Path:
    """A folder for derived artefacts (embeddings, tokenizers); `DSILAB_CACHE` moves the root."""
    root = Path(os.environ.get("DSILAB_CACHE", Path.home() / ".cache" / "dsilab"))
    path = root / kind
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside `path` (file or folder), this process's own, moved into place when the block ends
    without error: a reader never sees a half-written cache entry or checkpoint, and processes side by side (bench
    jobs) never write one temporary. If another process put `path` there first, its copy is kept."""
    import shutil

    path = Path(path)
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp{path.suffix}")  # keeps the suffix: np.save adds none
    try:
        yield tmp
        if tmp.is_dir() and path.exists():
            shutil.rmtree(tmp)
        else:
            tmp.replace(path)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


@lru_cache(maxsize=1)
def hub_available(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face hub can be reached: False at once when HF_HUB_OFFLINE is set."""
    if _truthy(os.environ.get("HF_HUB_OFFLINE")) or _truthy(os.environ.get("HF_DATASETS_OFFLINE")):
        return False
    try:
        with socket.create_connection(("huggingface.co", 443), timeout=timeout):
            return True
    except OSError:
        return False


def require_hub(what: str, offline_alternative: str) -> None:
    """Fail fast, naming the offline alternative, when `what` needs the hub and it is out of reach."""
    if not hub_available():
        raise DsilabError(
            f"{what} needs the Hugging Face hub, which cannot be reached from here "
            f"(offline, or HF_HUB_OFFLINE is set). Use {offline_alternative} instead."
        )


def run_from_scores(qids: list[str], doc_ids: list[str], scores: np.ndarray, k: int = 100) -> Run:
    """Turn a (queries x docs) score matrix into a `Run` of the top-k docs per query, best first; equal scores in
    document order, so that a run is the same on every machine (numpy's argpartition picks among tied scores
    differently on CPUs with different vector instructions, and BM25 ties often: every document sharing no query word
    scores 0)."""
    scores = np.asarray(scores)
    k = min(k, scores.shape[1])
    kth = -np.partition(-scores, k - 1, axis=1)[:, k - 1]  # each row's k-th best score: a value, the same everywhere
    run: Run = {}
    for row, qid in enumerate(qids):
        idx = np.flatnonzero(scores[row] >= kth[row])  # in document order
        idx = idx[np.argsort(-scores[row, idx], kind="stable")][:k]
        run[qid] = [(doc_ids[j], float(scores[row, j])) for j in idx]
    return run
