"""Checkers of chapter 12 (your own collection): each accepts the right answer and rejects a wrong one."""
import json

from dsilab.exercises import check

DOCS = [{"_id": "alps", "title": "The Alps", "text": "The Alps stretch across Europe."},
        {"_id": "andes", "title": "The Andes", "text": "The Andes run along South America."}]
QUERIES = {"m1": "mountains of south america"}
JUDGEMENTS = [("m1", "andes", 1)]
CTX = dict(docs=DOCS, queries=QUERIES, judgements=JUDGEMENTS)


def _write(folder, docs=DOCS, queries=QUERIES, judgements=JUDGEMENTS, qrels_name="test.tsv"):
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (folder / "queries.jsonl").write_text("".join(json.dumps({"_id": q, "text": t}) + "\n" for q, t in queries.items()))
    (folder / "qrels" / qrels_name).write_text("query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t{g}\n" for q, d, g in judgements))
    return folder


def test_12_1_a_beir_folder_by_hand(tmp_path, capsys):
    assert check("12.1", _write(tmp_path / "right"), strict=True, **CTX)
    assert "read back by load_collection" in capsys.readouterr().out
    assert check("12.1", str(tmp_path / "right"), **CTX)                                    # a str path works too
    assert not check("12.1", _write(tmp_path / "wrong_doc", docs=DOCS[1:]), **CTX)          # a document left out
    assert "expected ['alps', 'andes']" in capsys.readouterr().out
    changed = [DOCS[0], {**DOCS[1], "text": "Another text."}]
    assert not check("12.1", _write(tmp_path / "wrong_text", docs=changed), **CTX)
    assert not check("12.1", _write(tmp_path / "wrong_qrels", judgements=[("m1", "alps", 1)]), **CTX)
    assert not check("12.1", _write(tmp_path / "train_only", qrels_name="train.tsv"), **CTX)  # not the test split
    assert "qrels/test.tsv" in capsys.readouterr().out
    assert not check("12.1", {"alps": "The Alps"}, **CTX)                                     # not a folder


def test_12_2_resumed_against_uninterrupted(capsys):
    a = {"q1": [("d1", 0.9), ("d2", 0.1)], "q2": [("d2", 0.8), ("d1", 0.2)]}
    same = {q: [(d, round(s, 6)) for d, s in r] for q, r in a.items()}          # as read back from a TREC file
    other = {"q1": [("d2", 0.6), ("d1", 0.4)], "q2": a["q2"]}
    assert check("12.2", "identical", command_run=same, python_run=a, strict=True)
    assert "same batches" in capsys.readouterr().out
    assert not check("12.2", "different", command_run=same, python_run=a)
    assert check("12.2", "different", command_run=other, python_run=a)
    assert "1 of 2 queries" in capsys.readouterr().out
    assert not check("12.2", "identical", command_run=other, python_run=a)
    assert not check("12.2", "the same", command_run=same, python_run=a)       # not one of the choices
