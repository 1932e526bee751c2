"""Colab/Binder readiness: the repository URL, the install cell, the requirement files and README agree.

pyproject's [project.urls] Repository is the one place the repository is named; the notebooks'
first cell cannot import dsilab before installing it, so it repeats the URL and this file checks it.
"""
from __future__ import annotations

import ast
import json
import re
import tomllib
from pathlib import Path

import nbformat
import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
README = (ROOT / "README.md").read_text(encoding="utf-8")
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
CPU_TORCH_INDEX = "https://download.pytorch.org/whl/cpu"


# ---------------------------------------------------------------- helpers


def repo_url() -> str:
    """The repository URL, from pyproject's [project.urls] (the one place it is set)."""
    url = PYPROJECT["project"].get("urls", {}).get("Repository")
    assert url, "pyproject.toml needs [project.urls] Repository = \"https://github.com/OWNER/NAME\""
    assert re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", url), f"not a GitHub repository URL: {url}"
    return url


def repo_slug() -> str:
    """OWNER/NAME of the repository, as Colab and Binder URLs spell it."""
    return repo_url().removeprefix("https://github.com/")


def install_url() -> str:
    """What the notebooks' first cell gives to pip."""
    return f"git+{repo_url()}.git"


def colab_url(notebook: str) -> str:
    return f"https://colab.research.google.com/github/{repo_slug()}/blob/main/notebooks/{notebook}"


def binder_url(notebook: str | None = None) -> str:
    path = f"notebooks/{notebook}" if notebook else "notebooks"
    return f"https://mybinder.org/v2/gh/{repo_slug()}/main?urlpath=lab/tree/{path}"


def first_code_cell(path: Path) -> tuple[int, str]:
    """(index among all cells, source) of a notebook's first code cell."""
    nb = nbformat.read(path, as_version=4)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            return i, cell.source
    raise AssertionError(f"{path.name} has no code cell")


def install_cell_problems(source: str, url: str) -> list[str]:
    """What is wrong with a notebook's install cell; [] when it follows the course's pattern.

    The pattern: `if importlib.util.find_spec("dsilab") is None:` guarding exactly one
    `subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", URL])`, nothing about torch
    (Colab's CUDA build must stay) and no flag that would upgrade or reinstall what is present.
    """
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        return [f"is not valid Python: {exc}"]
    problems = []
    if "torch" in ast.unparse(tree):  # code only: the comment may say that torch is kept
        problems.append("mentions torch in code: the install cell must leave the present torch alone")
    guards = [node for node in tree.body if isinstance(node, ast.If)]
    if len(guards) != 1:
        return problems + [f"needs exactly one `if` guard at top level, found {len(guards)}"]
    guard = guards[0]
    if ast.unparse(guard.test) != "importlib.util.find_spec('dsilab') is None":
        problems.append(f"guard is `{ast.unparse(guard.test)}`, expected `importlib.util.find_spec('dsilab') is None`")
    if guard.orelse:
        problems.append("the guard has an else branch")
    if len(guard.body) != 1 or not isinstance(guard.body[0], ast.Expr) or not isinstance(guard.body[0].value, ast.Call):
        return problems + ["the guard must hold exactly one subprocess.check_call([...]) call"]
    call = guard.body[0].value
    if ast.unparse(call.func) != "subprocess.check_call" or len(call.args) != 1 or call.keywords:
        return problems + [f"expected subprocess.check_call([...]), found `{ast.unparse(call)}`"]
    try:
        argv = ast.literal_eval(ast.unparse(call.args[0]).replace("sys.executable", "'<python>'"))
    except ValueError:
        return problems + [f"pip arguments must be literals, found `{ast.unparse(call.args[0])}`"]
    expected = ["<python>", "-m", "pip", "install", "-q", url]
    if argv != expected:
        problems.append(f"pip command is {argv}, expected {expected}")
    other = [node for node in tree.body if not isinstance(node, (ast.If, ast.Import, ast.ImportFrom))]
    if other:
        problems.append(f"has statements besides imports and the guard: {[ast.unparse(n) for n in other]}")
    return problems


