"""Collections: documents, queries, relevance judgements and named query splits, from any source.

`load_collection` is the one entry point: the bundled `"lab"` collection, any BEIR-layout
folder, MS MARCO v1.1 through `datasets`, or a deterministic `"synthetic"` generator.
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from .core import DsilabError, Qrels, require_hub

LAB_DIR = Path(__file__).parent / "collections" / "lab"
NAMES = ("lab", "synthetic", "msmarco-v1.1")


@dataclass(frozen=True)
class Doc:
    """One document: its id, an optional title and the body text."""

    id: str
    title: str
    text: str

    @property
    def contents(self) -> str:
        """Title and text as one string: what retrievers and models read."""
        return f"{self.title}. {self.text}" if self.title else self.text


@dataclass
class Collection:
    """Documents, queries and qrels per split; validated on construction so that bad data fails early."""

    name: str
    docs: dict[str, Doc]
    queries: dict[str, str]
    qrels: dict[str, Qrels]
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.docs:
            raise DsilabError(f"collection {self.name!r} has an empty corpus: add documents to corpus.jsonl.")
        for split, judged in self.qrels.items():
            for qid, rels in judged.items():
                if qid not in self.queries:
                    raise DsilabError(
                        f"collection {self.name!r}: qrels split {split!r} names query {qid!r}, "
                        "which is not in queries.jsonl; add the query or remove the judgement."
                    )
                unknown = [d for d in rels if d not in self.docs]
                if unknown:
                    raise DsilabError(
                        f"collection {self.name!r}: qrels split {split!r} judges unknown doc(s) "
                        f"{unknown[:3]} for query {qid!r}; every judged doc must be in corpus.jsonl."
                    )

    # -- views -------------------------------------------------------------------------------
    @property
    def doc_ids(self) -> list[str]:
        return list(self.docs)

    @property
    def contents(self) -> list[str]:
        """Every document's title+text, in `doc_ids` order."""
        return [d.contents for d in self.docs.values()]

    @property
    def splits(self) -> list[str]:
        return list(self.qrels)

    def split(self, name: str) -> tuple[dict[str, str], Qrels]:
        """The queries and qrels of one split (e.g. `"test"`)."""
        if name not in self.qrels:
            raise DsilabError(
                f"collection {self.name!r} has no split {name!r}; available: {sorted(self.qrels)}."
            )
        judged = self.qrels[name]
        return {q: self.queries[q] for q in judged}, judged

    def topics(self, n: int) -> "Collection":
        """The documents of the first `n` topics (by name; needs per-doc "topic" metadata, as the lab collection has)
        and the queries whose relevant documents are all among them: a smaller collection that still teaches."""
        meta = self.meta.get("docs", {})
        if not meta or any("topic" not in m for m in meta.values()):
            raise DsilabError(f"collection {self.name!r} has no per-document topics; topics(n) works on 'lab'.")
        names = sorted({m["topic"] for m in meta.values()})
        if not 1 <= n <= len(names):
            raise DsilabError(f"topics(n): n must be 1..{len(names)}, got {n}.")
        keep = {d for d, m in meta.items() if m["topic"] in names[:n]}
        qrels = {s: {q: r for q, r in j.items() if set(r) <= keep} for s, j in self.qrels.items()}
        return Collection(f"{self.name}-{n}topics", {d: self.docs[d] for d in self.doc_ids if d in keep},
                          {q: self.queries[q] for j in qrels.values() for q in j}, qrels, self.meta)

    def describe(self) -> dict[str, Any]:
        """Counts a reader wants first: documents, words per doc, queries per split."""
        words = np.array([len(d.text.split()) for d in self.docs.values()])
        out: dict[str, Any] = {
            "name": self.name,
            "docs": len(self.docs),
            "words/doc (mean)": round(float(words.mean()), 1),
            "words/doc (min-max)": f"{words.min()}-{words.max()}",
        }
        for split, judged in self.qrels.items():
            out[f"{split} queries"] = len(judged)
        return out

    def save_beir(self, path: str | Path) -> Path:
        """Write the collection as a BEIR folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv)."""
        path = Path(path)
        (path / "qrels").mkdir(parents=True, exist_ok=True)
        with open(path / "corpus.jsonl", "w", encoding="utf-8") as f:
            for d in self.docs.values():
                f.write(json.dumps({"_id": d.id, "title": d.title, "text": d.text}, ensure_ascii=False) + "\n")
        with open(path / "queries.jsonl", "w", encoding="utf-8") as f:
            for qid, text in self.queries.items():
                f.write(json.dumps({"_id": qid, "text": text}, ensure_ascii=False) + "\n")
        for split, judged in self.qrels.items():
            with open(path / "qrels" / f"{split}.tsv", "w", encoding="utf-8") as f:
                f.write("query-id\tcorpus-id\tscore\n")
                for qid, rels in judged.items():
                    for did, grade in rels.items():
                        f.write(f"{qid}\t{did}\t{grade}\n")
        return path


