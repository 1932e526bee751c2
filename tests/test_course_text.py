"""The course's text rules, checked on every notebook: numbers in prose are checked by a cell, prose speaks to a
learner (no project history, no paths a learner lacks), each chapter opens and closes the same way, and its exercises
are checked (at least two, one of them "predict, then run"), with a model answer for every open question."""
import json
import re
from pathlib import Path

import pytest

from dsilab.course import history_words, list_notebooks, unchecked_numbers

NOTEBOOKS = list_notebooks()
ROOT = Path(__file__).resolve().parents[1]


def _cells(path):
    return json.loads(path.read_text())["cells"]


def _text(cell):
    return "".join(cell["source"])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_every_number_in_the_prose_is_checked_by_a_cell(path):
    unchecked = unchecked_numbers(path)
    assert not unchecked, "numbers in the prose that no cell holds (compute the sentence, or check it):\n" + "\n".join(unchecked)


def test_unchecked_numbers_sees_claims_and_leaves_settings_and_references():
    import tempfile

    nb = {"cells": [
        {"cell_type": "markdown", "source": ["# 05 · T\n", "BM25 scores 0.812 [0.743, 0.880] (k = `10`); see chapter 04.\n",
                                             "Replay keeps 0.464 of it (0.04 more), Smith et al. 2022."]},
        {"cell_type": "code", "source": ["check_quoted({'x': (0.812, r['x'])})\n", "assert lo == 0.743"]},
        {"cell_type": "markdown", "source": ["## References\n", "- Tay et al. 2022, 12 pages"]}]}
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "n.ipynb").write_text(json.dumps(nb))
        found = unchecked_numbers(Path(d) / "n.ipynb")
    assert [f.split("'")[1] for f in found] == ["0.880", "0.464", "0.04"], found


def _learner_texts():
    for path in NOTEBOOKS:
        yield path.name, "\n".join(_text(c) for c in _cells(path))
    for name in ["README.md", "Makefile", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))]:
        yield name, (ROOT / name).read_text()


@pytest.mark.parametrize("name,text", list(_learner_texts()), ids=[n for n, _ in _learner_texts()])
def test_learner_facing_text_tells_no_project_history(name, text):
    found = history_words(text)
    assert not found, f"{name}: words of the project's history or paths a learner lacks: {found}"


def test_history_words_catches_the_usual_suspects():
    assert len(history_words("goal +10: met; the first version of our loop; see ../shared/data/cisi; it is now faster")) == 5
    assert not history_words("Train the model, then read its test score once.")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_every_chapter_opens_and_closes_the_same_way(path):
    cells = _cells(path)
    opener = _text(cells[0])
    for part in ("**You will learn:**", "**Prerequisites:**", "**Time:**"):
        assert part in opener, f"{path.name}: the first cell lacks {part}"
    found = [i for i, c in enumerate(cells) if c["cell_type"] == "markdown" and "## What we found" in _text(c)]
    assert found and cells[found[0] + 1]["cell_type"] == "code", \
        f"{path.name}: a '## What we found' section whose sentences a code cell computes"
    assert _text(cells[-1]).startswith("## References")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_every_chapter_ends_with_checked_exercises(path):
    cells = _cells(path)
    chapter = path.name[:2]
    start = next((i for i, c in enumerate(cells) if c["cell_type"] == "markdown" and "## Exercises" in _text(c)), None)
    assert start is not None, f"{path.name}: no '## Exercises' section"
    code = "\n".join(_text(c) for c in cells[start:] if c["cell_type"] == "code")
    checked = set(re.findall(rf'check\("({chapter}\.\d+)"', code))
    assert len(checked) >= 2, f"{path.name}: {len(checked)} checked exercise(s); at least 2"
    prose = "\n".join(_text(c) for c in cells[start:] if c["cell_type"] == "markdown")
    assert "**Predict, then run.**" in prose, f"{path.name}: no 'predict, then run' exercise"
    # every numbered exercise is checked by a cell or has a model answer (a collapsed <details> block)
    items = re.split(r"(?m)^(?=\*\*\d+\.\*\*)", prose)
    for item in items[1:]:
        k = re.match(r"\*\*(\d+)\.\*\*", item).group(1)
        assert f"{chapter}.{k}" in checked or "<details>" in item, \
            f"{path.name}: exercise {k} has neither a checker call nor a model answer (<details>)"
