"""Running rewards safely: name resolution, checked wrappers with timeouts, pre-flight checks.

:func:`resolve_rewards` turns a recipe's ``rewards:`` entry into the functions and weights
``trl.GRPOTrainer`` takes (``reward_funcs=``, ``GRPOConfig(reward_weights=...)``), each wrapped
by :func:`checked_reward` so a misbehaving reward fails loudly, naming itself and the sample,
instead of silently training on garbage. :func:`required_columns` and
:func:`check_reward_on_sample` serve ``Pipeline.validate()``.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import numbers
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from ladder.errors import ConfigError, RewardError
from ladder.rewards._common import completion_text, gold_answer

__all__ = [
    "TRL_REWARD_KWARGS",
    "CheckedReward",
    "ResolvedRewards",
    "RewardFunc",
    "check_reward_on_sample",
    "checked_reward",
    "required_columns",
    "resolve_rewards",
    "reward_name",
]

logger = logging.getLogger(__name__)

RewardFunc = Callable[..., Sequence[float | None]]

# Keyword arguments TRL's GRPOTrainer passes to every reward besides the dataset's columns
# (trl 1.16, GRPOTrainer._calculate_rewards): never dataset columns a reward "needs".
TRL_REWARD_KWARGS = frozenset(
    {"completions", "prompts", "completion_ids", "trainer_state", "log_extra", "log_metric", "environments"}
)

DEFAULT_TIMEOUT_S = 120.0
_PREVIEW_CHARS = 200


class ResolvedRewards(NamedTuple):
    """Reward functions and their weights, in the same order. Unpacks as ``funcs, weights``."""

    functions: list[RewardFunc]
    weights: list[float]


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
    """A reward wrapped with checks and a timeout; same TRL signature and ``__name__``.

    Build it with :func:`checked_reward`. It is a class, not a closure, so it pickles whenever
    the wrapped reward does.
    """

    def __init__(self, fn: RewardFunc, name: str, timeout_s: float | None = DEFAULT_TIMEOUT_S) -> None:
        if not callable(fn):
            raise ConfigError(f"reward {name!r} is {type(fn).__name__}, not a callable")
        if timeout_s is not None and not timeout_s > 0:
            raise ConfigError(f"reward {name!r}: timeout_s must be > 0 or None, got {timeout_s}")
        self.fn = fn
        self.name = name
        self.timeout_s = timeout_s
        self.__name__ = name
        self.__wrapped__ = fn  # inspect.signature() and required_columns() see the real one
        self.__doc__ = getattr(fn, "__doc__", None)

    # -- calling -----------------------------------------------------------------------------
    def _call_with_timeout(self, completions: Sequence[Any], kwargs: Mapping[str, Any], what: str) -> Any:
        if self.timeout_s is None:
            return _resolve_awaitable(self.fn(completions=completions, **kwargs))
        box: dict[str, Any] = {}

        def target() -> None:
            try:
                box["result"] = _resolve_awaitable(self.fn(completions=completions, **kwargs))
            except BaseException as exc:  # noqa: BLE001 - handed back to the caller's thread below
                box["error"] = exc

        # A daemon thread, so a hung reward cannot keep the interpreter alive at exit. Python
        # cannot kill a thread: after a timeout it keeps running in the background, which is
        # why rewards that execute model-written code run it in a subprocess that *can* be
        # killed (ladder.rewards.code).
        worker = threading.Thread(target=target, name=f"reward-{self.name}", daemon=True)
        worker.start()
        worker.join(self.timeout_s)
        if worker.is_alive():
            raise RewardError(
                f"reward {self.name!r} did not return within {self.timeout_s:g} s on {what} "
                f"(first completion: {_preview(completions[0]) if len(completions) else '-'}). "
                f"Make it faster, raise its timeout, or, if it runs code, give that code its own "
                f"time limit. Its thread cannot be stopped and is left running in the background."
            )
        if "error" in box:
            raise box["error"]
        return box.get("result")

    def __call__(self, completions: Sequence[Any], **kwargs: Any) -> list[float | None]:
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
        if isinstance(result, (str, bytes)) or not isinstance(result, Iterable):
            raise RewardError(
                f"reward {self.name!r} returned {type(result).__name__}, not a list of floats "
                f"(one per completion). A TRL reward returns list[float | None]."
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
            if isinstance(value, numbers.Real) or hasattr(value, "__float__"):
                try:
                    number = float(value)
                except (TypeError, ValueError):
                    number = None
            else:
                number = None
            if number is None:
                raise RewardError(
                    f"reward {self.name!r} returned {value!r} ({type(value).__name__}) for sample {i} "
                    f"(completion {_preview(completions[i])}); rewards must be numbers or None."
                )
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
        return f"checked_reward({self.fn!r}, name={self.name!r}, timeout_s={self.timeout_s})"


def checked_reward(
    fn: RewardFunc, name: str | None = None, timeout_s: float | None = DEFAULT_TIMEOUT_S
) -> CheckedReward:
    """Wrap a reward so misbehaviour raises :class:`~ladder.errors.RewardError`.

    The wrapper has the reward's TRL signature and a ``__name__`` TRL logs under. It raises,
    naming the reward and the offending sample's index and text, when the reward raises
    (re-running sample by sample to find which), returns something other than one number or
    ``None`` per completion, returns NaN or infinity, returns ``None`` for every completion
    (``None`` for some is fine: TRL skips those), or runs longer than ``timeout_s`` (the
    reward's thread cannot be killed and is abandoned; see :mod:`ladder.rewards.code` for
    rewards that must be killable). Async rewards are awaited.

    Args:
        fn: the reward.
        name: the name to report and log; defaults to the reward's ``__name__``.
        timeout_s: seconds per call; ``None`` for no limit (and no worker thread).

    Example:
        >>> def broken(completions, **kwargs):
        ...     return [1.0] * (len(completions) + 1)
        >>> checked_reward(broken)(["a", "b"])  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ladder.errors.RewardError: reward 'broken' returned 3 rewards for 2 completions; ...
    """
    if isinstance(fn, CheckedReward):
        return CheckedReward(fn.fn, name or fn.name, timeout_s)
    return CheckedReward(fn, name or reward_name(fn), timeout_s)


def _load(name: str) -> RewardFunc:
    from ladder.registry import rewards

    fn = rewards.get(name)
    if isinstance(fn, type) or not callable(fn):
        raise ConfigError(
            f"reward {name!r} ({rewards.entry(name).value}) is "
            f"{'a class' if isinstance(fn, type) else type(fn).__name__}, not a reward function; "
            f"the entry point must name a function or a callable instance."
        )
    return fn


def _weight(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
        raise ConfigError(f"reward {name!r}: weight must be a finite number, got {value!r}")
    return float(value)


def resolve_rewards(
    spec: Mapping[Any, Any] | Sequence[Any] | str | RewardFunc,
    *,
    timeout_s: float | None = DEFAULT_TIMEOUT_S,
    check: bool = True,
) -> ResolvedRewards:
    """Turn a recipe's ``rewards`` entry into ``(functions, weights)`` for ``GRPOTrainer``.

    Args:
        spec: ``{"exact_match": 1.0, "tag_format": 0.1}`` (name or callable -> weight), a list
            of names, callables or ``(name, weight)`` pairs (weight 1.0 by default), or one
            name or callable.
        timeout_s: per-call timeout of each checked wrapper (``None``: no limit).
        check: wrap each function with :func:`checked_reward` (the default). ``False`` returns
            the bare functions.

    Returns:
        :class:`ResolvedRewards`; ``funcs, weights = resolve_rewards(...)``.

    Raises:
        UnknownComponentError: a name is not registered (the message lists the known ones).
        ConfigError: the spec is empty or malformed, a weight is not a finite number, two
            rewards share a name (TRL logs them by name), or an entry is not callable.

    Example:
        >>> funcs, weights = resolve_rewards({"exact_match": 1.0, "tag_format": 0.1})
        >>> [f.__name__ for f in funcs], weights
        (['exact_match', 'tag_format'], [1.0, 0.1])
    """
    items: list[tuple[Any, Any]]
    if isinstance(spec, str) or (callable(spec) and not isinstance(spec, Mapping)):
        items = [(spec, 1.0)]
    elif isinstance(spec, Mapping):
        items = list(spec.items())
    elif isinstance(spec, Sequence):
        items = []
        for entry in spec:
            if isinstance(entry, (tuple, list)) and len(entry) == 2 and not callable(entry):
                items.append((entry[0], entry[1]))
            else:
                items.append((entry, 1.0))
    else:
        raise ConfigError(
            f"rewards must be a mapping of name to weight, a list of names, or a callable; got {type(spec).__name__}"
        )
    if not items:
        raise ConfigError("no rewards given; name at least one, e.g. rewards: {exact_match: 1.0}")
    functions: list[RewardFunc] = []
    weights: list[float] = []
    seen: set[str] = set()
    for key, weight in items:
        if isinstance(key, str):
            name, fn = key, _load(key)
        elif callable(key):
            fn = key
            name = reward_name(fn)
        else:
            raise ConfigError(f"a reward must be a registered name or a callable, got {key!r}")
        if name in seen:
            raise ConfigError(
                f"reward {name!r} is listed twice; TRL logs rewards by name. Give one a distinct "
                f"__name__ (the make_* factories take name=...)."
            )
        seen.add(name)
        functions.append(checked_reward(fn, name, timeout_s) if check else fn)
        weights.append(_weight(name, weight))
    return ResolvedRewards(functions, weights)


def required_columns(fn: Any) -> list[str]:
    """Dataset columns a reward needs: its named keyword parameters without defaults.

    TRL's own arguments (``prompts``, ``completion_ids``, ``trainer_state``...) do not count,
    nor do parameters with defaults (optional columns) or ``**kwargs``. A checked wrapper is
    seen through. A callable class instance is read through its ``__call__``.

    Example:
        >>> from ladder.rewards.answers import exact_match
        >>> from ladder.rewards.text import contains
        >>> required_columns(exact_match), required_columns(contains)
        (['answer'], [])
    """
    while isinstance(fn, CheckedReward):
        fn = fn.fn
    while hasattr(fn, "func") and hasattr(fn, "keywords") and hasattr(fn, "args"):  # partial
        bound = set(fn.keywords)
        inner = required_columns(fn.func)
        return [c for c in inner if c not in bound]
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # builtins without a signature: nothing to report
        return []
    columns = []
    for param in signature.parameters.values():
        if param.kind not in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY):
            continue
        if param.default is not param.empty or param.name in TRL_REWARD_KWARGS:
            continue
        columns.append(param.name)
    return columns


def _signature_problems(fn: Any, name: str) -> list[str]:
    while isinstance(fn, CheckedReward):
        fn = fn.fn
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return []
    params = signature.parameters.values()
    problems = []
    accepts_any = any(p.kind is p.VAR_KEYWORD for p in params)
    if not accepts_any:
        problems.append(
            f"reward {name!r} does not accept **kwargs; TRL passes every dataset column and its "
            f"own extras (prompts, completion_ids, trainer_state...) as keyword arguments. "
            f"Add **kwargs to its signature."
        )
    if not accepts_any and "completions" not in signature.parameters:
        problems.append(f"reward {name!r} has no 'completions' parameter; TRL passes completions=...")
    return problems


def _sample_completion(row: Mapping[str, Any]) -> Any:
    """A plausible completion for a row: the reference answer in answer tags, if the row has one,
    shaped like the prompt (a message list for conversational prompts)."""
    gold = gold_answer(row.get("answer")) if "answer" in row else None
    text = f"<answer>{gold}</answer>" if gold is not None else ""
    prompt = row.get("prompt")
    if isinstance(prompt, list) and prompt and isinstance(prompt[0], dict):
        return [{"role": "assistant", "content": text}]
    return text


def check_reward_on_sample(
    fn: RewardFunc,
    name: str,
    sample_rows: Sequence[Mapping[str, Any]],
    *,
    completions: Sequence[Any] | None = None,
    timeout_s: float | None = 60.0,
) -> list[float | None]:
    """Pre-flight one reward against a few dataset rows; raises if it would fail in training.

    Checks that the reward accepts TRL's keyword arguments, that the rows have the columns it
    needs (:func:`required_columns`), and that a call exactly like TRL's (``prompts=``,
    ``completions=``, ``completion_ids=``, every other column as a list, ``trainer_state``,
    ``log_extra``, ``log_metric``) returns valid rewards through :func:`checked_reward`.

    Args:
        fn: the reward (bare or checked).
        name: its name in the recipe.
        sample_rows: a few dataset rows (dicts).
        completions: completions to score, one per row; by default each row's reference answer
            inside ``<answer>`` tags (or an empty completion), shaped like its prompt.
        timeout_s: per-call timeout.

    Returns:
        The rewards of the sample completions (``[]`` for no rows), e.g. to warn when a reward
        gives the dataset's own reference answers no credit.

    Raises:
        RewardError: naming the reward and every problem found, saying what to fix.

    Example:
        >>> from ladder.rewards.answers import exact_match
        >>> check_reward_on_sample(exact_match, "exact_match", [{"prompt": "1+1?", "answer": "#### 2"}])
        [1.0]
        >>> check_reward_on_sample(exact_match, "exact_match", [{"prompt": "1+1?", "solution": "2"}])
        Traceback (most recent call last):
        ...
        ladder.errors.RewardError: reward 'exact_match' needs dataset column 'answer', which the dataset lacks (it has: prompt, solution). Rename the column in the data, or choose another reward.
    """
    problems = _signature_problems(fn, name)
    rows = list(sample_rows)
    if rows:
        present = set().union(*(row.keys() for row in rows))
        missing = [c for c in required_columns(fn) if c not in present]
        if missing:
            columns = ", ".join(repr(c) for c in missing)
            problems.append(
                f"reward {name!r} needs dataset column{'s' if len(missing) > 1 else ''} {columns}, "
                f"which the dataset lacks (it has: {', '.join(sorted(present))}). Rename the column "
                f"in the data, or choose another reward."
            )
    if problems:
        raise RewardError(" Also: ".join(problems))
    if not rows:
        return []
    if completions is None:
        completions = [_sample_completion(row) for row in rows]
    if len(completions) != len(rows):
        raise ValueError(f"got {len(completions)} completions for {len(rows)} rows")
    # Exactly the keyword arguments GRPOTrainer._calculate_rewards builds (trl 1.16).
    # A column named like one of TRL's own arguments ("completions", "trainer_state"...) would
    # collide with it in TRL too; it is left out here, and the GRPO stage reports the clash.
    keys = [k for k in rows[0] if k not in ("prompt", "completion", "completion_ids") and k not in TRL_REWARD_KWARGS]
    kwargs: dict[str, Any] = {k: [row.get(k) for row in rows] for k in keys}
    kwargs["trainer_state"] = None
    kwargs["log_extra"] = lambda column, values: None
    kwargs["log_metric"] = lambda metric, value: None
    prompts = [row.get("prompt") for row in rows]
    completion_ids = [[0] * max(1, len(completion_text(c))) for c in completions]
    checked = checked_reward(fn, name, timeout_s)
    try:
        return checked(prompts=prompts, completions=completions, completion_ids=completion_ids, **kwargs)
    except RewardError as exc:
        raise RewardError(f"{exc} (pre-flight, on {len(rows)} sample row{'s' if len(rows) != 1 else ''})") from exc
