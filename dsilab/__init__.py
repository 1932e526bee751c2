"""dsilab: a notebook-first course and lab on Differentiable Search Indexing.

The notebooks in `notebooks/` teach; this package holds every idea they use, one module per
concept (see the README's module map).
"""
from .core import DsilabError, Qrels, Run, configure_threads, seed_everything
from .data import Collection, Doc, load_collection
from .metrics import evaluate

__version__ = "0.1.0"
__all__ = ["Collection", "Doc", "DsilabError", "Qrels", "Run", "configure_threads", "evaluate", "load_collection",
           "seed_everything"]
