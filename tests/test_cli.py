import pytest
import json
import subprocess
import sys

from dsilab.experiments.baselines import bench_baselines
from dsilab.experiments.runner import update_doc_section, write_result
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


def test_bench_all_one_table_fresh_process_per_method(tmp_path):
    """bench all: each method in its own process, same numbers as the per-topic benchmark, a PNG, clear errors."""
    from dsilab import DsilabError
    from dsilab.experiments.all_methods import bench_all
    from dsilab.data import synthetic_collection

    coll = synthetic_collection(n_docs=30, n_topics=3, n_subtopics=2, doc_len=20, queries_per_doc=3, seed=0)
    from dsilab.results import RESULTS_DIR

    shipped = lambda: {p: p.read_bytes() for p in [*RESULTS_DIR.iterdir(), *(RESULTS_DIR.parents[1] / "docs").glob("*.md")] if p.is_file()}  # noqa: E731
    before = shipped()
    result = bench_all(coll, split="test", methods=["BM25", "IVF 16 lists, nprobe 2"], out_dir=tmp_path)
    assert shipped() == before, "bench all wrote into the package or docs/: it writes under its --out only"
    rows = result["results"]
    assert list(rows) == ["BM25", "IVF 16 lists, nprobe 2"]
    assert "DGI (residual codes, DSI backbone) (not among --methods)" in result["not_run"]  # the table says what it lacks
    assert rows["BM25"]["Hits@1"] == round(bench_baselines(coll)["results"]["BM25"]["Hits@1"], 4)
    assert rows["IVF 16 lists, nprobe 2"]["family"] == "ANN over dense" and rows["BM25"]["peak_mb"] > 50
    assert (tmp_path / f"all-{coll.name}.png").stat().st_size > 10_000 and not (RESULTS_DIR / f"all-{coll.name}.png").exists()
    with pytest.raises(DsilabError, match="unknown method"):
        bench_all(coll, methods=["BM26"])
    # rows measured by another run (e.g. on a GPU) join a table of the same queries, their machine named in `source`
    other = json.loads(json.dumps(result))
    other["environment"] = {**other["environment"], "accelerator": "cuda: NVIDIA H200", "date": "2026-01-01 00:00 UTC"}
    (tmp_path / "gpu.json").write_text(json.dumps(other))
    merged = bench_all(coll, split="test", methods=["BM25"], add_rows=str(tmp_path / "gpu.json"), out_dir=tmp_path)
    assert list(merged["results"]) == ["BM25", "IVF 16 lists, nprobe 2"]  # the table's order; BM25 measured here
    assert merged["results"]["BM25"]["source"] == "bench all"
    assert merged["results"]["IVF 16 lists, nprobe 2"]["source"] == "bench all (H200)"
    assert not any("IVF" in n for n in merged["not_run"])
    assert any("IVF 16 lists, nprobe 2" in n and "H200" in n for n in merged["notes"])
    with pytest.raises(DsilabError, match="not on this table's queries"):
        bench_all(coll, seed=1, methods=["BM25"], add_rows=str(tmp_path / "gpu.json"), out_dir=tmp_path)


def test_bench_all_names_the_machine_of_a_row_timed_elsewhere():
    from dsilab.experiments.all_methods import _elsewhere
    from dsilab.experiments.runner import environment

    here = environment()
    assert _elsewhere({}, here) == ""
    assert _elsewhere({}, {**here, "accelerator": "cuda: NVIDIA H200"}) == " (H200)"
    assert _elsewhere({}, {**here, "machine": "arm64, 8 cores", "accelerator": "cpu"}) == " (arm64, 8 cores)"


