from __future__ import annotations

import json
import os
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


def test_a_run_directory_is_cleaned_of_exactly_the_temp_names_ladder_creates(tmp_path: Path) -> None:
    import tempfile

    made = Path(tempfile.mkdtemp(prefix="01-sft.tmp-", dir=tmp_path))  # what atomic_dir creates
    fd, made_file = tempfile.mkstemp(prefix=".manifest.json.tmp-", dir=tmp_path)  # what atomic_write_text creates
    os.close(fd)
    with atomic_dir(tmp_path / "02-dpo") as work:
        (work / "w").write_text("published")
    (tmp_path / "02-dpo").rename(tmp_path / "02-dpo.tmp-old-4242")  # moved aside, never replaced
    for name in ("01-sft.tmp-v2", "03-grpo.tmp-final", "notes.tmp-2024"):  # merely hold ".tmp-"
        (tmp_path / name).mkdir()
        (tmp_path / name / "COMPLETE").write_text("{}")

    removed = clean_leftovers(tmp_path, exact=True)

    assert sorted(p.name for p in removed) == sorted([made.name, Path(made_file).name])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["01-sft.tmp-v2", "02-dpo", "03-grpo.tmp-final",
                                                           "notes.tmp-2024"]
    assert (tmp_path / "02-dpo" / "w").read_text() == "published"


def test_every_file_and_folder_is_fsynced_before_the_marker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    with atomic_dir(tmp_path / "out") as work:
        (work / "model").mkdir()
        (work / "model" / "model.safetensors").write_bytes(b"w" * 4096)
        (work / "model" / "deep" / "er").mkdir(parents=True)
        (work / "model" / "deep" / "er" / "tokenizer.json").write_text("{}")
        (work / "metrics.json").write_text("{}")
    marker = synced.index(str(work / COMPLETE_MARKER))
    before = set(synced[:marker])
    published = [p.relative_to(tmp_path / "out") for p in (tmp_path / "out").rglob("*")]
    assert len(published) == 7
    for rel in published:
        if rel.name != COMPLETE_MARKER:
            assert str(work / rel) in before, f"{rel} was not synced before the marker"
    assert str(work) in before
    assert synced[marker + 1:] == [str(work), str(tmp_path)]  # the marker's folder, then the rename's
