"""Runs, queries and qrels as files, in the formats `trec_eval` and `ir_measures` read: a learner's model writes a
TREC run (`qid Q0 docid rank score tag`), and `dsilab eval` scores it against a qrels file (BEIR's TSV or TREC's)."""
from __future__ import annotations

import json
from pathlib import Path

from .core import DsilabError, Qrels, Run, atomic_path


def write_run(run: Run, path: str | Path, tag: str = "dsilab") -> Path:
    """Write `run` as a TREC run file, whole (an interrupted write leaves no half file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for qid, ranked in run.items():
            for rank, (doc_id, score) in enumerate(ranked, 1):
                f.write(f"{qid} Q0 {doc_id} {rank} {score:.6f} {tag}\n")
    return path


def read_run(path: str | Path) -> Run:
    """A TREC run file as a `Run` (each query's documents by rank); a malformed line is named with its number."""
    path = Path(path)
    if not path.is_file():
        raise DsilabError(f"no run file at {path}: write one with `dsilab search --model DIR --queries FILE --out {path}`.")
    rows: dict[str, list[tuple[int, str, float]]] = {}
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 6:
            raise DsilabError(f"{path}:{lineno}: a TREC run line has 6 fields (qid Q0 docid rank score tag); got {len(parts)}.")
        try:
            rank, score = int(parts[3]), float(parts[4])
        except ValueError:
            raise DsilabError(f"{path}:{lineno}: rank must be an integer and score a number; got {parts[3]!r}, {parts[4]!r}.") from None
        rows.setdefault(parts[0], []).append((rank, parts[2], score))
    if not rows:
        raise DsilabError(f"{path}: the run file is empty.")
    return {q: [(d, s) for _, d, s in sorted(r)] for q, r in rows.items()}


def read_qrels(path: str | Path) -> Qrels:
    """Judgements from BEIR's TSV (query-id, corpus-id, score; header optional) or TREC's qrels (qid 0 docid grade)."""
    path = Path(path)
    if not path.is_file():
        raise DsilabError(f"no qrels file at {path}: a BEIR folder has them in qrels/<split>.tsv.")
    out: Qrels = {}
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        parts = line.split()
        if not parts or (lineno == 1 and parts[0] == "query-id"):
            continue
        if len(parts) not in (3, 4):
            raise DsilabError(f"{path}:{lineno}: expected 'query-id corpus-id score' (BEIR) or 'qid 0 docid grade' (TREC).")
        qid, doc_id, grade = (parts[0], parts[1], parts[2]) if len(parts) == 3 else (parts[0], parts[2], parts[3])
        try:
            out.setdefault(qid, {})[doc_id] = int(float(grade))
        except ValueError:
            raise DsilabError(f"{path}:{lineno}: the grade must be a number; got {grade!r}.") from None
    if not out:
        raise DsilabError(f"{path}: no judgements in the qrels file.")
    return out


def read_queries(source: str) -> dict[str, str]:
    """Queries from a file (BEIR's queries.jsonl, or `qid<TAB>text` lines) or, when `source` is no file, one query
    text (id "q1")."""
    path = Path(source)
    if not path.is_file():
        if source.endswith((".jsonl", ".tsv", ".txt")) or "/" in source:
            raise DsilabError(f"no query file at {source}; pass a queries.jsonl or qid<TAB>text file, or a query in quotes.")
        return {"q1": source}
    queries: dict[str, str] = {}
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        if path.suffix == ".jsonl":
            try:
                rec = json.loads(line)
                qid, text = str(rec["_id"]), str(rec["text"])
            except (json.JSONDecodeError, KeyError, TypeError):
                raise DsilabError(f"{path}:{lineno}: a queries.jsonl line is a JSON object with _id and text.") from None
        else:
            qid, tab, text = line.partition("\t")
            if not tab or not text.strip():
                raise DsilabError(f"{path}:{lineno}: expected 'qid<TAB>query text'.")
        if qid in queries:
            raise DsilabError(f"{path}:{lineno}: duplicate query id {qid!r}.")
        queries[qid] = text
    if not queries:
        raise DsilabError(f"{path}: no queries in the file.")
    return queries
