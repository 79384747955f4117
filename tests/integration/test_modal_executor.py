"""The Modal executor's whole path except Modal's own RPC, on the tiny model.

The stage function's body (:func:`run_stage_remote`) runs here for real, with a local folder
standing in for the Modal Volume: uploads, path mapping, the worker in a subprocess, the move
to the stage folder on the volume, volume commits, the download and the local publication.
The real-Modal test (`-m modal`) runs the same pipeline on Modal's GPUs.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path, PurePosixPath
from types import SimpleNamespace
from typing import Any

import pytest

from ladder import SFT, Pipeline
from ladder.atomic import is_complete

pytest.importorskip("modal", reason="modal is not installed: pip install 'ladder[modal]'")

from ladder.executors.modal import ModalExecutor, run_stage_remote  # noqa: E402

ROWS = [{"instruction": f"What is {a} + {b}?", "input": "", "output": f"{a + b}"} for a in range(4) for b in range(4)]


class FolderVolume:
    """A Modal Volume stand-in: the volume's files live under ``root`` (its mount point)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.uploaded: list[str] = []
        self.commits = 0

    def _local(self, path: str) -> Path:
        return self.root / str(path).lstrip("/")

    # what ModalExecutor uses, with modal.Volume's signatures
    def listdir(self, path: str, *, recursive: bool = False) -> list[Any]:
        local = self._local(path)
        if not local.exists():
            raise FileNotFoundError(path)  # modal raises NotFoundError
        found = [local] if local.is_file() else (local.rglob("*") if recursive else local.iterdir())
        return [SimpleNamespace(path=str(PurePosixPath("/", *p.relative_to(self.root).parts)).lstrip("/"),
                                type=SimpleNamespace(name="FILE" if p.is_file() else "DIRECTORY")) for p in found]

    def batch_upload(self, force: bool = False) -> FolderVolume:
        return self

    def __enter__(self) -> FolderVolume:
        return self

    def __exit__(self, *exc: object) -> None: ...

    def put_file(self, local: str, remote: str) -> None:
        self._local(remote).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(local, self._local(remote))
        self.uploaded.append(remote)

    def put_directory(self, local: str, remote: str) -> None:
        shutil.copytree(local, self._local(remote), dirs_exist_ok=True)
        self.uploaded.append(remote)

    def read_file_into_fileobj(self, path: str, fileobj: Any) -> int:
        data = self._local(path).read_bytes()
        fileobj.write(data)
        return len(data)

    # what the function body uses inside the container
    def commit(self) -> None:
        self.commits += 1

    def reload(self) -> None: ...


