"""Reward functions for GRPO, and the machinery that runs them safely.

Every reward is a plain function with TRL's reward signature,
``f(completions, **columns) -> list[float | None]``: completions are strings or conversational
message lists, dataset columns arrive as keyword arguments (one value per completion), and
``None`` means "no reward for this sample". So each drops into ``trl.GRPOTrainer`` unchanged.

Built-ins (registered under the ``ladder.rewards`` entry-point group, like any plugin):
``exact_match``, ``multiple_choice``, ``tag_format``, ``length_penalty``, ``regex_match``,
``contains``, ``python_tests``, ``math_verify`` (needs ``pip install 'ladder[math]'``); ``make_*``
factories build configured variants.
:func:`resolve_rewards` turns recipe names and weights into checked functions. Importing this
package is cheap: pure Python, no torch.
"""

from __future__ import annotations

from typing import Any

from ladder import registry as _registry
from ladder.registry import Entry
from ladder.rewards._common import completion_text
from ladder.rewards._checked import CheckedReward, RewardFunc, checked_reward, reward_name
from ladder.rewards._runtime import (
    ResolvedRewards,
    check_reward_on_sample,
    required_columns,
    resolve_rewards,
    reward_time_problems,
    worst_case_batch_seconds,
)
from ladder.rewards._sandbox import SandboxBackend, SandboxError, SandboxJob, SandboxRun, SandboxUnavailableError
from ladder.rewards.answers import exact_match, extract_choice, extract_final_answer, multiple_choice
from ladder.rewards.code import (
    PythonTests,
    SandboxLimits,
    SandboxResult,
    make_python_tests,
    python_tests,
    run_python_tests,
)
from ladder.rewards.format import make_tag_format, tag_format
from ladder.rewards.math import math_verify
from ladder.rewards.text import (
    contains,
    length_penalty,
    make_contains_reward,
    make_length_penalty,
    make_regex_reward,
    regex_match,
)

__all__ = [  # noqa: RUF022 - grouped by purpose
    # the registry's lookups (see below)
    "names",
    "entries",
    "get",
    "register",
    "unregister",
    # runtime
    "RewardFunc",
    "ResolvedRewards",
    "CheckedReward",
    "resolve_rewards",
    "checked_reward",
    "required_columns",
    "check_reward_on_sample",
    "worst_case_batch_seconds",
    "reward_time_problems",
    "reward_name",
    "completion_text",
    # built-in rewards
    "exact_match",
    "multiple_choice",
    "tag_format",
    "length_penalty",
    "regex_match",
    "contains",
    "python_tests",
    "math_verify",
    # factories and helpers
    "make_tag_format",
    "make_length_penalty",
    "make_regex_reward",
    "make_contains_reward",
    "make_python_tests",
    "extract_final_answer",
    "extract_choice",
    "run_python_tests",
    "PythonTests",
    "SandboxLimits",
    "SandboxResult",
    "SandboxBackend",
    "SandboxJob",
    "SandboxRun",
    "SandboxError",
    "SandboxUnavailableError",
    "ModalSandbox",
]


# ``ladder.rewards`` is both the reward *registry* exported by ``ladder/__init__.py`` and this
# package: once anything imports ``ladder.rewards.<module>``, Python rebinds the attribute
# ``ladder.rewards`` to this package. These delegates keep the registry's everyday calls
# working either way (``ladder.rewards.get("exact_match")``, ``ladder.rewards.register(...)``).


def __getattr__(name: str) -> Any:
    # ModalSandbox's module imports nothing heavy either, but keep it off the import path.
    if name == "ModalSandbox":
        from ladder.rewards.sandbox_modal import ModalSandbox

        return ModalSandbox
    raise AttributeError(f"module 'ladder.rewards' has no attribute {name!r}")


def names() -> list[str]:
    """Sorted names of every registered reward (imports none of them)."""
    return _registry.rewards.names()


def entries() -> list[Entry]:
    """One registry entry (name, ``module:attr``, package, version) per reward, sorted."""
    return _registry.rewards.entries()


def get(name: str) -> Any:
    """The reward registered as ``name`` (imported on first use); see ``Registry.get``."""
    return _registry.rewards.get(name)


def register(name: str, fn: Any, *, replace: bool = False) -> Any:
    """Register a reward in-process (tests, notebooks); it wins over entry points."""
    return _registry.rewards.register(name, fn, replace=replace)


def unregister(name: str) -> None:
    """Remove an in-process registration."""
    _registry.rewards.unregister(name)
