"""Collections: documents, queries, relevance judgements and named query splits, from any source.

`load_collection` is the one entry point: the bundled `"lab"` collection, any BEIR-layout
folder, a deterministic `"synthetic"` generator, and the IR ecosystem's datasets when online:
MS MARCO v1.1 and BEIR's hub copies (`"beir/scifact"`) through `datasets`, any `ir_datasets` id
with an `irds:` prefix (`"irds:beir/scifact/test"`, `"irds:msmarco-passage/dev/small"`).
"""
from __future__ import annotations

import contextlib
import csv
import json
import logging
import os
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from .core import DsilabError, Qrels, _truthy, require_hub

LAB_DIR = Path(__file__).parent / "collections" / "lab"
NAMES = ("lab", "synthetic", "msmarco-v1.1", "beir/<name>", "irds:<ir_datasets id>")
#: What works without a network, named by every loader that needs one.
OFFLINE_ALTERNATIVES = ('load_collection("lab") (bundled), the path of a local BEIR-layout folder '
                        '(corpus.jsonl, queries.jsonl, qrels/<split>.tsv), or load_collection("synthetic")')


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
            raise DsilabError(f"collection {self.name!r} has no per-document topics; topics(n) works on 'lab'. FAST "
                              "notebooks keep a few lab topics: run another collection with FAST = False (`course run "
                              "--full`), or set the notebook's N_TOPICS to None.")
        names = sorted({m["topic"] for m in meta.values()})
        if not 1 <= n <= len(names):
            raise DsilabError(f"topics(n): n must be 1..{len(names)}, got {n}.")
        keep = {d for d, m in meta.items() if m["topic"] in names[:n]}
        qrels = {s: {q: r for q, r in j.items() if set(r) <= keep} for s, j in self.qrels.items()}
        return Collection(f"{self.name}-{n}topics", {d: self.docs[d] for d in self.doc_ids if d in keep},
                          {q: self.queries[q] for j in qrels.values() for q in j}, qrels, self.meta)

    def fingerprint(self) -> str:
        """A short hash of the documents (ids, titles, texts): a saved model names the corpus it indexed by it."""
        import hashlib

        h = hashlib.sha256()
        for d in sorted(self.docs):
            h.update(f"{d}\x1f{self.docs[d].title}\x1f{self.docs[d].text}\x1e".encode("utf-8"))
        return h.hexdigest()[:16]

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
    """Load a collection by name or path.

    - `"lab"`: the bundled collection; `"synthetic"`: the generator (sizes as keyword arguments,
      see `synthetic_collection`);
    - a BEIR-layout folder by path (a folder that exists wins over a hub name of the same spelling);
    - `"msmarco-v1.1"` (`n_queries`, `n_docs`) and `"beir/<name>"`, e.g. `"beir/scifact"`: the
      Hugging Face hub copies, through `datasets` (`load_beir_hub`);
    - `"irds:<id>"`, e.g. `"irds:beir/scifact/test"` or `"irds:msmarco-passage/dev/small"`: any
      `ir_datasets` id (`splits`, `n_queries`, `n_docs`; see `load_irds`).

    The networked sources fail within seconds offline, naming the offline alternatives.
    """
    key = str(name_or_path)
    if key == "lab":
        return load_beir(LAB_DIR, name="lab")
    if key == "synthetic":
        return synthetic_collection(**kwargs)
    if key == "msmarco-v1.1":
        return load_msmarco(**kwargs)
    if key.startswith("irds:"):
        return load_irds(key.removeprefix("irds:"), **kwargs)
    path = Path(key).expanduser()
    if path.is_dir():
        return load_beir(path)
    if key.lower().startswith("beir/") and key.count("/") == 1:
        return load_beir_hub(key.split("/", 1)[1], **kwargs)
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
        require_hub("MS MARCO v1.1", OFFLINE_ALTERNATIVES)
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


# -- BEIR on the Hugging Face hub ---------------------------------------------------------------
def load_beir_hub(
    name: str,
    corpus: Iterable[dict[str, Any]] | None = None,
    queries: Iterable[dict[str, Any]] | None = None,
    qrels: dict[str, Iterable[dict[str, Any]]] | None = None,
) -> Collection:
    """A BEIR dataset from the hub: `BeIR/<name>` (configs "corpus" and "queries") and `BeIR/<name>-qrels`
    (one split per qrels file, rows query-id / corpus-id / score), as `load_collection("beir/<name>")`.

    `corpus`, `queries` and `qrels` (rows in those schemas, qrels by split) replace the download: tests
    pass fixtures. Offline, this fails at once naming the offline alternatives.
    """
    if corpus is None or queries is None or qrels is None:
        require_hub(f"BEIR's {name!r} (hub datasets BeIR/{name} and BeIR/{name}-qrels)", OFFLINE_ALTERNATIVES)
        import datasets

        def only_split(config: str) -> Any:
            parts = datasets.load_dataset(f"BeIR/{name}", config)
            return parts[next(iter(parts))]  # the one split, whatever the hub calls it

        corpus = only_split("corpus") if corpus is None else corpus
        queries = only_split("queries") if queries is None else queries
        qrels = dict(datasets.load_dataset(f"BeIR/{name}-qrels")) if qrels is None else qrels
    docs = {str(r["_id"]): Doc(str(r["_id"]), str(r.get("title") or ""), str(r["text"])) for r in corpus}
    texts = {str(r["_id"]): str(r["text"]) for r in queries}
    judged: dict[str, Qrels] = {}
    for split, rows in qrels.items():
        for r in rows:
            judged.setdefault(split, {}).setdefault(str(r["query-id"]), {})[str(r["corpus-id"])] = int(r["score"])
    order = {"train": 0, "dev": 1, "validation": 1, "test": 2}
    judged = {s: judged[s] for s in sorted(judged, key=lambda s: (order.get(s, 3), s))}
    asked = {q for split in judged.values() for q in split}
    return Collection(f"beir-{name}", docs, {q: t for q, t in texts.items() if q in asked}, judged,
                      {"source": f"BeIR/{name} (Hugging Face hub)"})


