"""Every course notebook executes in FAST mode with its exercise solutions (papermill), committed without outputs."""
import json

import pytest

from dsilab.course import list_notebooks, run_notebook

NOTEBOOKS = list_notebooks()


# 11 (the capstone) runs once, from the installed wheel (test_packaging.py: the Colab route), with the same checks.
EXECUTED_HERE = [p for p in NOTEBOOKS if not p.name.startswith("11")]


@pytest.mark.notebook
@pytest.mark.parametrize("path", EXECUTED_HERE, ids=[p.stem for p in EXECUTED_HERE])
def test_notebook_runs_fast(path, tmp_path):
    # Under `make test` the kernel inherits the worker's one thread (conftest): two notebooks run side by side, one
    # core each, instead of four threads fighting over two cores. `make course` gives a kernel every core.
    result = run_notebook(path, tmp_path, fast=True, parameters={"SOLUTIONS": True})
    assert result.status == "ok", result.error
    assert not result.warnings, result.warnings  # a warning left in an output is fixed at its cause
    assert not result.wrapped, result.wrapped  # a table is read whole


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_clean_and_parameterised(path):
    nb = json.loads(path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), "strip outputs"
    tagged = [c for c in code if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1 and "FAST" in "".join(tagged[0]["source"])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_papermill_reads_every_parameter(path):
    """papermill's parser skips a line holding two '=' (e.g. in its comment): that parameter would vanish from
    `papermill --help-notebook`. Every name the parameters cell assigns must be in papermill's view."""
    import ast

    import papermill

    nb = json.loads(path.read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    assigned = {t.id for node in ast.parse("".join(cell["source"])).body if isinstance(node, ast.Assign)
                for t in node.targets if isinstance(t, ast.Name)}
    assert assigned and assigned <= set(papermill.inspect_notebook(str(path))), assigned - set(papermill.inspect_notebook(str(path)))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_parameters_cell_holds_only_literals(path):
    """papermill (and `dsilab course run --full`) sets parameters in a cell *after* the parameters cell, so a value
    computed there from FAST (e.g. `EPOCHS = 3 if FAST else 20`) would keep FAST's default: such lines go below."""
    import ast

    nb = json.loads(path.read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    for node in ast.parse("".join(cell["source"])).body:
        try:
            ast.literal_eval(node.value)
        except (ValueError, AttributeError):
            pytest.fail(f"{path.name}: parameters cell line {node.lineno} is not a plain value: {ast.unparse(node)}")


def test_the_welcome_map_lists_every_chapter():
    # notebook 00's table is what a reader sees before running anything: it must not miss a chapter
    from dsilab.course import chapters

    welcome = "".join(json.loads(NOTEBOOKS[0].read_text())["cells"][0]["source"])
    rows = {line.split("|")[1].split()[0] for line in welcome.splitlines() if line.startswith("| 0") or line.startswith("| 1")}
    assert rows == {c["notebook"][:2] for c in chapters()}, rows


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebooks_close_with_references(path):
    last = json.loads(path.read_text())["cells"][-1]
    assert last["cell_type"] == "markdown" and "".join(last["source"]).startswith("## References")
    assert "arXiv:" in "".join(last["source"]) or "Robertson" in "".join(last["source"])


def test_output_warnings_finds_python_warnings_in_streams(tmp_path):
    from dsilab.course import output_warnings

    nb = {"cells": [{"cell_type": "code", "outputs": [
        {"output_type": "stream", "name": "stderr", "text": ["/x/umap.py:12: UserWarning: n_jobs overridden\n", "  warn(\n"]},
        {"output_type": "stream", "name": "stdout", "text": ["Hits@1 0.5\n"]}]},
        {"cell_type": "markdown", "source": ["A UserWarning: in prose is not an output"]}]}
    (tmp_path / "n.ipynb").write_text(json.dumps(nb))
    assert output_warnings(tmp_path / "n.ipynb") == ["cell 0: /x/umap.py:12: UserWarning: n_jobs overridden"]


def test_wrapped_tables_finds_pandas_blocks(tmp_path):
    from dsilab.course import wrapped_tables

    wide = "      a  b  \\\nx     1  2   \n\n      c\nx     3"
    nb = {"cells": [{"cell_type": "code", "outputs": [{"output_type": "execute_result", "data": {"text/plain": [wide]}}]},
                    {"cell_type": "code", "outputs": [{"output_type": "stream", "name": "stdout", "text": ["a b\n1 2\n"]}]}]}
    (tmp_path / "n.ipynb").write_text(json.dumps(nb))
    assert wrapped_tables(tmp_path / "n.ipynb") == ["cell 0:       a  b  \\"]


def test_gpu_peak_is_the_kernels_largest_sum_from_nvidia_smi(monkeypatch):
    """The course runner reads nvidia-smi's compute apps: the kernel's processes (a child here) summed over GPUs,
    other processes left out, the largest sample kept."""
    import subprocess
    import sys
    import threading

    from dsilab import course

    sleep = [sys.executable, "-c", "import time; time.sleep(30)"]
    earlier = subprocess.Popen(sleep)  # started before the notebook (a pool an earlier test left): not counted
    monitor = course._PeakMemory(interval=0.01, gpu_interval=0.0, gpu=True)
    child = subprocess.Popen(sleep)
    try:
        samples = [f"{child.pid}, 100\n4242, 9000\n", f"{child.pid}, 300\n{child.pid}, 120\n99999, [N/A]\n"
                   f"{earlier.pid}, 5000\n", f"{child.pid}, 50\n"]
        done = threading.Event()

        def fake_query():
            if len(samples) == 1:
                done.set()
            return samples.pop(0) if len(samples) > 1 else samples[0]

        monkeypatch.setattr(course, "_query_compute_apps", fake_query)
        monitor.start()
        assert done.wait(20)
        rss, gpu = monitor.stop()
    finally:
        for p in (child, earlier):
            p.kill()
            p.wait()
    assert gpu == 420.0 and rss > 1  # 300 + 120 on two GPUs; 9000 and 5000 belong to other processes
    assert earlier.pid in monitor.before and child.pid not in monitor.before
    assert course.parse_compute_apps("12, 7\n\nbad line\n13, [Not Supported]\n") == {12: 7.0}
    assert course._PeakMemory(gpu=False).peak_gpu is None  # no nvidia-smi: the report says None, the table "-"


def test_peak_memory_counts_the_kernels_tree_only():
    """A process started before the notebook is left out with the children it starts during the notebook (a pool's
    new worker); the kernel is counted with its own children."""
    import subprocess
    import sys
    import time

    import psutil

    from dsilab import course

    # a parent that starts a child of its own after `delay` seconds, then waits
    spawner = ("import subprocess, sys, time; time.sleep({delay}); "
               "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)']); time.sleep(30)")
    earlier = subprocess.Popen([sys.executable, "-c", spawner.format(delay=1.0)])
    monitor = course._PeakMemory(gpu=False)
    kernel = subprocess.Popen([sys.executable, "-c", spawner.format(delay=0.0)])
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not (psutil.Process(earlier.pid).children()
                                                   and psutil.Process(kernel.pid).children()):
            time.sleep(0.1)
        late, own = psutil.Process(earlier.pid).children()[0], psutil.Process(kernel.pid).children()[0]
        counted = {p.pid for p in monitor._notebooks_processes(psutil.Process())}
    finally:
        for p in (earlier, kernel):
            for c in psutil.Process(p.pid).children():
                c.kill()
            p.kill()
            p.wait()
    assert counted == {kernel.pid, own.pid}, (counted, late.pid)


def test_a_fast_notebook_over_the_memory_budget_fails(kernel_over_budget, tmp_path):
    """FAST on the lab collection, a kernel that peaks above BUDGET["notebook_mb"] is a failure with a clear line;
    a full-size run, or FAST on another collection, is not held to Binder's budget."""
    from dsilab import course

    nb = NOTEBOOKS[0]
    over = run_notebook(nb, tmp_path, fast=True)
    assert course.BUDGET["notebook_mb"] == 1536.0  # Binder's 2 GB, less the Jupyter server's share
    assert over.status == "memory" and over.error.startswith("over the memory budget")
    assert f"{kernel_over_budget:.0f} MB" in over.error
    assert run_notebook(nb, tmp_path, fast=False).status == "ok"
    assert run_notebook(nb, tmp_path, fast=True, parameters={"COLLECTION": "beir/scifact"}).status == "ok"


def test_the_report_gives_each_cell_its_seconds_and_peak(tmp_path):
    """Where a notebook's memory goes: the cell that holds 300 MB peaks 300 MB above the cells around it."""
    import nbformat

    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("FAST = True", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_markdown_cell("text"),
        nbformat.v4.new_code_cell("import time\nblock = bytearray(300 * 2**20)\ntime.sleep(1.5)\ndel block"),
        nbformat.v4.new_code_cell("time.sleep(1.5)"),
        nbformat.v4.new_code_cell("time.sleep(0.5)  # not yet in the sample after the cell above\n"
                                  "kept = bytearray(300 * 2**20)\ntime.sleep(1)")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "peaks.ipynb"
    nbformat.write(nb, path)
    result = run_notebook(path, tmp_path / "out", fast=False)
    assert result.status == "ok", result.error
    cells = {c["first_line"]: c for c in result.cells}
    held, after = cells["import time"], cells["time.sleep(1.5)"]
    assert held["seconds"] >= 1.5 and after["seconds"] >= 1.5 and held["cell"] < after["cell"]
    assert held["peak_mb"] - after["peak_mb"] > 250 and (held["peak_gpu_mb"] is None) == (result.peak_gpu_mb is None)
    kept = cells["time.sleep(0.5)  # not yet in the sample after the cell above"]  # it leaves 300 MB held at its end
    assert kept["end_mb"] - after["end_mb"] > 250 and held["peak_mb"] - after["end_mb"] > 250  # freed by then
    assert held["peak_mb"] <= result.peak_rss_mb + 1  # a cell's peak is one of the notebook's samples
