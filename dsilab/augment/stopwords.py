"""Stopword removal: NLTK's English list when its data is installed, else spaCy's, same interface.

Removing function words shortens the text a DSI model must memorise and leaves the words that
identify a document; whether that helps retrieval is measured in `dsilab bench augment`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Iterable, Sequence

from ..core import DsilabError
from .base import Augmented, Augmenter, _check_texts

#: A word: letters/digits (any script), with inner apostrophes, hyphens, dots or commas
#: ("don't", "best-known", "3.5", "280,000"); anything else that is not a space is punctuation.
_TOKEN = re.compile(r"[^\W_]+(?:['’.,-][^\W_]+)*|[^\w\s]|_")
_NO_SPACE_BEFORE = set(".,;:!?)]}%”’»")
_NO_SPACE_AFTER = set("([{“‘«$")
PUNCTUATION = ("keep", "drop")
SOURCES = ("auto", "nltk", "spacy")


def words(text: str) -> list[str]:
    """The word tokens of a text (punctuation left out), as stopword removal sees them."""
    return [t for t in _TOKEN.findall(text) if _is_word(t)]


def _is_word(tok: str) -> bool:
    return any(ch.isalnum() for ch in tok)


@lru_cache(maxsize=4)
def stopword_list(source: str = "auto") -> tuple[str, frozenset[str]]:
    """(name of the list in use, lower-case stopwords): NLTK's English list if its data is present, else spaCy's."""
    if source not in SOURCES:
        raise DsilabError(f"unknown stopword source {source!r}; use one of {list(SOURCES)}.")
    if source in ("auto", "nltk"):
        try:
            from nltk.corpus import stopwords

            return "nltk", frozenset(w.lower() for w in stopwords.words("english"))
        except (ImportError, LookupError, OSError):
            if source == "nltk":
                raise DsilabError(
                    "NLTK's stopword data is not installed: run `python -m nltk.downloader stopwords` "
                    "or use StopwordRemover(source='spacy') (the offline list)."
                ) from None
    from spacy.lang.en.stop_words import STOP_WORDS

    return "spacy", frozenset(w.lower() for w in STOP_WORDS)


def collection_stopwords(texts: Sequence[str], max_df: float = 0.5, top_k: int | None = None) -> tuple[str, ...]:
    """Words in more than `max_df` of the texts (most frequent first, at most `top_k`): collection-specific stopwords.

    Document frequency comes from scikit-learn's `CountVectorizer` with our tokenizer, so that the
    words match what `StopwordRemover` sees.
    """
    from sklearn.feature_extraction.text import CountVectorizer

    if not 0.0 < max_df <= 1.0:
        raise DsilabError(f"max_df={max_df} must be a fraction in (0, 1], e.g. 0.5 (words in over half the texts).")
    if len(texts) == 0:
        raise DsilabError("collection_stopwords needs at least one text.")
    vec = CountVectorizer(tokenizer=lambda t: [w.lower() for w in words(t)], lowercase=False, binary=True, token_pattern=None)
    counts = vec.fit_transform(texts)
    df = counts.sum(axis=0).A1 / counts.shape[0]
    vocab = vec.get_feature_names_out()
    order = sorted((i for i in range(len(vocab)) if df[i] > max_df), key=lambda i: (-df[i], vocab[i]))
    return tuple(vocab[i] for i in order[:top_k])


def join_tokens(tokens: Iterable[str]) -> str:
    """Tokens back to text: a space between words, none before closing or after opening punctuation."""
    out: list[str] = []
    for tok in tokens:
        if out and not (tok in _NO_SPACE_BEFORE or out[-1] in _NO_SPACE_AFTER):
            out.append(" ")
        out.append(tok)
    return "".join(out)


#: Cardinal number words. spaCy's and NLTK's lists hold many of them ("three", "hundred", "fifty"), so after
#: Num2Text a stopword list would turn "318 times" into "eighteen times"; numbers are content, not function words.
NUMBER_WORDS = frozenset(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety hundred thousand "
    "million billion trillion".split())


@dataclass(frozen=True)
class StopwordRemover(Augmenter):
    """Drop stopwords (case-insensitive), keep every other word as written.

    `punctuation`: "keep" (kept, re-attached to the previous word) or "drop". `extra`: more
    stopwords, e.g. from `collection_stopwords`; `keep`: words never removed (e.g. "not");
    `keep_numbers`: never remove number words (NUMBER_WORDS). Non-English words pass through untouched;
    a text of only stopwords becomes "".
    """

    source: str = "auto"
    punctuation: str = "keep"
    extra: tuple[str, ...] = ()
    keep: tuple[str, ...] = ()
    keep_numbers: bool = True
    stopwords: frozenset[str] = field(init=False, repr=False, compare=False)
    list_name: str = field(init=False, compare=False)
    name = "stopwords"

    def __post_init__(self) -> None:
        if self.punctuation not in PUNCTUATION:
            raise DsilabError(f"punctuation={self.punctuation!r}; use one of {list(PUNCTUATION)}.")
        if isinstance(self.extra, str) or isinstance(self.keep, str):
            raise DsilabError("extra and keep are sequences of words, e.g. extra=('planet',), not one string.")
        list_name, base = stopword_list(self.source)
        stop = (base | {w.lower() for w in self.extra}) - {w.lower() for w in self.keep}
        stop -= NUMBER_WORDS if self.keep_numbers else frozenset()
        object.__setattr__(self, "stopwords", frozenset(stop))
        object.__setattr__(self, "list_name", list_name)
        object.__setattr__(self, "extra", tuple(self.extra))
        object.__setattr__(self, "keep", tuple(self.keep))

    def config(self) -> dict:
        return {"augmenter": "StopwordRemover", "list": self.list_name, "punctuation": self.punctuation,
                "extra": sorted(self.extra), "keep": sorted(self.keep), "keep_numbers": self.keep_numbers}

    def is_stopword(self, token: str) -> bool:
        """Case-insensitive; a contraction ("they're", "don't") is one if all its parts are (spaCy lists the parts)."""
        t = token.lower().replace("’", "'").replace("‘", "'")
        if t in self.stopwords:
            return True
        if "'" not in t:
            return False
        cut = len(t) - 3 if t.endswith("n't") else t.index("'")
        head, tail = t[:cut], t[cut:]
        return bool(head) and head in self.stopwords and tail in self.stopwords

    def augment_batch(self, texts: Sequence[str], seed: int = 0) -> list[Augmented]:
        _check_texts(texts, "StopwordRemover")
        return [self._one(t) for t in texts]

    def _one(self, text: str) -> Augmented:
        kept, removed = [], []
        for tok in _TOKEN.findall(text):
            if _is_word(tok):
                (removed if self.is_stopword(tok) else kept).append(tok)
            elif self.punctuation == "keep" and kept:  # punctuation with no word before it is dropped
                kept.append(tok)
        # squeeze punctuation left dangling by removed words ("the cat , and ." -> "cat.")
        cleaned: list[str] = []
        for tok in kept:
            if cleaned and not _is_word(tok) and not _is_word(cleaned[-1]) and tok not in "([{" and cleaned[-1] not in ")]}":
                cleaned[-1] = tok if tok in ".!?" else cleaned[-1]
                continue
            cleaned.append(tok)
        out = join_tokens(cleaned)
        return Augmented(text, out, tuple((w, "") for w in removed))
