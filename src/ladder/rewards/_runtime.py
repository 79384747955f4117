"""Running rewards safely: name resolution, pre-flight checks, worst-case batch times.

:func:`resolve_rewards` turns a recipe's ``rewards:`` entry into the functions and weights
``trl.GRPOTrainer`` takes (``reward_funcs=``, ``GRPOConfig(reward_weights=...)``), each wrapped
by :func:`~ladder.rewards._checked.checked_reward` so a misbehaving reward fails loudly, naming
itself and the sample, instead of silently training on garbage. :func:`required_columns`,
:func:`check_reward_on_sample` and :func:`reward_time_problems` serve ``Pipeline.validate()``.
"""

from __future__ import annotations

import inspect
import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from ladder.errors import ConfigError, RewardError
from ladder.rewards._checked import (
    DEFAULT_TIMEOUT_S,
    TRL_REWARD_KWARGS,
    CheckedReward,
    RewardFunc,
    checked_reward,
    reward_name,
    unwrap_reward,
)
from ladder.rewards._common import completion_text, gold_answer

__all__ = [
    "ResolvedRewards",
    "check_reward_on_sample",
    "required_columns",
    "resolve_rewards",
    "reward_time_problems",
    "worst_case_batch_seconds",
]


class ResolvedRewards(NamedTuple):
    """Reward functions and their weights, in the same order. Unpacks as ``funcs, weights``."""

    functions: list[RewardFunc]
    weights: list[float]


def worst_case_batch_seconds(reward: Any, batch_size: int) -> float | None:
    """The longest one call of ``reward`` on ``batch_size`` completions can take, if it says.

    A reward that runs code declares it with a ``worst_case_seconds(batch_size)`` method (as
    :class:`~ladder.rewards.code.PythonTests` and the registered ``python_tests`` do); checked
    wrappers and ``functools.partial`` are seen through. ``None`` for a reward that does not.

    Example:
        >>> from ladder.rewards import make_python_tests, exact_match
        >>> worst_case_batch_seconds(make_python_tests(timeout_s=10, workers=2, batch_timeout_s=None), 16)
        84.0
        >>> worst_case_batch_seconds(exact_match, 16) is None
        True
    """
    for fn in unwrap_reward(reward):
        method = getattr(fn, "worst_case_seconds", None)
        if callable(method):
            return float(method(batch_size))
    return None


def reward_time_problems(rewards: Sequence[Any], batch_size: int, timeout_s: float | None) -> list[str]:
    """Pre-flight: every reward whose worst case on one batch exceeds the stage's time limit.

    Args:
        rewards: the stage's reward functions (bare or checked).
        batch_size: completions per reward call (TRL's generation batch on one process).
        timeout_s: the stage's ``reward_timeout_s`` (``None``: no limit, no problem).

    Example:
        >>> from ladder.rewards import make_python_tests
        >>> slow = make_python_tests(timeout_s=10, workers=2, batch_timeout_s=None)
        >>> print(reward_time_problems([slow], 16, 60.0)[0])  # doctest: +ELLIPSIS
        reward 'python_tests' can take up to 84 s on a batch of 16 completions (...), more than reward_timeout_s=60, ...
    """
    problems = []
    for fn in rewards:
        worst = worst_case_batch_seconds(fn, batch_size)
        if worst is None or timeout_s is None or worst <= timeout_s:
            continue
        problems.append(
            f"reward {reward_name(fn)!r} can take up to {worst:g} s on a batch of {batch_size} completions "
            f"(every program hanging until its timeout), more than reward_timeout_s={timeout_s:g}, so one "
            f"slow batch would fail the stage; raise reward_timeout_s to {math.ceil(worst)} or more, or give "
            f"the reward a batch_timeout_s below {timeout_s:g} (make_python_tests(batch_timeout_s=...)), a "
            f"shorter timeout_s or more workers"
        )
    return problems


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
