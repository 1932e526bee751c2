"""The lab on your own data: `dsilab train` -> a model folder, `dsilab search` -> a TREC run, `dsilab eval` -> scores;
bad input stops early with a message that names the fix."""
import json

import pytest

from dsilab.cli import main

from conftest import TINY_T5


@pytest.fixture
def recipe_file(tmp_path):
    path = tmp_path / "recipe.json"
    path.write_text(json.dumps({"docids": "atomic", "backbone": "t5-scratch", "arch": TINY_T5, "max_steps": 4,
                                "eval_every": 2, "batch_size": 4}))
    return path


def test_train_search_eval_on_a_beir_folder(tiny_beir, recipe_file, tmp_path, capsys):
    out = tmp_path / "model"
    assert main(["train", "--collection", str(tiny_beir), "--recipe", str(recipe_file), "--out", str(out),
                 "--progress", "false"]) == 0
    assert (out / "model.json").is_file() and not (out / "checkpoints").exists()
    printed = capsys.readouterr().out
    assert "saved to" in printed and "at step" in printed and "{" not in printed  # best dev as a phrase, not a dict
    assert main(["train", "--collection", str(tiny_beir), "--recipe", str(recipe_file), "--out", str(out),
                 "--progress", "false"]) == 0
    assert "already holds this trained model" in capsys.readouterr().out
    run = tmp_path / "run.trec"
    assert main(["search", "--model", str(out), "--queries", str(tiny_beir / "queries.jsonl"), "--k", "3",
                 "--out", str(run)]) == 0
    lines = run.read_text().splitlines()
    assert len(lines) == 2 * 3 and all(len(line.split()) == 6 for line in lines)
    import ir_measures  # the run is in the format the ecosystem reads

    assert len(list(ir_measures.read_trec_run(str(run)))) == 6
    capsys.readouterr()
    assert main(["eval", "--run", str(run), "--qrels", str(tiny_beir / "qrels" / "test.tsv"), "--model", str(out),
                 "--measures", "Hits@1", "Hits@3"]) == 0
    printed = capsys.readouterr().out
    assert "Hits@1" in printed and "95% interval" in printed and "chance" in printed
    assert main(["search", "--model", str(out), "--queries", "what comes out of a volcano", "--k", "2"]) == 0
    assert capsys.readouterr().out.startswith("q1 Q0 ")


def test_bad_input_is_named_with_its_fix(tiny_beir, recipe_file, tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"docids": "atomic", "lrr": 0.1}))
    with pytest.raises(SystemExit):
        main(["train", "--collection", str(tiny_beir), "--recipe", str(bad), "--out", str(tmp_path / "m")])
    assert "lrr" in capsys.readouterr().err
    bad.write_text(json.dumps({"lr": "fast"}))
    with pytest.raises(SystemExit):
        main(["train", "--collection", str(tiny_beir), "--recipe", str(bad), "--out", str(tmp_path / "m")])
    assert "lr" in capsys.readouterr().err
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "model.safetensors").write_bytes(b"")
    assert main(["search", "--model", str(tmp_path / "half"), "--queries", "x"]) == 2
    assert "not a complete model folder" in capsys.readouterr().err
    run = tmp_path / "r.trec"
    run.write_text("1 Q0 a 1\n")
    assert main(["eval", "--run", str(run), "--qrels", str(tiny_beir / "qrels" / "test.tsv")]) == 2
    assert "6 fields" in capsys.readouterr().err
    queries = tmp_path / "q.tsv"
    queries.write_text("1 no tab here\n")
    assert main(["search", "--model", str(tmp_path / "half"), "--queries", str(queries)]) == 2
    assert "qid<TAB>query text" in capsys.readouterr().err


def test_a_folder_of_another_recipe_is_refused(tiny_beir, recipe_file, tmp_path, capsys):
    out = tmp_path / "model"
    assert main(["train", "--collection", str(tiny_beir), "--recipe", str(recipe_file), "--out", str(out),
                 "--progress", "false"]) == 0
    assert main(["train", "--collection", str(tiny_beir), "--recipe", str(recipe_file), "--out", str(out),
                 "--docids", "naive", "--progress", "false"]) == 2
    assert "another collection or recipe" in capsys.readouterr().err
