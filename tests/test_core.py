"""core's shared pieces: the atomic cache write every disk cache and checkpoint uses."""
import os

import pytest

from dsilab.core import atomic_path


def test_atomic_path_moves_a_whole_file_into_place_and_leaves_nothing_on_error(tmp_path):
    target = tmp_path / "x.npy"
    with atomic_path(target) as tmp:
        assert tmp.name == f"x.{os.getpid()}.tmp.npy" and tmp.suffix == target.suffix  # np.save adds no second suffix
        tmp.write_text("new")
    assert target.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["x.npy"]
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert target.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["x.npy"]


def test_atomic_path_keeps_a_folder_another_process_wrote_first(tmp_path):
    target = tmp_path / "model"
    with atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "w").write_text("mine")
        target.mkdir()
        (target / "w").write_text("theirs")
    assert (target / "w").read_text() == "theirs" and sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_release_memory_trims_on_glibc_and_is_a_no_op_elsewhere(monkeypatch):
    """It hands the heap's free pages back where glibc has malloc_trim, and does nothing (no error) where it has not."""
    import ctypes

    from dsilab import core
    from dsilab.core import release_memory

    calls = []

    class Libc:
        def malloc_trim(self, pad):
            calls.append(pad)
            return 1

        def mallopt(self, param, value):  # glibc has both; map_large_blocks uses this one
            return 1

    monkeypatch.setattr(ctypes, "CDLL", lambda name: Libc())
    monkeypatch.setattr(core, "_LIBC", None)  # glibc is looked up once per process
    release_memory()
    core.trim_heap()  # what the CPU training loop calls after every step
    assert calls == [0, 0]

    def missing(name):
        raise OSError(f"{name}: cannot open shared object file")

    monkeypatch.setattr(ctypes, "CDLL", missing)
    monkeypatch.setattr(core, "_LIBC", None)
    release_memory()  # macOS, Windows, musl: nothing to trim, nothing raised
    assert core._LIBC is False and calls == [0, 0]


def test_map_large_blocks_sets_glibcs_threshold_and_keeps_numbers():
    """On glibc the threshold is accepted (mallopt returns 1); an allocation policy cannot change what is computed."""
    import platform

    import numpy as np

    from dsilab.core import map_large_blocks

    a = np.random.default_rng(0).standard_normal((2048, 2048))  # 32 MB: a block that is mapped either way
    before = float((a @ a[:, :8]).sum())
    assert map_large_blocks() is (platform.system() == "Linux" and platform.libc_ver()[0] == "glibc")
    assert map_large_blocks(8) == map_large_blocks()  # idempotent
    assert float((a @ a[:, :8]).sum()) == before
