"""The checked wrapper every reward runs in: strict results, a time limit, a named culprit."""

from __future__ import annotations

import asyncio
import inspect
import math
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from ladder.errors import ConfigError, RewardError
from ladder.rewards._common import completion_text
from ladder.rewards._isolation import ISOLATIONS, Opaque, RewardTimeout, call_isolated, default_isolation

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "TRL_REWARD_KWARGS",
    "CheckedReward",
    "RewardFunc",
    "checked_reward",
    "reward_name",
    "unwrap_reward",
]

RewardFunc = Callable[..., Sequence[float | None]]

# Keyword arguments TRL's GRPOTrainer passes to every reward besides the dataset's columns
# (trl 1.16, GRPOTrainer._calculate_rewards): never dataset columns a reward "needs".
TRL_REWARD_KWARGS = frozenset(
    {"completions", "prompts", "completion_ids", "trainer_state", "log_extra", "log_metric", "environments"}
)

DEFAULT_TIMEOUT_S = 120.0
_PREVIEW_CHARS = 200


def unwrap_reward(fn: Any) -> list[Any]:
    """The reward and what it wraps, outermost first (checked wrappers, ``functools.partial``)."""
    chain = [fn]
    while True:
        if isinstance(fn, CheckedReward):
            fn = fn.fn
        elif hasattr(fn, "func") and hasattr(fn, "args") and hasattr(fn, "keywords"):  # partial
            fn = fn.func
        else:
            return chain
        chain.append(fn)


def reward_name(fn: Any) -> str:
    """The name TRL logs for a reward (its ``__name__``, through ``functools.partial``).

    Example:
        >>> from ladder.rewards.format import tag_format
        >>> reward_name(tag_format)
        'tag_format'
    """
    while hasattr(fn, "func") and hasattr(fn, "args") and hasattr(fn, "keywords"):  # partial
        fn = fn.func
    return str(getattr(fn, "__name__", type(fn).__name__))


def _preview(value: Any) -> str:
    try:
        text = completion_text(value)
    except TypeError:
        text = repr(value)
    text = text if len(text) <= _PREVIEW_CHARS else text[:_PREVIEW_CHARS] + "..."
    return repr(text)


def _slice_kwargs(kwargs: Mapping[str, Any], n: int, index: int) -> dict[str, Any]:
    """The keyword arguments of one sample: per-sample lists cut to that sample, the rest as is."""
    out: dict[str, Any] = {}
    for key, value in kwargs.items():
        if isinstance(value, (list, tuple)) and len(value) == n and key not in ("trainer_state",):
            out[key] = [value[index]]
        else:
            out[key] = value
    return out


def _resolve_awaitable(result: Any) -> Any:
    if inspect.isawaitable(result):

        async def wait() -> Any:
            return await result

        return asyncio.run(wait())
    return result