# -- ir_datasets --------------------------------------------------------------------------------
#: Path components that name a query split in an ir_datasets id ("beir/scifact/test" -> "test").
_IRDS_SPLITS = ("train", "dev", "validation", "valid", "test", "eval")


def _irds_split_name(dataset_id: str) -> str:
    """The split an ir_datasets id stands for: its last split-like word ("msmarco-passage/dev/small" -> "dev",
    "antique/train/split200-valid" -> "valid"), else its last component."""
    words = [w for part in dataset_id.split("/") for w in re.split(r"[-_]", part)]
    return next((w for w in reversed(words) if w in _IRDS_SPLITS), dataset_id.split("/")[-1])


@contextlib.contextmanager
def _irds_without_network(requested: list[str]):
    """Within this block ir_datasets may read its cache but not download: each URL it asks for is recorded in
    `requested` and the download fails at once (its log lines and progress bars are held back meanwhile)."""
    import io

    from ir_datasets.util import download

    def refuse(self: Any, *args: Any, **kwargs: Any) -> Any:
        requested.append(getattr(self, "url", None) or getattr(self, "uri", "?"))
        raise ConnectionError("dsilab: checking ir_datasets' cache, no download")

    patched = [(cls, attr, getattr(cls, attr)) for cls, attr in
               ((download.RequestsDownload, "__iter__"), (download.RequestsDownload, "stream"),
                (download.GoogleDriveDownload, "stream"), (download.GoogleCloudBucketStream, "stream"))]
    for cls, attr, _ in patched:
        setattr(cls, attr, refuse)
    logging.disable(logging.WARNING)
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        logging.disable(logging.NOTSET)
        for cls, attr, original in patched:
            setattr(cls, attr, original)


