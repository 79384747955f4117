"""A third-party stage whose settings say what they are, through field metadata alone.

The stage below is written the way a plugin author writes one, against ``ladder.sdk`` only: a
``path="file"`` setting (a glossary file) and a ``checkpoint_ref="policy"`` setting (a teacher:
another stage's checkpoint). Nothing in ladder names these settings, yet a recipe resolves the
file against its own folder, pre-flight checks the reference, and both enter the stage's
fingerprint.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import attrs
import pytest

from ladder import ValidationError, sdk
from ladder.recipe import load_recipe
from ladder.registry import stages


@attrs.frozen(kw_only=True)
class GlossaryConfig(sdk.TrainingSettings):
    trl_config: ClassVar[str] = "SFTConfig"

    glossary: str = sdk.setting(help="terms the stage teaches, one per line", path="file")
    teacher: str | None = sdk.setting(None, help="the stage whose checkpoint judges the terms", checkpoint_ref="policy")


class Glossary(sdk.BaseStage):
    """Publishes its input with the glossary noted in its metrics (no training: the seam is what is tested)."""

    kind: ClassVar[str] = "tests_glossary"
    Config: ClassVar[type] = GlossaryConfig

    def check(self, ctx: sdk.StageContext) -> list[str]:
        return []

    def fingerprint_data(self) -> Any:
        return None

    def run(self, checkpoint: sdk.Checkpoint, ctx: sdk.StageContext) -> sdk.StageResult:
        teacher = ctx.checkpoints[self.config.teacher] if self.config.teacher else None
        model = sdk.load_model(checkpoint, ctx.options)
        tokenizer = sdk.load_tokenizer(checkpoint, ctx.options)
        out = sdk.publish(model, tokenizer, ctx, parent=checkpoint, config=self.config,
                          chat_template=tokenizer.chat_template, eos_ids=checkpoint.eos_token_ids)
        terms = Path(self.config.glossary).read_text().split()
        return sdk.StageResult(out.checkpoint, {"stage_metrics": {"terms": len(terms),
                                                                  "teacher": teacher.stage if teacher else None}})


@pytest.fixture
def registered() -> Iterator[None]:
    stages.register(Glossary.kind, Glossary, replace=True)
    try:
        yield
    finally:
        stages.unregister(Glossary.kind)


def _recipe(folder: Path, model: Path, *, teacher: str = "teacher", extra: str = "") -> Path:
    (folder / "terms").mkdir(exist_ok=True)
    (folder / "terms" / "glossary.txt").write_text("ladder\nrung\nstage\n")
    (folder / "sft.jsonl").write_text("".join(json.dumps({"instruction": f"Say {w}", "output": w}) + "\n"
                                              for w in ("ladder", "rung", "stage", "step")))
    recipe = folder / "recipe.yaml"
    recipe.write_text(
        f"name: glossary\nmodel: {model}\nrun_dir: {folder / 'run'}\nprobes: false\nstages:\n"
        "  - stage: sft\n    name: teacher\n    dataset: sft.jsonl\n    max_steps: 1\n"
        "    trainer_kwargs: {}\n"
        f"  - stage: tests_glossary\n    input: teacher\n    glossary: terms/glossary.txt\n    teacher: {teacher}\n"
        + extra
    )
    return recipe


def test_a_path_setting_resolves_against_the_recipe_folder(registered: None, tiny_model: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the recipe's folder, not the working directory, is what counts
    recipe = _recipe(tmp_path, tiny_model)
    pipeline = load_recipe(recipe)
    stage = pipeline.stages[1]
    assert stage.config.glossary == str((tmp_path / "terms" / "glossary.txt").resolve())
    pipeline.validate()
    result = pipeline.run()
    metrics = json.loads((result.run_dir / "02-tests_glossary" / "metrics.json").read_text())
    assert metrics["stage_metrics"] == {"terms": 3, "teacher": "teacher"}


def test_a_missing_path_and_bad_references_are_caught_in_preflight(registered: None, tiny_model: Path,
                                                                  tmp_path: Path) -> None:
    recipe = _recipe(tmp_path, tiny_model, teacher="nobody")
    (tmp_path / "terms" / "glossary.txt").unlink()
    with pytest.raises(ValidationError) as info:
        load_recipe(recipe).validate()
    problems = "\n".join(info.value.problems)
    assert "glossary: no such file" in problems
    assert "teacher='nobody' names no stage" in problems and "earlier policy stages: base, teacher" in problems

    later = _recipe(tmp_path, tiny_model, teacher="after",
                    extra="  - stage: sft\n    name: after\n    dataset: sft.jsonl\n    max_steps: 1\n")
    with pytest.raises(ValidationError, match=r"teacher='after' names stage 3 \('after'\), which runs after"):
        load_recipe(later).validate()


def test_the_reference_and_the_file_are_part_of_the_fingerprint(registered: None, tiny_model: Path,
                                                                tmp_path: Path) -> None:
    pipeline = load_recipe(_recipe(tmp_path, tiny_model))
    stage = pipeline.stages[1]
    teacher_a = sdk.Checkpoint(path="a", stage="teacher", fingerprint="aaaa")
    teacher_b = sdk.Checkpoint(path="b", stage="teacher", fingerprint="bbbb")

    def fp(teacher: sdk.Checkpoint) -> str:
        return pipeline.fingerprint(stage, "input", pipeline.references(stage, {"teacher": teacher}))

    first = fp(teacher_a)
    assert fp(teacher_a) == first
    assert fp(teacher_b) != first  # another teacher checkpoint: the stage trains again
    (tmp_path / "terms" / "glossary.txt").write_text("ladder\nrung\nstage\nladder-two\n")
    assert fp(teacher_a) != first  # the glossary's content changed

    # End to end: retraining the referenced stage re-runs the stage that references it.
    result = pipeline.run()
    assert result.trained == ("teacher", "tests_glossary")
    assert load_recipe(tmp_path / "recipe.yaml").run().trained == ()
    (tmp_path / "terms" / "glossary.txt").write_text("changed\n")
    assert load_recipe(tmp_path / "recipe.yaml").run().trained == ("tests_glossary",)