class CheckedReward:
    """A reward wrapped with checks and a time limit; same TRL signature and ``__name__``.

    Build it with :func:`checked_reward`. It is a class, not a closure, so it pickles whenever
    the wrapped reward does.
    """

    def __init__(
        self,
        fn: RewardFunc,
        name: str,
        timeout_s: float | None = DEFAULT_TIMEOUT_S,
        isolation: str | None = None,
    ) -> None:
        if not callable(fn):
            raise ConfigError(f"reward {name!r} is {type(fn).__name__}, not a callable")
        if timeout_s is not None and not timeout_s > 0:
            raise ConfigError(f"reward {name!r}: timeout_s must be > 0 or None, got {timeout_s}")
        declared = next((f.isolation for f in unwrap_reward(fn) if hasattr(f, "isolation")), None)
        chosen = isolation or declared or default_isolation()
        if chosen not in ISOLATIONS:
            raise ConfigError(
                f"reward {name!r}: isolation must be one of {', '.join(ISOLATIONS)}, got {chosen!r}"
            )
        self.fn = fn
        self.name = name
        self.timeout_s = timeout_s
        self.isolation = chosen
        self.__name__ = name
        self.__wrapped__ = fn  # inspect.signature() and required_columns() see the real one
        self.__doc__ = getattr(fn, "__doc__", None)

    # -- calling -----------------------------------------------------------------------------
    def _invoke(self, **kwargs: Any) -> Any:
        return _resolve_awaitable(self.fn(**kwargs))

    def _call_with_timeout(self, completions: Sequence[Any], kwargs: Mapping[str, Any], what: str) -> Any:
        try:
            return call_isolated(self._invoke, {**kwargs, "completions": completions}, self.isolation, self.timeout_s)
        except RewardTimeout as exc:
            first = _preview(completions[0]) if len(completions) else "-"
            raise RewardError(
                f"reward {self.name!r} did not return within {self.timeout_s:g} s on {what} (first completion: "
                f"{first}); {exc}. Make it faster, raise its timeout (the stage's reward_timeout_s), or, if "
                f"it runs code, give that code its own time limit."
            ) from None

    def __call__(self, completions: Sequence[Any], **kwargs: Any) -> list[float | None]:
        if self.isolation == "main" and threading.current_thread() is not threading.main_thread():
            raise RewardError(
                f"reward {self.name!r} asks for the main thread (isolation='main'), but was called from "
                f"thread {threading.current_thread().name!r}; call it from the main thread, or use "
                f"isolation='process'."
            )
        n = len(completions)
        try:
            result = self._call_with_timeout(completions, kwargs, f"a batch of {n}")
        except RewardError:
            raise
        except Exception as exc:
            raise self._locate_failure(completions, kwargs, exc) from exc
        return self._validate(result, completions)

    # -- diagnosis ---------------------------------------------------------------------------
    def _locate_failure(self, completions: Sequence[Any], kwargs: Mapping[str, Any], exc: Exception) -> RewardError:
        """Re-run sample by sample to name the first one that makes the reward raise."""
        n = len(completions)
        if n > 1:
            for i in range(n):
                try:
                    self._call_with_timeout([completions[i]], _slice_kwargs(kwargs, n, i), f"sample {i}")
                except RewardError as timeout:
                    return timeout
                except Exception as sample_exc:  # noqa: BLE001 - any failure is what we report
                    return RewardError(
                        f"reward {self.name!r} raised {type(sample_exc).__name__}: {sample_exc} "
                        f"on sample {i} of {n} (completion {_preview(completions[i])}"
                        f"{self._columns_preview(kwargs, n, i)}). Fix the reward or the data row."
                    )
        if n == 1:
            where = f"on sample 0 of 1 (completion {_preview(completions[0])}{self._columns_preview(kwargs, n, 0)})"
        else:
            first = _preview(completions[0]) if n else "-"
            where = f"on a batch of {n}, though on no single sample alone (first completion: {first})"
        return RewardError(
            f"reward {self.name!r} raised {type(exc).__name__}: {exc} {where}. Fix the reward or the data row."
        )

    @staticmethod
    def _columns_preview(kwargs: Mapping[str, Any], n: int, index: int) -> str:
        parts = []
        for key, value in kwargs.items():
            if key in TRL_REWARD_KWARGS or not isinstance(value, (list, tuple)) or len(value) != n:
                continue
            text = repr(value[index])
            parts.append(f"{key}={text[:80] + '...' if len(text) > 80 else text}")
        return ", " + ", ".join(parts) if parts else ""

    def _validate(self, result: Any, completions: Sequence[Any]) -> list[float | None]:
        n = len(completions)
        if isinstance(result, (str, bytes, Mapping, Opaque)) or not isinstance(result, Iterable):
            kind = result.type_name if isinstance(result, Opaque) else type(result).__name__
            raise RewardError(
                f"reward {self.name!r} returned {kind}, not a list of floats (one per completion). "
                f"A TRL reward returns list[float | None]."
            )
        values = list(result)
        if len(values) != n:
            raise RewardError(
                f"reward {self.name!r} returned {len(values)} rewards for {n} completions; it must "
                f"return exactly one per completion (None to skip one)."
            )
        out: list[float | None] = []
        for i, value in enumerate(values):
            if value is None:
                out.append(None)
                continue
            # Strict on purpose: True, a dict, a string or a tensor is a bug in the reward, and
            # float() would silently turn some of them into numbers.
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                kind = value.type_name if isinstance(value, Opaque) else type(value).__name__
                raise RewardError(
                    f"reward {self.name!r} returned {_short(value)} ({kind}) for sample {i} of {n} "
                    f"(completion {_preview(completions[i])}); a reward must return a float, an int "
                    f"(not a bool) or None per completion. Convert it with float(...)."
                )
            number = float(value)
            if not math.isfinite(number):
                raise RewardError(
                    f"reward {self.name!r} returned {number} for sample {i} (completion "
                    f"{_preview(completions[i])}); rewards must be finite. Return None to skip a "
                    f"sample instead."
                )
            out.append(number)
        if n and all(v is None for v in out):
            raise RewardError(
                f"reward {self.name!r} returned None for all {n} completions (first: "
                f"{_preview(completions[0])}), so it gives no signal: check that the dataset has "
                f"the columns it reads and that they are filled."
            )
        return out

    def __repr__(self) -> str:
        return (f"checked_reward({self.fn!r}, name={self.name!r}, timeout_s={self.timeout_s}, "
                f"isolation={self.isolation!r})")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 100 else text[:100] + "..."


def checked_reward(
    fn: RewardFunc,
    name: str | None = None,
    timeout_s: float | None = DEFAULT_TIMEOUT_S,
    isolation: str | None = None,
) -> CheckedReward:
    """Wrap a reward so misbehaviour raises :class:`~ladder.errors.RewardError`.

    The wrapper has the reward's TRL signature and a ``__name__`` TRL logs under. It raises,
    naming the reward and the offending sample's index and text, when the reward raises
    (re-running sample by sample to find which), returns anything but one float, int (not
    bool) or ``None`` per completion, returns NaN or infinity, returns ``None`` for every
    completion (``None`` for some is fine: TRL skips those), or runs longer than ``timeout_s``.
    Async rewards are awaited.

    Where the call runs (``isolation``; default: the reward's ``isolation`` attribute, else
    ``"process"`` on Linux, ``"thread"`` elsewhere): ``"process"``, a forked copy of this
    process that is killed with everything it started at the deadline (side effects other than
    TRL's ``log_extra``/``log_metric`` stay in the copy; a reward using CUDA must not use it);
    ``"main"``, the calling thread, which must be the main thread, with a deadline delivered by
    a real-time signal (for rewards that use ``signal.alarm`` themselves, like math-verify's);
    ``"thread"``, a worker thread that is abandoned, still running, after a timeout.

    Args:
        fn: the reward; set ``fn.isolation = "main"`` (or ``"thread"``) to declare its mode.
        name: the name to report and log; defaults to the reward's ``__name__``.
        timeout_s: seconds per call; ``None`` for no limit.
        isolation: ``"process"``, ``"thread"`` or ``"main"``; overrides the attribute.

    Example:
        >>> def broken(completions, **kwargs):
        ...     return [1.0] * (len(completions) + 1)
        >>> checked_reward(broken)(["a", "b"])  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ladder.errors.RewardError: reward 'broken' returned 3 rewards for 2 completions; ...
    """
    if isinstance(fn, CheckedReward):
        return CheckedReward(fn.fn, name or fn.name, timeout_s, isolation or fn.isolation)
    return CheckedReward(fn, name or reward_name(fn), timeout_s, isolation)