def read_requirements(path: Path) -> tuple[dict[str, Requirement], list[str]]:
    """Requirements of a pip requirements file (following -r), keyed by normalised name, and its option lines."""
    reqs: dict[str, Requirement] = {}
    options: list[str] = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith(("-r ", "--requirement ")):
            included = (path.parent / line.split(None, 1)[1]).resolve()
            assert included.is_file(), f"{path.name} includes {included}, which does not exist"
            sub, sub_options = read_requirements(included)
            reqs.update(sub)
            options += sub_options
        elif line.startswith("-"):
            options.append(line)
        else:
            req = Requirement(line)
            name = canonicalize_name(req.name)
            assert name not in reqs, f"{path.name} names {req.name} twice"
            reqs[name] = req
    return reqs, options


def pinned(req: Requirement) -> str:
    """The version of an exact `name==version` pin."""
    specs = list(req.specifier)
    assert len(specs) == 1 and specs[0].operator == "==", f"{req} is not an exact `==` pin"
    return specs[0].version


def pyproject_requirements() -> dict[str, Requirement]:
    """pyproject's dependencies plus every extra, keyed by normalised name."""
    project = PYPROJECT["project"]
    lines = project["dependencies"] + [d for extra in project.get("optional-dependencies", {}).values() for d in extra]
    return {canonicalize_name(Requirement(d).name): Requirement(d) for d in lines}


# ---------------------------------------------------------------- the notebooks' install cell


def test_there_are_notebooks_to_check():
    assert len(NOTEBOOKS) >= 9, [p.name for p in NOTEBOOKS]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_first_code_cell_installs_dsilab_from_the_pyproject_url(path):
    index, source = first_code_cell(path)
    assert install_cell_problems(source, install_url()) == [], f"{path.name}, cell {index}"
    nb = nbformat.read(path, as_version=4)
    tags = nb.cells[index].metadata.get("tags", [])
    assert "parameters" not in tags, f"{path.name}: the install cell must not be the parameters cell"
    params = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
    assert params and params[0] > index, f"{path.name}: the parameters cell must come after the install cell"


def test_install_cells_are_identical_across_notebooks():
    sources = {p.name: first_code_cell(p)[1] for p in NOTEBOOKS}
    reference = sources[NOTEBOOKS[0].name]
    assert {name for name, src in sources.items() if src != reference} == set()


@pytest.mark.parametrize(
    "source, complaint",
    [
        ('import subprocess, sys\nsubprocess.check_call([sys.executable, "-m", "pip", "install", "-q", "URL"])', "guard"),
        ('import importlib.util, subprocess, sys\nif importlib.util.find_spec("dsilab") is None:\n'
         '    subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", "git+https://github.com/a/b.git"])', "pip command"),
        ('import importlib.util, subprocess, sys\nif importlib.util.find_spec("dsilab") is None:\n'
         '    subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", "-U", "URL"])', "pip command"),
        ('import importlib.util, subprocess, sys\nif importlib.util.find_spec("dsilab") is None:\n'
         '    subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", "URL", "torch"])', "torch"),
    ],
    ids=["no-guard", "other-url", "upgrade-flag", "torch"],
)
def test_install_cell_checker_rejects_broken_cells(source, complaint):
    problems = install_cell_problems(source, "URL")
    assert any(complaint in p for p in problems), problems


# ---------------------------------------------------------------- README: badges and the notebook map


def test_every_repository_reference_in_readme_is_the_pyproject_one():
    slug = repo_slug()
    patterns = [
        r"github\.com/([\w.-]+/[\w.-]+?)(?:\.git)?(?=[/)\s`\"]|$)",
        r"colab\.research\.google\.com/github/([\w.-]+/[\w.-]+)/",
        r"mybinder\.org/v2/gh/([\w.-]+/[\w.-]+)/",
    ]
    found = {m for pattern in patterns for m in re.findall(pattern, README)}
    assert found == {slug}, f"README names repositories {sorted(found)}; pyproject says {slug}"
    assert install_url() in README, f"README's Colab section should show `pip install {install_url()}`"


