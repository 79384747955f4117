from __future__ import annotations

import json
from pathlib import Path

import pytest

from ladder.atomic import COMPLETE_MARKER, atomic_dir, atomic_write_json, clean_leftovers, is_complete


def test_atomic_dir_publishes_with_marker_written_last(tmp_path: Path) -> None:
    final = tmp_path / "out"
    info = {"fingerprint": "abc"}
    with atomic_dir(final, info=info) as work:
        assert work != final and work.parent == tmp_path
        (work / "a.txt").write_text("hello")
        assert not final.exists() and not is_complete(work)
        info["late"] = 1  # the body may add to the marker's info
    assert is_complete(final)
    marker = json.loads((final / COMPLETE_MARKER).read_text())
    assert marker["fingerprint"] == "abc" and marker["late"] == 1
    assert (final / "a.txt").read_text() == "hello"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_atomic_dir_failure_leaves_nothing(tmp_path: Path) -> None:
    final = tmp_path / "out"
    with pytest.raises(RuntimeError), atomic_dir(final) as work:
        (work / "half.bin").write_bytes(b"x" * 10)
        raise RuntimeError("crash mid-write")
    assert not final.exists()
    assert list(tmp_path.iterdir()) == []


def test_atomic_dir_replace_keeps_old_until_new_is_complete(tmp_path: Path) -> None:
    final = tmp_path / "out"
    with atomic_dir(final) as work:
        (work / "v").write_text("1")
    with pytest.raises(FileExistsError):
        with atomic_dir(final):
            pass
    with pytest.raises(KeyError), atomic_dir(final, replace=True) as work:
        (work / "v").write_text("2")
        raise KeyError("boom")
    assert (final / "v").read_text() == "1" and is_complete(final)
    with atomic_dir(final, replace=True) as work:
        (work / "v").write_text("2")
    assert (final / "v").read_text() == "2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_clean_leftovers_removes_only_temp_entries(tmp_path: Path) -> None:
    (tmp_path / "01-sft.tmp-abc").mkdir()
    (tmp_path / ".manifest.json.tmp-x").write_text("{")
    (tmp_path / "02-dpo").mkdir()
    atomic_write_json(tmp_path / "manifest.json", {"a": 1})
    removed = clean_leftovers(tmp_path)
    assert sorted(p.name for p in removed) == [".manifest.json.tmp-x", "01-sft.tmp-abc"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["02-dpo", "manifest.json"]