# -- loading ----------------------------------------------------------------------------------
def load_collection(name_or_path: str | Path = "lab", **kwargs: Any) -> Collection:
    """Load `"lab"`, `"synthetic"`, `"msmarco-v1.1"` or a BEIR-layout folder by path.

    Extra keyword arguments go to the source: `n_docs`/`n_queries` for MS MARCO, generator sizes
    for `"synthetic"` (see `synthetic_collection`).
    """
    key = str(name_or_path)
    if key == "lab":
        return load_beir(LAB_DIR, name="lab")
    if key == "synthetic":
        return synthetic_collection(**kwargs)
    if key == "msmarco-v1.1":
        return load_msmarco(**kwargs)
    path = Path(key).expanduser()
    if path.is_dir():
        return load_beir(path)
    raise DsilabError(
        f"unknown collection {key!r}: use one of {list(NAMES)} or the path of a BEIR-layout folder "
        "(corpus.jsonl, queries.jsonl, qrels/<split>.tsv)."
    )


def _read_jsonl(path: Path, required: tuple[str, ...]) -> Iterable[dict[str, Any]]:
    if not path.is_file():
        raise DsilabError(f"missing file {path}: a BEIR folder needs corpus.jsonl, queries.jsonl and qrels/*.tsv.")
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise DsilabError(f"{path}:{lineno}: malformed JSON ({e.msg}); fix or remove that line.") from None
            if not isinstance(record, dict) or any(k not in record for k in required):
                raise DsilabError(f"{path}:{lineno}: a record needs the fields {list(required)}.")
            yield record


def load_beir(path: str | Path, name: str | None = None) -> Collection:
    """Read a BEIR-layout folder; every qrels/<split>.tsv becomes a split (test-only works)."""
    path = Path(path)
    docs: dict[str, Doc] = {}
    for rec in _read_jsonl(path / "corpus.jsonl", ("_id", "text")):
        did = str(rec["_id"])
        if did in docs:
            raise DsilabError(f"{path / 'corpus.jsonl'}: duplicate doc id {did!r}; doc ids must be unique.")
        docs[did] = Doc(did, str(rec.get("title") or ""), str(rec["text"]))
    queries: dict[str, str] = {}
    for rec in _read_jsonl(path / "queries.jsonl", ("_id", "text")):
        qid = str(rec["_id"])
        if qid in queries:
            raise DsilabError(f"{path / 'queries.jsonl'}: duplicate query id {qid!r}; query ids must be unique.")
        queries[qid] = str(rec["text"])
    qrels_files = sorted((path / "qrels").glob("*.tsv"))
    if not qrels_files:
        raise DsilabError(f"{path}: no qrels/<split>.tsv file found; add at least qrels/test.tsv.")
    order = {"train": 0, "dev": 1, "test": 2}
    qrels_files.sort(key=lambda p: (order.get(p.stem, 3), p.stem))
    qrels = {p.stem: _read_qrels(p) for p in qrels_files}
    meta = {}
    card = path / "meta.json"
    if card.is_file():
        meta = json.loads(card.read_text(encoding="utf-8"))
    return Collection(name or path.name, docs, queries, qrels, meta)


def _read_qrels(path: Path) -> Qrels:
    judged: Qrels = {}
    with open(path, encoding="utf-8", newline="") as f:
        for lineno, row in enumerate(csv.reader(f, delimiter="\t"), 1):
            if not row or (lineno == 1 and row[0] == "query-id"):
                continue
            if len(row) != 3:
                raise DsilabError(f"{path}:{lineno}: expected 3 tab-separated columns (query-id, corpus-id, score).")
            try:
                grade = int(float(row[2]))
            except ValueError:
                raise DsilabError(f"{path}:{lineno}: score {row[2]!r} is not a number.") from None
            judged.setdefault(row[0], {})[row[1]] = grade
    return judged


