"""``report_to``: names and pre-flight, what a stage's trainer gets (arguments and the environment
TRL's integrations read), the tables ladder logs, and the trackers in the Modal image. No training."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest

from ladder import SFT, Pipeline
from ladder.errors import ConfigError, MissingDependencyError, ValidationError
from ladder.stage import StageContext
from ladder.tracking import TRACKERS, TrackedRun, parse_report_to, require_installed, stage_options, training_arguments
from ladder.tracking.log import stage_tables
from ladder.training.args import trainer_args_from

ENV_KEYS = ("TENSORBOARD_LOGGING_DIR", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_TAGS")
ROWS = [{"instruction": "hi", "output": "hello"}]


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """The tracker variables unset, and restored after the test (training_arguments sets them)."""
    for key in ENV_KEYS:
        monkeypatch.setenv(key, "")
        monkeypatch.delenv(key)
    return monkeypatch


def test_report_to_names() -> None:
    assert parse_report_to("tensorboard,trackio") == ("tensorboard", "trackio")
    assert parse_report_to(["wandb", "WandB", "none"]) == ("wandb",)
    assert parse_report_to("none") == () and parse_report_to([]) == ()
    with pytest.raises(ConfigError, match=r"unknown tracker 'tensorbord'; ladder knows: tensorboard, wandb"):
        parse_report_to("tensorbord")
    with pytest.raises(ConfigError, match="give a tracker name or a list"):
        parse_report_to({"wandb": True})


def test_an_unknown_tracker_is_a_recipe_problem(tmp_path: Path) -> None:
    from ladder.recipe import pipeline_from_dict

    with pytest.raises(ValidationError, match="report_to: unknown tracker 'comet'"):
        pipeline_from_dict({"model": "m", "report_to": ["tensorboard", "comet"],
                            "stages": [{"stage": "sft", "dataset": ROWS}]})
    with pytest.raises(ConfigError, match="unknown tracker"):
        Pipeline([SFT(dataset=ROWS)], model="m", report_to="comet")


def test_a_tracker_that_is_not_installed_is_named_with_the_pip_command() -> None:
    missing = [name for name in TRACKERS if importlib.util.find_spec(name) is None]
    if not missing:
        pytest.skip("every tracker is installed here")
    with pytest.raises(MissingDependencyError) as info:
        require_installed(["tensorboard", *missing])
    assert f"pip install '{TRACKERS[missing[0]]}'" in str(info.value) and "tensorboard" not in str(info.value)
    with pytest.raises(MissingDependencyError):  # pre-flight, before any data is read
        Pipeline([SFT(dataset="no-such-file.jsonl")], model="m", report_to=missing[0]).validate()


def _ctx(tmp_path: Path, report_to: tuple[str, ...], fingerprint: str = "fp1") -> StageContext:
    return StageContext(run_dir=tmp_path / "run", work_dir=tmp_path / "w", final_dir=tmp_path / "f",
                        trainer_dir=tmp_path / "t", stage_name="sft", stage_kind="sft", fingerprint=fingerprint,
                        options=stage_options({"trust_remote_code": False}, report_to, "exp"))


def test_without_trackers_the_trainer_reports_nowhere(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    ctx = _ctx(tmp_path, ())
    assert "tracking" not in ctx.options
    assert trainer_args_from(ctx, SFT(dataset=ROWS).config)["report_to"] == "none"
    assert not any(k in os.environ for k in ENV_KEYS)


def test_each_stage_is_a_tracked_run_of_the_ladder_run(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    ctx = _ctx(tmp_path, ("tensorboard", "trackio", "mlflow"))
    args = trainer_args_from(ctx, SFT(dataset=ROWS).config)
    assert args["report_to"] == ["tensorboard", "trackio", "mlflow"]
    assert args["run_name"] == "exp/sft" and args["project"] == "exp"
    assert os.environ["TENSORBOARD_LOGGING_DIR"] == str(tmp_path / "run" / "tensorboard" / "sft")
    assert os.environ["MLFLOW_EXPERIMENT_NAME"] == "exp"
    assert json.loads(os.environ["MLFLOW_TAGS"]) == {"ladder.run": "exp", "ladder.stage": "sft",
                                                    "ladder.fingerprint": "fp1"}
    # the recipe's trainer_kwargs still win over ladder's choices
    config = SFT(dataset=ROWS, trainer_kwargs={"report_to": "none"}).config
    assert trainer_args_from(ctx, config)["report_to"] == "none"


def test_the_users_experiment_is_kept_and_ladders_is_not_taken_for_it(tmp_path: Path,
                                                                     clean_env: pytest.MonkeyPatch) -> None:
    training_arguments(_ctx(tmp_path, ("mlflow",)))
    assert os.environ["MLFLOW_EXPERIMENT_NAME"] == "exp"
    second = StageContext(run_dir=tmp_path / "run2", work_dir=tmp_path, final_dir=tmp_path, trainer_dir=tmp_path,
                          stage_name="dpo", options=stage_options({}, ("mlflow",), "exp2"))
    training_arguments(second)  # another pipeline in the same process gets its own experiment
    assert os.environ["MLFLOW_EXPERIMENT_NAME"] == "exp2"
    clean_env.setenv("MLFLOW_EXPERIMENT_NAME", "mine")
    training_arguments(second)
    assert os.environ["MLFLOW_EXPERIMENT_NAME"] == "mine"


def test_run_ids_follow_the_stage_attempt(tmp_path: Path) -> None:
    def run_id(stage: str, fp: str) -> str:
        return TrackedRun(run="my run", stage=stage, fingerprint=fp, run_dir=tmp_path).run_id

    assert run_id("sft", "a") == run_id("sft", "a") != run_id("sft", "b") != run_id("dpo", "a")
    assert run_id("sft", "a").startswith("my-run-sft-")


def test_a_stage_trained_with_new_settings_starts_a_fresh_curve(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    training_arguments(_ctx(tmp_path, ("tensorboard",), "fp1"))
    events = tmp_path / "run" / "tensorboard" / "sft"
    (events / "events.out.tfevents.1.host").write_bytes(b"old")
    training_arguments(_ctx(tmp_path, ("tensorboard",), "fp1"))  # a resumed attempt keeps its curve
    assert (events / "events.out.tfevents.1.host").exists()
    training_arguments(_ctx(tmp_path, ("tensorboard",), "fp2"))
    assert not (events / "events.out.tfevents.1.host").exists()


def test_the_tables_show_what_the_report_shows(tmp_path: Path) -> None:
    (tmp_path / "probes.jsonl").write_text(
        json.dumps({"id": "sum", "prompt": "2+2?", "answer": "4", "num_tokens": 2, "finish_reason": "stop"}) + "\n")
    metrics = {"stage": "sft", "train": {"steps": 3, "loss_last": 1.25},
               "eval": {"verifiable": {"exact_match": 0.5, "n": 10}},
               "stage_metrics": {"zero_spread_warning": "a sentence", "rows": 8}}
    tables = stage_tables(metrics, tmp_path)
    assert tables.probes == [["sum", "2+2?", "4", 2, "stop"]]
    rows = {row[3]: row for row in tables.metrics}
    assert rows["eval.verifiable.exact_match"][:3] == ["Held-out evaluations (the stages' own targets)", "exact match", "50.0%"]
    assert "stage_metrics.zero_spread_warning" not in rows and "stage" not in rows
    assert tables.scalars == {"ladder/eval/verifiable/exact_match": 0.5, "ladder/eval/verifiable/n": 10.0,
                              "ladder/train/steps": 3.0, "ladder/train/loss_last": 1.25,
                              "ladder/stage_metrics/rows": 8.0}


def test_the_modal_image_installs_the_trackers_the_recipe_names() -> None:
    pytest.importorskip("modal")
    import importlib.metadata as md

    from ladder.executors.modal_app import describe_app, image_description

    pipeline = Pipeline([SFT(dataset=ROWS)], model="m", report_to=["tensorboard", "wandb"])
    pip = describe_app(pipeline)["image"]["pip"]
    assert f"tensorboard=={md.version('tensorboard')}" in pip  # installed here: pinned to this version
    wandb = [p for p in pip if p.startswith("wandb")]
    assert wandb == ([f"wandb=={md.version('wandb')}"] if importlib.util.find_spec("wandb") else ["wandb>=0.17"])
    assert not any(p.startswith(("tensorboard", "wandb", "trackio")) for p in image_description()["pip"])
