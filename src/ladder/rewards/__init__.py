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


def __getattr__(name: str) -> Any:
    # ModalSandbox's module imports nothing heavy either, but keep it off the import path.
    if name == "ModalSandbox":
        from ladder.rewards.sandbox_modal import ModalSandbox

        return ModalSandbox
    raise AttributeError(f"module 'ladder.rewards' has no attribute {name!r}")


# ``ladder.rewards`` is both the reward *registry* exported by ``ladder/__init__.py`` and this
# package: once anything imports ``ladder.rewards.<module>``, Python rebinds the attribute
# ``ladder.rewards`` to this package. These delegates keep the registry's everyday calls
# working either way (``ladder.rewards.get("exact_match")``, ``ladder.rewards.register(...)``).
names, entries, get, register, unregister = _registry.everyday_calls("rewards")