def test_readme_top_badges_open_colab_and_binder():
    assert f"]({colab_url('00_welcome.ipynb')})" in README
    assert f"]({binder_url()})" in README


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_readme_notebook_map_has_a_row_with_badges(path):
    rows = [line for line in README.splitlines() if line.startswith(f"| [`{path.stem}`](notebooks/{path.name})")]
    assert len(rows) == 1, f"README's notebook map needs one row for {path.name}, found {len(rows)}"
    cells = [c.strip() for c in rows[0].strip("|").split("|")]
    header = next(line for line in README.splitlines() if line.startswith("| notebook |"))
    columns = [c.strip() for c in header.strip("|").split("|")]
    assert columns == ["notebook", "open", "you will learn", "CPU time (FAST)", "GPU time (full, SciFact)"], columns
    assert len(cells) == len(columns), rows[0]
    row = dict(zip(columns, cells))
    assert f"]({colab_url(path.name)})" in row["open"], f"{path.name}: Colab badge missing or wrong"
    assert f"]({binder_url(path.name)})" in row["open"], f"{path.name}: Binder badge missing or wrong"
    assert len(row["you will learn"]) > 20, f"{path.name}: learning objectives missing"
    assert row["CPU time (FAST)"] and row["GPU time (full, SciFact)"], f"{path.name}: time cells must not be empty"


def test_readme_gpu_column_is_the_committed_full_size_report():
    """Every notebook's GPU cell is read from one report, in which every notebook finished within Colab's limits."""
    report = json.loads((ROOT / "dsilab" / "results" / "course-h100-scifact.json").read_text())
    rows = {r["notebook"]: r for r in report["notebooks"]}
    assert sorted(rows) == [p.name for p in NOTEBOOKS], "the report must hold every notebook, once"
    for path in NOTEBOOKS:
        r = rows[path.name]
        assert r["status"] == "ok" and r["seconds"] <= 600, (path.name, r["status"], r["seconds"])
        assert r["peak_rss_mb"] <= 12 * 1024 and r["peak_gpu_mb"] <= 14 * 1024, path.name  # a free Colab session
        line = next(x for x in README.splitlines() if x.startswith(f"| [`{path.stem}`]"))
        shown = f" {r['seconds']:.0f} s, {r['peak_rss_mb'] / 1024:.1f} GB, GPU {r['peak_gpu_mb'] / 1024:.1f} GB "
        assert line.strip("|").split("|")[-1].startswith(shown), (path.name, shown)


# ---------------------------------------------------------------- requirements, constraints, Binder


def test_requirements_txt_is_pyproject_minus_torch():
    """Binder/local installs requirements.txt, Colab installs pyproject's dependencies: same packages, same bounds."""
    reqs, options = read_requirements(ROOT / "requirements.txt")
    assert options == [], f"requirements.txt should hold requirements only, found {options}"
    declared = pyproject_requirements()
    assert "torch" not in reqs, "requirements.txt must not name torch (whatever build is present stays)"
    assert set(reqs) == set(declared) - {"torch"}
    differ = {n: (str(reqs[n].specifier), str(declared[n].specifier)) for n in reqs if reqs[n].specifier != declared[n].specifier}
    assert differ == {}, f"requirements.txt vs pyproject specifiers: {differ}"


def test_binder_requirements_add_only_the_cpu_torch():
    binder, binder_options = read_requirements(ROOT / "binder" / "requirements.txt")
    base, _ = read_requirements(ROOT / "requirements.txt")
    assert set(binder) - set(base) == {"torch"}, sorted(set(binder) ^ set(base))
    changed = {n for n in base if str(binder[n]) != str(base[n])}
    assert changed == set(), f"binder/requirements.txt overrides {changed}"
    assert binder_options == [f"--extra-index-url {CPU_TORCH_INDEX}"], binder_options
    torch = pinned(binder["torch"])
    assert torch.split("+")[0] == pinned(read_requirements(ROOT / "constraints.txt")[0]["torch"])
    assert pyproject_requirements()["torch"].specifier.contains(torch)


def test_constraints_pins_satisfy_every_declared_specifier():
    constraints, options = read_requirements(ROOT / "constraints.txt")
    assert options == []
    versions = {name: pinned(req) for name, req in constraints.items()}
    declared = {**pyproject_requirements(), **read_requirements(ROOT / "binder" / "requirements.txt")[0]}
    assert set(declared) <= set(versions), f"constraints.txt pins none of {sorted(set(declared) - set(versions))}"
    bad = {n: (versions[n], str(r.specifier)) for n, r in declared.items() if not r.specifier.contains(versions[n], prereleases=True)}
    assert bad == {}, f"constraints.txt pins outside the declared range: {bad}"


