"""The benchmark results the course ships, read-only: the notebooks read them the same way from a checkout and from a
pip install (Colab), through `importlib.resources`. Only `make bench` rewrites them (`dsilab bench ... --out
dsilab/results --update-docs`); every other command writes under its own `--out`."""
from __future__ import annotations

import json
from importlib.resources import files
from pathlib import Path
from typing import Any

from ..core import DsilabError

#: The folder of the shipped results (inside the installed package).
RESULTS_DIR = Path(str(files(__name__)))


def load_result(name: str) -> dict[str, Any]:
    """One shipped result by file name ("dsi-lab.json" or "dsi-lab")."""
    path = RESULTS_DIR / (name if name.endswith(".json") else f"{name}.json")
    if not path.is_file():
        known = sorted(p.stem for p in RESULTS_DIR.glob("*.json"))
        raise DsilabError(f"no shipped result {name!r}; the package has: {known}.")
    return json.loads(path.read_text())
