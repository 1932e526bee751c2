"""Query generation: many synthetic queries per document, the indexing input of DSI-QG (Zhuang et al., 2022).

A DSI model answers queries about documents it saw queries for far better than about documents it only indexed:
a document's text does not look like a query. docT5query (Nogueira & Lin, 2019) and DSI-QG close the gap by
generating queries for every document and training on them as (query -> docid) pairs.

    queries = generate_queries(collection, n_per_doc=5, generator="trained")   # doc_id -> [query, ...]
    kept, report = roundtrip_filter(collection, queries, k=10)                 # drop queries BM25 cannot trace back
    query_quality(collection, queries)                                         # how often the source doc is BM25's top-1

Generators (`generator=`):

* ``"span"``: spans and key-phrases of the document; no model (the baseline, and the course's old pseudo-queries).
* ``"trained"``: a doc -> query seq2seq trained here, offline, on the collection's own (document, training query)
  pairs. Encoder: the packaged MiniLM, frozen; its input embeddings are added to its last layer so that the decoder
  can see which words a document holds (MiniLM's sentence training washes word identity out of its last layer, see
  dsilab.augment.mlm). Decoder: MiniLM's first `decoder_layers` layers with new cross-attention (a "bert2bert" warm
  start, Rothe et al., 2020), plus a learned *copy bias*: one weight added to the logit of every word piece of the
  source document, a one-parameter cousin of the pointer-generator (See et al., 2017). Without it the decoder writes
  fluent questions about the wrong planet (lab: the source document was BM25's top-1 for 19% of them). Trained until
  the loss on held-out queries stops falling; cached on disk.
* a hub name (``DOCT5QUERY`` = "doc2query/msmarco-t5-base-v1", or any doc2query seq2seq): docT5query itself, when
  the hub is reachable (fails fast offline, naming "trained").

Every generator samples (top-k, or nucleus with `top_p`), drops repeats of a query for the same document, is seeded,
and caches its queries on disk.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
import time
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .core import (DsilabError, atomic_path, cache_dir, map_large_blocks, quiet_hf_loading, release_memory, require_hub,
                   seed_everything)
from .data import Collection

DOCT5QUERY = "doc2query/msmarco-t5-base-v1"
OFFLINE = ("span", "trained")


# -- the span baseline ---------------------------------------------------------------------------------------------
_WORD = re.compile(r"[a-z0-9][a-z0-9'\-]*")
_SENT = re.compile(r"(?<=[.!?])\s+")


def _span_queries(collection: Collection, n: int, seed: int) -> dict[str, list[str]]:
    """Alternately a short span of a sentence and its rarest words (by IDF) in order, like a terse search query.

    n draws per document from one seeded stream; a document whose draws repeat is topped up from its own stream
    (up to 3n more draws), so adding de-duplication left every other document's queries as they were.
    """
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    docs = [[_WORD.findall(s.lower()) for s in _SENT.split(text) if s.strip()] for text in collection.contents]
    df = Counter(w for sents in docs for w in {w for s in sents for w in s})
    idf = {w: math.log(len(docs) / c) for w, c in df.items()}

    def draw(sents: list[list[str]], j: int, rng: np.random.Generator) -> str:
        sent = sents[int(rng.integers(len(sents)))]
        if j % 2 == 0:
            width = int(rng.integers(3, 8))
            start = int(rng.integers(0, max(1, len(sent) - width + 1)))
            return " ".join(sent[start : start + width])
        content = [w for w in dict.fromkeys(sent) if w not in ENGLISH_STOP_WORDS] or sent
        top = set(sorted(content, key=lambda w: -idf.get(w, 0.0))[: int(rng.integers(2, 5))])
        return " ".join(w for w in content if w in top)

    rng = np.random.default_rng(seed)
    out: dict[str, list[str]] = {}
    for i, (doc_id, sents) in enumerate(zip(collection.doc_ids, docs)):
        sents = [s for s in sents if s] or [["empty"]]
        queries = [draw(sents, j, rng) for j in range(n)]
        if len(_distinct(queries, n)) < n:
            extra = np.random.default_rng([seed, i])
            queries += [draw(sents, j, extra) for j in range(n, 4 * n)]
        out[doc_id] = _distinct(queries, n)
    return out


def _distinct(queries: list[str], n: int) -> list[str]:
    """The first n queries that differ once lower-cased and whitespace-normalised (empty ones dropped)."""
    seen: dict[str, str] = {}
    for q in queries:
        key = " ".join(q.lower().split())
        if key and key not in seen:
            seen[key] = q.strip()
    return list(seen.values())[:n]


# -- the trained generator -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class QGConfig:
    """The offline query generator: its size, its training budget and how it stops."""

    decoder_layers: int = 2        # MiniLM layers reused as the decoder
    copy_bias: bool = True         # the learned bonus for the source document's word pieces (off: a plain decoder)
    lr: float = 3e-4
    batch_size: int = 32
    max_steps: int = 2000          # the cap; training stops earlier on held-out loss
    eval_every: int = 25
    patience: int = 4              # evaluations without a lower held-out loss before stopping
    source_len: int = 160          # document tokens read
    query_len: int = 32            # most tokens of a query
    dev_holdout: float = 0.1       # share of training queries held out when the collection has no dev split
    seed: int = 0


def _training_pairs(collection: Collection, split: str) -> list[tuple[str, str]]:
    queries, qrels = collection.split(split)
    return [(d, queries[q]) for q, rels in qrels.items() for d, g in rels.items() if g > 0]


def real_queries(collection: Collection, split: str = "train") -> dict[str, list[str]]:
    """doc_id -> the real queries of `split` that judge it relevant: the standard generated queries are read against."""
    out: dict[str, list[str]] = {}
    for d, q in _training_pairs(collection, split):
        out.setdefault(d, []).append(q)
    return out


class QueryGenerator:
    """A doc -> query seq2seq on the packaged MiniLM (see the module docstring); `generate` samples queries."""

    def __init__(self, config: QGConfig = QGConfig(), device: str | None = None):
        import torch
        from transformers import AutoTokenizer, BertConfig, BertLMHeadModel, BertModel, EncoderDecoderModel
        from .embed import minilm_path

        self.config = config
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        path = minilm_path()
        seed_everything(config.seed)
        with quiet_hf_loading():  # the new cross-attention weights are reported as "newly initialized"
            self.tok = AutoTokenizer.from_pretrained(path)
            encoder = BertModel.from_pretrained(path, add_pooling_layer=False)
            cfg = BertConfig.from_pretrained(path, is_decoder=True, add_cross_attention=True,
                                             num_hidden_layers=config.decoder_layers)
            decoder = BertLMHeadModel.from_pretrained(path, config=cfg)
        self.net = EncoderDecoderModel(encoder=encoder, decoder=decoder).to(self.device)
        tok = self.tok
        for c in (self.net.config, self.net.generation_config):
            c.decoder_start_token_id, c.pad_token_id, c.eos_token_id = tok.cls_token_id, tok.pad_token_id, tok.sep_token_id
        self.net.encoder.requires_grad_(False).eval()
        self.copy_weight = torch.nn.Parameter(torch.tensor(2.0 if config.copy_bias else 0.0, device=self.device),
                                              requires_grad=config.copy_bias)
        self.history: list[dict[str, float]] = []
        self.train_seconds = 0.0

    def encode(self, texts: list[str]):
        """Frozen encoder states (input embeddings + last layer), attention mask and the bag of source word pieces."""
        import torch

        enc = self.tok(texts, truncation=True, max_length=self.config.source_len, padding=True, return_tensors="pt").to(self.device)
        with torch.no_grad():
            out = self.net.encoder(**enc, output_hidden_states=True)
        bag = torch.zeros(len(texts), len(self.tok), device=self.device).scatter_(1, enc["input_ids"], 1.0)
        bag[:, self.tok.all_special_ids] = 0
        return out.hidden_states[0] + out.hidden_states[-1], enc["attention_mask"], bag

    def _labels(self, queries: list[str]):
        ids = [self.tok(q, add_special_tokens=False, truncation=True, max_length=self.config.query_len - 1)["input_ids"]
               + [self.tok.sep_token_id] for q in queries]
        width = max(map(len, ids))
        import torch

        return torch.tensor([x + [-100] * (width - len(x)) for x in ids], device=self.device)

    def _loss(self, states, mask, bag, queries: list[str]):
        import torch
        from transformers.modeling_outputs import BaseModelOutput

        from transformers.models.encoder_decoder.modeling_encoder_decoder import shift_tokens_right

        labels = self._labels(queries)
        inputs = shift_tokens_right(labels, self.tok.pad_token_id, self.tok.cls_token_id)
        logits = self.net(encoder_outputs=BaseModelOutput(last_hidden_state=states), attention_mask=mask,
                          decoder_input_ids=inputs).logits
        logits = logits + self.copy_weight * bag[:, None, :]
        return torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)

    def fit(self, collection: Collection, split: str = "train", progress: bool = False) -> "QueryGenerator":
        """Train on (document, query) pairs of `split`; stop when the loss on held-out pairs stops falling."""
        import torch

        cfg = self.config
        if split not in collection.qrels:
            raise DsilabError(f"the trained query generator learns from training queries, and {collection.name!r} has no "
                              f"{split!r} split (it has {collection.splits}); use generator='span' for a collection without them.")
        pairs = _training_pairs(collection, split)
        if "dev" in collection.qrels and split != "dev":
            dev = _training_pairs(collection, "dev")
        else:
            rng = np.random.default_rng(cfg.seed)
            held = set(rng.permutation(len(pairs))[: max(1, round(cfg.dev_holdout * len(pairs)))].tolist())
            dev, pairs = [p for i, p in enumerate(pairs) if i in held], [p for i, p in enumerate(pairs) if i not in held]
        if len(pairs) < cfg.batch_size:
            raise DsilabError(f"{collection.name!r} has {len(pairs)} training (document, query) pairs, fewer than one batch "
                              f"({cfg.batch_size}): too few to train a query generator; use generator='span'.")
        docs = sorted({d for d, _ in pairs + dev})
        row = {d: i for i, d in enumerate(docs)}
        states, masks, bags = [], [], []
        width = 0
        for i in range(0, len(docs), 64):  # the encoder is frozen: every document is encoded once
            s, m, b = self.encode([collection.docs[d].contents for d in docs[i : i + 64]])
            states.append(s), masks.append(m), bags.append(b)
            width = max(width, s.shape[1])
        states = torch.cat([torch.nn.functional.pad(s, (0, 0, 0, width - s.shape[1])) for s in states])
        masks = torch.cat([torch.nn.functional.pad(m, (0, width - m.shape[1])) for m in masks])
        bags = torch.cat(bags)
        dev = dev[:256]  # a fixed held-out sample: one forward pass per evaluation
        dev_rows = torch.tensor([row[d] for d, _ in dev], device=self.device)

        map_large_blocks()  # a step's vocabulary-wide logits go back to the system when freed (see dsilab.core)
        release_memory()  # the encoder's activations, freed above
        groups = [{"params": [p for p in self.net.decoder.parameters() if p.requires_grad]}]
        if cfg.copy_bias:  # one scalar: at the decoder's rate it would barely move from its start
            groups.append({"params": [self.copy_weight], "lr": 0.05, "weight_decay": 0.0})
        opt = torch.optim.AdamW(groups, lr=cfg.lr)
        rng = np.random.default_rng(cfg.seed)
        best, best_state, stalled, t0 = float("inf"), None, 0, time.perf_counter()
        for step in range(1, cfg.max_steps + 1):
            self.net.decoder.train()
            batch = [pairs[i] for i in rng.choice(len(pairs), size=cfg.batch_size, replace=False)]
            rows = torch.tensor([row[d] for d, _ in batch], device=self.device)
            loss = self._loss(states[rows], masks[rows], bags[rows], [q for _, q in batch])
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            if step % cfg.eval_every == 0 or step == cfg.max_steps:
                self.net.decoder.eval()
                with torch.no_grad():
                    dev_loss = float(self._loss(states[dev_rows], masks[dev_rows], bags[dev_rows], [q for _, q in dev]))
                self.history.append({"step": step, "loss": round(loss.item(), 4), "dev loss": round(dev_loss, 4),
                                     "copy weight": round(self.copy_weight.item(), 3)})
                if progress:
                    print(self.history[-1], flush=True)
                if dev_loss < best - 1e-3:
                    best, stalled = dev_loss, 0
                    best_state = {k: v.detach().clone() for k, v in self.state().items()}
                else:
                    stalled += 1
                    if stalled >= cfg.patience:
                        break
        if best_state is not None:
            self.load_state(best_state)
        self.net.decoder.eval()
        self.train_seconds = time.perf_counter() - t0
        del opt, states, masks, bags, best_state, loss
        release_memory()  # the optimizer's moments, the gradients and the encoded documents
        return self

    def generate(self, texts: list[str], n: int, top_k: int | None = 10, top_p: float | None = None, seed: int = 0,
                 batch_size: int = 32) -> list[list[str]]:
        """n distinct sampled queries for each text (2n samples drawn; fewer than n only if they repeat)."""
        import torch
        from transformers.modeling_outputs import BaseModelOutput

        from transformers import LogitsProcessorList

        torch.manual_seed(seed)
        out: list[list[str]] = []
        for i in range(0, len(texts), batch_size):
            states, mask, bag = self.encode(texts[i : i + batch_size])
            bias = (self.copy_weight.detach() * bag).repeat_interleave(2 * n, dim=0)  # rows follow generate's expansion
            with torch.no_grad():
                ids = self.net.generate(encoder_outputs=BaseModelOutput(last_hidden_state=states), attention_mask=mask,
                                        do_sample=True, top_k=top_k or 0, top_p=top_p or 1.0,
                                        num_return_sequences=2 * n, max_new_tokens=self.config.query_len,
                                        logits_processor=LogitsProcessorList([lambda ids, scores: scores + bias]))
            decoded = [_detokenize(t) for t in self.tok.batch_decode(ids, skip_special_tokens=True)]
            out += [_distinct(decoded[j * 2 * n : (j + 1) * 2 * n], n) for j in range(len(decoded) // (2 * n))]
        return out

    def state(self) -> dict[str, Any]:
        """The trained weights: decoder and copy weight (what the disk cache keeps; the encoder is MiniLM, unchanged)."""
        return {**{k: v.cpu() for k, v in self.net.decoder.state_dict().items()}, "copy_weight": self.copy_weight.detach().cpu()}

    def load_state(self, state: dict[str, Any]) -> None:
        """Load what `state` returned."""
        import torch

        state = dict(state)
        with torch.no_grad():
            self.copy_weight.copy_(state.pop("copy_weight"))
        self.net.decoder.load_state_dict(state)


def _detokenize(text: str) -> str:
    """WordPiece decoding leaves spaces around punctuation ("saturn ' s moon ?"): close them up."""
    text = re.sub(r" ([?.,!:;%)])", r"\1", text)
    return re.sub(r" ?([-'/]) ?", r"\1", re.sub(r"\( ", "(", text)).strip()


def train_generator(collection: Collection, config: QGConfig = QGConfig(), split: str = "train",
                    cache: bool = True, progress: bool = False) -> QueryGenerator:
    """The trained query generator of `collection` (cached on disk by its training pairs, documents and config)."""
    import torch

    pairs = _training_pairs(collection, split) if split in collection.qrels else []
    dev = _training_pairs(collection, "dev") if "dev" in collection.qrels else []
    texts = {d: collection.docs[d].contents for d, _ in pairs + dev}
    key = hashlib.sha256(json.dumps([asdict(config), split, pairs, dev, sorted(texts.items())]).encode()).hexdigest()[:20]
    path = cache_dir("querygen") / f"{key}.pt"
    gen = QueryGenerator(config)
    if cache and path.is_file():
        saved = torch.load(path, map_location=gen.device)
        gen.load_state(saved["state"])
        gen.history, gen.train_seconds = saved["history"], saved["train_seconds"]
        gen.net.decoder.eval()
        return gen
    gen.fit(collection, split, progress)
    if cache:
        with atomic_path(path) as tmp:
            torch.save({"state": gen.state(), "history": gen.history, "train_seconds": gen.train_seconds}, tmp)
    return gen


# -- docT5query from the hub ---------------------------------------------------------------------------------------
def _hub_queries(collection: Collection, n: int, seed: int, model_name: str, top_k: int | None, top_p: float | None,
                 batch_size: int = 16) -> dict[str, list[str]]:
    """docT5query: sample 2n queries per document from a hub doc->query seq2seq model, keep n distinct."""
    require_hub(f"the query generator {model_name!r}", 'generate_queries(..., generator="trained")')
    import torch
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    device = "cuda" if torch.cuda.is_available() else "cpu"
    tok = AutoTokenizer.from_pretrained(model_name)
    model = AutoModelForSeq2SeqLM.from_pretrained(model_name).to(device).eval()
    torch.manual_seed(seed)
    out: dict[str, list[str]] = {}
    ids, texts = collection.doc_ids, collection.contents
    for i in range(0, len(ids), batch_size):
        enc = tok(texts[i : i + batch_size], truncation=True, max_length=512, padding=True, return_tensors="pt").to(device)
        with torch.no_grad():
            gen = model.generate(**enc, max_length=64, do_sample=True, top_k=top_k or 0, top_p=top_p or 1.0,
                                 num_return_sequences=2 * n)
        decoded = tok.batch_decode(gen, skip_special_tokens=True)
        for j, doc_id in enumerate(ids[i : i + batch_size]):
            out[doc_id] = _distinct(decoded[j * 2 * n : (j + 1) * 2 * n], n)
    return out


# -- the one entry point -------------------------------------------------------------------------------------------
def generate_queries(collection: Collection, n_per_doc: int = 5, generator: str = "trained", seed: int = 0,
                     top_k: int | None = 10, top_p: float | None = None, config: QGConfig | None = None,
                     cache: bool = True, progress: bool = False) -> dict[str, list[str]]:
    """doc_id -> up to `n_per_doc` distinct generated queries (fewer only when the sampler keeps repeating itself).

    generator: "span", "trained" (learns from `collection`'s training queries) or a hub doc2query model name.
    Deterministic per seed (on one kind of machine) and cached on disk by generator, settings and corpus.
    """
    if n_per_doc < 1:
        raise DsilabError(f"generate_queries needs n_per_doc >= 1, got {n_per_doc}.")
    if generator not in OFFLINE and "/" not in generator:
        raise DsilabError(f"unknown query generator {generator!r}: use 'span', 'trained' or a hub doc2query model name "
                          f"such as {DOCT5QUERY!r}.")
    config = config or QGConfig(seed=seed)
    train_q = collection.qrels.get("train", {}) if generator == "trained" else {}
    key = hashlib.sha256(json.dumps([generator, n_per_doc, seed, top_k, top_p, asdict(config) if generator == "trained" else None,
                                     train_q, collection.doc_ids, collection.contents]).encode()).hexdigest()[:20]
    path = cache_dir("generated_queries") / f"{key}.json"
    if cache and path.is_file():
        return json.loads(path.read_text())
    if generator == "span":
        out = _span_queries(collection, n_per_doc, seed)
    elif generator == "trained":
        gen = train_generator(collection, config, cache=cache, progress=progress)
        out = dict(zip(collection.doc_ids, gen.generate(collection.contents, n_per_doc, top_k, top_p, seed)))
        del gen
        release_memory()  # the generator is read back from its cache when needed again
    else:
        out = _hub_queries(collection, n_per_doc, seed, generator, top_k, top_p)
    if cache:
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(out))
    return out


# -- filtering and quality -----------------------------------------------------------------------------------------
def _source_ranks(collection: Collection, queries: dict[str, list[str]], k: int) -> list[tuple[str, str, int | None]]:
    """(doc_id, query, rank of doc_id in BM25's top-k for the query, or None) for every generated query."""
    from .baselines import BM25

    flat = [(d, q) for d, qs in queries.items() for q in qs]
    run = BM25(collection).search({str(i): q for i, (_, q) in enumerate(flat)}, k=k)
    out = []
    for i, (d, q) in enumerate(flat):
        ranked = [doc for doc, score in run.get(str(i), []) if score > 0]  # no shared word: not retrieved, whatever the order
        out.append((d, q, ranked.index(d) + 1 if d in ranked else None))
    return out


def roundtrip_filter(collection: Collection, queries: dict[str, list[str]], k: int = 10
                     ) -> tuple[dict[str, list[str]], dict[str, Any]]:
    """Keep a generated query only if BM25 ranks its source document in the top k (round-trip consistency, as in
    InPars and Alberti et al., 2019); returns the kept queries and what was dropped (counts, documents left with none)."""
    if k < 1:
        raise DsilabError(f"roundtrip_filter needs k >= 1, got {k}.")
    kept: dict[str, list[str]] = {d: [] for d in queries}
    for d, q, rank in _source_ranks(collection, queries, k):
        if rank is not None:
            kept[d].append(q)
    before, after = sum(map(len, queries.values())), sum(map(len, kept.values()))
    return kept, {"k": k, "queries": before, "kept": after, "dropped": before - after,
                  "docs left without a query": sum(1 for d in queries if queries[d] and not kept[d])}


def teacher_rankings(collection: Collection, queries: list[str], k: int, seed: int = 0
                     ) -> list[list[tuple[str, float]]]:
    """The top `k` documents, with cosine scores, of each query by MiniLM fine-tuned on the training queries."""
    from .baselines import FineTunedDense

    if not queries:
        return []
    run = FineTunedDense(collection, "train", seed=seed).search({f"q{i}": q for i, q in enumerate(queries)}, k)
    return [run[f"q{i}"] for i in range(len(queries))]


def teacher_labels(collection: Collection, queries: dict[str, list[str]], k: int = 1, seed: int = 0
                   ) -> tuple[dict[str, list[str]], dict[str, Any]]:
    """Distillation from a dense teacher (in the spirit of RIPOR): each generated query trains towards the top k
    documents of MiniLM fine-tuned on the training queries (`baselines.FineTunedDense`), not towards the document it
    was generated from; returns doc_id -> the queries that point to it now, and how often the teacher agreed."""
    if k < 1:
        raise DsilabError(f"teacher_labels needs k >= 1, got {k}.")
    pairs = [(d, q) for d, qs in queries.items() for q in qs]
    labelled: dict[str, list[str]] = {d: [] for d in collection.doc_ids}
    if not pairs:
        return labelled, {"k": k, "queries": 0, "source is the teacher's top 1": None, "docs with a query": 0}
    agree = 0
    for (source, q), ranking in zip(pairs, teacher_rankings(collection, [q for _, q in pairs], k, seed)):
        ranked = [d for d, _ in ranking]
        agree += bool(ranked) and ranked[0] == source
        for d in ranked:
            labelled[d].append(q)
    return labelled, {"k": k, "queries": len(pairs), "source is the teacher's top 1": round(agree / len(pairs), 4),
                      "docs with a query": sum(1 for qs in labelled.values() if qs)}


def query_quality(collection: Collection, queries: dict[str, list[str]], seed: int = 0,
                  sample: int | None = 5000) -> dict[str, Any]:
    """How good generated queries are, read by BM25: the share whose source document is BM25's top-1 (with a 95%
    bootstrap interval) and top-10, their length, how many words they copy from the document, and distinct per doc.

    sample: queries scored (a seeded sample; None = all).
    """
    pairs = [(d, q) for d, qs in queries.items() for q in qs]
    if not pairs:
        raise DsilabError("query_quality: no generated queries to measure.")
    rng = np.random.default_rng(seed)
    if sample and len(pairs) > sample:
        pairs = [pairs[i] for i in sorted(rng.choice(len(pairs), size=sample, replace=False))]
    sub: dict[str, list[str]] = {}
    for d, q in pairs:
        sub.setdefault(d, []).append(q)
    ranks = np.array([r or 0 for _, _, r in _source_ranks(collection, sub, 10)])
    top1 = (ranks == 1).astype(float)
    boot = top1[rng.integers(0, len(top1), size=(1000, len(top1)))].mean(axis=1)
    from .baselines import tokenize

    words = [tokenize(q, stopwords=False) for _, q in pairs]
    doc_words = {d: set(tokenize(collection.docs[d].contents, stopwords=False)) for d in sub}
    copied = [np.mean([w in doc_words[d] for w in ws]) if ws else 0.0 for (d, _), ws in zip(pairs, words)]
    train_q = {" ".join(q.lower().split()) for q in collection.split("train")[0].values()} if "train" in collection.qrels else set()
    return {"queries": len(pairs), "source is BM25 top-1": round(float(top1.mean()), 4),
            "source is BM25 top-1 CI": [round(float(np.percentile(boot, 2.5)), 4), round(float(np.percentile(boot, 97.5)), 4)],
            "source in BM25 top-10": round(float((ranks > 0).mean()), 4),
            "words (mean)": round(float(np.mean([len(w) for w in words])), 1),
            "words found in the document": round(float(np.mean(copied)), 3),
            "copies of a training query": round(float(np.mean([" ".join(q.lower().split()) in train_q for _, q in pairs])), 3),
            "distinct per doc (mean)": round(float(np.mean([len(v) for v in queries.values()])), 2)}