def test_binder_files_exist_and_agree_with_readme():
    binder = ROOT / "binder"
    post_build = binder / "postBuild"
    assert post_build.is_file() and post_build.stat().st_mode & 0o111, "binder/postBuild must exist and be executable"
    script = post_build.read_text(encoding="utf-8")
    assert script.startswith("#!"), "binder/postBuild needs a shebang line"
    assert re.search(r"^pip install --no-deps -e \.$", script, re.M), "postBuild should install dsilab without touching deps"
    assert "torch" not in script

    runtime = (binder / "runtime.txt").read_text(encoding="utf-8").strip()
    match = re.fullmatch(r"python-(\d+\.\d+)", runtime)
    assert match, f"binder/runtime.txt should read python-X.Y, found {runtime!r}"
    requires = SpecifierSet(PYPROJECT["project"]["requires-python"])
    assert requires.contains(match.group(1)), f"Binder's Python {match.group(1)} is outside requires-python {requires}"
    claimed = re.search(r"Python (\d+\.\d+)\+", README)
    assert claimed, "README should state the minimum Python (`Python 3.X+`)"
    assert requires == SpecifierSet(f">={claimed.group(1)}"), f"README says Python {claimed.group(1)}+, pyproject {requires}"

    torch = pinned(read_requirements(binder / "requirements.txt")[0]["torch"])
    binder_claim = re.search(r"\*\*Binder\.\*\*.*?CPU torch ([\w.+]+)", README, re.S)
    assert binder_claim and binder_claim.group(1) == torch, "README's Binder paragraph names another torch version"
    readme_pins = set(re.findall(r"torch==([\w.+]+)", README))
    assert readme_pins == {torch}, f"README pins torch {readme_pins}, binder/constraints pin {torch}"


# ---------------------------------------------------------------- the pip-installed package (the Colab route)


def build_wheel(dest: Path) -> Path:
    """The wheel pip builds from this checkout: what a `pip install` of the repository URL installs."""
    import subprocess
    import sys

    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(dest),
                    str(ROOT)], check=True, cwd=dest.parent)
    return next(dest.glob("dsilab-*.whl"))


def lab_test_files(folder: Path, n: int = 5) -> tuple[Path, Path]:
    """The first `n` test queries of the lab collection as a qid<TAB>text file, and their qrels in BEIR's TSV."""
    from dsilab.data import load_collection

    queries, qrels = load_collection("lab").split("test")
    qids = list(queries)[:n]
    query_file, qrels_file = folder / "queries.tsv", folder / "qrels.tsv"
    query_file.write_text("".join(f"{q}\t{queries[q]}\n" for q in qids), encoding="utf-8")
    qrels_file.write_text("query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t{g}\n" for q in qids
                                                                    for d, g in qrels[q].items()), encoding="utf-8")
    return query_file, qrels_file


