"""Watching an RL stage's learning signal and what its rewards did to the policy.

:class:`ZeroSpreadWatch` follows the share of groups with no reward spread (no learning signal);
:func:`first_last` summarises a logged quantity; :func:`reward_hacking_warning` flags a learned
reward that rose while the independent checks moved the wrong way.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transformers import TrainerCallback

__all__ = ["ZeroSpreadWatch", "first_last", "numbers", "reward_hacking_warning"]

logger = logging.getLogger(__name__)

# Groups whose completions all got the same reward teach nothing. Above this mean share of
# such groups, over the whole run or over its first _EARLY_STEPS logged steps, the stage warns.
_ZERO_SPREAD_LIMIT = 0.5
_EARLY_STEPS = 10
# Reward hacking, as the stage flags it: the learned reward rose while the policy moved towards
# the *rejected* answers of held-out pairs, or the answers' length changed by more than this share.
_LENGTH_DRIFT_LIMIT = 0.5


def reward_hacking_warning(metrics: Mapping[str, Any]) -> str | None:
    """A note when the learned reward rose but the independent checks moved the wrong way."""
    first, last = metrics.get("learned_reward_first"), metrics.get("learned_reward_last")
    if first is None or last is None or not last > first:
        return None
    signs = []
    after = metrics.get("heldout_after") or {}
    if isinstance(after.get("accuracy"), float) and after["accuracy"] < 0.5:
        signs.append(
            f"on the held-out pairs the policy moved towards the rejected answers (implicit-reward accuracy "
            f"{after['accuracy']:.0%} against its input)"
        )
    change = metrics.get("completion_length_change")
    if isinstance(change, float) and abs(change) > _LENGTH_DRIFT_LIMIT:
        signs.append(
            f"the answers' mean length went from {metrics['completion_length_first']:.1f} to "
            f"{metrics['completion_length_last']:.1f} tokens ({change:+.0%})"
        )
    if not signs:
        return None
    return (
        f"the learned reward rose ({first:.3g} -> {last:.3g}) but {' and '.join(signs)}: the policy may be "
        "exploiting the reward model rather than getting better (reward hacking). Read the probe answers; raise "
        "beta (the KL penalty), train fewer steps, or improve the reward model's data."
    )


def numbers(history: Sequence[Mapping[str, Any]], key: str) -> list[float]:
    return [
        float(r[key])
        for r in history
        if isinstance(r.get(key), (int, float)) and not math.isnan(float(r[key])) and "train_runtime" not in r
    ]


def first_last(history: Sequence[Mapping[str, Any]], key: str, *, prefix: str | None = None) -> dict[str, float]:
    """Means of ``key`` over the first and the last logged steps.

    The window is a quarter of the logged steps, at least 1 and at most 10. Keys are
    ``<prefix>_first``/``<prefix>_last`` (``prefix`` defaults to ``key``; ``""`` gives
    ``first``/``last``).

    Example:
        >>> first_last([{"kl": 0.0}, {"kl": 1.0}, {"kl": 2.0}, {"kl": 3.0}], "kl")
        {'kl_first': 0.0, 'kl_last': 3.0}
    """
    values = numbers(history, key)
    if not values:
        return {}
    prefix = key if prefix is None else prefix
    head = f"{prefix}_" if prefix else ""
    window = max(1, min(10, len(values) // 4))
    return {
        f"{head}first": sum(values[:window]) / window,
        f"{head}last": sum(values[-window:]) / window,
    }


class ZeroSpreadWatch:
    """Watches ``frac_reward_zero_std``: the share of groups whose completions all scored the same.

    Such groups have zero advantage and teach nothing. The watch warns once (``logging`` and
    :meth:`metrics`), as soon as the first :data:`_EARLY_STEPS` logged steps average above
    :data:`_ZERO_SPREAD_LIMIT` (so a user can stop early), or at the end when the whole run does.

    Example:
        >>> watch = ZeroSpreadWatch(num_generations=2, early_steps=2)
        >>> for share in (1.0, 0.5):
        ...     watch.add(share, reward=0.0)
        >>> round(watch.metrics()["zero_spread_share"], 2), "num_generations" in watch.warning
        (0.75, True)
    """

    def __init__(
        self,
        *,
        num_generations: int = 2,
        limit: float = _ZERO_SPREAD_LIMIT,
        early_steps: int = _EARLY_STEPS,
        algorithm: str = "GRPO",
    ) -> None:
        self.num_generations = num_generations
        self.limit = limit
        self.early_steps = early_steps
        self.algorithm = algorithm
        self.values: list[float] = []
        self.rewards: list[float] = []
        self.warning: str | None = None

    def add(self, share: float, *, reward: float | None = None) -> None:
        """Record one logged step's ``frac_reward_zero_std`` (and its mean ``reward``)."""
        if math.isnan(share):
            return
        self.values.append(share)
        if reward is not None and not math.isnan(reward):
            self.rewards.append(reward)
        if self.warning is None and len(self.values) == self.early_steps:
            self._check(f"the first {self.early_steps} steps")

    def finish(self) -> None:
        """Check the whole run (call after training)."""
        if self.warning is None and self.values:
            self._check("this run")

    def _check(self, span: str) -> None:
        share = sum(self.values) / len(self.values)
        if share <= self.limit:
            return
        reward = f" (mean reward {sum(self.rewards) / len(self.rewards):.3g})" if self.rewards else ""
        self.warning = (
            f"{share:.0%} of the problem groups in {span} got the same reward for every completion{reward}, so "
            f"they carried no learning signal: {self.algorithm} learns only from differences within a group. If "
            f"the completions all fail, make success reachable: more generations per problem (num_generations, "
            f"now {self.num_generations}), easier problems or ones matched to the model, a higher temperature, or "
            f"an SFT stage before {self.algorithm} that teaches the answer format. If they all succeed, the model "
            f"has learned what these rewards teach: use harder problems or fewer steps."
        )
        logger.warning(self.warning)

    def metrics(self) -> dict[str, Any]:
        """``zero_spread_share`` (run mean), its first-steps mean, and the warning if one fired."""
        if not self.values:
            return {}
        early = self.values[: self.early_steps]
        out: dict[str, Any] = {
            "zero_spread_share": sum(self.values) / len(self.values),
            "zero_spread_share_first_steps": sum(early) / len(early),
        }
        if self.warning is not None:
            out["zero_spread_warning"] = self.warning
        return out

    def callback(self) -> TrainerCallback:
        """A TrainerCallback feeding this watch from the trainer's logs."""
        from transformers import TrainerCallback

        watch = self

        class _Watch(TrainerCallback):
            def on_log(
                self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any
            ) -> None:
                logs = logs or {}
                share, reward = logs.get("frac_reward_zero_std"), logs.get("reward")
                if isinstance(share, (int, float)):
                    watch.add(float(share), reward=float(reward) if isinstance(reward, (int, float)) else None)

        return _Watch()
