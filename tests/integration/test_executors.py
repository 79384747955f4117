"""Executors on the tiny model: the stage worker in a subprocess (what a Modal function runs) and
under ``accelerate launch`` with two CPU processes."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from ladder import SFT, DataError, Pipeline
from ladder.atomic import is_complete
from ladder.checkpoint import Checkpoint
from ladder.executors.process import SubprocessExecutor
from ladder.stage import StageContext

# 64 rows: more than the 50 that travel inline, so the worker reads them from a written file.
ROWS = [
    {"instruction": f"What is {a} + {b}?", "input": "", "output": f"{a} + {b} = {a + b}."}
    for a in range(8)
    for b in range(8)
]
SETTINGS = {"max_steps": 3, "learning_rate": 5e-3, "per_device_train_batch_size": 4}


def _tensors(directory: str, name: str) -> dict:
    from safetensors.torch import load_file

    return load_file(str(Path(directory) / name))


class _Recorder:
    """A progress display that keeps what it was sent."""

    def __init__(self) -> None:
        self.records: list[dict] = []

    def stage_started(self, *args) -> None: ...

    def log(self, record: dict) -> None:
        self.records.append(record)

    def stage_finished(self, *args) -> None: ...


def test_subprocess_worker_produces_the_local_checkpoint(tiny_model: Path, tmp_path: Path) -> None:
    """The stage worker a Modal function calls, run for real in a local subprocess, produces the
    same checkpoint as the local executor: same fingerprint, bit-identical weights and adapter."""
    local = Pipeline([SFT(dataset=ROWS, **SETTINGS)], model=tiny_model, run_dir=tmp_path / "local",
                     probes=False).run()
    progress = _Recorder()
    remote = Pipeline([SFT(dataset=ROWS, **SETTINGS)], model=tiny_model, run_dir=tmp_path / "sub",
                      probes=False, executor="subprocess").run(progress=progress)

    a, b = local.final, remote.final
    assert b.fingerprint == a.fingerprint and b.eos_token_ids == a.eos_token_ids
    assert [c.stage for c in b.lineage()] == ["sft", "base"] and b.parent == a.parent
    assert b.path == str(tmp_path / "sub" / "01-sft" / "model") and is_complete(tmp_path / "sub" / "01-sft")
    for directory, name in (("path", "model.safetensors"), ("adapter_path", "adapter_model.safetensors")):
        wa, wb = _tensors(getattr(a, directory), name), _tensors(getattr(b, directory), name)
        assert wa.keys() == wb.keys()
        assert all((wa[k] == wb[k]).all() for k in wa), f"{name} differs between local and subprocess"
    base, merged = _tensors(str(tiny_model), "model.safetensors"), _tensors(b.path, "model.safetensors")
    assert any(not (base[k] == merged[k]).all() for k in base if "v_proj" in k)  # it did train

    metrics_a = json.loads((Path(a.path).parent / "metrics.json").read_text())
    metrics_b = json.loads((Path(b.path).parent / "metrics.json").read_text())
    assert metrics_b["train"]["loss_last"] == metrics_a["train"]["loss_last"]
    # the worker's training log reached the progress display, step by step
    assert [r["step"] for r in progress.records if "loss" in r] == [1, 2, 3]
    # the scratch spec is gone; the written dataset stays with the run
    assert not list((tmp_path / "sub" / ".executor").glob("sft-*"))
    assert len(list((tmp_path / "sub" / ".executor" / "data").glob("sft-dataset-*.jsonl"))) == 1


def test_worker_errors_come_back_as_the_same_error(tiny_model: Path, tmp_path: Path) -> None:
    missing = tmp_path / "gone.jsonl"
    stage = SFT(dataset=str(missing), max_steps=1)  # the file disappears after pre-flight
    ctx = StageContext(run_dir=tmp_path / "run", work_dir=tmp_path / "run" / "w", final_dir=tmp_path / "run" / "f",
                       trainer_dir=tmp_path / "run" / ".trainer" / "sft", fingerprint="fp")
    with pytest.raises(DataError, match="gone.jsonl.*no such file") as info:
        SubprocessExecutor().run_stage(stage, Checkpoint.base(tiny_model), ctx)
    error_json = tmp_path / "run" / ".executor" / "sft-fp" / "ERROR.json"
    assert any(str(error_json) in note for note in info.value.__notes__)
    assert "Traceback" in json.loads(error_json.read_text())["traceback"]


@pytest.mark.slow
def test_accelerate_two_cpu_processes_yield_a_merged_verified_checkpoint(
    tiny_model: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from ladder.executors.accelerate import AccelerateExecutor

    caplog.set_level(logging.INFO, logger="ladder.executors.process")
    result = Pipeline([SFT(dataset=ROWS, **SETTINGS)], model=tiny_model, run_dir=tmp_path / "acc", probes=False,
                      executor=AccelerateExecutor(num_processes=2, cpu=True)).run()
    stage_dir = tmp_path / "acc" / "01-sft"
    assert is_complete(stage_dir) and result.final.path == str(stage_dir / "model")
    relayed = caplog.text
    assert "stage worker: process 0 of 2" in relayed and "stage worker: process 1 of 2" in relayed

    metrics = json.loads((stage_dir / "metrics.json").read_text())
    assert metrics["train"]["steps"] == 3
    assert metrics["stage_metrics"]["merge_max_abs_diff"] < 1e-3  # merged on the main process, verified
    log = [json.loads(line) for line in (stage_dir / "trainer_log.jsonl").read_text().splitlines()]
    steps = [r for r in log if "loss" in r]
    # one record per step (only the main process writes to the published directory), and each
    # step consumed 2 processes x 4 rows: the data was split across both processes.
    assert [r["step"] for r in steps] == [1, 2, 3]
    assert steps[-1]["epoch"] == pytest.approx(3 * 2 * 4 / len(ROWS))
    merged = _tensors(result.final.path, "model.safetensors")
    base = _tensors(str(tiny_model), "model.safetensors")
    assert any(not (base[k] == merged[k]).all() for k in base if "v_proj" in k)
    assert all((base[k] == merged[k]).all() for k in base if "mlp" in k)
    assert not list(stage_dir.rglob("rank-*"))  # the other process wrote nothing here