@pytest.mark.notebook
def test_capstone_runs_from_the_installed_wheel(tmp_path, monkeypatch):
    """Colab installs a wheel, not this checkout: build it, unpack it on sys.path and run notebook 11 from a folder
    outside the repository. The committed results the notebook reads must come with the package."""
    import os
    import subprocess
    import sys
    import zipfile

    import papermill

    from dsilab.course import KERNEL_START_S, output_warnings, wrapped_tables

    site = tmp_path / "site"
    with zipfile.ZipFile(build_wheel(tmp_path / "wheels")) as whl:
        whl.extractall(site)
    assert (site / "dsilab" / "results" / "all-lab.json").is_file(), "the committed results are not in the wheel"
    monkeypatch.setenv("PYTHONPATH", str(site))
    where = subprocess.run([sys.executable, "-c", "import dsilab; print(dsilab.__file__)"], capture_output=True,
                           text=True, check=True, cwd=tmp_path).stdout
    assert where.startswith(str(site)), f"the wheel is not what Python imports: {where}"
    work = tmp_path / "outside"
    work.mkdir()
    notebook = next(p for p in NOTEBOOKS if p.name.startswith("11"))
    monkeypatch.setenv("PATH", os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    before = {p: p.stat().st_mtime for p in site.rglob("*")}
    papermill.execute_notebook(str(notebook), str(work / notebook.name), parameters={"FAST": True, "SOLUTIONS": True},
                               kernel_name="python3", progress_bar=False, cwd=str(work), start_timeout=KERNEL_START_S)
    assert {p: p.stat().st_mtime for p in site.rglob("*") if p.suffix != ".pyc"} == \
        {p: t for p, t in before.items() if p.suffix != ".pyc"}, "running the notebook wrote into the installed package"
    assert not output_warnings(work / notebook.name) and not wrapped_tables(work / notebook.name)  # test_notebooks.py leaves 09 to this test: its checks too


@pytest.mark.slow
def test_train_search_eval_run_from_the_wheel_in_a_fresh_venv(tmp_path):
    """`pip install` of the package into a fresh venv, then the `dsilab` console script runs the lab's three commands
    from a folder outside the repository. The dependencies come from this project's venv (a .pth file in the fresh
    venv names its site-packages; the wheel goes in with --no-deps) so that nothing is downloaded: what is tested is
    the wheel and its entry point, in seconds."""
    import os
    import subprocess
    import sys
    import sysconfig

    from conftest import TINY_T5

    wheel = build_wheel(tmp_path / "wheels")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    # Installed before the .pth exists, so that pip sees an empty environment (not the checkout's editable dsilab).
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", "--no-index",
                    str(wheel)], check=True)
    venv_site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                               capture_output=True, text=True, check=True).stdout.strip()
    project_site = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}
    # A plain path line: the project's site-packages joins sys.path after the fresh venv's own, and its .pth files
    # (the editable install of this checkout among them) are not run.
    (Path(venv_site) / "project_dependencies.pth").write_text("\n".join(sorted(project_site)) + "\n")

    work = tmp_path / "outside"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PATH"] = str(venv / "bin") + os.pathsep + env.get("PATH", "")
    where = subprocess.run([python, "-c", "import dsilab; print(dsilab.__file__)"], capture_output=True, text=True,
                           check=True, cwd=work, env=env).stdout.strip()
    assert Path(where).is_relative_to(venv_site), f"the fresh venv imports dsilab from {where}, not its own copy"

    def dsilab(*args: str) -> str:
        done = subprocess.run([venv / "bin" / "dsilab", *args], capture_output=True, text=True, cwd=work, env=env)
        assert done.returncode == 0, f"dsilab {' '.join(args)} exited {done.returncode}:\n{done.stderr[-3000:]}"
        return done.stdout

    # The smallest recipe that trains and saves (test_lab_commands.py's tiny T5): the run's quality is not the point.
    printed = dsilab("train", "--collection", "lab", "--out", "M", "--progress", "false", "--docids", "atomic",
                     "--backbone", "t5-scratch", "--arch", json.dumps(TINY_T5), "--max_steps", "2",
                     "--memo_sample", "8", "--dev_queries", "8", "--batch_size", "4")
    assert "saved to M" in printed and (work / "M" / "model.json").is_file(), printed
    queries, qrels = lab_test_files(work)
    k = 3
    dsilab("search", "--model", "M", "--queries", str(queries), "--k", str(k), "--out", "run.trec")
    qids = [line.split("\t")[0] for line in queries.read_text().splitlines()]
    rows = [line.split() for line in (work / "run.trec").read_text().splitlines()]
    assert [r[0] for r in rows] == [q for q in qids for _ in range(k)], "k ranked lines per query, in query order"
    assert all(len(r) == 6 and r[1] == "Q0" and r[3] == str(i % k + 1) for i, r in enumerate(rows)), rows[:k]
    assert all(float(a[4]) >= float(b[4]) for a, b in zip(rows, rows[1:]) if a[0] == b[0]), "scores must not rise"
    printed = dsilab("eval", "--run", "run.trec", "--qrels", str(qrels))
    scores = [line for line in printed.splitlines() if "95% interval" in line]
    assert [line.split()[0] for line in scores] == ["Hits@1", "Hits@10", "MRR@10", "nDCG@10"], printed


