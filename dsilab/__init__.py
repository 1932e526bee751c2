"""dsilab: a notebook-first course and lab on Differentiable Search Indexing.

The notebooks in `notebooks/` teach; this package holds every idea they use, one module per
concept (see the README's module map).
"""
import logging

# bitsandbytes (pulled in by transformers/peft) logs a warning on every CPU with AVX512-BF16 that its optional fused
# 4-bit kernel, a hub download, is missing; it then uses its built-in kernel, which is what dsilab.adapters tests.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)

from .core import DsilabError, Qrels, Retriever, Run, configure_threads, seed_everything  # noqa: E402
from .data import Collection, Doc, load_collection
from .metrics import evaluate

__version__ = "0.1.0"
__all__ = ["Collection", "Doc", "DsilabError", "Qrels", "Retriever", "Run", "configure_threads", "evaluate",
           "load_collection", "seed_everything"]
