"""Every course notebook executes in FAST mode with its exercise solutions (papermill), committed without outputs."""
import json

import pytest

from dsilab.course import list_notebooks, run_notebook

NOTEBOOKS = list_notebooks()


@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_fast(path, tmp_path):
    result = run_notebook(path, tmp_path, fast=True, parameters={"SOLUTIONS": True})
    assert result.status == "ok", result.error


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_clean_and_parameterised(path):
    nb = json.loads(path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), "strip outputs"
    tagged = [c for c in code if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1 and "FAST" in "".join(tagged[0]["source"])
