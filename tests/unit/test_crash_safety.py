"""Fast checks of the crash-safety pieces the slow crash test exercises end to end
(tests/integration/test_crash.py): leftovers of an interrupted replacement, the trainer-log
journal that keeps a crashed or failed stage's log, and the pipeline's bookkeeping around a
stage that fails, is interrupted or finds its run directory in use (with a stage that trains
nothing)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import attrs
import pytest

from ladder.atomic import atomic_dir, clean_leftovers, is_complete
from ladder.checkpoint import Checkpoint
from ladder.errors import RunInUseError, StageError
from ladder.journal import TrainerJournal
from ladder.pipeline import Pipeline
from ladder.runlock import Interrupted, RunLock
from ladder.stage import StageResult


def test_interrupted_replacement_puts_the_published_dir_back(tmp_path: Path) -> None:
    with atomic_dir(tmp_path / "01-sft", info={"fingerprint": "old"}) as work:
        (work / "weights").write_text("old weights")
    # Killed inside atomic_dir(replace=True): the old output was moved aside, the new one
    # (complete or not) never renamed into place.
    (tmp_path / "01-sft").rename(tmp_path / "01-sft.tmp-old-4242")
    (tmp_path / "01-sft.tmp-x1y2").mkdir()
    (tmp_path / "01-sft.tmp-x1y2" / "weights").write_text("half")

    removed = clean_leftovers(tmp_path)

    assert [p.name for p in removed] == ["01-sft.tmp-x1y2"]
    assert is_complete(tmp_path / "01-sft")
    assert (tmp_path / "01-sft" / "weights").read_text() == "old weights"
    assert json.loads((tmp_path / "01-sft" / "COMPLETE").read_text())["fingerprint"] == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["01-sft"]


def test_moved_aside_dir_is_removed_once_its_replacement_is_published(tmp_path: Path) -> None:
    for text in ("old", "new"):
        with atomic_dir(tmp_path / "02-dpo", replace=True) as work:
            (work / "weights").write_text(text)
    (tmp_path / "02-dpo.tmp-old-77").mkdir()  # killed after the second rename, before the delete
    (tmp_path / "02-dpo.tmp-old-77" / "COMPLETE").write_text("{}")
    clean_leftovers(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["02-dpo"]
    assert (tmp_path / "02-dpo" / "weights").read_text() == "new"


def _checkpoint(trainer_dir: Path, step: int, max_steps: int = 10) -> None:
    path = trainer_dir / f"checkpoint-{step}"
    path.mkdir(parents=True)
    for name in ("adapter_model.safetensors", "optimizer.pt", "scheduler.pt"):
        (path / name).write_text("x")
    (path / "trainer_state.json").write_text(json.dumps({"global_step": step, "max_steps": max_steps}))


def test_trainer_log_journal_resumes_with_the_steps_not_trained_again(tmp_path: Path) -> None:
    trainer_dir = tmp_path / ".trainer" / "sft-abc"
    _checkpoint(trainer_dir, 2)
    journal = TrainerJournal(trainer_dir)
    lines = [json.dumps({"step": s, "loss": 1.0 / s}) for s in (1, 2, 3)]
    lines += [json.dumps({"step": 3, "train_runtime": 1.0}), '{"step": 4, "lo']  # cut by the crash
    journal.path.write_text("\n".join(lines))

    work = tmp_path / "01-sft.tmp-abc"
    work.mkdir()
    journal.start(work)
    kept = [json.loads(line)["step"] for line in (work / "trainer_log.jsonl").read_text().splitlines()]
    assert kept == [1, 2]  # step 3 is trained again from checkpoint-2; the summary comes again
    assert journal.path.read_text() == (work / "trainer_log.jsonl").read_text()

    seen: list[dict] = []
    journal.tee(seen.append)({"step": 3, "loss": 0.3})
    assert seen == [{"step": 3, "loss": 0.3}]
    assert [json.loads(line)["step"] for line in journal.path.read_text().splitlines()] == [1, 2, 3]

    # A failure: the temp dir's own log (the complete one) replaces the journal.
    (work / "trainer_log.jsonl").write_text('{"step": 1}\n{"step": 2}\n{"step": 3}\n{"step": 4}\n')
    journal.keep(work)
    assert journal.path.read_text() == (work / "trainer_log.jsonl").read_text()


def test_trainer_log_journal_starts_empty_without_a_checkpoint(tmp_path: Path) -> None:
    trainer_dir = tmp_path / ".trainer" / "dpo-abc"
    trainer_dir.mkdir(parents=True)
    journal = TrainerJournal(trainer_dir)
    journal.path.write_text('{"step": 1}\n')  # an attempt that crashed before its first checkpoint
    work = tmp_path / "work"
    work.mkdir()
    journal.start(work)
    assert not (work / "trainer_log.jsonl").exists()
    assert journal.path.read_text() == ""


def test_model_card_leaves_credentials_out(tmp_path: Path) -> None:
    from ladder.checkpoint import Checkpoint
    from ladder.training.publish import write_model_card

    ckpt = Checkpoint(path=str(tmp_path), stage="sft", parent=Checkpoint.base("base-model"), fingerprint="f00")
    secret = "hf_" + "a1B2" * 8
    config = {"learning_rate": 1e-4, "trainer_kwargs": {"hub_token": "s3cret-value", "run_name": secret}}
    write_model_card(tmp_path, ckpt, config)
    card = (tmp_path / "README.md").read_text()
    assert "s3cret-value" not in card and secret not in card
    assert '"learning_rate": 0.0001' in card and '"hub_token": "***"' in card


# ------------------------------------------------------------------------------------------------
# the pipeline's bookkeeping around a stage, with a stage that trains nothing


@attrs.frozen(kw_only=True)
class WriteConfig:
    fail: str = ""  # "": publish; "error": raise an error; "sigterm": stopped by SIGTERM


class WriteFiles:
    """A stage that writes a model folder and a trainer checkpoint, then publishes or fails."""

    kind = "write-files"
    Config = WriteConfig
    input = None

    def __init__(self, name: str = "write", **settings: str) -> None:
        self.name = name
        self.config = WriteConfig(**settings)

    def validate(self, ctx: object) -> list[str]:
        return []

    def fingerprint_data(self) -> str:
        return "no data"

    def run(self, checkpoint: Checkpoint, ctx: object) -> StageResult:
        (ctx.trainer_dir / "checkpoint-1").mkdir(parents=True)
        (ctx.trainer_dir / "checkpoint-1" / "trainer_state.json").write_text("{}")
        (ctx.work_dir / "model").mkdir()
        (ctx.work_dir / "model" / "model.safetensors").write_bytes(b"w" * 1024)
        if self.config.fail == "error":
            raise RuntimeError("the stage's own error")
        if self.config.fail == "sigterm":
            raise Interrupted(15)
        model = Checkpoint(path=str(ctx.work_dir / "model"), stage=self.name, parent=checkpoint,
                           fingerprint=ctx.fingerprint)
        return StageResult(model, {"train": {"steps": 1}})


class BrokenDisplay:
    def stage_started(self, *args: object) -> None:
        pass

    def log(self, record: object) -> None:
        pass

    def stage_finished(self, *args: object) -> None:
        raise OSError("the terminal went away")


def _pipeline(run_dir: Path, **settings: str) -> Pipeline:
    return Pipeline([WriteFiles(**settings)], model="org/base", run_dir=run_dir, probes=False)


def test_the_stage_error_is_raised_even_when_recording_it_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    import ladder.report

    def no_report(run_dir: object) -> None:
        raise OSError("no space left on device")

    monkeypatch.setattr(ladder.report, "write_report", no_report)
    with pytest.raises(StageError, match="the stage's own error"):
        _pipeline(tmp_path / "run", fail="error").run(progress=BrokenDisplay())
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["status"] == "failed" and "the stage's own error" in manifest["stages"][0]["error"]
    assert "recording the display failed too" in caplog.text


def test_an_interrupted_stage_is_recorded_and_left_resumable(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    with pytest.raises(Interrupted):
        _pipeline(run_dir, fail="sigterm").run()
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "interrupted"
    assert manifest["stages"][0]["status"] == "interrupted"
    assert manifest["stages"][0]["error"] == "interrupted by SIGTERM"
    assert list((run_dir / ".trainer").glob("write-*/checkpoint-1")), "the trainer checkpoint was removed"
    assert not [p for p in run_dir.iterdir() if ".tmp-" in p.name]


def test_a_run_is_refused_while_another_holds_the_directory(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    with RunLock(run_dir), pytest.raises(RunInUseError, match=f"pid {os.getpid()}"):
        _pipeline(run_dir).run()
    assert not (run_dir / "manifest.json").exists()  # the holder's manifest is not touched
    done = _pipeline(run_dir).run()
    assert done.trained == ("write",) and is_complete(run_dir / "01-write")
    assert (run_dir / ".lock").read_text() == ""