def _reachable(url: str, timeout: float = 3.0) -> bool:
    """Whether the host of `url` answers on its port within `timeout` seconds."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host = parts.hostname if parts.scheme in ("http", "https") else "storage.googleapis.com"  # gs:// buckets
    if not host:
        return False
    try:
        with socket.create_connection((host, parts.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


def _irds_require_files(dataset_id: str, datasets: list[Any]) -> None:
    """Fail within seconds, naming the offline alternatives, when the files are neither in ir_datasets' cache nor
    downloadable from here; return at once when they are cached (the usual case after a first download)."""
    requested: list[str] = []
    problem: Exception | None = None
    with _irds_without_network(requested):
        for ds in datasets:
            for kind in ("docs", "queries", "qrels"):
                if _irds_has(ds, kind):
                    try:
                        next(iter(getattr(ds, f"{kind}_iter")()), None)
                    except Exception as e:  # noqa: BLE001 (ir_datasets raises many kinds)
                        problem = problem or e
    if not requested:
        if problem is not None:  # not a download: e.g. a dataset whose files must be obtained by hand
            raise DsilabError(f"ir_datasets could not open {dataset_id!r}: {problem}") from None
        return
    offline = _truthy(os.environ.get("HF_HUB_OFFLINE")) or _truthy(os.environ.get("HF_DATASETS_OFFLINE"))
    if offline or not _reachable(requested[0]):
        raise DsilabError(
            f"ir_datasets id {dataset_id!r} needs files that are not in ir_datasets' cache "
            f"({os.environ.get('IR_DATASETS_HOME', '~/.ir_datasets')}) and cannot be downloaded from here "
            f"({'offline mode is set' if offline else 'no network'}; first file: {requested[0]}). "
            f"Use {OFFLINE_ALTERNATIVES} instead, or download it once where the network is reachable."
        )


def _irds_has(ds: Any, kind: str) -> bool:
    """Whether an ir_datasets dataset provides `kind` ("docs", "queries", "qrels")."""
    has = getattr(ds, f"has_{kind}", None)
    return bool(has()) if has is not None else hasattr(ds, f"{kind}_iter")


def _irds_doc(record: Any) -> Doc:
    title = getattr(record, "title", None) or getattr(record, "document_title", None) or ""
    text = record.text if hasattr(record, "text") else record.default_text()
    return Doc(str(record.doc_id), str(title), str(text))


def _irds_query(record: Any) -> str:
    return str(record.text if hasattr(record, "text") else record.default_text())


def load_irds(
    dataset_id: str,
    splits: Iterable[str] | None = None,
    n_queries: int | None = None,
    n_docs: int | None = None,
) -> Collection:
    """Any `ir_datasets` id as a Collection: `load_collection("irds:beir/scifact/test")`.

    The id's queries and qrels become one split, named after the id's split component
    (`beir/scifact/test` -> "test", `msmarco-passage/dev/small` -> "dev"). `splits` reads several
    from one base id: `load_irds("beir/scifact", splits=["train", "test"])` takes the documents of
    `beir/scifact` and the queries and qrels of `beir/scifact/train` and `beir/scifact/test`.

    `n_queries` keeps the first judged queries of each split; `n_docs` caps the corpus at every judged
    document plus the first others in collection order (MS MARCO has 8.8M passages). ir_datasets
    downloads once into its cache (`IR_DATASETS_HOME`); offline and uncached it fails within seconds.
    """
    try:
        import ir_datasets
    except ImportError:
        raise DsilabError(
            f"load_collection('irds:{dataset_id}') needs the ir_datasets package (dsilab's `irds` extra): "
            f"pip install ir-datasets. Without it, use {OFFLINE_ALTERNATIVES}."
        ) from None

    def load(name: str) -> Any:
        try:
            return ir_datasets.load(name)
        except KeyError:
            raise DsilabError(
                f"ir_datasets has no dataset {name!r}; see https://ir-datasets.com for ids such as "
                "'beir/scifact/test', 'msmarco-passage/dev/small' or 'natural-questions/dev'."
            ) from None

    ids = [f"{dataset_id}/{s}" for s in splits] if splits is not None else [dataset_id]
    judged_sets = [load(i) for i in ids]
    corpus = load(dataset_id) if splits is not None else judged_sets[0]
    for name, ds in zip(ids, judged_sets):
        if not (_irds_has(ds, "queries") and _irds_has(ds, "qrels")):
            raise DsilabError(f"ir_datasets id {name!r} has no queries with qrels; name a split, e.g. "
                              f"'{name}/test', or pass splits=[...].")
    if not _irds_has(corpus, "docs"):
        raise DsilabError(f"ir_datasets id {dataset_id!r} has no documents.")
    _irds_require_files(dataset_id, [corpus, *judged_sets])

    queries: dict[str, str] = {}
    qrels: dict[str, Qrels] = {}
    for name, ds in zip(ids, judged_sets):
        split = _irds_split_name(name)
        if split in qrels:
            raise DsilabError(f"two ids map to split {split!r} ({ids}); load them separately.")
        judged: Qrels = {}
        for r in ds.qrels_iter():
            qid = str(r.query_id)
            if n_queries is not None and qid not in judged and len(judged) >= n_queries:
                continue
            judged.setdefault(qid, {})[str(r.doc_id)] = int(r.relevance)
        texts = {str(q.query_id): _irds_query(q) for q in ds.queries_iter()}
        missing = [q for q in judged if q not in texts]
        for q in missing:  # a judgement without its query text cannot be asked
            del judged[q]
        queries.update({q: texts[q] for q in judged})
        qrels[split] = judged

    wanted = {d for judged in qrels.values() for rels in judged.values() for d in rels}
    docs: dict[str, Doc] = {}
    if n_docs is None:
        for r in corpus.docs_iter():
            docs[str(r.doc_id)] = _irds_doc(r)
    else:
        need = set(wanted)  # judged documents still to find by scanning
        try:  # random access by id where ir_datasets has a docstore: no need to scan a large corpus
            docs.update({str(d): _irds_doc(r) for d, r in corpus.docs_store().get_many(wanted).items()})
            need = set()  # what the docstore lacks, the corpus lacks
        except (AttributeError, NotImplementedError, TypeError):
            pass
        for r in corpus.docs_iter():
            if len(docs) >= n_docs and need <= docs.keys():
                break
            if str(r.doc_id) in wanted or len(docs) < n_docs:
                docs.setdefault(str(r.doc_id), _irds_doc(r))
    unknown = wanted - docs.keys()
    if unknown:  # ir_datasets' qrels occasionally name documents the corpus lacks: drop those judgements
        for judged in qrels.values():
            for q in list(judged):
                judged[q] = {d: g for d, g in judged[q].items() if d not in unknown}
                if not judged[q]:
                    del judged[q]
    queries = {q: t for q, t in queries.items() if any(q in judged for judged in qrels.values())}
    meta = {"source": f"ir_datasets {dataset_id}", "ids": ids, "docs judged but not in the corpus": len(unknown)}
    return Collection(f"irds-{dataset_id.replace('/', '-')}", docs, queries, qrels, meta)


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