class ModalHere(ModalExecutor):
    """ModalExecutor whose function call runs the function body in this machine."""

    def __init__(self, volume: FolderVolume, **settings: Any) -> None:
        super().__init__(mount=str(volume.root), **settings)
        self.folder = volume
        self.calls: list[dict[str, Any]] = []

    def volume(self) -> FolderVolume:
        return self.folder

    def call(self, stage: Any, ctx: Any, spec: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
        self.calls.append({"spec": spec, "settings": settings})
        return run_stage_remote(json.loads(json.dumps(spec)), settings, volume=self.folder)


def test_two_stages_through_the_modal_path(tiny_model: Path, tmp_path: Path) -> None:
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    volume = FolderVolume(tmp_path / "vol")
    executor = ModalHere(volume, gpu="L4")
    first = SFT(dataset=str(data), max_steps=2, learning_rate=5e-3, per_device_train_batch_size=4)
    second = SFT(dataset=str(data), name="again", max_steps=2, learning_rate=5e-3, per_device_train_batch_size=4)
    second.placement = {"gpu": "H100"}
    result = Pipeline([first, second], model=tiny_model, run_dir=tmp_path / "run", probes=False,
                      executor=executor).run()

    # published locally like any run, with the whole lineage
    assert [c.stage for c in result.final.lineage()] == ["again", "sft", "base"]
    for stage_dir in ("01-sft", "02-again"):
        assert is_complete(tmp_path / "run" / stage_dir)
        assert (tmp_path / "run" / stage_dir / "model" / "model.safetensors").is_file()
        assert (tmp_path / "run" / stage_dir / "adapter" / "adapter_model.safetensors").is_file()
    assert result.final.path == str(tmp_path / "run" / "02-again" / "model")
    metrics = json.loads((tmp_path / "run" / "02-again" / "metrics.json").read_text())
    assert metrics["train"]["steps"] == 2 and metrics["stage_metrics"]["merge_max_abs_diff"] < 1e-3

    # what went over the wire: the local base model and the dataset, once each; stage 2's
    # input (stage 1's output) was already on the volume, so nothing else was uploaded
    assert sorted(u.split("/")[2] for u in volume.uploaded) == ["data", "models"]
    spec1, spec2 = (c["spec"] for c in executor.calls)
    mount = str(volume.root)
    assert spec1["checkpoint"][0]["path"].startswith(f"{mount}/inputs/models/") and \
        spec1["checkpoint"][0]["path"].endswith("-tiny-qwen2")
    assert spec1["config"]["dataset"].startswith(f"{mount}/inputs/data/")
    run_on_volume = spec1["context"]["run_dir"]
    assert run_on_volume.startswith(f"{mount}/runs/run-")
    assert spec2["checkpoint"][0]["path"] == f"{run_on_volume}/01-sft/model"
    assert spec2["context"]["trainer_dir"].startswith(f"{run_on_volume}/.trainer/again-")
    assert [c["settings"]["gpu_count"] for c in executor.calls] == [1, 1]
    # the volume holds each stage's outputs where the next stage looks for them, and was committed
    on_volume = Path(run_on_volume)
    assert (on_volume / "01-sft" / "model" / "model.safetensors").is_file()
    assert (on_volume / "02-again" / "adapter" / "adapter_model.safetensors").is_file()
    assert not list(on_volume.glob("*.tmp-modal"))
    assert not list((on_volume / ".trainer").glob("*"))  # resumable state dropped once published
    assert volume.commits >= 2


def test_a_stage_error_on_modal_comes_back_without_retrying(tiny_model: Path, tmp_path: Path) -> None:
    from ladder import DataError

    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    volume = FolderVolume(tmp_path / "vol")
    executor = ModalHere(volume)
    stage = SFT(dataset=str(data), max_steps=1)
    original = executor.call

    def call_with_broken_data(stage: Any, ctx: Any, spec: dict[str, Any], settings: dict[str, Any]) -> dict:
        os.remove(spec["config"]["dataset"])  # the uploaded file vanishes from the volume
        return original(stage, ctx, spec, settings)

    executor.call = call_with_broken_data  # type: ignore[method-assign]
    with pytest.raises(DataError, match="no such file"):
        Pipeline([stage], model=tiny_model, run_dir=tmp_path / "run", probes=False, executor=executor).run()
    assert not (tmp_path / "run" / "01-sft").exists()  # nothing published


@pytest.mark.modal
def test_on_modal_for_real(tiny_model: Path, tmp_path: Path) -> None:
    """Needs a Modal account (`modal setup`); run with `pytest -m modal`. Uses a T4 for a minute."""
    executor = ModalExecutor(gpu="T4", volume="ladder-tests", secret=None, timeout=1800, retries=0)
    stage = SFT(dataset=ROWS, max_steps=2, learning_rate=5e-3, per_device_train_batch_size=4)
    result = Pipeline([stage], model=tiny_model, run_dir=tmp_path / "run", probes=False, executor=executor).run()
    assert is_complete(tmp_path / "run" / "01-sft")
    assert (Path(result.final.path) / "model.safetensors").is_file()
    metrics = json.loads((tmp_path / "run" / "01-sft" / "metrics.json").read_text())
    assert metrics["train"]["steps"] == 2 and metrics["stage_metrics"]["merge_max_abs_diff"] < 5e-2
