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
