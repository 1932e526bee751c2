"""Shared test fixtures: offline by default, a private cache, a tiny BEIR folder writer, a tiny DSI setup, a crash callback."""
import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
if os.environ.get("PYTEST_XDIST_WORKER"):  # `make test`: two workers on two cores (Makefile)
    # One thread here and in the processes a test starts (benches, pools, notebook kernels), and an idle OpenMP
    # thread sleeps instead of spinning on a core another process needs. Set before torch loads.
    os.environ.update(DSILAB_THREADS="1", OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE")

from dsilab.train import Callback  # noqa: E402  (after the variables above)


def pytest_collection_modifyitems(config, items):
    """`make test` (xdist, --dist loadgroup): each test file runs on one worker, as with loadfile (its module fixtures
    are built once), except the course notebooks: each is a group of its own, so both workers share them and neither
    waits idle while the other executes the course. The notebooks, the longest single tests, go first and the later
    (heavier) chapters before the earlier, so that short files fill the end (the Makefile keeps this order with
    --no-loadscope-reorder; xdist would otherwise start with the files that hold the most tests)."""
    notebooks = sorted((i for i in items if i.get_closest_marker("notebook")), key=lambda i: i.nodeid, reverse=True)
    items[:] = notebooks + [i for i in items if not i.get_closest_marker("notebook")]
    for item in items:
        group = item.nodeid if item.get_closest_marker("notebook") else item.nodeid.split("::")[0]
        item.add_marker(pytest.mark.xdist_group(group))


@pytest.fixture
def kernel_over_budget(monkeypatch) -> float:
    """Notebook runs that execute nothing and whose kernel peaks 100 MB over the FAST memory budget (the course
    runner's tests); returns that peak."""
    import papermill

    from dsilab import course

    peak = course.BUDGET["notebook_mb"] + 100.0

    class Peaked:
        def __init__(self, *a, **k): pass
        def start(self): pass
        def stop(self): return peak, None

    monkeypatch.setattr(papermill, "execute_notebook", lambda *a, **k: None)
    monkeypatch.setattr(course, "_PeakMemory", Peaked)
    return peak


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """A cache of this test run's own, shared by its xdist workers: what one worker encoded or trained, the other reads
    (every cache entry is written to a temporary file, then moved into place)."""
    if "DSILAB_CACHE" not in os.environ:
        base = tmp_path_factory.getbasetemp()
        cache = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "dsilab-cache"
        cache.mkdir(exist_ok=True)
        os.environ["DSILAB_CACHE"] = str(cache)


def write_beir(root: Path, corpus, queries, qrels: dict[str, list[tuple[str, str, int]]]) -> Path:
    """Write a BEIR folder from plain lists; corpus items are dicts or raw strings (for bad lines)."""
    (root / "qrels").mkdir(parents=True, exist_ok=True)
    with open(root / "corpus.jsonl", "w") as f:
        for rec in corpus:
            f.write((rec if isinstance(rec, str) else json.dumps(rec)) + "\n")
    with open(root / "queries.jsonl", "w") as f:
        for rec in queries:
            f.write((rec if isinstance(rec, str) else json.dumps(rec)) + "\n")
    for split, rows in qrels.items():
        with open(root / "qrels" / f"{split}.tsv", "w") as f:
            f.write("query-id\tcorpus-id\tscore\n")
            for q, d, s in rows:
                f.write(f"{q}\t{d}\t{s}\n")
    return root


@pytest.fixture
def tiny_beir(tmp_path):
    corpus = [
        {"_id": "a", "title": "Volcanoes", "text": "Lava erupts from a volcano when magma rises."},
        {"_id": "b", "title": "Rivers", "text": "A river carries water from mountains to the sea."},
        {"_id": "c", "title": "Stars", "text": "Stars shine by fusing hydrogen into helium."},
    ]
    queries = [{"_id": "1", "text": "what comes out of a volcano"}, {"_id": "2", "text": "how do stars shine"}]
    return write_beir(tmp_path / "tiny", corpus, queries, {"test": [("1", "a", 1), ("2", "c", 1)]})


#: A T5 small enough that a training step takes milliseconds (tests of train, adapters, pruning).
TINY_T5 = dict(vocab_size=120, d_model=32, layers=1, decoder_layers=1, heads=2, d_ff=64)

#: The tiny masked LM of the augmentation tests: one text set and one config, so that every test module asking for
#: it gets the same model, trained once per session and read back from the session's disk cache after that.
TINY_MLM_TEXTS = [
    "The river carries water from the mountains to the sea. Fish swim in the river.",
    "Volcanoes erupt when magma rises. Lava flows down the slope and cools into rock.",
    "Stars shine because they fuse hydrogen. The sun burns for billions of years.",
    "Bees collect nectar and make honey. They dance to tell others where flowers grow.",
]
TINY_MLM = dict(init="scratch", vocab_size=200, hidden=32, layers=1, heads=1, intermediate=64, max_len=32, steps=5,
                batch_size=4, lr=1e-3)


@pytest.fixture(scope="session")
def tiny_mlm():
    """A scratch BERT masked LM on TINY_MLM_TEXTS (seconds to train; cached per texts, config and seed)."""
    from dsilab.augment import MLMConfig, train_mlm

    return train_mlm(TINY_MLM_TEXTS * 3, MLMConfig(**TINY_MLM), seed=0)


@pytest.fixture(scope="session")
def lab():
    """The bundled lab collection, loaded once per session (tests read it, none changes it)."""
    from dsilab.data import load_collection

    return load_collection("lab")


@pytest.fixture(scope="session")
def tiny_dsi():
    """(collection, atomic docids, training examples) of a 10-doc synthetic collection."""
    from dsilab.data import synthetic_collection
    from dsilab.docids import make_docids
    from dsilab.tasks import TaskConfig, build_examples

    coll = synthetic_collection(n_docs=10, n_topics=2, n_subtopics=1, doc_len=12, queries_per_doc=3,
                                vocab_per_topic=20, vocab_per_subtopic=10, n_common=20, seed=0)
    tree = make_docids(coll, "atomic")
    return coll, tree, build_examples(coll, tree, TaskConfig(doc_len=12))


class Interrupt(Callback):
    """A train callback that simulates a crash (KeyboardInterrupt) right after optimizer step `at`."""

    def __init__(self, at: int):
        self.at = at

    def on_step_end(self, trainer) -> None:
        if trainer.step == self.at:
            raise KeyboardInterrupt


def unit_blobs(centres: int, per_centre: int, dim: int, spread: float, n_queries: int, noise: float, seed: int = 0):
    """Unit vectors around `centres` random centres, and queries = noisy copies of some of them (ANN tests)."""
    import numpy as np

    def unit(x):
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

    rng = np.random.default_rng(seed)
    n = centres * per_centre
    x = unit(np.repeat(rng.normal(size=(centres, dim)), per_centre, axis=0) + spread * rng.normal(size=(n, dim)))
    q = unit(x[rng.permutation(n)[:n_queries]] + noise * rng.normal(size=(n_queries, dim)))
    return x, q

