"""Data augmentation for DSI training: stopword removal, numbers to words, POS-guided masked-LM refill.

Each augmenter maps `str -> str` (and records what it changed); a `Pipeline` composes them over a
collection's documents and/or queries and caches the result per configuration. `ablation_pipelines`
gives the settings that `dsilab bench augment` compares.
"""
from __future__ import annotations

from .base import Augmented, AugmentedCollection, Augmenter, Pipeline, before_after, diff_html, excerpt
from .mlm import HUB_MLM, MaskedLM, MLMConfig, load_mlm, train_mlm
from .numbers import Num2Text
from .posmlm import PosMLM, load_spacy
from .stopwords import StopwordRemover, collection_stopwords, stopword_list

__all__ = ["HUB_MLM", "MLMConfig", "Augmented", "AugmentedCollection", "Augmenter", "MaskedLM", "Num2Text",
           "Pipeline", "PosMLM", "StopwordRemover", "ablation_pipelines", "before_after", "collection_stopwords",
           "diff_html", "excerpt", "load_mlm", "load_spacy", "stopword_list", "train_mlm"]


def ablation_pipelines(mlm: MaskedLM, fraction: float = 0.1) -> dict[str, Pipeline]:
    """The ablation settings: none, each augmentation alone, all together.

    In "all", POS-MLM runs first (the LM needs natural text), then numbers, then stopwords.
    """
    pos = PosMLM(mlm, fraction=fraction)
    return {
        "none": Pipeline([]),
        "stopwords": Pipeline([StopwordRemover()]),
        "num2text": Pipeline([Num2Text()]),
        "pos_mlm": Pipeline([pos]),
        "all": Pipeline([pos, Num2Text(), StopwordRemover()]),
    }