@pytest.mark.install
def test_binder_environment_builds_and_runs_the_welcome_notebook(tmp_path):
    """What Binder does, in a fresh venv: `pip install -r binder/requirements.txt` from the package index, then
    `binder/postBuild` from the repository root, then a learner runs notebook 00 (FAST) on that venv's kernel.
    The repository is copied first (its tracked and unignored files, as a clone has them): postBuild's editable
    install writes build files next to the source. Minutes: opt-in, `make binder-test`."""
    import os
    import shutil
    import subprocess
    import sys

    repo = tmp_path / "repo"
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.split("\0")
    for name in filter(None, listed):
        if (ROOT / name).is_file():  # a tracked file deleted in the working tree is not copied
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, repo / name)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(PATH=str(venv / "bin") + os.pathsep + env.get("PATH", ""), VIRTUAL_ENV=str(venv))

    def run(*args: str | Path, cwd: Path = repo, timeout: int = 1800) -> None:
        done = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=timeout)
        assert done.returncode == 0, f"{' '.join(map(str, args))} exited {done.returncode}:\n{done.stderr[-4000:]}"

    # Binder finds the CPU torch on the requirements' extra index; where that host is unreachable, pip's own
    # configuration must supply it (as for `make setup`). --retries 0 --timeout 30: an unreachable index costs at
    # most 30 s per request instead of pip's retries with a long default timeout.
    run(venv / "bin" / "pip", "install", "-q", "--retries", "0", "--timeout", "30", "-r", "binder/requirements.txt")
    run("bash", "binder/postBuild")  # its `pip` is the venv's: first on PATH, as in Binder's image
    run(venv / "bin" / "python", "-m", "ipykernel", "install", "--prefix", venv, "--name", "binder-test")
    where = subprocess.run([venv / "bin" / "python", "-c", "import dsilab, torch; print(dsilab.__file__); "
                            "print(torch.version.cuda)"], cwd=tmp_path, env=env, capture_output=True, text=True,
                           check=True).stdout.split()
    assert Path(where[0]).is_relative_to(repo), f"the Binder venv imports dsilab from {where[0]}, not the clone"
    assert where[1] == "None", f"binder/requirements.txt installed a CUDA torch ({where[1]}), not the CPU build"

    notebook = next(p for p in NOTEBOOKS if p.name.startswith("00"))
    executed = tmp_path / notebook.name
    run(venv / "bin" / "python", "-m", "papermill", repo / "notebooks" / notebook.name, executed, "-k", "binder-test",
        "-p", "FAST", "True", "-p", "SOLUTIONS", "True", "--cwd", repo / "notebooks", "--no-progress-bar", timeout=900)
    nb = nbformat.read(executed, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.execution_count for c in code), "a code cell did not run"
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]
    kernel = json.loads((venv / "share" / "jupyter" / "kernels" / "binder-test" / "kernel.json").read_text())
    assert Path(kernel["argv"][0]).parent == venv / "bin", f"the kernel ran {kernel['argv'][0]}, not the venv's python"
    from dsilab.course import output_warnings

    assert not output_warnings(executed), output_warnings(executed)


def test_module_level_imports_form_no_cycle():
    """Every `from .x import y` at module level, as a graph over dsilab's modules: acyclic, so any module imports alone
    (imports inside functions are left out: they run later, once every module is loaded)."""
    import ast
    from graphlib import CycleError, TopologicalSorter
    from pathlib import Path

    import dsilab

    root = Path(dsilab.__file__).parent
    names = {".".join(f.relative_to(root.parent).with_suffix("").parts).removesuffix(".__init__"): f
             for f in root.rglob("*.py")}
    graph = {}
    for name, f in names.items():
        pkg = name if f.name == "__init__.py" else name.rpartition(".")[0]
        deps = set()
        for node in ast.parse(f.read_text()).body:
            if isinstance(node, ast.ImportFrom) and node.level:
                parts = pkg.split(".")
                target = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
                deps |= {t for t in [target] + [f"{target}.{a.name}" for a in node.names] if t in names}
        graph[name] = deps - {name}
    assert len(graph) > 30 and graph["dsilab.recipes"] >= {"dsilab.core", "dsilab.train"}
    try:
        list(TopologicalSorter(graph).static_order())
    except CycleError as e:
        pytest.fail(f"import cycle: {' -> '.join(e.args[1])}")