def test_course_budget_table_flags_what_is_over():
    from dsilab.course import NotebookResult, format_results, within_budget

    rows = [NotebookResult("00_a.ipynb", "ok", 20.0, 500.0, ""), NotebookResult("01_b.ipynb", "ok", 200.0, 900.0, ""),
            NotebookResult("02_c.ipynb", "ok", 30.0, 2500.0, ""), NotebookResult("03_d.ipynb", "failed", 5.0, 100.0, "Boom\nx")]
    ok = within_budget(rows)
    assert ok == {"00_a.ipynb": True, "01_b.ipynb": False, "02_c.ipynb": False, "03_d.ipynb": False, "course total": True}
    table = format_results(rows)
    assert table.count("OVER") == 3 and "03_d.ipynb: Boom" in table
    gpu_rows = [NotebookResult("00_a.ipynb", "ok", 20.0, 500.0, "", peak_gpu_mb=812.4), rows[0]]
    assert [line.split()[4] for line in format_results(gpu_rows).splitlines()[1:3]] == ["812", "-"]  # GPU MB column


def test_course_run_fails_on_a_notebook_over_the_memory_budget(kernel_over_budget, tmp_path, capsys):
    """`dsilab course run` exits 1 when a FAST notebook's kernel peaks above the memory budget, and says so; the
    report records each notebook's host and GPU peaks."""
    from dsilab import course

    assert main(["course", "run", "--only", "00", "--out", str(tmp_path / "nb")]) == 1
    out = capsys.readouterr().out
    budget = course.BUDGET["notebook_mb"]
    assert "over the memory budget" in out and f"{kernel_over_budget:.0f} MB" in out and f"{budget:.0f} MB" in out
    report = json.loads((tmp_path / "course_report.json").read_text())
    assert report["notebooks"][0]["status"] == "memory" and report["notebooks"][0]["peak_gpu_mb"] is None
    assert report["within_budget"]["00_welcome.ipynb"] is False


def test_course_collection_reaches_only_notebooks_that_take_one(monkeypatch, tmp_path, tiny_beir):
    """`dsilab course run --collection X` sets COLLECTION where a notebook declares it, and nowhere else."""
    from dsilab import course

    seen = {}
    monkeypatch.setattr(course, "run_notebook", lambda nb, out, fast, parameters=None: (
        seen.__setitem__(nb.name, parameters), course.NotebookResult(nb.name, "ok", 0.0, 0.0, ""))[1])
    monkeypatch.chdir(tiny_beir.parent)  # a folder relative to here must still be found from notebooks/
    course.run_course(only=["01", "08"], out_dir=tmp_path / "nb", collection=tiny_beir.name)
    assert seen == {"01_baselines.ipynb": {"COLLECTION": str(tiny_beir.resolve())}, "08_scaling.ipynb": None}


def test_course_bad_collection_fails_before_any_notebook(monkeypatch, tmp_path):
    from dsilab import course
    from dsilab.core import DsilabError

    monkeypatch.setattr(course, "run_notebook", lambda *a, **k: pytest.fail("a notebook ran"))
    with pytest.raises(DsilabError):
        course.run_course(only=["01"], out_dir=tmp_path / "nb", collection=str(tmp_path / "no-such-folder"))


def test_course_full_defaults_to_a_gpu_size_collection(monkeypatch, tmp_path):
    """`course run --full` trains at SciFact size, not on the lab; offline it says how to point at a local copy."""
    from dsilab import course, data
    from dsilab.core import DsilabError

    seen = {}
    monkeypatch.setattr(course, "run_notebook", lambda nb, out, fast, parameters=None: (
        seen.__setitem__(nb.name, parameters), course.NotebookResult(nb.name, "ok", 0.0, 0.0, ""))[1])
    monkeypatch.setattr(data, "load_collection", lambda name: None)
    course.run_course(fast=False, only=["01"], out_dir=tmp_path / "nb")
    assert seen == {"01_baselines.ipynb": {"COLLECTION": course.FULL_COLLECTION}}

    def offline(name):
        raise DsilabError("the hub is unreachable.")
    monkeypatch.setattr(data, "load_collection", offline)
    with pytest.raises(DsilabError, match="--collection lab"):
        course.run_course(fast=False, only=["01"], out_dir=tmp_path / "nb")