# -- MS MARCO ---------------------------------------------------------------------------------
def load_msmarco(
    n_queries: int = 1000,
    n_docs: int | None = None,
    split: str = "train",
    records: Iterable[dict[str, Any]] | None = None,
) -> Collection:
    """MS MARCO v1.1 in the seed setting: its passages as the corpus, `is_selected` ones relevant.

    `records` (rows in the dataset's schema) replaces the hub download: tests pass a fixture.
    Queries are split 80/10/10 into train/dev/test in their dataset order.
    """
    if records is None:
        require_hub("MS MARCO v1.1", 'load_collection("lab") or a BEIR-layout folder')
        import datasets

        records = datasets.load_dataset("microsoft/ms_marco", "v1.1", split=split, streaming=True)
    docs: dict[str, Doc] = {}
    by_text: dict[str, str] = {}
    queries: dict[str, str] = {}
    judged: Qrels = {}
    for row in records:
        if len(queries) >= n_queries:
            break
        passages = row["passages"]
        texts, selected = passages["passage_text"], passages["is_selected"]
        if not any(selected):
            continue  # no relevant passage: nothing to evaluate
        if n_docs is not None and len(docs) + sum(t not in by_text for t in texts) > n_docs:
            break
        qid = str(row["query_id"])
        rels: dict[str, int] = {}
        for text, sel in zip(texts, selected):
            if text not in by_text:
                did = f"p{len(docs)}"
                by_text[text] = did
                docs[did] = Doc(did, "", text)
            if sel:
                rels[by_text[text]] = 1
        queries[qid] = row["query"]
        judged[qid] = rels
    qids = list(judged)
    n = len(qids)
    cuts = {"train": qids[: int(0.8 * n)], "dev": qids[int(0.8 * n) : int(0.9 * n)], "test": qids[int(0.9 * n) :]}
    qrels = {s: {q: judged[q] for q in ids} for s, ids in cuts.items() if ids}
    return Collection("msmarco-v1.1", docs, queries, qrels, {"source": "microsoft/ms_marco v1.1", "split": split})


# -- synthetic --------------------------------------------------------------------------------
def synthetic_collection(
    n_docs: int = 1000,
    n_topics: int = 10,
    n_subtopics: int = 4,
    doc_len: int = 60,
    queries_per_doc: int = 2,
    query_len: int = 6,
    vocab_per_topic: int = 60,
    vocab_per_subtopic: int = 30,
    n_common: int = 200,
    seed: int = 0,
) -> Collection:
    """Topics -> subtopics -> documents over shared vocabulary, queries with known relevant docs.

    Each document mixes common words, its topic's and subtopic's words and a few words of its
    own; each query draws from its document's distinctive words, so the relevant doc is known.
    Query i of every document goes to split train / dev / test in turn (test always present).
    """
    if n_docs < 1:
        raise DsilabError("synthetic_collection: n_docs must be at least 1.")
    rng = np.random.default_rng(seed)
    syll = ["ka", "lo", "mi", "ne", "su", "ta", "ri", "po", "va", "de", "zu", "fe", "go", "hy", "ba", "ce"]

    def word(i: int, prefix: str) -> str:
        out, x = prefix, i
        while True:
            out += syll[x % len(syll)]
            x //= len(syll)
            if x == 0:
                return out

    common = [word(i, "c") for i in range(n_common)]
    docs: dict[str, Doc] = {}
    queries: dict[str, str] = {}
    splits = ["train", "dev", "test"] if queries_per_doc >= 3 else (["train", "test"] if queries_per_doc == 2 else ["test"])
    qrels: dict[str, Qrels] = {s: {} for s in splits}
    for i in range(n_docs):
        t, s = int(rng.integers(n_topics)), int(rng.integers(n_subtopics))
        topic_words = [word(j, f"t{t}") for j in range(vocab_per_topic)]
        sub_words = [word(j, f"t{t}s{s}") for j in range(vocab_per_subtopic)]
        own = [word(j, f"d{i}") for j in range(3)]
        pool = common + topic_words + sub_words
        weights = np.r_[np.full(len(common), 1.0), np.full(len(topic_words), 4.0), np.full(len(sub_words), 8.0)]
        weights /= weights.sum()
        body = list(rng.choice(pool, size=doc_len - 3 * 2, p=weights)) + own * 2
        rng.shuffle(body)
        did = f"d{i}"
        docs[did] = Doc(did, f"doc {i} (topic {t}.{s})", " ".join(body))
        distinctive = own + sub_words[:10] + topic_words[:10]
        for k in range(queries_per_doc):
            words = [own[k % 3]] + list(rng.choice(distinctive, size=query_len - 1))
            qid = f"q{i}_{k}"
            queries[qid] = " ".join(words)
            qrels[splits[k % len(splits)]][qid] = {did: 1}
    meta = {"generator": "synthetic_collection", "seed": seed, "n_docs": n_docs, "n_topics": n_topics}
    return Collection(f"synthetic-{n_docs}", docs, queries, {s: q for s, q in qrels.items() if q}, meta)
