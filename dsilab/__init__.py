"""dsilab: a notebook-first course and lab on Differentiable Search Indexing.

The notebooks in `notebooks/` teach; this package holds every idea they use, one module per
concept (see the README's module map).
"""
import logging

# bitsandbytes (pulled in by transformers/peft) logs a warning on every CPU with AVX512-BF16 that its optional fused
# 4-bit kernel, a hub download, is missing; it then uses its built-in kernel, which is what dsilab.adapters tests.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)

from .core import DsilabError, Qrels, Retriever, Run, configure_threads, release_memory, seed_everything  # noqa: E402
from .data import Collection, Doc, load_collection
from .metrics import evaluate
from .saved import load_model

__version__ = "0.1.0"
__all__ = ["Collection", "Doc", "DsilabError", "Qrels", "Retriever", "Run", "configure_threads", "evaluate",
           "load_collection", "load_model", "release_memory", "seed_everything"]


def _notebook_display() -> None:
    """In a notebook kernel, print tables whole: pandas' text view of a wide table would otherwise wrap into blocks
    (the course's tables carry an interval, a chance level and a verdict beside each score), and 3 decimals suffice."""
    import sys

    if "ipykernel" not in sys.modules:
        return
    try:
        import pandas as pd
    except ImportError:
        return
    pd.set_option("display.expand_frame_repr", False)
    pd.set_option("display.max_columns", 60)
    pd.set_option("display.width", 400)
    pd.set_option("display.precision", 3)


_notebook_display()
