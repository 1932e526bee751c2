"""DSI models: a seq2seq network, its tokenizer and the docids, behind `build_model(backbone, docids, examples)`.

Backbones (`BACKBONES` lists the offline ones):

* ``"t5-scratch"``: a small T5 built from a config, with a Unigram tokenizer trained on the training
  examples (the `tokenizers` library). No download; learns everything from the collection.
* ``"minilm-seq2seq"``: the packaged pretrained MiniLM (dsilab.embed.minilm_path(), a BERT) as the
  encoder and a small new BERT decoder with cross-attention (transformers' EncoderDecoderModel);
  the decoder's word embeddings start from MiniLM's. By default the encoder is frozen
  (`freeze_encoder=True`): CPU-friendly, and the training loop then encodes every input only once.
* any hub seq2seq name (``"t5-small"``, ``"t5-base"``, ``"google/flan-t5-base"``, ...) when the hub is
  reachable (`require_hub` fails fast offline, naming the offline backbones).

Docid tokens (`DocidTree.token_vocab`) are added to the tokenizer and the embeddings are resized, so a
docid is one token per digit in both encoder input and decoder output. Maximum source/target lengths
are measured on the examples (capped by the backbone's limit); longer inputs are truncated with a warning.

Docid tokens can start where the documents are (`docid_init="encoder"`, the default for pretrained encoders):
each token's embedding is the mean encoding of the documents whose docid begins with it. For atomic docids that
makes the model a dense retriever with a learned query side (lab, trained to convergence: test Hits@1 0.819
against 0.733 from random rows, the DSI paper's start); `dsilab.recipes` starts from random rows by default.

Docids are scored by a *docid head* (`docid_logits`): a softmax over the docid tokens and EOS only, the rows of
the tied output layer that a docid can use; text targets (docid2text) keep the full vocabulary.

Adapters: `build_model(..., adapter="full")` is plain fine-tuning; `register_adapter(name, fn)` lets
another module (e.g. LoRA/QLoRA via peft) wrap `model.net` in place: ``fn(model, **adapter_kwargs) -> model``. An
adapter whose saved network is rebuilt differently from a trainable one takes `for_search` (`saved.load_model`
passes True).

`DSIModel` exposes what train/decode need: `batch(examples)` -> tensors, `forward` (the loss), `encode`,
`docid_logits`, `next_token_logprobs`, `docid_sequences()`.
"""
from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from .core import DsilabError, atomic_path, cache_dir, quiet_hf_loading, require_hub, seed_everything
from .docids import DocidTree
from .tasks import Example

BACKBONES = ("t5-scratch", "minilm-seq2seq")
#: The published T5 v1 shapes, for `build_model("t5-scratch", ..., **T5_SHAPES[name])`: the same network as the hub
#: checkpoint, randomly initialised (offline; sizes and speed, not pretrained knowledge).
T5_SHAPES: dict[str, dict[str, int]] = {
    "t5-small": {"d_model": 512, "d_ff": 2048, "layers": 6, "decoder_layers": 6, "heads": 8},
    "t5-base": {"d_model": 768, "d_ff": 3072, "layers": 12, "decoder_layers": 12, "heads": 12},
}

#: (encoder_key, max_source_len, text) -> encoder states: shared by every model whose frozen encoder is the same
#: pretrained network (e.g. the packaged MiniLM), so the lab's documents are encoded once per process, not per
#: variant. The length is part of the key: a text cut at another length ends elsewhere (and ends with EOS).
_SHARED_ENCODINGS: dict[tuple[str, int, str], torch.Tensor] = {}
#: At most this many texts in the shared memo (about 0.4 GB of float32 states at 64 tokens): it serves the lab-size
#: collections that many variants re-read in one process; a 100k-document corpus would fill the host's memory.
SHARED_ENCODINGS_MAX = 20_000


def clear_encoder_cache() -> None:
    """Forget the shared encoder states (free memory between collections)."""
    _SHARED_ENCODINGS.clear()


HUB_HINT = "t5-small, t5-base, google/flan-t5-base or any hub seq2seq model name"


