"""The ``math_verify`` reward: MATH-style answers that ``exact_match`` gets wrong, scored right, in
ladder's reward threads (math-verify's own signal-based timeouts would fail there)."""

from __future__ import annotations

import sys

import pytest

from ladder.errors import MissingDependencyError
from ladder.rewards import checked_reward, exact_match
from ladder.rewards.math import math_verify

# (completion, reference answer): the same answer written two ways
EQUAL = [
    (r"<answer>\dfrac{\sqrt3}{2}</answer>", r"\frac{\sqrt3}{2}"),
    ("<answer>(1,2)</answer>", "(1, 2)"),
    (r"<answer>\pi/2</answer>", r"\frac{\pi}{2}"),
    (r"The answer is \boxed{0.5}.", r"\frac12"),
]
DIFFERENT = [
    (r"<answer>\frac{\sqrt2}{2}</answer>", r"\frac{\sqrt3}{2}"),
    ("<answer>(2,1)</answer>", "(1, 2)"),
    (r"<answer>\pi</answer>", r"\frac{\pi}{2}"),
    ("<answer>3</answer>", "#### 4"),
]


def _columns(cases):
    return [c for c, _ in cases], [a for _, a in cases]


def test_equal_answers_written_differently_score_one_where_exact_match_scores_zero() -> None:
    pytest.importorskip("math_verify")
    completions, answers = _columns(EQUAL)
    assert math_verify(completions, answer=answers) == [1.0, 1.0, 1.0, 1.0]
    assert exact_match(completions[:3], answer=answers[:3]) == [0.0, 0.0, 0.0]  # the false negatives it fixes


def test_different_answers_score_zero_and_missing_references_none() -> None:
    pytest.importorskip("math_verify")
    completions, answers = _columns(DIFFERENT)
    assert math_verify(completions, answer=answers) == [0.0, 0.0, 0.0, 0.0]
    conversational = [[{"role": "assistant", "content": r"so \boxed{\frac{1}{3}}"}]]
    assert math_verify(conversational * 3, answer=[None, "  ", [r"\frac13", "0.5"]]) == [None, None, 1.0]


def test_it_runs_under_ladders_reward_timeout_in_a_worker_thread() -> None:
    """checked_reward calls the reward in a thread; math-verify's signal.alarm would raise there."""
    pytest.importorskip("math_verify")
    reward = checked_reward(math_verify, "math_verify", timeout_s=60.0)
    completions, answers = _columns(EQUAL + DIFFERENT)
    assert reward(completions, answer=answers) == [1.0] * 4 + [0.0] * 4


def test_pyproject_registers_it_as_a_ladder_reward() -> None:
    import importlib
    import tomllib
    from pathlib import Path

    pyproject = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    target = pyproject["project"]["entry-points"]["ladder.rewards"]["math_verify"]
    module, attr = target.split(":")
    assert getattr(importlib.import_module(module), attr) is math_verify
    assert pyproject["project"]["optional-dependencies"]["math"] == ["math-verify>=0.8"]


def test_without_math_verify_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "math_verify", None)  # an environment without the package
    with pytest.raises(MissingDependencyError, match=r"pip install 'ladder\[math\]'"):
        math_verify(["<answer>1</answer>"], answer=["1"])
