"""The stage spec a worker runs from: plain data that rebuilds the same stage, or a clear refusal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ladder import SFT
from ladder.checkpoint import Checkpoint
from ladder.errors import ConfigError
from ladder.executors.worker import (
    checkpoint_chain,
    checkpoint_from_chain,
    context_from_spec,
    main,
    stage_from_spec,
    stage_spec,
)
from ladder.registry import stages as stage_registry
from ladder.stage import StageContext, fingerprint_config
from ladder.training.lora import LoraSettings

ROWS = [{"instruction": f"add {a} and {b}", "input": "", "output": str(a + b)} for a in range(8) for b in range(8)]


def _ctx(tmp_path: Path, **kw) -> StageContext:
    return StageContext(
        run_dir=tmp_path / "run",
        work_dir=tmp_path / "run" / "01-sft.tmp-x",
        final_dir=tmp_path / "run" / "01-sft",
        trainer_dir=tmp_path / "run" / ".trainer" / "sft-abc",
        index=1,
        total=3,
        seed=7,
        fingerprint="abc",
        options={"trust_remote_code": False},
        **kw,
    )


def _roundtrip(spec: dict) -> dict:
    return json.loads(json.dumps(spec))  # what a worker reads back from SPEC.json


def test_spec_rebuilds_the_same_stage_with_nested_settings(tmp_path: Path) -> None:
    stage = SFT(
        dataset=ROWS[:10],
        name="teach",
        input="base",
        lora=LoraSettings(r=4, alpha=8, target_modules="all-linear", modules_to_save=["lm_head"]),
        max_steps=3,
        trainer_kwargs={"warmup_steps": 1, "lr_scheduler_type": "constant"},
    )
    spec = _roundtrip(stage_spec(stage, Checkpoint.base("/models/x"), _ctx(tmp_path)))
    assert spec["config"]["lora"] == {
        "r": 4, "alpha": 8, "dropout": 0.05, "target_modules": "all-linear", "modules_to_save": ["lm_head"],
        "use_dora": False, "use_rslora": False,
    }
    assert spec["config"]["dataset"] == ROWS[:10]  # small in-memory datasets travel inline
    rebuilt = stage_from_spec(spec)
    assert type(rebuilt) is SFT and rebuilt.name == "teach" and rebuilt.input == "base"
    assert rebuilt.config == stage.config
    assert rebuilt.config.lora == stage.config.lora


def test_large_in_memory_datasets_are_written_to_a_file_with_the_same_content(tmp_path: Path) -> None:
    stage = SFT(dataset=ROWS, max_steps=3)
    ctx = _ctx(tmp_path)
    spec = _roundtrip(stage_spec(stage, Checkpoint.base("/models/x"), ctx))
    path = Path(spec["config"]["dataset"])
    assert path.is_file() and path.parent == ctx.run_dir / ".executor" / "data"
    assert [json.loads(line) for line in path.read_text().splitlines()] == ROWS
    rebuilt = stage_from_spec(spec)
    # Same data content and settings: the rebuilt stage fingerprints exactly like the original.
    assert rebuilt.fingerprint_data() == stage.fingerprint_data()
    assert fingerprint_config(rebuilt.config) == fingerprint_config(stage.config)
    # Writing the spec again reuses the file (it is named by content).
    again = stage_spec(stage, Checkpoint.base("/models/x"), ctx)
    assert again["config"]["dataset"] == str(path)


def test_a_datasets_object_is_written_to_a_file(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    stage = SFT(dataset=datasets.Dataset.from_list(ROWS[:5]))
    spec = _roundtrip(stage_spec(stage, Checkpoint.base("/m"), _ctx(tmp_path)))
    assert Path(spec["config"]["dataset"]).read_text().count("\n") == 5
    assert stage_from_spec(spec).fingerprint_data() == stage.fingerprint_data()


def test_context_and_lineage_survive_the_trip(tmp_path: Path) -> None:
    base = Checkpoint.base("Qwen/Qwen2.5-0.5B", revision="main")
    sft = Checkpoint(path="/run/01-sft/model", stage="sft", parent=base, fingerprint="f1",
                     chat_template="{{ x }}", eos_token_ids=(3, 4), adapter_path="/run/01-sft/adapter")
    ctx = _ctx(tmp_path, checkpoints={"base": base, "sft": sft})
    spec = _roundtrip(stage_spec(SFT(dataset=ROWS[:2]), sft, ctx))
    assert checkpoint_from_chain(spec["checkpoint"]) == sft  # parent, template, eos ids: all equal
    assert [c.stage for c in checkpoint_from_chain(spec["checkpoint"]).lineage()] == ["sft", "base"]
    rebuilt = context_from_spec(spec)
    for field in ("run_dir", "work_dir", "final_dir", "trainer_dir", "index", "total", "seed", "fingerprint"):
        assert getattr(rebuilt, field) == getattr(ctx, field), field
    assert dict(rebuilt.options) == dict(ctx.options)
    assert dict(rebuilt.checkpoints) == {"base": base, "sft": sft}
    assert checkpoint_chain(base) == [dict(base.to_dict(), chat_template=None)]


def test_functions_in_a_config_are_refused_with_the_fix(tmp_path: Path) -> None:
    from ladder.stages.grpo import GRPO

    def my_reward(completions, **kw):
        return [0.0] * len(completions)

    stage = GRPO(dataset=[{"question": "1+1?", "answer": "#### 2"}], rewards=[my_reward])
    with pytest.raises(ConfigError, match=r"`rewards\[0\]` is a Python function .*my_reward.*ladder.rewards"):
        stage_spec(stage, Checkpoint.base("/m"), _ctx(tmp_path))


def test_reward_names_travel_as_names(tmp_path: Path) -> None:
    from ladder.stages.grpo import GRPO

    stage = GRPO(dataset=[{"question": "1+1?", "answer": "#### 2"}], rewards={"exact_match": 1.0, "tag_format": 0.2})
    spec = _roundtrip(stage_spec(stage, Checkpoint.base("/m"), _ctx(tmp_path)))
    assert spec["config"]["rewards"] == {"exact_match": 1.0, "tag_format": 0.2}
    assert stage_from_spec(spec).config == stage.config


def test_stage_registered_in_process_only_is_refused(tmp_path: Path) -> None:
    class Notebook(SFT):
        kind = "notebook_sft"

    stage_registry.register("notebook_sft", Notebook)
    try:
        with pytest.raises(ConfigError, match="registered in this process only.*entry point"):
            stage_spec(Notebook(dataset=ROWS[:2]), Checkpoint.base("/m"), _ctx(tmp_path))
    finally:
        stage_registry.unregister("notebook_sft")


def test_worker_reports_a_failure_in_error_json(tmp_path: Path) -> None:
    spec = _roundtrip(stage_spec(SFT(dataset=ROWS[:2]), Checkpoint.base("/m"), _ctx(tmp_path)))
    spec["stage"] = "no_such_stage"
    spec_path = tmp_path / "job" / "SPEC.json"
    spec_path.parent.mkdir()
    spec_path.write_text(json.dumps(spec))
    assert main([str(spec_path)]) == 1
    error = json.loads((tmp_path / "job" / "ERROR.json").read_text())
    assert error["type"] == "UnknownComponentError" and "no_such_stage" in error["message"]
    assert error["ladder_error"] is True and "Traceback" in error["traceback"]
    assert not (tmp_path / "job" / "RESULT.json").exists()


def test_newer_spec_versions_are_refused(tmp_path: Path) -> None:
    spec = _roundtrip(stage_spec(SFT(dataset=ROWS[:2]), Checkpoint.base("/m"), _ctx(tmp_path)))
    spec["version"] = 99
    with pytest.raises(ConfigError, match="version 99"):
        stage_from_spec(spec)
