"""Text rewards: ``length_penalty``, ``regex_match`` and ``contains``, with factories.

Rewards are called with a fixed signature, so a configured variant is built by a factory
(``make_length_penalty(target=400)``) and handed to the recipe or registry as a new reward.
Each factory is a small callable class under a second name (``make_length_penalty`` is
:class:`LengthPenalty`), not a closure, so its rewards pickle (TRL may forward reward functions
to a spawned worker) and carry a ``__name__`` TRL logs.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Sequence
from typing import Any

from ladder.rewards._common import completion_text, gold_answer, score_rows

__all__ = [
    "ContainsReward",
    "LengthPenalty",
    "RegexReward",
    "contains",
    "length_penalty",
    "make_contains_reward",
    "make_length_penalty",
    "make_regex_reward",
    "regex_match",
]


# --------------------------------------------------------------------------------------------
# length


class LengthPenalty:
    """A length penalty with your own budget (a soft overlong punishment, as in DAPO): 0 up to
    ``target`` units, growing linearly to ``-max_penalty`` over ``ramp`` units beyond it, and
    capped there. Also named :data:`make_length_penalty`.

    Args:
        target: completions up to this many units get 0.0.
        ramp: over this many units past ``target`` the penalty grows linearly to
            ``-max_penalty``; 0 makes it a step.
        max_penalty: the largest penalty (a positive number; the reward is its negative).
        unit: ``"chars"`` (of the completion text) or ``"tokens"`` (of TRL's
            ``completion_ids``, which the trainer passes).
        name: the reward's ``__name__``, what TRL logs.

    Example:
        >>> short = make_length_penalty(target=10, ramp=10, max_penalty=0.5)
        >>> short(["x" * 5, "x" * 15, "x" * 100])
        [0.0, -0.25, -0.5]
        >>> make_length_penalty(2, 0, unit="tokens")(["a", "b"], completion_ids=[[1, 2], [1, 2, 3]])
        [0.0, -1.0]
    """

    def __init__(
        self,
        target: int = 1000,
        ramp: int = 1000,
        *,
        max_penalty: float = 1.0,
        unit: str = "chars",
        name: str = "length_penalty",
    ) -> None:
        if target < 0 or ramp < 0:
            raise ValueError(f"target and ramp must be >= 0, got target={target}, ramp={ramp}")
        if not math.isfinite(max_penalty) or max_penalty < 0:
            raise ValueError(f"max_penalty must be a finite number >= 0, got {max_penalty}")
        if unit not in ("chars", "tokens"):
            raise ValueError(f"unit must be 'chars' or 'tokens', got {unit!r}")
        self.target = target
        self.ramp = ramp
        self.max_penalty = max_penalty
        self.unit = unit
        self.__name__ = name

    def score(self, length: int) -> float:
        """The reward for a completion of ``length`` units."""
        over = length - self.target
        if over <= 0:
            return 0.0
        if self.ramp == 0:
            return -self.max_penalty
        return -self.max_penalty * min(1.0, over / self.ramp)

    def __call__(
        self, completions: Sequence[Any], completion_ids: Sequence[Sequence[int]] | None = None, **kwargs: Any
    ) -> list[float]:
        if self.unit == "tokens":
            if completion_ids is None:
                raise ValueError(
                    f"{self.__name__} counts tokens and needs TRL's completion_ids argument; "
                    f"call it from GRPOTrainer or pass completion_ids=..."
                )
            return [self.score(len(ids)) for ids in completion_ids]
        return [self.score(len(completion_text(c))) for c in completions]

    def __repr__(self) -> str:
        return (
            f"make_length_penalty(target={self.target}, ramp={self.ramp}, "
            f"max_penalty={self.max_penalty}, unit={self.unit!r})"
        )


#: A length penalty with your own budget: :class:`LengthPenalty`.
make_length_penalty = LengthPenalty


_DEFAULT_LENGTH = LengthPenalty()


def length_penalty(completions: Sequence[Any], **kwargs: Any) -> list[float]:
    """0.0 for completions up to 1000 characters, falling linearly to -1.0 at 2000 and beyond.

    Use it beside a correctness reward to discourage rambling; it never rewards being short.
    Build other budgets with :data:`make_length_penalty`.

    Example:
        >>> length_penalty(["ok", "x" * 1500, "x" * 5000])
        [0.0, -0.5, -1.0]
    """
    return _DEFAULT_LENGTH(completions, **kwargs)


# --------------------------------------------------------------------------------------------
# regex


@functools.lru_cache(maxsize=256)
def _compile(pattern: str, flags: int) -> re.Pattern[str]:
    return re.compile(pattern, flags)


def _search(pattern: str | re.Pattern[str], text: str, *, flags: int = 0, fullmatch: bool = False) -> bool:
    try:
        compiled = pattern if isinstance(pattern, re.Pattern) else _compile(pattern, flags)
    except re.error as exc:
        raise ValueError(f"invalid regular expression {pattern!r}: {exc}. Fix the pattern.") from exc
    found = compiled.fullmatch(text.strip()) if fullmatch else compiled.search(text)
    return found is not None


class RegexReward:
    """A reward that is 1.0 where ``pattern`` matches the completion text, else 0.0. Also named
    :data:`make_regex_reward`.

    Args:
        pattern: a Python regular expression (compiled now, so a bad one fails at once).
        flags: ``re`` flags, e.g. ``re.IGNORECASE | re.DOTALL``.
        fullmatch: require the whole (stripped) completion to match instead of searching in it.
        name: the reward's ``__name__``, what TRL logs.

    Example:
        >>> json_only = make_regex_reward(r"\\{.*\\}", flags=re.DOTALL, fullmatch=True, name="json_only")
        >>> json_only(['{"a": 1}', 'Sure! {"a": 1}'])
        [1.0, 0.0]
    """

    def __init__(self, pattern: str, *, flags: int = 0, fullmatch: bool = False, name: str = "regex_reward") -> None:
        try:
            self.pattern = re.compile(pattern, flags)
        except re.error as exc:
            raise ValueError(f"invalid regular expression {pattern!r}: {exc}. Fix the pattern.") from exc
        self.fullmatch = fullmatch
        self.__name__ = name

    def __call__(self, completions: Sequence[Any], **kwargs: Any) -> list[float]:
        return [
            1.0 if _search(self.pattern, completion_text(c), fullmatch=self.fullmatch) else 0.0 for c in completions
        ]

    def __repr__(self) -> str:
        return f"make_regex_reward({self.pattern.pattern!r}, fullmatch={self.fullmatch})"


#: A reward for one fixed regular expression: :class:`RegexReward`.
make_regex_reward = RegexReward


def regex_match(completions: Sequence[Any], pattern: Sequence[str | None], **kwargs: Any) -> list[float | None]:
    """1.0 where the row's ``pattern`` column (a Python regex) is found in the completion, else 0.0.

    Uses ``re.search`` over the whole completion text; write ``(?s)``/``(?i)`` inline for flags
    and anchor with ``^...$`` to require a full match. A row without a pattern gets ``None``.
    An invalid pattern raises ``ValueError`` naming it.

    Example:
        >>> regex_match(["Date: 2024-05-01", "tomorrow", "x"], pattern=[r"\\d{4}-\\d\\d-\\d\\d", r"\\d", None])
        [1.0, 0.0, None]
    """
    return score_rows(completions, pattern, lambda p: None if p is None or p == "" else str(p),
                      lambda text, p: 1.0 if _search(p, text) else 0.0)


# --------------------------------------------------------------------------------------------
# contains

_MODES = ("all", "any", "fraction")


def _found(keyword: str, text: str, *, case_sensitive: bool, whole_word: bool) -> bool:
    flags = 0 if case_sensitive else re.IGNORECASE
    escaped = re.escape(keyword.strip())
    if whole_word:
        # Boundaries only where the keyword itself starts/ends with a word character, so
        # "4" does not match inside "14" and "C++" still matches.
        escaped = (r"(?<!\w)" if re.match(r"\w", keyword.strip()) else "") + escaped
        escaped += r"(?!\w)" if re.search(r"\w$", keyword.strip()) else ""
    return _compile(escaped, flags).search(text) is not None


def _keywords(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value] if value.strip() else []
    return [str(v) for v in value if v is not None and str(v).strip()]


class ContainsReward:
    """A keyword reward with fixed keywords or another scoring mode: scores how many of a row's
    (or a fixed list of) keywords a completion contains. Also named :data:`make_contains_reward`.

    Args:
        keywords: fixed keywords for every row; ``None`` reads the ``keywords`` (else ``answer``)
            column per row.
        mode: ``"all"`` (1.0 iff every keyword occurs), ``"any"`` (1.0 iff one does) or
            ``"fraction"`` (the share of keywords that occur: a denser signal).
        case_sensitive: match case exactly.
        whole_word: a keyword that starts/ends with a letter or digit must not be glued to
            another one, so ``"4"`` is not found in ``"14"`` and ``"cat"`` not in ``"concat"``;
            ``False`` matches plain substrings.
        name: the reward's ``__name__``, what TRL logs.

    Example:
        >>> polite = make_contains_reward(["please", "thank you"], mode="fraction", name="polite")
        >>> polite(["Please sit. Thank you!", "please", "go"])
        [1.0, 0.5, 0.0]
    """

    def __init__(
        self,
        keywords: Sequence[str] | None = None,
        *,
        mode: str = "all",
        case_sensitive: bool = False,
        whole_word: bool = True,
        name: str = "contains",
    ) -> None:
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {', '.join(_MODES)}, got {mode!r}")
        self.keywords = _keywords(keywords) if keywords is not None else None
        self.mode = mode
        self.case_sensitive = case_sensitive
        self.whole_word = whole_word
        self.__name__ = name

    def score(self, text: str, keywords: list[str]) -> float:
        """The reward for one completion given its keywords (non-empty)."""
        hits = [_found(k, text, case_sensitive=self.case_sensitive, whole_word=self.whole_word) for k in keywords]
        if self.mode == "all":
            return 1.0 if all(hits) else 0.0
        if self.mode == "any":
            return 1.0 if any(hits) else 0.0
        return sum(hits) / len(hits)

    def __call__(
        self,
        completions: Sequence[Any],
        keywords: Sequence[Any] | None = None,
        answer: Sequence[Any] | None = None,
        **kwargs: Any,
    ) -> list[float | None]:
        rewards: list[float | None] = []
        for i, completion in enumerate(completions):
            if self.keywords is not None:
                row = self.keywords
            elif keywords is not None:
                row = _keywords(keywords[i])
            elif answer is not None:
                gold = gold_answer(answer[i])
                row = [gold] if gold is not None else []
            else:
                raise ValueError(
                    f"{self.__name__} needs keywords: give the dataset a 'keywords' (or 'answer') "
                    f"column, or build the reward with make_contains_reward(keywords=[...])"
                )
            rewards.append(self.score(completion_text(completion), row) if row else None)
        return rewards

    def __repr__(self) -> str:
        return (
            f"make_contains_reward(keywords={self.keywords!r}, mode={self.mode!r}, "
            f"case_sensitive={self.case_sensitive}, whole_word={self.whole_word})"
        )


#: A keyword reward with fixed keywords or another scoring mode: :class:`ContainsReward`.
make_contains_reward = ContainsReward


_DEFAULT_CONTAINS = ContainsReward()


def contains(
    completions: Sequence[Any],
    keywords: Sequence[Any] | None = None,
    answer: Sequence[Any] | None = None,
    **kwargs: Any,
) -> list[float | None]:
    """1.0 iff the completion contains every one of the row's keywords, else 0.0.

    Keywords come from the ``keywords`` column (a string or a list of strings per row), or,
    when the dataset has none, from the ``answer`` column (GSM8K ``#### N`` tails are used).
    Matching ignores case and respects word boundaries (``"4"`` is not in ``"14"``). A row with
    no keywords gets ``None``. For numeric answers prefer ``exact_match``: ``contains`` gives
    credit for the number appearing anywhere, including in a wrong working.

    Example:
        >>> contains(["Paris is the capital", "I like paris", "Lyon"],
        ...          keywords=[["Paris", "capital"], "Paris", "Paris"])
        [1.0, 1.0, 0.0]
        >>> contains(["it is 14", "it is 4"], answer=["#### 4", "#### 4"])
        [0.0, 1.0]
    """
    return _DEFAULT_CONTAINS(completions, keywords=keywords, answer=answer, **kwargs)
