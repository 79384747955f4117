"""A code-reward batch that cannot finish in time: caught in pre-flight, or scored 0.0 and
counted, never a failed stage; and nothing is left behind."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from ladder import GRPO
from ladder.rewards import (
    checked_reward,
    make_python_tests,
    python_tests,
    reward_time_problems,
    worst_case_batch_seconds,
)
from ladder.stage import StageContext
from tests.unit.sandbox_support import children, require_sandbox

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="bubblewrap is Linux-only")

LOOP = "```python\ndef add(a, b):\n    while True:\n        pass\n```"
ROWS = [{"question": f"Write add; {i} + {i}?", "answer": str(2 * i), "tests": "assert add(1, 2) == 3"} for i in range(8)]


def test_a_batch_past_its_deadline_scores_zero_and_is_counted(caplog: pytest.LogCaptureFixture) -> None:
    require_sandbox()
    # 16 looping completions on 2 workers with a 10 s timeout need 80 s: the review's case.
    reward = make_python_tests(timeout_s=10, cpu_s=10, workers=2, batch_timeout_s=1.5)
    checked = checked_reward(reward, timeout_s=60)  # what the stage wraps it in (reward_timeout_s)
    metrics: list[tuple[str, float]] = []
    statuses: dict[str, list[Any]] = {}
    threads = threading.active_count()
    start = time.monotonic()
    with caplog.at_level("WARNING", logger="ladder.rewards.code"):
        scores = checked(
            [LOOP] * 16,
            tests=["assert add(1, 2) == 3"] * 16,
            log_metric=lambda name, value: metrics.append((name, value)),
            log_extra=lambda column, values: statuses.setdefault(column, values),
        )
    elapsed = time.monotonic() - start
    assert scores == [0.0] * 16
    assert elapsed < 1.5 + 3.0, elapsed  # the deadline plus the kill allowance, not 80 s
    assert statuses["python_tests_status"] == ["batch_timeout"] * 16
    assert metrics == [("python_tests/batch_timeouts", 16.0)]
    assert "cut 16 of 16 runs short; they score 0.0" in caplog.text
    assert threading.active_count() == threads and children() == set()


def test_a_fast_batch_is_not_cut_and_logs_zero() -> None:
    require_sandbox()
    reward = make_python_tests(workers=2, batch_timeout_s=30)
    metrics: list[tuple[str, float]] = []
    good = "```python\ndef add(a, b):\n    return a + b\n```"
    assert reward([good, LOOP.replace("while True:\n        pass", "return 0")], tests=["assert add(1, 2) == 3"] * 2,
                  log_metric=lambda name, value: metrics.append((name, value))) == [1.0, 0.0]
    assert metrics == [("python_tests/batch_timeouts", 0.0)]


def test_worst_case_batch_time_is_what_preflight_compares() -> None:
    unbounded = make_python_tests(timeout_s=10, workers=2, batch_timeout_s=None)
    assert worst_case_batch_seconds(unbounded, 16) == 8 * 10.5  # ceil(16 / 2) waves of timeout + start-up
    assert worst_case_batch_seconds(checked_reward(unbounded), 16) == 84.0  # seen through the wrapper
    assert worst_case_batch_seconds(make_python_tests(workers=2), 16) == 53.0  # capped by batch_timeout_s
    assert worst_case_batch_seconds(python_tests, 16) <= 60  # the default fits the default stage limit
    (problem,) = reward_time_problems([unbounded], 16, 60.0)
    assert "84 s on a batch of 16" in problem and "reward_timeout_s=60" in problem and "batch_timeout_s" in problem
    assert reward_time_problems([unbounded], 16, None) == []
    assert reward_time_problems([python_tests], 16, 60.0) == []


def _ctx(tmp_path: Path) -> StageContext:
    return StageContext(run_dir=tmp_path, work_dir=tmp_path / "w", final_dir=tmp_path / "f", trainer_dir=tmp_path / "t")


def test_rl_preflight_reports_a_code_reward_that_can_outlast_the_stage_limit(tmp_path: Path) -> None:
    require_sandbox()
    batch = {"num_generations": 2, "per_device_train_batch_size": 8, "gradient_accumulation_steps": 2}  # 16 per call
    slow = make_python_tests(timeout_s=10, workers=2, batch_timeout_s=None)
    problems = GRPO(dataset=ROWS, rewards={slow: 1.0}, reward_timeout_s=60, **batch).validate(_ctx(tmp_path))
    assert any("reward 'python_tests' can take up to 84 s on a batch of 16 completions" in p for p in problems), problems
    # the default python_tests fits a 60 s stage limit, and not a 30 s one
    assert GRPO(dataset=ROWS, rewards={"python_tests": 1.0}, reward_timeout_s=60, **batch).validate(_ctx(tmp_path)) == []
    (problem,) = GRPO(dataset=ROWS, rewards={"python_tests": 1.0}, reward_timeout_s=30, **batch).validate(_ctx(tmp_path))
    assert "53 s on a batch of 16" in problem and "reward_timeout_s=30" in problem
