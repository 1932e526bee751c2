"""`dsilab bench NAME`: each benchmark's --help lists exactly the flags its function honours, any other flag is an
argparse error (exit 2, naming it), recipe overrides are checked against Recipe, and every benchmark, run at the
smallest settings its flags allow, writes under --out only (the package, its results and docs/ stay byte-identical)."""
import hashlib
import inspect
import json
import re
from pathlib import Path

import pytest

from dsilab.cli import main
from dsilab.experiments import BENCHMARKS, bench_parser, benchmark
from dsilab.experiments.flags import NOT_FLAGS

ROOT = Path(__file__).resolve().parents[1]
ALWAYS = {"--collection", "--out", "--update-docs", "--log-evals", "--help"}


def _flags(name: str) -> set[str]:
    """The flags a benchmark's function honours: one per keyword parameter, dashes for underscores."""
    params = inspect.signature(benchmark(name)).parameters
    return {f"--{p.replace('_', '-')}" for p in params if p not in NOT_FLAGS}


@pytest.mark.parametrize("name", sorted(BENCHMARKS))
def test_help_lists_exactly_the_options_the_benchmark_honours(name, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["bench", name, "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    options = text.split("options:", 1)[1]
    listed = set(re.findall(r"^  (--[a-z][a-z0-9-]*)", options, flags=re.M)) | {"--help"}
    assert listed == ALWAYS | _flags(name)
    for action in bench_parser(name)._actions:  # every option explains itself
        assert action.help and len(action.help) > 15, (name, action.option_strings)


def test_bench_help_lists_every_benchmark(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["bench", "--help"])
    assert exit_.value.code == 0
    listing = capsys.readouterr().out.split("benchmarks:", 1)[1]
    assert {line.split()[0] for line in listing.strip().splitlines()} == set(BENCHMARKS)


@pytest.mark.parametrize("argv, flag", [
    (["throughput", "--split", "dev"], "--split"),       # throughput reads the training examples, no query split
    (["dgi", "--seed", "1"], "--seed"),                   # dgi takes --seeds; no abbreviation is accepted
    (["baselines", "--jobs", "2"], "--jobs"),
    (["train", "--time-limit-s", "5"], "--time-limit-s"),
    (["dsi", "--partial", "rows.jsonl"], "--partial"),
])
def test_a_flag_the_benchmark_cannot_honour_is_an_error(argv, flag, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["bench", *argv])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "unrecognized arguments" in err and flag in err


def test_recipe_overrides_are_checked_against_recipe(tmp_path, capsys):
    parse = bench_parser("dgi").parse_args
    path = tmp_path / "recipe.json"
    path.write_text(json.dumps({"lr": 3e-4, "eval_every": 470}))
    assert parse(["--recipe", str(path)]).recipe == {"lr": 3e-4, "eval_every": 470}
    assert parse(["--recipe", '{"docids": "atomic"}', "--seeds", "0", "1"]).seeds == [0, 1]
    for bad, named in [('{"no_such_field": 1}', "no_such_field"), ('{"lr": "fast"}', "lr"),
                       ('{"docids": "hashed"}', "docids"), ("missing.json", "missing.json"), ("[1, 2]", "JSON object")]:
        with pytest.raises(SystemExit) as exit_:
            parse(["--recipe", bad])
        assert exit_.value.code == 2
        err = capsys.readouterr().err
        assert "argument --recipe" in err and named in err, err


def test_bench_dsi_names_its_variants(tiny_beir, tmp_path, capsys):
    assert main(["bench", "dsi", "--collection", str(tiny_beir), "--variants", "DSI hashed", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "no variant ['DSI hashed']" in err and "DSI semantic" in err
    assert not (tmp_path / "out").exists()


def test_run_benchmark_refuses_an_option_the_function_does_not_take():
    from dsilab import DsilabError
    from dsilab.experiments import run_benchmark

    with pytest.raises(DsilabError, match="takes no option"):
        run_benchmark("throughput", split="dev")


# -- every benchmark writes under --out only ---------------------------------------------------------------------
TINY = '{"max_steps": 2, "eval_every": 2, "doc_len": 16}'
TINY_QG = '{"max_steps": 2, "eval_every": 2, "doc_len": 16, "generator_steps": 2}'  # the query generator too


def _lab_topic(root: Path) -> Path:
    """One lab topic as a BEIR folder (train, dev and test queries): a collection with a training split, 21 docs."""
    from conftest import write_beir
    from dsilab import load_collection

    c = load_collection("lab").topics(1)
    corpus = [{"_id": d, "title": doc.title, "text": doc.text} for d, doc in c.docs.items()]
    queries = [{"_id": q, "text": t} for q, t in c.queries.items()]
    qrels = {s: [(q, d, 1) for q, rel in c.qrels[s].items() for d in rel] for s in c.qrels}
    return write_beir(root / "labtopic", corpus, queries, qrels)


def _tiny_args(name: str, tiny: str, topic: str, out: Path) -> list[str]:
    """The smallest settings each benchmark's flags allow."""
    return {
        "baselines": ["--collection", tiny],
        "dsi": ["--collection", tiny, "--variants", "DSI semantic", "--recipe", TINY],
        "efficiency": ["--collection", tiny, "--variants", "frozen encoder (default)", "--time-limit-s", "1"],
        "qg": ["--collection", topic, "--n-values", "1", "--recipe", TINY_QG],
        "ann": ["--collection", "synthetic", "--n", "8000", "--only", "reference"],  # n > 5,000 + 1,000 queries
        "augment": ["--collection", tiny],
        "dgi": ["--collection", topic, "--seeds", "0", "--variants", "DGI", "--recipe", TINY, "--time-limit-s", "1",
                "--partial", str(out / "rows.jsonl")],
        "all": ["--collection", topic, "--methods", "BM25", "IVF 16 lists, nprobe 2"],
        "incremental": ["--collection", topic, "--recipe", TINY, "--time-limit-s", "1"],
        "throughput": ["--collection", tiny, "--shapes", "minilm-seq2seq", "--batches", "2", "--steps", "1"],
        "scaling": ["--collection", topic, "--studies", "reference", "--time-limit-s", "1",
                    "--partial", str(out / "rows.jsonl")],
        "train": ["--collection", tiny, "--recipe", TINY],
    }[name]


def _shipped() -> dict[str, str]:
    """sha256 of every file of the package (dsilab/, results included) and of docs/, caches left out."""
    files = [p for folder in (ROOT / "dsilab", ROOT / "docs") for p in folder.rglob("*")
             if p.is_file() and "__pycache__" not in p.parts]
    return {str(p.relative_to(ROOT)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


#: Seconds at their smallest settings: these two in about 20 s of CPU together; the others train models in fresh
#: processes or build ANN indexes over 8,000 vectors (minutes on 2 cores), so they run with the slow tests.
QUICK = ("baselines", "train")


@pytest.mark.parametrize("name", [n if n in QUICK else pytest.param(n, marks=pytest.mark.slow) for n in sorted(BENCHMARKS)])
def test_every_benchmark_writes_under_its_out_only(name, tiny_beir, tmp_path, monkeypatch, capsys):
    if name == "augment":  # its flags set no size: the masked LM (300 MiniLM steps) and 15 DSI runs shrink here
        from conftest import TINY_MLM

        from dsilab.augment import MLMConfig
        from dsilab.experiments import augment
        from dsilab.recipes import Recipe

        monkeypatch.setattr(augment.bench_mlm, "__defaults__", (MLMConfig(**TINY_MLM), 0))
        monkeypatch.setattr(augment.bench_augment, "__defaults__",
                            (augment.bench_augment.__defaults__[:-1] + (Recipe(docids="atomic", **json.loads(TINY)),)))
    out = tmp_path / "out"
    args = _tiny_args(name, str(tiny_beir), str(_lab_topic(tmp_path)), out)
    before = _shipped()
    assert main(["bench", name, *args, "--out", str(out)]) == 0, capsys.readouterr().err
    after = _shipped()
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert not changed, f"bench {name} wrote outside --out: {changed}"
    written = [p.name for p in out.iterdir()]
    assert any(p.endswith(".json") and p != "rows.jsonl" for p in written), written
    result = json.loads(next(p for p in out.glob("*.json")).read_text())
    assert result["benchmark"] == name and result["environment"]["command"]
