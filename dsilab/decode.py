"""Constrained decoding for DSI: a `DocidTrie` of valid docids and a beam search that only emits them.

`search(model, queries, k)` returns a `Run` (qid -> [(doc_id, log p(docid | query))], best first),
scored by the same `metrics.evaluate` as BM25 and dense retrieval. `trace(model, query, k)` returns a
`BeamTrace` for one query: at every step the surviving beams, the top candidates of each beam with
their probabilities, which were allowed by the trie, which survived, and how much probability the
model put on invalid tokens (what the beam viewer draws).

Why not `model.generate(prefix_allowed_tokens_fn=...)`: the loop below is ~40 lines over the model's
forward, works the same for every backbone (T5, EncoderDecoderModel, hub models), returns exactly the
sequence log-probabilities we rank by, records the per-step traces (which `generate` does not expose
for pruned candidates), and stops early once no live beam can beat the k-th finished docid.
Scores follow `generate`'s convention: log-softmax over the full vocabulary, then invalid tokens masked.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator

import torch

from .core import DsilabError, Run

_END = -1  # key of the doc_id stored below a docid's last token


class DocidTrie:
    """A prefix tree over token-id sequences (each ends with EOS): which tokens may follow a prefix."""

    def __init__(self, sequences: dict[str, list[int]]):
        if not sequences:
            raise DsilabError("a DocidTrie needs at least one docid sequence.")
        self.root: dict[int, Any] = {}
        self._tensors: dict[tuple, torch.Tensor] = {}  # (prefix, device) -> allowed ids, as `allowed_tensor` gives
        for doc_id, seq in sequences.items():
            self.add(doc_id, seq)
        self.size = len(sequences)

    def add(self, doc_id: str, seq: list[int]) -> None:
        node = self.root
        for t in seq:
            node = node.setdefault(int(t), {})
        if _END in node:
            raise DsilabError(f"docid collision in the trie: {node[_END]!r} and {doc_id!r} share one token sequence.")
        node[_END] = doc_id
        self._tensors.clear()

    def _node(self, prefix: list[int] | tuple[int, ...]) -> dict[int, Any]:
        node = self.root
        for t in prefix:
            if int(t) not in node:
                raise DsilabError(f"token prefix {list(prefix)} is not the start of any valid docid.")
            node = node[int(t)]
        return node

    def allowed(self, prefix: list[int] | tuple[int, ...] = ()) -> list[int]:
        """Token ids that may follow `prefix` (DsilabError when the prefix leads to no docid)."""
        return sorted(t for t in self._node(prefix) if t != _END)

    def allowed_tensor(self, prefix: list[int] | tuple[int, ...], device: torch.device) -> torch.Tensor:
        """`allowed(prefix)` as a tensor on `device`, built once per prefix: with atomic docids the root allows every
        document (100k ids at 100k documents), and sorting and copying them for every query costs more than the model."""
        key = (tuple(int(t) for t in prefix), str(device))
        if key not in self._tensors:
            self._tensors[key] = torch.tensor(self.allowed(prefix), dtype=torch.long, device=device)
        return self._tensors[key]

    def doc(self, seq: list[int] | tuple[int, ...]) -> str | None:
        """The doc_id of a complete sequence, or None when it is not (exactly) a valid docid."""
        try:
            return self._node(seq).get(_END)
        except DsilabError:
            return None

    def __contains__(self, seq: Any) -> bool:
        return self.doc(seq) is not None

    def __len__(self) -> int:
        return self.size


@dataclass
class Candidate:
    """One possible next token of one beam at one step."""

    beam: int
    token: str
    prob: float
    score: float
    allowed: bool
    kept: bool = False


@dataclass
class BeamStep:
    """One decoding step: the beams that entered it, their candidates, and invalid probability mass."""

    step: int
    beams: list[tuple[list[str], float]]
    candidates: list[Candidate]
    invalid_mass: list[float]


@dataclass
class BeamTrace:
    """The whole beam search for one query (for the beam viewer)."""

    query: str
    steps: list[BeamStep] = field(default_factory=list)
    ranking: list[tuple[str, float]] = field(default_factory=list)


def _beam_search(model, hidden: torch.Tensor, mask: torch.Tensor, trie: DocidTrie, k: int, beam_size: int,
                 traces: list[BeamTrace] | None, trace_top: int) -> list[list[tuple[str, float]]]:
    """Batched beam search over all queries in `hidden`; returns the top-k (doc_id, logprob) per query."""
    n_q = hidden.shape[0]
    live: list[list[tuple[list[int], float]]] = [[([], 0.0)] for _ in range(n_q)]
    done: list[list[tuple[str, float]]] = [[] for _ in range(n_q)]
    step = 0
    while any(live):
        owners = [q for q in range(n_q) for _ in live[q]]
        beams = [b for q in range(n_q) for b in live[q]]
        prefix = torch.tensor([[model.start_id] + b[0] for b in beams], dtype=torch.long, device=hidden.device)
        idx = torch.tensor(owners, device=hidden.device)
        logp = model.next_token_logprobs(hidden[idx], mask[idx], prefix)
        allowed = [trie.allowed_tensor(b[0], logp.device) for b in beams]
        masked = torch.full_like(logp, float("-inf"))
        for i, a in enumerate(allowed):
            masked[i, a] = logp[i, a]
        masked += torch.tensor([b[1] for b in beams], device=logp.device)[:, None]
        new_live: list[list[tuple[list[int], float]]] = [[] for _ in range(n_q)]
        kept: set[tuple[int, int]] = set()
        row = 0
        for q in range(n_q):
            n_b = len(live[q])
            if n_b == 0:
                continue
            block = masked[row : row + n_b].flatten()
            n_top = min(beam_size + k, int(torch.isfinite(block).sum()))
            scores, flat = torch.topk(block, n_top)
            for s, f in zip(scores.tolist(), flat.tolist()):
                b, t = divmod(f, logp.shape[1])
                seq = beams[row + b][0] + [t]
                doc = trie.doc(seq) if t == model.eos_id else None
                if doc is not None:
                    done[q].append((doc, s))
                elif len(new_live[q]) < beam_size:
                    new_live[q].append((seq, s))
                else:
                    continue
                kept.add((row + b, t))
            done[q].sort(key=lambda x: -x[1])
            # Scores only fall as a docid grows, so stop once no live beam beats the k-th finished docid.
            if len(done[q]) >= k and (not new_live[q] or new_live[q][0][1] <= done[q][k - 1][1]):
                new_live[q] = []
            row += n_b
        if traces is not None:
            _record(model, traces, step, owners, beams, logp, allowed, kept, trace_top)
        live, step = new_live, step + 1
    return [d[:k] for d in done]


def _record(model, traces, step, owners, beams, logp, allowed, kept, trace_top) -> None:
    """Append this step's beams and top candidates (allowed or not) to each query's trace."""
    vocab = model.tokenizer.convert_ids_to_tokens
    per_q: dict[int, BeamStep] = {}
    for i, (q, (seq, score)) in enumerate(zip(owners, beams)):
        st = per_q.setdefault(q, BeamStep(step, [], [], []))
        local = len(st.beams)
        st.beams.append((vocab(seq), score))
        ok = set(allowed[i].tolist())
        probs = logp[i].exp()
        st.invalid_mass.append(float(1.0 - probs[allowed[i]].sum()))
        top_any = torch.topk(probs, trace_top).indices.tolist()
        top_ok = sorted(ok, key=lambda t: -float(probs[t]))[:trace_top]
        for t in dict.fromkeys(top_any + top_ok):
            st.candidates.append(Candidate(local, vocab(t), float(probs[t]), score + float(logp[i, t]), t in ok,
                                           (i, t) in kept))
    for q, st in per_q.items():
        traces[q].steps.append(st)


@torch.no_grad()
def search(model, queries: dict[str, str], k: int = 10, beam_size: int | None = None, batch_size: int = 32,
           trie: DocidTrie | None = None) -> Run:
    """Constrained beam search for every query: the top-k valid docids per query as a `Run`."""
    run, _ = _search(model, queries, k, beam_size, batch_size, trie, None, 0)
    return run


@torch.no_grad()
def trace(model, query: str, k: int = 10, beam_size: int | None = None, top: int = 5) -> BeamTrace:
    """Beam search for one query with a full per-step record (beams, candidates, pruning)."""
    run, traces = _search(model, {"q": query}, k, beam_size, 1, None, [BeamTrace(query)], top)
    traces[0].ranking = run["q"]
    return traces[0]


#: On a CPU, at most this many (query, beam, input token) rows in one chunk of a beam search. Each step feeds every
#: beam the encoder states of its query, so 128 documents of 269 tokens held ~0.5 GB at once (a notebook's peak on
#: Binder's 2 GB); queries (a dozen tokens) still go 32 at a time. A GPU takes the whole `batch_size`.
CPU_BEAM_TOKENS = 16_384


def _chunks(model, qids: list[str], queries: dict[str, str], batch_size: int, beam_size: int) -> Iterator[list[str]]:
    """`qids` in chunks of at most `batch_size`, and on a CPU of at most CPU_BEAM_TOKENS rows."""
    if model.device.type != "cpu":
        yield from (qids[i : i + batch_size] for i in range(0, len(qids), batch_size))
        return
    ids = model.tokenizer([queries[q] for q in qids], add_special_tokens=False)["input_ids"]
    chunk: list[str] = []
    width = 0
    for q, row in zip(qids, ids):
        w = max(width, min(len(row) + 1, model.max_source_len))  # the chunk is padded to its longest input
        if chunk and (len(chunk) == batch_size or (len(chunk) + 1) * beam_size * w > CPU_BEAM_TOKENS):
            yield chunk
            chunk, w = [], min(len(row) + 1, model.max_source_len)
        chunk.append(q)
        width = w
    if chunk:
        yield chunk


def _search(model, queries, k, beam_size, batch_size, trie, traces, trace_top):
    if k < 1:
        raise DsilabError(f"k must be >= 1, got {k}.")
    beam_size = beam_size or k
    trie = trie or DocidTrie(model.docid_sequences())
    was_training = model.training
    model.eval()
    device = model.device
    qids = sorted(queries, key=lambda q: len(queries[q]))  # similar lengths batch together
    run: Run = {}
    for chunk in _chunks(model, qids, queries, batch_size, beam_size):
        if model.encoder_frozen:  # memoised states (the documents of a memorisation check are cached)
            hidden, mask = model.encode_texts([queries[q] for q in chunk])
        else:
            enc = model.tokenize_sources([queries[q] for q in chunk])
            ids, mask = enc["input_ids"].to(device), enc["attention_mask"].to(device)
            hidden = model.encode(ids, mask)
        for q, ranked in zip(chunk, _beam_search(model, hidden, mask, trie, k, beam_size, traces, trace_top)):
            run[q] = ranked
    model.train(was_training)
    return run, traces
