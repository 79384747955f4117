"""Checkpoint values, config binding, recipe parsing and the CLI's import cost."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import attrs
import pytest

from ladder import Checkpoint, ConfigError, RecipeError, SFT, ValidationError
from ladder.recipe import load_recipe
from ladder.rundir import redact, safe_name


def test_checkpoint_is_a_frozen_value_with_lineage() -> None:
    base = Checkpoint.base("Qwen/Qwen2.5-0.5B")
    child = Checkpoint(path="/r/01-sft/model", stage="sft", parent=base, fingerprint="f1")
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        child.path = "x"  # type: ignore[misc]
    assert [c.stage for c in child.lineage()] == ["sft", "base"]
    assert base.fingerprint and base.fingerprint == Checkpoint.base("Qwen/Qwen2.5-0.5B").fingerprint
    assert base.fingerprint != Checkpoint.base("Qwen/Qwen2.5-0.5B", revision="v2").fingerprint
    d = child.to_dict()
    assert d["parent"] == {"stage": "base", "fingerprint": base.fingerprint}
    assert Checkpoint.from_dict(d, parent=base) == child
    with pytest.raises(ValueError):
        Checkpoint(path="x", kind="value-model")  # type: ignore[arg-type]


def test_stage_config_is_validated_when_built() -> None:
    with pytest.raises(ConfigError, match="unknown setting 'lerning_rate'"):
        SFT(dataset=[], lerning_rate=1e-4)
    with pytest.raises(ConfigError, match="learning_rate"):
        SFT(dataset=[], learning_rate=-1.0)
    with pytest.raises(ConfigError, match="finetuning"):
        SFT(dataset=[], finetuning="qlora-ish")
    stage = SFT(dataset=[], lora={"r": 16, "target_modules": "all-linear"}, name="warmup", input="base")
    assert stage.config.lora.r == 16 and stage.config.lora.target_modules == "all-linear"
    assert stage.name == "warmup" and stage.to_spec()["stage"] == "sft"


def test_safe_names_and_redaction() -> None:
    assert safe_name("sft-2") == "sft-2"
    for bad in ("../escape", "a/b", "/abs", "..", "", ".hidden"):
        with pytest.raises(ConfigError):
            safe_name(bad)
    out = redact({"hf_token": "hf_abcdefghijklmnopqrstuvwxyz", "nested": {"api_key": "k", "lr": 1},
                  "x": "hf_abcdefghijklmnopqrstuvwxyz0"})
    assert out == {"hf_token": "***", "nested": {"api_key": "***", "lr": 1}, "x": "***"}


def test_recipe_errors_are_collected_and_named(tmp_path: Path) -> None:
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("model: x\nstages: [\n")
    with pytest.raises(RecipeError, match=r"bad.yaml: invalid YAML at line"):
        load_recipe(bad_yaml)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "model: m\nmodle: typo\nstages:\n  - stage: sft\n    dataset: d.jsonl\n    learning_rat: 1\n"
        "  - stage: nosuchstage\n"
    )
    with pytest.raises(ValidationError) as info:
        load_recipe(recipe)
    msg = str(info.value)
    assert "'modle'" in msg and "'learning_rat'" in msg and "unknown stage 'nosuchstage'" in msg
    assert "known stages: " in msg and "sft" in msg
    assert len(info.value.problems) == 3


def test_pipeline_structure_problems_reported_together(tmp_path: Path) -> None:
    from ladder import Pipeline

    rows = [{"instruction": "a", "output": "b"}]
    p = Pipeline([SFT(dataset=rows, name="../x"), SFT(dataset=rows, name="b", input="nope"),
                  SFT(dataset=rows, name="b")], model="m", run_dir=tmp_path / "r", probes=False)
    with pytest.raises(ValidationError) as info:
        p.validate()
    msg = str(info.value)
    assert "invalid stage name '../x'" in msg and "input='nope'" in msg and "used twice" in msg


def _run_py(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


def test_import_and_cli_listing_do_not_import_torch() -> None:
    code = (
        "import sys, ladder, ladder.cli\n"
        "ladder.cli.main(['stages']); ladder.cli.main(['rewards'])\n"
        "heavy = [m for m in ('torch', 'transformers', 'trl', 'datasets', 'peft') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    proc = _run_py(code)
    assert proc.returncode == 0, proc.stderr
    assert "sft" in proc.stdout and "ladder" in proc.stdout


def test_cli_help_and_user_error_exit_codes(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "ladder.cli", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "validate" in proc.stdout
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model: m\nstages: []\n")
    proc = subprocess.run([sys.executable, "-m", "ladder.cli", "validate", str(recipe)],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr
    assert "stages" in proc.stderr
