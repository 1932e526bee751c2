"""The masked language model behind POS-MLM: `bert-base-uncased` when online, else one trained here.

Offline we fine-tune a real `BertForMaskedLM` on the collection's own documents. Two starting
points (`MLMConfig.init`), compared by held-out masked-token accuracy (`MaskedLM.info`; the
default's is recorded with `dsilab bench augment` in dsilab/results/augment-<collection>.json):

* "scratch": a new small BERT (2 layers, 128 wide) with a WordPiece vocabulary trained on the
  collection by `tokenizers`. It learns the unigram distribution ("the", "and", "of") and little
  else, however long it trains: one small collection holds too few words to learn English from.
* "minilm" (default): the packaged pre-trained MiniLM encoder (dsilab.embed.minilm_path(), a
  6-layer BERT) with its WordPiece vocabulary and a new MLM head, all fine-tuned: it starts from
  English, so a few hundred steps are enough to propose context-fitting verbs. Freezing the
  encoder and training the head alone does not work: the sentence-embedding training has washed
  word identity out of its last layer.

So reusing MiniLM's vocabulary (and weights) is both simpler and much better here. Trained
models are cached on disk per (texts, config, seed).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..core import DsilabError, atomic_path, cache_dir, map_large_blocks, release_memory, require_hub, seed_everything

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
HUB_MLM = "bert-base-uncased"


@dataclass(frozen=True)
class MLMConfig:
    """The offline masked LM: where it starts and its training budget (defaults: the benchmark's).

    init="minilm" (or a folder holding a BERT): start from that pre-trained encoder and its
    vocabulary, train a new MLM head and, unless `freeze_encoder`, the encoder too; the size fields
    are then unused. init="scratch": a new small BERT of the sizes below with a WordPiece
    vocabulary trained on the texts (use lr ~1e-3 there).
    """

    vocab_size: int = 3000
    hidden: int = 128
    layers: int = 2
    heads: int = 2
    intermediate: int = 512
    max_len: int = 48
    steps: int = 300
    batch_size: int = 32
    lr: float = 1e-4
    warmup: float = 0.1
    mask_prob: float = 0.15
    heldout: float = 0.05
    init: str = "minilm"
    freeze_encoder: bool = False

    def __post_init__(self) -> None:
        if self.hidden % self.heads:
            raise DsilabError(f"MLMConfig: hidden={self.hidden} must be a multiple of heads={self.heads}.")
        if self.steps < 1 or self.batch_size < 1 or self.max_len < 8:
            raise DsilabError("MLMConfig: steps and batch_size must be >= 1 and max_len >= 8.")
        if not 0.0 < self.mask_prob < 1.0 or not 0.0 <= self.heldout < 0.5:
            raise DsilabError("MLMConfig: mask_prob must be in (0, 1) and heldout in [0, 0.5).")


class MaskedLM:
    """A masked LM and its tokenizer behind one method, `candidates`: ranked whole-word fillers per [MASK]."""

    def __init__(self, model, tokenizer, name: str, info: dict | None = None):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name
        self.info = info or {}
        vocab = tokenizer.get_vocab()
        words = np.zeros(len(vocab) if max(vocab.values()) < len(vocab) else max(vocab.values()) + 1, dtype=bool)
        self.id_to_token = {i: t for t, i in vocab.items()}
        for tok, i in vocab.items():  # fillers are whole alphabetic words, never sub-word pieces or specials
            words[i] = tok.isalpha() and len(tok) > 1 and tok not in SPECIAL and tok.isascii()
        self._whole_word = words

    @property
    def mask_token(self) -> str:
        return self.tokenizer.mask_token

    def candidates(self, masked_texts: Sequence[str], top_n: int = 20, batch_size: int = 64) -> list[list[list[tuple[str, float]]]]:
        """For each text, for each [MASK] in order: the `top_n` whole-word fillers with probabilities."""
        import torch

        out: list[list[list[tuple[str, float]]]] = []
        allowed = torch.from_numpy(self._whole_word)
        n_vocab = self.model.config.vocab_size
        if allowed.shape[0] < n_vocab:
            allowed = torch.nn.functional.pad(allowed, (0, n_vocab - allowed.shape[0]))
        allowed = allowed[:n_vocab]
        max_len = min(getattr(self.tokenizer, "model_max_length", 512) or 512, self.model.config.max_position_embeddings)
        head = self.model.cls if hasattr(self.model, "cls") else self.model.lm_head  # BERT's or RoBERTa's MLM head
        for start in range(0, len(masked_texts), batch_size):
            chunk = list(masked_texts[start : start + batch_size])
            enc = self.tokenizer(chunk, return_tensors="pt", padding=True, truncation=True, max_length=max_len)
            at = enc["input_ids"] == self.tokenizer.mask_token_id
            with torch.no_grad():  # the vocabulary at the [MASK] positions only: every position's logits are ~0.4 GB a batch
                hidden = self.model.base_model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
                logits = head(hidden[at])  # one row per [MASK], row by row in reading order
            rows = iter(logits)
            for row, text in enumerate(chunk):
                per_mask = []
                for _ in range(int(at[row].sum())):
                    probs = torch.softmax(next(rows).masked_fill(~allowed, float("-inf")).float(), dim=-1)
                    p, idx = probs.topk(min(top_n, int(allowed.sum())))
                    per_mask.append([(self.id_to_token[i], float(q)) for i, q in zip(idx.tolist(), p.tolist())])
                n_masks = text.count(self.mask_token)
                per_mask += [[] for _ in range(n_masks - len(per_mask))]  # masks cut off by truncation get no filler
                out.append(per_mask)
        return out


def load_mlm(name: str = HUB_MLM) -> MaskedLM:
    """A pretrained masked LM from the hub or a local folder (fails fast offline, naming `train_mlm`)."""
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    if not Path(name).is_dir():
        require_hub(f"masked LM {name!r}", "dsilab.augment.train_mlm(collection.contents) (a small BERT trained on the collection)")
    return MaskedLM(AutoModelForMaskedLM.from_pretrained(name), AutoTokenizer.from_pretrained(name), name=name)


def _init_path(init: str) -> str:
    if init == "minilm":
        from ..embed import minilm_path

        return str(minilm_path())
    if Path(init).is_dir():
        return init
    raise DsilabError(f"MLMConfig.init={init!r}: use 'scratch', 'minilm' or the folder of a BERT model.")


def _key(texts: Sequence[str], config: MLMConfig, seed: int) -> str:
    h = hashlib.sha256(json.dumps({"config": asdict(config), "seed": seed, "tokenizer": 2}, sort_keys=True).encode())
    for t in texts:
        h.update(b"\x1e" + t.encode("utf-8"))
    return h.hexdigest()[:20]


def train_tokenizer(texts: Sequence[str], vocab_size: int = 3000):
    """A lower-casing BERT WordPiece tokenizer trained on `texts` with the `tokenizers` library, the same vocabulary
    on every run."""
    from tokenizers import BertWordPieceTokenizer
    from transformers import BertTokenizer

    wp = BertWordPieceTokenizer(lowercase=True, strip_accents=True)
    # The trainer numbers each "##c" piece in hash-map order and breaks ties between merges by those numbers, so two
    # runs can learn different vocabularies (huggingface/tokenizers#1794). Registering every "##c" up front, in sorted
    # order, fixes their numbers and so the merges.
    chars = sorted({c for t in texts for c in wp.normalizer.normalize_str(t) if not c.isspace()})
    wp.train_from_iterator(list(texts), vocab_size=vocab_size, min_frequency=2,
                           special_tokens=SPECIAL + [f"##{c}" for c in chars], show_progress=False)
    return BertTokenizer(vocab=wp.get_vocab(), do_lower_case=True, strip_accents=True, model_max_length=512)


def train_mlm(texts: Sequence[str], config: MLMConfig = MLMConfig(), seed: int = 0, cache: bool = True,
              progress: bool = False, device: str | None = None) -> MaskedLM:
    """Train (or load from the cache) a small `BertForMaskedLM` on `texts`; `info` holds its held-out accuracy.

    Texts are cut into windows of `max_len` tokens; `heldout` of the windows are kept out of
    training to report masked-token accuracy, so the model's quality is a number, not a hope.
    """
    import torch
    from transformers import BertConfig, BertForMaskedLM, BertTokenizer, DataCollatorForLanguageModeling

    texts = [t for t in texts if t and t.strip()]
    if len(texts) < 2:
        raise DsilabError("train_mlm needs at least 2 non-empty texts (e.g. collection.contents).")
    name = f"collection-mlm-{_key(texts, config, seed)}"
    path = cache_dir("mlm") / name
    if cache and (path / "info.json").is_file():
        info = json.loads((path / "info.json").read_text())
        return MaskedLM(BertForMaskedLM.from_pretrained(path), BertTokenizer.from_pretrained(path), name, info)

    t0 = time.perf_counter()
    seed_everything(seed)
    map_large_blocks()  # a training step's large tensors go back to the system when freed (see dsilab.core)
    if config.init == "scratch":
        tokenizer = train_tokenizer(texts, config.vocab_size)
        model = BertForMaskedLM(BertConfig(
            vocab_size=len(tokenizer), hidden_size=config.hidden, num_hidden_layers=config.layers,
            num_attention_heads=config.heads, intermediate_size=config.intermediate,
            max_position_embeddings=config.max_len, pad_token_id=tokenizer.pad_token_id,
        ))
    else:  # a pretrained BERT encoder (MiniLM by default); the MLM head is new, its decoder tied to the word embeddings
        source = _init_path(config.init)
        from transformers.utils import logging as hf_logging

        tokenizer = BertTokenizer.from_pretrained(source)
        level = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # the new MLM head is "missing from the checkpoint" by design
        try:
            model = BertForMaskedLM.from_pretrained(source, dtype=torch.float32)
        finally:
            hf_logging.set_verbosity(level)
        if config.freeze_encoder:
            model.bert.requires_grad_(False)
            model.bert.embeddings.word_embeddings.requires_grad_(False)
    windows = _windows(tokenizer, texts, config.max_len)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(windows))
    n_held = int(round(config.heldout * len(windows)))
    held, train = [windows[i] for i in order[:n_held]], [windows[i] for i in order[n_held:]]

    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model.to(dev)
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=config.mask_prob, seed=seed)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.lr, weight_decay=0.01)
    warm = max(1, int(config.warmup * config.steps))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: _cosine_with_warmup(step, warm, config.steps))
    from tqdm.auto import tqdm

    model.train()
    if config.init != "scratch" and config.freeze_encoder:
        model.bert.eval()  # frozen features without dropout
    losses = []
    for step in tqdm(range(config.steps), desc="train MLM", disable=not progress):
        batch_idx = rng.integers(0, len(train), size=config.batch_size)
        batch = {k: v.to(dev) for k, v in collator([{"input_ids": train[i]} for i in batch_idx]).items()}
        loss = _masked_loss(model, batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
    del opt, sched, batch, loss
    model.eval().cpu()
    release_memory()  # the optimizer's moments and the gradients: about 0.3 GB the heap would otherwise keep
    info = {
        "config": asdict(config), "seed": seed, "n_texts": len(texts), "n_windows": len(windows),
        "vocab": len(tokenizer), "params": sum(p.numel() for p in model.parameters()),
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "train_seconds": round(time.perf_counter() - t0, 2), "device": str(dev),
        "final_loss": round(float(np.mean(losses[-20:])), 4),
        **_heldout_accuracy(model, tokenizer, held, config, seed),
    }
    if cache:
        with atomic_path(path) as tmp:
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            (tmp / "info.json").write_text(json.dumps(info, indent=2))
    return MaskedLM(model, tokenizer, name, info)


def _cosine_with_warmup(step: int, warmup: int, total: int) -> float:
    """The learning-rate factor at `step`: linear warm-up, then a half cosine to 0 (transformers' cosine schedule,
    written out: importing `transformers.optimization` loads peft and bitsandbytes, about 50 MB)."""
    if step < warmup:
        return step / max(1, warmup)
    progress = (step - warmup) / max(1, total - warmup)
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))


def _masked_loss(model, batch) -> "torch.Tensor":
    """Cross-entropy at the masked positions only: the vocabulary projection (most of a small BERT's
    compute) runs on ~15% of the tokens instead of all of them, same loss as `BertForMaskedLM`."""
    import torch

    frozen = not any(p.requires_grad for p in model.bert.parameters())
    with torch.no_grad() if frozen else contextlib.nullcontext():  # a frozen encoder needs no graph
        hidden = model.bert(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    sel = batch["labels"] != -100
    return torch.nn.functional.cross_entropy(model.cls(hidden[sel]), batch["labels"][sel])


def _windows(tokenizer, texts: Sequence[str], max_len: int) -> list[list[int]]:
    """Token-id windows of at most `max_len` (with [CLS]/[SEP]) covering every text."""
    body = max_len - 2
    out = []
    for t in texts:
        ids = tokenizer(t, add_special_tokens=False)["input_ids"]
        for s in range(0, max(len(ids), 1), body):
            piece = ids[s : s + body]
            if piece:
                out.append([tokenizer.cls_token_id, *piece, tokenizer.sep_token_id])
    return out


def _heldout_accuracy(model, tokenizer, held: list[list[int]], config: MLMConfig, seed: int) -> dict:
    """Top-1/top-5 accuracy at randomly masked held-out positions (a sanity number for the notebook)."""
    import torch
    from transformers import DataCollatorForLanguageModeling

    if not held:
        return {"heldout_top1": None, "heldout_top5": None, "heldout_masks": 0}
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=config.mask_prob, seed=seed + 1,
                                               mask_replace_prob=1.0, random_replace_prob=0.0)
    batch = collator([{"input_ids": w} for w in held])  # every mask drawn at once: the numbers do not depend on chunks
    sel = batch["labels"] != -100
    top5 = []
    with torch.no_grad():  # 64 windows at a time, the vocabulary at masked positions only: the logits of every held-out
        for i in range(0, len(held), 64):  # token at once were 14.9 GB at SciFact size
            part = slice(i, i + 64)
            hidden = model.bert(input_ids=batch["input_ids"][part], attention_mask=batch["attention_mask"][part])
            top5.append(model.cls(hidden.last_hidden_state[sel[part]]).topk(5, dim=-1).indices)
    top5 = torch.cat(top5)
    gold = batch["labels"][sel]
    return {
        "heldout_top1": round(float((top5[:, 0] == gold).float().mean()), 4),
        "heldout_top5": round(float((top5 == gold[:, None]).any(-1).float().mean()), 4),
        "heldout_masks": int(sel.sum()),
    }
