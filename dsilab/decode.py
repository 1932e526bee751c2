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


@dataclass(frozen=True)
class SearchConfig:
    """How a trained DSI model searches (the search part of `dsilab.recipes.Recipe`): plain constrained beam search,
    or beam search steered by a lexical plan (`plan="bm25"`: PAG's idea, with BM25 as the planner), whose weight is
    chosen on dev among `plan_weights` (0, no plan, is always a candidate)."""

    plan: str | None = None              # None | "bm25"
    plan_weights: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)
    plan_depth: int = 100                # documents per query in the plan

    def __post_init__(self) -> None:
        if self.plan not in (None, "bm25"):
            raise DsilabError(f"plan={self.plan!r}; use None (plain beam search) or 'bm25' (a BM25 lexical plan).")
        if not self.plan_weights or any(w <= 0 for w in self.plan_weights) or self.plan_depth < 1:
            raise DsilabError(f"plan_weights={self.plan_weights}, plan_depth={self.plan_depth}: use positive weights "
                              "(0, no plan, is tried anyway) and a depth >= 1.")


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


class PrefixBonus:
    """A lexical plan as beam search reads it (PAG, Zeng et al. 2024): each prefix is worth the best plan score of the
    docids below it, so beams are steered towards prefixes that hold lexically strong documents, and a finished docid
    scores log p(docid | query) + its own plan score (0 for documents outside the plan)."""

    def __init__(self, plan: dict[str, float], sequences: dict[str, list[int]]):
        self.best: dict[tuple[int, ...], float] = {(): 0.0}  # prefix -> the best plan score of its docids
        for doc, score in plan.items():
            seq = sequences[doc]
            for i in range(len(seq) + 1):
                key = tuple(seq[:i])
                self.best[key] = max(self.best.get(key, 0.0), score)
        self.children: dict[tuple[int, ...], dict[int, float]] = {}
        for key, score in self.best.items():
            if key:
                self.children.setdefault(key[:-1], {})[key[-1]] = score

    def delta(self, prefix: list[int], vocab: int, device: torch.device) -> torch.Tensor:
        """What each next token adds to the prefix's bonus, bonus(prefix + t) - bonus(prefix), over the vocabulary."""
        key = tuple(prefix)
        out = torch.full((vocab,), -self.best.get(key, 0.0))
        for t, score in self.children.get(key, {}).items():
            out[t] += score
        return out.to(device)


def _beam_search(model, hidden: torch.Tensor, mask: torch.Tensor, trie: DocidTrie, k: int, beam_size: int,
                 traces: list[BeamTrace] | None, trace_top: int,
                 bonus: list[PrefixBonus] | None = None) -> list[list[tuple[str, float]]]:
    """Batched beam search over all queries in `hidden`; returns the top-k (doc_id, score) per query: the docid's
    log-probability, plus its plan score when `bonus` (one per query) guides the search."""
    n_q = hidden.shape[0]
    # the empty prefix starts at its bonus (the plan's best score), so a finished docid ends at log p + its own
    live: list[list[tuple[list[int], float]]] = [[([], bonus[q].best[()] if bonus else 0.0)] for q in range(n_q)]
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
        if bonus is not None:  # a beam's score is log p + its prefix's bonus, which never rises as the docid grows
            masked += torch.stack([bonus[q].delta(b[0], logp.shape[1], logp.device) for q, b in zip(owners, beams)])
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
           trie: DocidTrie | None = None, plan: Run | None = None) -> Run:
    """Constrained beam search for every query: the top-k valid docids per query as a `Run`.

    plan: a lexical plan (qid -> [(doc_id, score >= 0)], e.g. `lexical_plan`) that steers the search and is added to
    each docid's log-probability; a document outside a query's plan adds 0."""
    run, _ = _search(model, queries, k, beam_size, batch_size, trie, None, 0, plan)
    return run


def lexical_plan(bm25, queries: dict[str, str], weight: float, depth: int = 100) -> Run:
    """PAG's lexical plan from a `BM25` retriever: each query's top-`depth` documents, scored weight x BM25 / the
    query's best BM25 score (so the plan weighs `weight` on every query, whatever its length)."""
    if weight < 0 or depth < 1:
        raise DsilabError(f"lexical_plan: weight={weight}, depth={depth}; use a weight >= 0 and a depth >= 1.")
    run = bm25.search(queries, k=depth)
    return {q: [(d, weight * s / ranked[0][1]) for d, s in ranked if s > 0] if ranked and ranked[0][1] > 0 else []
            for q, ranked in run.items()}


class LexicalPlanner:
    """`lexical_plan` over one collection: `planner(queries, weight)`, its BM25 index built on first use."""

    def __init__(self, collection, depth: int = 100):
        self.collection, self.depth, self._bm25 = collection, depth, None

    def __call__(self, queries: dict[str, str], weight: float) -> Run:
        if self._bm25 is None:
            from .baselines import BM25

            self._bm25 = BM25(self.collection)
        return lexical_plan(self._bm25, queries, weight, self.depth)


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


def choose_plan_weight(model, planner: LexicalPlanner, dev: tuple[dict[str, str], dict],
                       weights: tuple[float, ...]) -> tuple[float, dict[str, float]]:
    """The plan weight with the best Hits@10 on the dev queries `dev` = (queries, qrels), the smaller on a tie (0, no
    plan, is always tried), and the dev Hits@10 of every weight tried."""
    from .metrics import evaluate

    hits: dict[str, float] = {}
    for w in (0.0, *sorted(weights)):
        run = search(model, dev[0], 10, plan=planner(dev[0], w) if w else None)
        hits[f"{w:g}"] = round(evaluate(run, dev[1], ("Hits@10",))["Hits@10"], 4)
    return float(max(hits, key=lambda w: (hits[w], -float(w)))), hits


def _search(model, queries, k, beam_size, batch_size, trie, traces, trace_top, plan=None):
    if k < 1:
        raise DsilabError(f"k must be >= 1, got {k}.")
    if plan is not None and set(queries) - set(plan):
        raise DsilabError(f"the lexical plan lacks {len(set(queries) - set(plan))} of the queries; plan every query.")
    beam_size = beam_size or k
    sequences = model.docid_sequences() if trie is None or plan is not None else {}
    trie = trie or DocidTrie(sequences)
    if plan is not None:  # a prefix's bonus bounds its docids' only for scores >= 0 of documents the model has
        bad = [(d, s) for q in queries for d, s in plan[q] if s < 0 or d not in sequences][:3]
        if bad:
            raise DsilabError(f"lexical plan entries {bad}: a plan scores documents this model indexed, each >= 0 "
                              "(`lexical_plan` builds one from BM25).")
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
        bonus = [PrefixBonus(dict(plan[q]), sequences) for q in chunk] if plan is not None else None
        for q, ranked in zip(chunk, _beam_search(model, hidden, mask, trie, k, beam_size, traces, trace_top, bonus)):
            run[q] = ranked
    model.train(was_training)
    return run, traces
