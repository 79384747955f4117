"""GRPO pre-flight: batch arithmetic, reward names and columns, data rows, all in one error."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import pytest

from ladder import GRPO, Pipeline, ValidationError
from ladder.errors import ConfigError, MissingDependencyError
from ladder.stage import StageContext
from ladder.stages.grpo import REFERENCE_REWARDS, ZeroSpreadWatch, generation_batch_problems

ROWS = [{"question": f"What is {i} + {i}?", "answer": f"{i} + {i} = {2 * i}\n#### {2 * i}"} for i in range(8)]


def _ctx(tmp_path: Path) -> StageContext:
    return StageContext(run_dir=tmp_path, work_dir=tmp_path / "w", final_dir=tmp_path / "f", trainer_dir=tmp_path / "t")


def _problems(tmp_path: Path, **settings) -> list[str]:
    return GRPO(**{"dataset": ROWS, **settings}).validate(_ctx(tmp_path))


def test_reference_settings_on_gsm8k_rows_pass(tmp_path: Path) -> None:
    stage = GRPO(dataset=ROWS)
    assert stage.config.rewards == REFERENCE_REWARDS
    assert stage.config.num_generations == 2
    assert stage.validate(_ctx(tmp_path)) == []


def test_indivisible_generation_batch_names_the_numbers_and_fixes(tmp_path: Path) -> None:
    (problem,) = _problems(tmp_path, num_generations=3, per_device_train_batch_size=4, gradient_accumulation_steps=1)
    assert problem.startswith("stage 'grpo': ")
    assert "per_device_train_batch_size 4 x steps_per_generation 1" in problem
    assert "= 4 completions" in problem and "num_generations=3" in problem
    assert "set per_device_train_batch_size to 3 or 6" in problem
    assert "steps_per_generation (or gradient_accumulation_steps) to 3" in problem
    assert "num_generations to 2 or 4" in problem


def test_one_generation_is_refused(tmp_path: Path) -> None:
    (problem,) = _problems(tmp_path, num_generations=1)
    assert "num_generations=1" in problem and "at least 2" in problem


def test_batch_arithmetic_follows_trl() -> None:
    # steps_per_generation defaults to gradient_accumulation_steps; processes multiply
    assert generation_batch_problems(
        num_generations=6, per_device_train_batch_size=3, gradient_accumulation_steps=1, num_processes=2
    ) == (6, [])
    assert generation_batch_problems(
        num_generations=8, per_device_train_batch_size=2, gradient_accumulation_steps=1, steps_per_generation=4
    ) == (8, [])
    _, (problem,) = generation_batch_problems(
        num_generations=4, per_device_train_batch_size=2, gradient_accumulation_steps=1, generation_batch_size=6
    )
    assert "(generation_batch_size 6)" in problem and "num_generations=4" in problem
    assert "set generation_batch_size to 4 or 8, or num_generations to 3 or 6" in problem
    _, (problem,) = generation_batch_problems(
        num_generations=2, per_device_train_batch_size=4, gradient_accumulation_steps=1, generation_batch_size=6
    )
    assert "multiple of per_device_train_batch_size 4" in problem and "set it to 4 or 8" in problem
    _, (problem,) = generation_batch_problems(
        num_generations=2,
        per_device_train_batch_size=4,
        gradient_accumulation_steps=1,
        generation_batch_size=8,
        steps_per_generation=2,
    )
    assert "not both" in problem


def test_trainer_kwargs_batch_overrides_are_checked(tmp_path: Path) -> None:
    (problem,) = _problems(tmp_path, trainer_kwargs={"generation_batch_size": 12, "num_generations": 8})
    assert "(generation_batch_size 12)" in problem and "num_generations=8" in problem


def test_unknown_trainer_kwargs_are_reported(tmp_path: Path) -> None:
    (problem,) = _problems(tmp_path, trainer_kwargs={"num_generation": 4})
    assert "'num_generation'" in problem and "GRPOConfig" in problem


def test_every_unknown_reward_is_listed_with_the_known_names(tmp_path: Path) -> None:
    problems = _problems(tmp_path, rewards={"exact_match": 1.0, "exact_mtch": 1.0, "tag_fromat": 0.1})
    assert len(problems) == 2
    assert "'exact_mtch'" in problems[0] and "'tag_fromat'" in problems[1]
    for problem in problems:
        assert "known rewards:" in problem and "exact_match" in problem and "tag_format" in problem


def test_rewards_as_list_of_names_and_callables(tmp_path: Path) -> None:
    def brevity(completions, **kwargs):
        return [1.0 / (1 + len(str(c))) for c in completions]

    assert _problems(tmp_path, rewards=["exact_match", brevity]) == []
    assert _problems(tmp_path, rewards="tag_format") == []


def test_all_zero_weights_are_refused(tmp_path: Path) -> None:
    (problem,) = _problems(tmp_path, rewards={"exact_match": 0.0})
    assert "every weight is 0" in problem


def test_missing_reward_columns_are_named(tmp_path: Path) -> None:
    def harder_is_better(completions, difficulty, **kwargs):
        return [float(d) for d in difficulty]

    problems = _problems(tmp_path, rewards=[harder_is_better])
    (problem,) = problems
    assert "reward 'harder_is_better'" in problem and "'difficulty'" in problem and "lacks" in problem
    assert "answer" in problem  # lists the columns the dataset does have

    rows = [{**r, "difficulty": 1} for r in ROWS]
    rows[3]["difficulty"] = None
    (problem,) = GRPO(dataset=rows, rewards=[harder_is_better]).validate(_ctx(tmp_path))
    assert "'difficulty'" in problem and "empty in some rows" in problem


def test_reward_that_fails_on_a_sample_is_reported(tmp_path: Path) -> None:
    def broken(completions, **kwargs):
        return [1.0]  # one reward whatever the batch size

    (problem,) = _problems(tmp_path, rewards=[broken])
    assert "reward 'broken'" in problem and "pre-flight" in problem


def test_reserved_column_names_are_refused(tmp_path: Path) -> None:
    rows = [{**r, "completions": "x"} for r in ROWS]
    (problem,) = GRPO(dataset=rows, rewards="tag_format").validate(_ctx(tmp_path))
    assert "'completions'" in problem and "rename it" in problem


def test_too_few_problems_for_one_generation_batch(tmp_path: Path) -> None:
    (problem,) = _problems(tmp_path, limit=1, per_device_train_batch_size=4, gradient_accumulation_steps=2)
    assert "1 usable problem" in problem and "needs 4" in problem


def test_limit_changes_the_data_fingerprint() -> None:
    full = GRPO(dataset=ROWS).fingerprint_data()
    assert GRPO(dataset=ROWS, limit=100).fingerprint_data() == full
    assert GRPO(dataset=ROWS, limit=4).fingerprint_data() != full
    assert GRPO(dataset=ROWS, instruction=None).fingerprint_data() != full  # the prompts changed


def test_all_problems_in_one_validation_error(tmp_path: Path) -> None:
    rows = [*ROWS, {"question": "no answer here"}]
    pipeline = Pipeline(
        [GRPO(dataset=rows, rewards={"exact_match": 1.0, "nope": 0.5}, num_generations=3)],
        model="unused-model-id",
        run_dir=tmp_path / "run",
        probes=False,
    )
    with pytest.raises(ValidationError) as info:
        pipeline.validate()
    problems = info.value.problems
    assert len(problems) == 3, problems
    text = "\n".join(problems)
    assert "num_generations=3" in text  # the batch arithmetic
    assert "unknown reward 'nope'" in text  # the reward name
    assert "row 8, field 'answer'" in text  # the bad row
    assert not (tmp_path / "run").exists()  # nothing was written


def test_settings_are_checked_when_the_stage_is_built() -> None:
    with pytest.raises(ConfigError, match="vllm_mode"):
        GRPO(dataset=ROWS, vllm_mode="remote")
    with pytest.raises(ConfigError, match="rewards"):
        GRPO(dataset=ROWS, rewards=3)
    with pytest.raises(ConfigError, match="beta"):
        GRPO(dataset=ROWS, beta=-0.1)
    assert GRPO({"dataset": ROWS, "use_vllm": "false"}).config.use_vllm is False  # YAML-ish strings


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vllm is installed")
def test_use_vllm_true_without_vllm_says_how_to_install() -> None:
    with pytest.raises(MissingDependencyError, match=r"pip install 'ladder\[vllm\]'"):
        GRPO(dataset=ROWS, use_vllm=True)
    GRPO(dataset=ROWS, use_vllm="auto")  # auto falls back quietly at run time


def test_zero_spread_watch_warns_once_early(caplog: pytest.LogCaptureFixture) -> None:
    watch = ZeroSpreadWatch(num_generations=2, early_steps=3)
    with caplog.at_level(logging.WARNING, logger="ladder.stages.grpo"):
        for share in (1.0, 1.0, 0.5, 0.0, 0.0, 0.0, 0.0):
            watch.add(share, reward=0.0)
        watch.finish()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "the first 3 steps" in warnings[0].getMessage()
    assert "num_generations, now 2" in warnings[0].getMessage() and "SFT stage" in warnings[0].getMessage()
    metrics = watch.metrics()
    assert metrics["zero_spread_share_first_steps"] == pytest.approx(2.5 / 3)
    assert metrics["zero_spread_share"] == pytest.approx(2.5 / 7)
    assert metrics["zero_spread_warning"] == warnings[0].getMessage()


def test_zero_spread_watch_warns_at_the_end_for_the_whole_run(caplog: pytest.LogCaptureFixture) -> None:
    watch = ZeroSpreadWatch(early_steps=4)
    with caplog.at_level(logging.WARNING, logger="ladder.stages.grpo"):
        for share in (0.0, 0.5, 0.5, 0.5, 1.0, 1.0, 1.0, 1.0):
            watch.add(share, reward=1.0)
        assert watch.warning is None  # the first 4 steps averaged 0.375
        watch.finish()
    assert watch.warning is not None and "this run" in watch.warning and "mean reward 1" in watch.warning
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1


def test_zero_spread_watch_is_quiet_with_learning_signal() -> None:
    watch = ZeroSpreadWatch(early_steps=2)
    for share in (0.5, 0.0, 0.25, float("nan")):
        watch.add(share)
    watch.finish()
    assert watch.warning is None and "zero_spread_warning" not in watch.metrics()
    assert watch.metrics()["zero_spread_share"] == pytest.approx(0.25)
