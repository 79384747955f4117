"""Which behaviour suites run, on how many items, with how many tokens: ``evals: {behaviour: ...}``.

In a recipe (or ``Pipeline(evals=...)``)::

    evals:
      behaviour:                     # omitted: every suite, DEFAULT_LIMIT (32) items each
        suites: [knowledge, safety]  # a subset, in this order
        limit: 60                    # items per suite (null: all), or {knowledge: 74, safety: 20}
        max_new_tokens: 96           # every suite's answer budget (default: the suite's own)

    evals: {behaviour: false}        # no behaviour evaluations

Without the key the suites run whenever the probes do (the report is the product); with it
they run even when no probe is asked.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from ladder.errors import ConfigError
from ladder.evals.suites import SUITES

__all__ = ["DEFAULT_LIMIT", "DEFAULT_SUITES", "BehaviourConfig", "resolve_behaviour"]

DEFAULT_SUITES: tuple[str, ...] = ("knowledge", "instructions", "safety", "arithmetic")
#: Items per suite by default. 32 is one batch per suite at the demo's ``batch_size: 32``: on a
#: 2-core CPU a decoding step of SmolLM2-135M takes about 0.12 s for 8 rows and 0.24 s for 32,
#: so 40 items (a batch and a remainder) would cost half again as much time for a quarter more
#: items (docs/reading-the-report.md has the measurements). With 32 paired items, 5 lost and
#: none gained is already a regression.
DEFAULT_LIMIT = 32
_KEYS = ("suites", "limit", "max_new_tokens")


def _positive(value: Any, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"evals.behaviour.{what} must be a positive integer or null, got {value!r}")
    return value


@attrs.frozen(kw_only=True)
class BehaviourConfig:
    """How the behaviour evaluations run (see the module docstring).

    Attributes:
        enabled: ``False`` turns them off.
        suites: the suites to run, in order.
        limits: items per suite (``None``: all of a suite's items).
        max_new_tokens: one answer budget for every suite (``None``: each suite's own, never
            more than the run's ``generation.max_new_tokens``).
        explicit: whether the recipe asked for them (then they run even without probes).
    """

    enabled: bool = True
    suites: tuple[str, ...] = DEFAULT_SUITES
    limits: Mapping[str, int | None] = attrs.field(factory=dict)
    max_new_tokens: int | None = None
    explicit: bool = False

    def limit(self, suite: str) -> int | None:
        """How many items of ``suite`` run."""
        return self.limits.get(suite, DEFAULT_LIMIT)

    def budget(self, suite: str, run_max_new_tokens: int) -> int:
        """The answer token budget of ``suite``: this config's, else the suite's own capped by the run's."""
        if self.max_new_tokens is not None:
            return self.max_new_tokens
        return min(SUITES[suite].max_new_tokens, run_max_new_tokens)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able settings (for fingerprints and the manifest)."""
        return {
            "enabled": self.enabled,
            "suites": list(self.suites),
            "limits": {s: self.limit(s) for s in self.suites},
            "max_new_tokens": self.max_new_tokens,
        }


def resolve_behaviour(spec: Any = None) -> BehaviourConfig:
    """The :class:`BehaviourConfig` of a recipe's ``evals.behaviour`` value.

    Args:
        spec: ``None`` (the defaults), ``True``/``False``, a mapping with ``suites``,
            ``limit`` and ``max_new_tokens``, or a :class:`BehaviourConfig`.

    Raises:
        ConfigError: an unknown key or suite, or a limit that is not a positive integer.

    >>> resolve_behaviour({"suites": ["safety"], "limit": 10}).limit("safety")
    10
    >>> resolve_behaviour(False).enabled
    False
    """
    if isinstance(spec, BehaviourConfig):
        return spec
    if spec is None:
        return BehaviourConfig()
    if isinstance(spec, bool):
        return BehaviourConfig(enabled=spec, explicit=True)
    if not isinstance(spec, Mapping):
        raise ConfigError(
            f"evals.behaviour must be true, false or a mapping {{suites, limit, max_new_tokens}}, got {spec!r}"
        )
    unknown = sorted(set(spec) - set(_KEYS))
    if unknown:
        raise ConfigError(f"evals.behaviour: unknown keys {unknown}; use {', '.join(_KEYS)}")
    suites = spec.get("suites", DEFAULT_SUITES)
    if isinstance(suites, (str, bytes)) or not isinstance(suites, Sequence) or not suites:
        raise ConfigError(f"evals.behaviour.suites must be a non-empty list of suite names, got {suites!r}")
    bad = [s for s in suites if s not in SUITES]
    if bad or len(set(suites)) != len(suites):
        raise ConfigError(
            f"evals.behaviour.suites {list(suites)!r}: unknown or repeated names; known suites: {', '.join(SUITES)}"
        )
    limit = spec.get("limit", DEFAULT_LIMIT)
    if isinstance(limit, Mapping):
        extra = sorted(set(limit) - set(suites))
        if extra:
            raise ConfigError(f"evals.behaviour.limit names suites that do not run: {extra}")
        limits = {s: _positive(limit.get(s, DEFAULT_LIMIT), f"limit.{s}") for s in suites}
    else:
        limits = {s: _positive(limit, "limit") for s in suites}
    return BehaviourConfig(
        suites=tuple(suites),
        limits=limits,
        max_new_tokens=_positive(spec.get("max_new_tokens"), "max_new_tokens"),
        explicit=True,
    )
