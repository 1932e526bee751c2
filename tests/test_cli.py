import json
import subprocess
import sys

from dsilab.bench import bench_baselines, update_doc_section, write_result
from dsilab.cli import main
from dsilab import load_collection


def test_module_help_and_course_list(capsys):
    out = subprocess.run([sys.executable, "-m", "dsilab", "--help"], capture_output=True, text=True, check=True).stdout
    assert "course" in out and "bench" in out
    assert main(["course", "list"]) == 0
    names = capsys.readouterr().out.split()
    assert names[:2] == ["00_welcome.ipynb", "01_baselines.ipynb"] and names == sorted(names)


def test_cli_reports_bad_input_without_traceback(capsys):
    assert main(["data", "describe", "no-such-collection"]) == 2
    assert "unknown collection" in capsys.readouterr().err


def test_bench_writes_json_and_replaces_its_doc_section(tiny_beir, tmp_path):
    result = bench_baselines(load_collection(tiny_beir))
    assert set(result["results"]) == {"BM25", "Dense (MiniLM)"}
    assert result["results"]["BM25"]["Hits@1"] == 1.0
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\nhand-written intro\n")
    path = write_result(result, tmp_path / "out", doc=doc)
    assert json.loads(path.read_text())["collection"] == "tiny"
    write_result(result, tmp_path / "out", doc=doc)  # twice: replaced, not appended
    text = doc.read_text()
    assert text.count("<!-- bench:baselines-tiny -->") == 1 and "hand-written intro" in text
    update_doc_section(doc, "other", "x\n")
    assert "<!-- bench:other -->\nx\n<!-- /bench:other -->" in doc.read_text()