class DSIModel(nn.Module):
    """A seq2seq `net` + tokenizer + docids: tokenises examples, computes the loss, scores next tokens."""

    def __init__(self, net: nn.Module, tokenizer: Any, docids: DocidTree, backbone: str, max_source_len: int,
                 max_target_len: int, start_id: int, eos_id: int, pad_id: int, model_limit: int):
        super().__init__()
        self.net, self.tokenizer, self.docids, self.backbone = net, tokenizer, docids, backbone
        self.max_source_len, self.max_target_len, self.model_limit = max_source_len, max_target_len, model_limit
        self.start_id, self.eos_id, self.pad_id = start_id, eos_id, pad_id
        self.adapter = "full"
        self.encoder_key: str | None = None  # set when the frozen encoder is a known pretrained one (shared cache)
        self.base_vocab = len(tokenizer) - len(docids.token_vocab)
        ids = tokenizer.convert_tokens_to_ids(docids.token_vocab)
        self.docid_token_ids: dict[str, int] = dict(zip(docids.token_vocab, ids))
        # The docid head's vocabulary: every docid token, then EOS. `_docid_index` maps a vocabulary id to its
        # position there (-100 for text tokens). Buffers, so that they follow the model to its device.
        self.register_buffer("docid_vocab", torch.tensor(list(ids) + [eos_id]), persistent=False)
        index = torch.full((len(tokenizer),), -100, dtype=torch.long)
        index[self.docid_vocab] = torch.arange(len(self.docid_vocab))
        self.register_buffer("_docid_index", index, persistent=False)
        # Optional hooks (off by default; dsilab.dgi sets them): a cosine docid head with a learnable scale, and a
        # module that gives the decoder its input embeddings at training time (soft teacher forcing).
        self.cosine_scale: nn.Parameter | None = None
        self.soft_inputs: nn.Module | None = None

    def use_cosine_head(self, scale: float = 30.0, learn: bool = True) -> None:
        """Score docid tokens by scale * cos(decoder feature, token row) instead of the inner product (+ bias).

        Cosine logits are blind to a row's norm, so a frequent docid token cannot win by growing its row (the
        "geometric conflict" of DGI); the scale (learnable, DGI's init 30) sets how peaked the softmax can get.
        Needs one of the offline backbones (their decoder features are reachable: `_head_features`).
        """
        if type(self.net).__name__ not in ("EncoderDecoderModel", "T5ForConditionalGeneration"):
            raise DsilabError(f"use_cosine_head needs an offline backbone {list(BACKBONES)}, not {type(self.net).__name__}.")
        self.cosine_scale = nn.Parameter(torch.tensor(float(scale), device=self.docid_vocab.device), requires_grad=learn)

    def add_docids(self, docids: DocidTree, max_source_len: int | None = None) -> list[str]:
        """Grow the model to a larger `DocidTree` (documents added to the index, e.g. `dsilab.incremental`).

        Every document the model already knows must keep its docid (else its learned mapping would point elsewhere).
        Tokens the new tree uses and the model lacks (atomic: one per new document; semantic: a last digit beyond any
        seen before) are added to the tokenizer, the embeddings of encoder and decoder grow by as many rows (frozen
        weights stay frozen), and the docid head's buffers are rebuilt. `max_source_len` may only grow (longer inputs).
        Returns the tokens added. Changes the model in place: copy it first to keep the original.
        """
        if docids.kind != self.docids.kind:
            raise DsilabError(f"add_docids: the model has {self.docids.kind} docids, the new tree {docids.kind}; "
                              "grow a tree of the same kind (dsilab.incremental.extend_docids).")
        moved = [d for d, code in self.docids.codes.items() if docids.codes.get(d) != code]
        if moved:
            raise DsilabError(f"add_docids: {len(moved)} indexed document(s) lost or changed their docid (e.g. "
                              f"{moved[0]!r}); a grown tree must keep every existing docid and only add new ones.")
        if self.adapter != "full":
            raise DsilabError(f"add_docids supports adapter='full' models, not {self.adapter!r}: grow the model "
                              "before wrapping it in an adapter.")
        new = [t for t in docids.token_vocab if t not in self.docid_token_ids]
        if new:
            self.tokenizer.add_tokens(new, special_tokens=True)
            net = self.net
            parts = [net.get_encoder(), net.get_decoder()] if type(net).__name__ == "EncoderDecoderModel" else [net]
            for part in parts:  # EncoderDecoderModel cannot resize itself; its encoder and decoder can
                frozen = {n for n, p in part.named_parameters() if not p.requires_grad}
                part.resize_token_embeddings(len(self.tokenizer), mean_resizing=False)
                for n, p in part.named_parameters():
                    p.requires_grad_(n not in frozen)
        self._index_docids(docids)
        self.max_target_len = max(self.max_target_len, min(int(docids.depths.max()) + 1, self.model_limit))
        if max_source_len is not None:
            self.max_source_len = max(self.max_source_len, min(max_source_len, self.model_limit))
        return new

    def _index_docids(self, docids: DocidTree) -> None:
        """Point the docid head at `docids`' tokens (they must be in the tokenizer): ids, `docid_vocab`, `_docid_index`."""
        self.docids = docids
        ids = self.tokenizer.convert_tokens_to_ids(docids.token_vocab)
        self.docid_token_ids = dict(zip(docids.token_vocab, ids))
        device = self.docid_vocab.device
        self.docid_vocab = torch.tensor(list(ids) + [self.eos_id], device=device)
        index = torch.full((len(self.tokenizer),), -100, dtype=torch.long, device=device)
        index[self.docid_vocab] = torch.arange(len(self.docid_vocab), device=device)
        self._docid_index = index

    # -- what is trainable ------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        """Where the weights live; inputs must follow (cuda once trained on a GPU)."""
        return next(self.parameters()).device

    @property
    def encoder_frozen(self) -> bool:
        """True when no encoder weight trains: then an input's encoding never changes and can be cached."""
        return not any(p.requires_grad for p in self.net.get_encoder().parameters())

    def train(self, mode: bool = True) -> "DSIModel":
        super().train(mode)
        if self.encoder_frozen:  # a frozen encoder stays deterministic (no dropout), so caching is exact
            self.net.get_encoder().eval()
        return self

    def num_parameters(self, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    # -- tokenisation -------------------------------------------------------------------------------------------
    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def tokenize_sources(self, texts: list[str]) -> dict[str, torch.Tensor]:
        """Encoder inputs (ids + mask), truncated to `max_source_len` with a warning when anything is cut."""
        rows = [r[: 10 * self.max_source_len] for r in self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]]
        too_long = sum(len(r) + 1 > self.max_source_len for r in rows)
        if too_long:
            warnings.warn(f"{too_long} input(s) longer than max_source_len={self.max_source_len} tokens were truncated.",
                          stacklevel=2)
        rows = [r[: self.max_source_len - 1] + [self.eos_id] for r in rows]
        return _pad(rows, self.pad_id)

    def docid_sequences(self) -> dict[str, list[int]]:
        """doc_id -> decoder token ids of its docid, ending with EOS (what constrained decoding may emit)."""
        tok = self.docid_token_ids
        return {d: [tok[self.docids.token(x)] for x in code] + [self.eos_id] for d, code in self.docids.codes.items()}

    def tokenize_targets(self, examples: list[Example]) -> torch.Tensor:
        """Decoder labels (EOS-terminated, padded with -100 so that padding costs nothing)."""
        seqs = self.docid_sequences()
        rows = []
        for e in examples:
            if e.task == "docid2text":
                rows.append(self._ids(e.target)[: self.max_target_len - 1] + [self.eos_id])
            else:
                rows.append(seqs[e.doc_id])
        return _pad(rows, -100)["input_ids"]

    def batch(self, examples: list[Example]) -> dict[str, torch.Tensor]:
        """Examples -> input_ids, attention_mask, labels."""
        return {**self.tokenize_sources([e.source for e in examples]), "labels": self.tokenize_targets(examples)}

    @torch.no_grad()
    def init_docid_embeddings(self, examples: list[Example], batch_size: int = 128) -> int:
        """Start each docid token at the mean encoding of the documents whose docid begins with it; returns #tokens set.

        Atomic docids then start at their own document's embedding, so the decoder learns one shared map from a
        query to that space instead of one random vector per document (lab: Hits@1 0.733 -> 0.819);
        a semantic docid's first token starts at its top-level cluster's centroid. Needs a pretrained encoder.
        """
        texts: dict[str, list[str]] = {}
        wanted = [e for e in examples if e.task == "index"] or [e for e in examples if e.task != "docid2text"]
        for e in wanted:
            texts.setdefault(e.doc_id, []).append(e.source)
        flat = [(d, t) for d, ts in texts.items() for t in ts]
        sums: dict[str, torch.Tensor] = {}
        home = self.device  # a model is built on the CPU; 10^5 documents are encoded on a GPU when there is one
        self.to("cuda" if torch.cuda.is_available() else home)
        for i in range(0, len(flat), batch_size):
            chunk = flat[i : i + batch_size]
            hidden, mask = self.encode_texts([t for _, t in chunk])
            pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)  # MiniLM's own pooling
            for (d, _), v in zip(chunk, nn.functional.normalize(pooled.float(), dim=-1).cpu()):
                token = self.docid_token_ids[self.docids.tokens(d)[0]]
                sums[token] = sums.get(token, 0) + v
        self.to(home)
        w = self.net.get_output_embeddings().weight  # the scoring rows (tied to the decoder's words where tied)
        scale = w[: self.base_vocab].float().norm(dim=-1).mean()
        for token, v in sums.items():
            w[token] = (nn.functional.normalize(v, dim=0) * scale).to(w.dtype)
        return len(sums)

    # -- the network --------------------------------------------------------------------------------------------
    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Encoder hidden states (batch, length, hidden)."""
        return self.net.get_encoder()(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    @torch.no_grad()
    def encode_texts(self, texts: list[str], cache: dict[str, torch.Tensor] | None = None,
                     batch_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded encoder states and mask for `texts`, memoised per text when the encoder is frozen.

        The memo is `cache` (e.g. one training run's) or, for a known frozen pretrained encoder, the
        process-wide one; inputs holding docid tokens (whose new embeddings differ per model) stay private.
        """
        frozen = self.encoder_frozen
        device = self.device
        shared = frozen and self.encoder_key is not None
        memo = cache if cache is not None else ({} if not frozen else None)

        def key(t):
            return self.encoder_key, self.max_source_len, t

        def get(t):
            if shared and key(t) in _SHARED_ENCODINGS:
                return _SHARED_ENCODINGS[key(t)]
            return memo.get(t) if memo is not None else None
        todo = [t for t in dict.fromkeys(texts) if get(t) is None] if frozen else list(dict.fromkeys(texts))
        fresh: dict[str, torch.Tensor] = {}
        was = self.training
        self.eval()
        todo.sort(key=len)  # similar lengths in a chunk: less padding
        for i in range(0, len(todo), batch_size):
            chunk = todo[i : i + batch_size]
            enc = self.tokenize_sources(chunk)
            hidden = self.encode(enc["input_ids"].to(device), enc["attention_mask"].to(device)).float()
            for j, t in enumerate(chunk):
                n = int(enc["attention_mask"][j].sum())
                fresh[t] = hidden[j, :n].cpu()
                if frozen:
                    if shared and int(enc["input_ids"][j, :n].max()) < self.base_vocab \
                            and len(_SHARED_ENCODINGS) < SHARED_ENCODINGS_MAX:
                        _SHARED_ENCODINGS[key(t)] = fresh[t]
                    elif memo is not None:
                        memo[t] = fresh[t]
        self.train(was)
        states = [fresh[t] if t in fresh else get(t) for t in texts]
        width = max(len(x) for x in states)
        out = torch.zeros(len(texts), width, states[0].shape[-1])
        mask = torch.zeros(len(texts), width, dtype=torch.long)
        for i, x in enumerate(states):
            out[i, : len(x)], mask[i, : len(x)] = x, 1
        return out.to(device), mask.to(device)

    def decode(self, hidden: torch.Tensor, attention_mask: torch.Tensor, decoder_input_ids: torch.Tensor) -> torch.Tensor:
        """Decoder logits (batch, target length, vocab) given encoder states."""
        from transformers.modeling_outputs import BaseModelOutput

        out = self.net(encoder_outputs=BaseModelOutput(last_hidden_state=hidden), attention_mask=attention_mask,
                       decoder_input_ids=decoder_input_ids, use_cache=False)
        return out.logits

    def shift_right(self, labels: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: decoder input = start token + labels[:-1] (padding as pad_id)."""
        start = torch.full_like(labels[:, :1], self.start_id)
        dec = torch.cat([start, labels[:, :-1]], dim=1)
        return dec.masked_fill(dec == -100, self.pad_id)

    def _head_features(self, hidden: torch.Tensor, attention_mask: torch.Tensor,
                       decoder_input_ids: torch.Tensor, inputs_embeds: torch.Tensor | None = None) -> torch.Tensor | None:
        """The decoder's last features just before the output projection, for the two offline backbone types.

        None for anything else (hub models, peft-wrapped nets): those score all rows and `docid_logits` slices.
        `inputs_embeds` (batch, length, hidden), when given, replaces the embeddings of `decoder_input_ids`.
        """
        if inputs_embeds is not None:  # the backbone adds positions (and normalises) as for looked-up rows
            decoder_input_ids = None
        net = self.net
        name = type(net).__name__
        if name == "EncoderDecoderModel" and type(net.decoder).__name__ == "BertLMHeadModel" \
                and getattr(net, "enc_to_dec_proj", None) is None:
            x = net.decoder.bert(input_ids=decoder_input_ids, inputs_embeds=inputs_embeds, encoder_hidden_states=hidden,
                                 encoder_attention_mask=attention_mask, use_cache=False).last_hidden_state
            return net.decoder.cls.predictions.transform(x)
        if name == "T5ForConditionalGeneration":
            x = net.decoder(input_ids=decoder_input_ids, inputs_embeds=inputs_embeds, encoder_hidden_states=hidden,
                            encoder_attention_mask=attention_mask, use_cache=False).last_hidden_state
            return x * net.model_dim ** -0.5 if getattr(net.config, "scale_decoder_outputs", False) else x
        return None

    def docid_logits(self, hidden: torch.Tensor, attention_mask: torch.Tensor,
                     decoder_input_ids: torch.Tensor, inputs_embeds: torch.Tensor | None = None) -> torch.Tensor:
        """Logits over the docid head's vocabulary only (`docid_vocab`: docid tokens + EOS).

        Why not the whole vocabulary: a docid is never spelled with text tokens (the constrained beam search
        masks them anyway), and scoring ~30k text rows at every position is most of a CPU training step.
        Softmax over docid tokens is what models with a docid vocabulary of their own do (NCI, GENRET).
        """
        feats = self._head_features(hidden, attention_mask, decoder_input_ids, inputs_embeds)
        if feats is None:
            return self.decode(hidden, attention_mask, decoder_input_ids)[..., self.docid_vocab]
        head = self.net.get_output_embeddings()
        if self.cosine_scale is not None:  # use_cosine_head: scale * cos, no bias
            rows = nn.functional.normalize(head.weight[self.docid_vocab], dim=-1)
            return self.cosine_scale * nn.functional.linear(nn.functional.normalize(feats, dim=-1), rows.to(feats.dtype))
        bias = head.bias[self.docid_vocab] if head.bias is not None else None
        return nn.functional.linear(feats, head.weight[self.docid_vocab], bias)

    def forward(self, input_ids: torch.Tensor | None, attention_mask: torch.Tensor, labels: torch.Tensor,
                encoder_hidden: torch.Tensor | None = None, text_rows: torch.Tensor | None = None) -> torch.Tensor:
        """Mean token cross-entropy of the labels; pass `encoder_hidden` to skip the encoder.

        Rows whose labels are docids are scored by the docid head, text targets (docid2text) by the full vocabulary.
        `text_rows` (a CPU bool per row, when the caller knows it) says which rows are text targets without asking
        the device, which would make a GPU wait at every step.
        """
        hidden = self.encode(input_ids, attention_mask) if encoder_hidden is None else encoder_hidden
        dec = self.shift_right(labels)
        restricted = torch.where(labels == -100, labels, self._docid_index[labels.clamp(min=0)])
        # soft_inputs (when set, training only): decoder input embeddings for docid rows and an extra loss term
        soft = self.soft_inputs is not None and self.training and torch.is_grad_enabled()
        if text_rows is not None and not bool(text_rows.any()):
            embeds, extra = self.soft_inputs(self, labels, dec) if soft else (None, 0.0)
            logits = self.docid_logits(hidden, attention_mask, dec, embeds)
            total = nn.functional.cross_entropy(logits.float().flatten(0, 1), restricted.flatten(),
                                                ignore_index=-100, reduction="sum")
            return total / (labels != -100).sum().clamp(min=1) + extra
        docid_rows = ((labels == -100) | (restricted != -100)).all(dim=1)
        total = hidden.new_zeros((), dtype=torch.float32)
        extra = 0.0
        for rows, target, scorer in ((docid_rows, restricted, self.docid_logits), (~docid_rows, labels, self.decode)):
            if rows.any():
                if soft and scorer == self.docid_logits:
                    embeds, extra = self.soft_inputs(self, labels[rows], dec[rows])
                    logits = scorer(hidden[rows], attention_mask[rows], dec[rows], embeds)
                else:
                    logits = scorer(hidden[rows], attention_mask[rows], dec[rows])
                total = total + nn.functional.cross_entropy(logits.float().flatten(0, 1), target[rows].flatten(),
                                                            ignore_index=-100, reduction="sum")
        return total / (labels != -100).sum().clamp(min=1) + extra

    def docid_token_logprobs(self, hidden: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor
                             ) -> torch.Tensor:
        """log p of each token of the docids `labels` (teacher-forced; 0 at padding -100) from the docid head: summed
        over a prefix, the score constrained beam search ranks that prefix by."""
        logits = self.docid_logits(hidden, attention_mask, self.shift_right(labels))
        target = self._docid_index[labels.clamp(min=0)].clamp(min=0)
        logp = torch.log_softmax(logits.float(), -1).gather(-1, target[..., None])[..., 0]
        return logp.masked_fill(labels == -100, 0.0)

    @torch.no_grad()
    def next_token_logprobs(self, hidden: torch.Tensor, attention_mask: torch.Tensor, prefix: torch.Tensor) -> torch.Tensor:
        """log p(next token | prefix) from the docid head, as a full-vocabulary row (-inf for text tokens)."""
        logp = torch.log_softmax(self.docid_logits(hidden, attention_mask, prefix)[:, -1].float(), dim=-1)
        out = logp.new_full((logp.shape[0], len(self._docid_index)), float("-inf"))
        out[:, self.docid_vocab] = logp
        return out


def _pad(rows: list[list[int]], value: int) -> dict[str, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), value, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        mask[i, : len(r)] = 1
    return {"input_ids": ids, "attention_mask": mask}


# -- adapters (LoRA/QLoRA plug in here) ---------------------------------------------------------------------
#: adapter name -> the function that wraps a built model, or where it lives ("module:function"), imported on first
#: use: so `build_model(adapter="dgi")` works in a fresh process, and this module imports none of the layers above it.
ADAPTERS: dict[str, Callable[..., DSIModel] | str] = {
    "full": lambda model, **kw: model,
    "lora": "dsilab.adapters:lora",
    "qlora": "dsilab.adapters:qlora",
    "dgi": "dsilab.dgi.seq2seq:install_dgi",
}


def register_adapter(name: str, fn: Callable[..., DSIModel] | str) -> None:
    """Make `build_model(..., adapter=name)` call `fn(model, **adapter_kwargs)` after the model is built (`fn` may
    be a "module:function" string, imported when first used)."""
    ADAPTERS[name] = fn


def resolve_adapter(name: str) -> Callable[..., DSIModel]:
    """The function behind an adapter name, importing its module the first time."""
    import importlib

    if name not in ADAPTERS:
        raise DsilabError(f"unknown adapter {name!r}; available: {sorted(ADAPTERS)} (or register_adapter(name, fn)).")
    fn = ADAPTERS[name]
    if isinstance(fn, str):
        module, _, attr = fn.partition(":")
        fn = ADAPTERS[name] = getattr(importlib.import_module(module), attr)
    return fn


# -- backbones ----------------------------------------------------------------------------------------------
def _train_tokenizer(texts: list[str], vocab_size: int):
    """A lower-cased Unigram tokenizer (as T5's SentencePiece) trained on `texts`, cached on disk by content."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    key = hashlib.sha256(json.dumps([vocab_size, texts]).encode()).hexdigest()[:20]
    path = cache_dir("tokenizers") / f"unigram2-{key}.json"
    if path.is_file():
        tok = Tokenizer.from_file(str(path))
    else:
        tok = Tokenizer(models.Unigram())
        tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        tok.decoder = decoders.Metaspace()
        trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=["<pad>", "</s>", "<unk>"],
                                          unk_token="<unk>", show_progress=False)
        tok.train_from_iterator(texts, trainer)
        # The trainer's scores vary in their last digits from run to run, and with them its order (the token ids) of
        # near-equal pieces: pieces sorted by text, scores rounded, every run gives the same ids.
        vocab = json.loads(tok.to_str())["model"]["vocab"]
        special, pieces = vocab[:3], sorted((p, round(s, 2)) for p, s in vocab[3:])
        tok.model = models.Unigram([tuple(x) for x in special] + pieces, unk_id=2)
        with atomic_path(path) as tmp:
            tok.save(str(tmp))
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")


def _t5_scratch(texts: list[str], docids: DocidTree, vocab_size: int = 4000, d_model: int = 256, layers: int = 3,
                decoder_layers: int = 2, heads: int = 4, d_ff: int = 1024, dropout: float = 0.1, tokenizer: Any = None):
    from transformers import T5Config, T5ForConditionalGeneration

    tok = tokenizer or _train_tokenizer(texts, vocab_size)  # a saved model brings the tokenizer it was trained with
    tok.add_tokens(docids.token_vocab, special_tokens=True)
    cfg = T5Config(vocab_size=len(tok), d_model=d_model, d_kv=d_model // heads, d_ff=d_ff, num_layers=layers,
                   num_decoder_layers=decoder_layers, num_heads=heads, dropout_rate=dropout,
                   pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                   decoder_start_token_id=tok.pad_token_id, tie_word_embeddings=True)
    return T5ForConditionalGeneration(cfg), tok, tok.pad_token_id, tok.eos_token_id, 512


def _minilm_seq2seq(texts: list[str], docids: DocidTree, decoder_layers: int = 2, heads: int = 6,
                    d_ff: int = 1536, dropout: float = 0.1, freeze_encoder: bool = True):
    from transformers import AutoTokenizer, BertConfig, BertLMHeadModel, BertModel, EncoderDecoderModel

    from .embed import minilm_path

    path = minilm_path()
    tok = AutoTokenizer.from_pretrained(path)
    with quiet_hf_loading():  # no load report for the pooler left out on purpose, nor a note on how new rows start
        encoder = BertModel.from_pretrained(path, add_pooling_layer=False)
        pretrained_words = encoder.get_input_embeddings().weight.detach().clone()
        tok.add_tokens(docids.token_vocab, special_tokens=True)
        encoder.resize_token_embeddings(len(tok))
    hidden = encoder.config.hidden_size
    cfg = BertConfig(vocab_size=len(tok), hidden_size=hidden, num_hidden_layers=decoder_layers,
                     num_attention_heads=heads, intermediate_size=d_ff, hidden_dropout_prob=dropout,
                     attention_probs_dropout_prob=dropout, is_decoder=True, add_cross_attention=True,
                     max_position_embeddings=512, pad_token_id=tok.pad_token_id, tie_word_embeddings=True)
    decoder = BertLMHeadModel(cfg)
    with torch.no_grad():  # start the decoder's words where MiniLM's are: text targets begin meaningful
        decoder.get_input_embeddings().weight[: len(pretrained_words)] = pretrained_words
    net = EncoderDecoderModel(encoder=encoder, decoder=decoder)
    net.config.decoder_start_token_id, net.config.pad_token_id = tok.cls_token_id, tok.pad_token_id
    if freeze_encoder:
        for p in net.get_encoder().parameters():
            p.requires_grad_(False)
    return net, tok, tok.cls_token_id, tok.sep_token_id, encoder.config.max_position_embeddings


def _hub(name: str, docids: DocidTree):
    require_hub(f"backbone {name!r}", f"an offline backbone ({', '.join(repr(b) for b in BACKBONES)})")
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(name)
    net = AutoModelForSeq2SeqLM.from_pretrained(name)
    tok.add_tokens(docids.token_vocab, special_tokens=True)
    net.resize_token_embeddings(len(tok))
    start = net.config.decoder_start_token_id if net.config.decoder_start_token_id is not None else tok.pad_token_id
    limit = getattr(tok, "model_max_length", 512)
    return net, tok, start, tok.eos_token_id, min(limit, 4096) if limit else 512


def _looks_like_hub(name: str) -> bool:
    return "/" in name or name.split("-")[0] in {"t5", "bart", "mt5", "flan", "byt5", "long"}


@dataclass(frozen=True)
class ModelConfig:
    """Which network learns the docids (the model part of `dsilab.recipes.Recipe`; `build_model` takes it apart)."""

    backbone: str = "minilm-seq2seq"     # BACKBONES, or a hub seq2seq name (online)
    decoder_layers: int = 2              # minilm-seq2seq: layers of the new decoder
    freeze_encoder: bool = True          # minilm-seq2seq: the pretrained encoder stays fixed (its states are cached)
    arch: dict[str, Any] | None = None   # more backbone sizes, e.g. t5-scratch {"d_model": 512, "layers": 6} (T5_SHAPES)
    docid_init: str = "random"           # "encoder": docid rows start at document encodings (a dense-initialised variant)
    adapter: str = "full"                # "lora" | "qlora" | "dgi": what trains on the backbone (dsilab.adapters)
    adapter_kwargs: dict[str, Any] | None = None  # e.g. {"r": 8, "alpha": 16}
    seed: int = 0

    def arch_sizes(self) -> dict[str, Any]:
        """The backbone sizes `build_model` takes (a saved model records them to rebuild its network)."""
        arch: dict[str, Any] = dict(self.arch or {})
        if self.backbone == "minilm-seq2seq":
            arch = {"decoder_layers": self.decoder_layers, "freeze_encoder": self.freeze_encoder, **arch}
        return arch

    def build_model(self, docids: DocidTree, examples: list[Example]) -> "DSIModel":
        """An untrained model of this config for `docids`, sized on `examples`."""
        return build_model(self.backbone, docids, examples, adapter=self.adapter, seed=self.seed,
                           adapter_kwargs=self.adapter_kwargs, docid_init=self.docid_init, **self.arch_sizes())


def build_model(backbone: str, docids: DocidTree, examples: list[Example], adapter: str = "full", seed: int = 0,
                max_source_len: int | None = None, max_target_len: int | None = None,
                adapter_kwargs: dict[str, Any] | None = None, docid_init: str = "auto", tokenizer: Any = None,
                **arch: Any) -> DSIModel:
    """A DSI model for `docids`, sized on `examples` (lengths; the tokenizer of t5-scratch).

    docid_init: "encoder" starts docid tokens at document encodings (`DSIModel.init_docid_embeddings`),
    "random" leaves them random (the DSI paper's setting), "auto" = "encoder" when the encoder is pretrained.

    arch: backbone-specific sizes, e.g. d_model/layers/decoder_layers/vocab_size for t5-scratch,
    decoder_layers/freeze_encoder for minilm-seq2seq. Deterministic per seed. tokenizer: the one a saved t5-scratch
    model was trained with (`dsilab.saved.load_model`), instead of training one on the examples.
    """
    if not examples:
        raise DsilabError("build_model needs the training examples (to size the model); got none.")
    if docid_init not in ("auto", "encoder", "random"):
        raise DsilabError(f"docid_init={docid_init!r}; choose 'auto', 'encoder' or 'random'.")
    if docid_init == "encoder" and backbone == "t5-scratch":
        raise DsilabError("docid_init='encoder' needs a pretrained encoder; t5-scratch starts random (use 'random').")
    wrap = resolve_adapter(adapter)  # fails early on an unknown name
    seed_everything(seed)
    texts = [e.source for e in examples] + [e.target for e in examples if e.task == "docid2text"]
    try:
        if backbone == "t5-scratch":
            parts = _t5_scratch(list(dict.fromkeys(texts)), docids, tokenizer=tokenizer, **arch)
        elif backbone == "minilm-seq2seq":
            parts = _minilm_seq2seq(texts, docids, **arch)
        elif _looks_like_hub(backbone):
            parts = _hub(backbone, docids, **arch)
        else:
            raise DsilabError(f"unknown backbone {backbone!r}: use an offline one {list(BACKBONES)} or a hub "
                              f"seq2seq name ({HUB_HINT}).")
    except TypeError as e:
        raise DsilabError(f"build_model({backbone!r}): bad size argument ({e}).") from None
    net, tok, start, eos, limit = parts
    # Lengths from the data: the longest source/target seen in training (+EOS), within the backbone's limit.
    if max_source_len is None:
        longest = max(map(len, tok(list(dict.fromkeys(e.source for e in examples)), add_special_tokens=False)["input_ids"]))
        max_source_len = min(longest + 1, limit)
    if max_target_len is None:
        text_targets = [len(tok(e.target, add_special_tokens=False)["input_ids"]) for e in examples if e.task == "docid2text"]
        max_target_len = min(max([int(docids.depths.max())] + text_targets) + 1, limit)
    model = DSIModel(net, tok, docids, backbone, max_source_len, max_target_len, start, eos, tok.pad_token_id, limit)
    if backbone == "minilm-seq2seq" and model.encoder_frozen:
        model.encoder_key = "minilm-frozen"
    if docid_init == "encoder" or (docid_init == "auto" and backbone != "t5-scratch"):
        model.init_docid_embeddings(examples)
    model = wrap(model, **(adapter_kwargs or {}))
    model.adapter = adapter
    if adapter != "full":  # an adapter may change (e.g. quantise) the encoder: never share its states
        model.encoder_key = None
    return model
