"""Recipe overrides on the command line (``KEY=VALUE``), ``ladder stages show NAME`` and the
plain-text descriptions of ``ladder stages`` / ``ladder rewards``. No training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from ladder.cli import main
from ladder.configs import describe_settings
from ladder.errors import ValidationError
from ladder.listing import plain_text
from ladder.overrides import apply_overrides, parse_value
from ladder.recipe import TOP_LEVEL_KEYS, load_recipe
from ladder.registry import stages as stage_registry

RECIPE = {
    "name": "two",
    "model": "org/some-model",
    "stages": [
        {"stage": "sft", "dataset": "sft.jsonl", "max_steps": 5, "lora": {"r": 4}},
        {"stage": "dpo", "dataset": "pairs.jsonl", "beta": 0.1},
    ],
}


def _apply(*overrides: str) -> dict:
    return apply_overrides(RECIPE, overrides, top_level=list(TOP_LEVEL_KEYS))


def test_values_are_read_as_yaml_and_exponents_are_numbers() -> None:
    assert parse_value("1e-4") == 1e-4 and isinstance(parse_value("1e-4"), float)
    assert parse_value("5.0e-6") == 5e-6 and parse_value("-1") == -1 and parse_value("0.2") == 0.2
    assert parse_value("false") is False and parse_value("null") is None and parse_value("[a, b]") == ["a", "b"]
    assert parse_value("Qwen/Qwen2.5-0.5B") == "Qwen/Qwen2.5-0.5B" and parse_value("{r: 16}") == {"r": 16}


def test_overrides_by_stage_name_by_0_based_index_nested_and_top_level() -> None:
    out = _apply("stages.sft.learning_rate=1e-4", "stages.1.beta=0.2", "stages.sft.lora.r=16",
                 "stages.0.trainer_kwargs.warmup_ratio=0.1", "model=org/other", "generation.max_new_tokens=32",
                 "report_to=tensorboard")
    sft, dpo = out["stages"]
    assert sft["learning_rate"] == 1e-4 and sft["max_steps"] == 5
    assert sft["lora"] == {"r": 16} and sft["trainer_kwargs"] == {"warmup_ratio": 0.1}
    assert dpo["beta"] == 0.2
    assert out["model"] == "org/other" and out["generation"] == {"max_new_tokens": 32}
    assert out["report_to"] == "tensorboard"
    assert RECIPE["stages"][0]["lora"] == {"r": 4} and "learning_rate" not in RECIPE["stages"][0]  # copied, not mutated


@pytest.mark.parametrize(("override", "expected"), [
    ("stages.sft.nope=1", "has no setting 'nope'"),
    ("stages.9.beta=1", "no stage at index 9 (indices are 0-based, 0 to 1)"),
    ("stages.sft.learning_rate=abc", "'learning_rate' has the wrong type; got 'abc'"),
    ("stages.sft.max_steps=0", "'max_steps' must be a positive number of steps"),
    ("stages.grpo.beta=0.1", "no stage named 'grpo'; stages: 0=sft, 1=dpo"),
    ("stages.sft.lora.rank=2", "setting 'lora' has no 'rank'"),
    ("stages.sft=1", "name a stage and one of its settings"),
    ("modle=x", "unknown recipe key 'modle'"),
    ("learning_rate", "write overrides as KEY=VALUE"),
])
def test_a_bad_override_is_named_with_what_is_wrong(override: str, expected: str) -> None:
    with pytest.raises(ValidationError) as info:
        _apply(override)
    assert f"override {override!r}" in str(info.value) and expected in str(info.value)


def test_every_bad_override_is_reported_at_once() -> None:
    with pytest.raises(ValidationError) as info:
        _apply("stages.sft.nope=1", "stages.1.beta=0.5", "stages.9.beta=1")
    assert len(info.value.problems) == 2


def _recipe(tmp_path: Path) -> Path:
    for name in ("sft.jsonl", "pairs.jsonl"):
        (tmp_path / name).write_text("")
    path = tmp_path / "two.yaml"
    path.write_text(yaml.safe_dump(RECIPE))
    return path


def test_the_pipeline_carries_the_overridden_values_and_records_the_overrides(tmp_path: Path) -> None:
    pipeline = load_recipe(_recipe(tmp_path), overrides=["stages.sft.max_steps=2", "stages.1.beta=0.2", "seed=3"])
    sft, dpo = pipeline.stages
    assert sft.config.max_steps == 2 and sft.config.lora.r == 4 and dpo.config.beta == 0.2 and pipeline.seed == 3
    assert pipeline.recipe["overrides"] == ["stages.sft.max_steps=2", "stages.1.beta=0.2", "seed=3"]
    assert pipeline.recipe["stages"][0]["max_steps"] == 2 and pipeline.recipe["stages"][1]["beta"] == 0.2


@pytest.mark.parametrize("override", ["stages.sft.nope=1", "stages.9.beta=1", "stages.sft.learning_rate=abc"])
def test_cli_exits_2_naming_the_bad_override(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                             override: str) -> None:
    recipe = _recipe(tmp_path)
    for command in ("validate", "run"):
        assert main([command, str(recipe), "stages.sft.max_steps=2", override]) == 2
        err = capsys.readouterr().err
        assert f"override {override!r}" in err and "stages.sft.max_steps=2" not in err


def test_overrides_may_follow_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipe = _recipe(tmp_path)
    assert main(["run", str(recipe), "--force", "stages.sft.nope=1"]) == 2
    assert "override 'stages.sft.nope=1'" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # an option the command does not have is still an error
        main(["run", str(recipe), "--forse"])


def test_stages_show_lists_every_grpo_setting_with_type_default_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stages", "show", "grpo"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    config_cls = stage_registry.get("grpo").Config
    rows = describe_settings(config_cls)
    assert len(rows) > 20
    for row in rows:
        head = f"  {row['name']}: {row['type']} = "
        at = next(i for i, line in enumerate(lines) if line.startswith(head))
        default = row["default"] if isinstance(row["default"], str) and row["default"] else json.dumps(row["default"])
        assert lines[at] == head + default
        assert lines[at + 1].strip() == plain_text(row["help"]) and lines[at + 1].strip()
    assert "  lora.r: int = 8" in lines and "  beta: float = 0.04" in lines
    assert "trl.GRPOConfig" in out and "``" not in out


def test_listings_are_plain_text(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stages"]) == 0 and main(["rewards"]) == 0
    out = capsys.readouterr().out
    assert "``" not in out and ":class:" not in out and ":func:" not in out
    assert "<answer>...</answer> block" in out  # tag_format's whole first paragraph, its markup unwrapped


def test_plain_text_unwraps_rest_markup() -> None:
    assert plain_text("See :class:`~ladder.stage.StageContext`, :func:`ladder.fit` and ``x=1``.") == (
        "See StageContext, ladder.fit and x=1.")
    assert plain_text(":ref:`the guide <guide>` and **bold**\n  text") == "the guide and bold text"
