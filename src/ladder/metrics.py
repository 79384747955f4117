"""Behaviour metrics of generated answers: small pure functions.

These say *how* a model answers, whatever it answers: does it end its turn by itself, how long
are its answers, does it loop. Across the rungs of the ladder they show, for instance, a base
model that rambles to the token limit learning to stop after SFT.

Every function accepts anything with the attributes of :class:`ladder.generation.Generation`
(``text``, ``num_tokens``, ``stopped``). An empty list gives ``0.0`` (JSON has no NaN).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

__all__ = ["behaviour", "mean_answer_tokens", "repetition", "stop_rate"]


class _Answer(Protocol):
    @property
    def text(self) -> str: ...
    @property
    def num_tokens(self) -> int: ...
    @property
    def stopped(self) -> bool: ...


def stop_rate(gens: Sequence[_Answer]) -> float:
    """Share of answers that ended with an end-of-turn/EOS token (not at the token limit).

    >>> from ladder.generation import Generation
    >>> stop_rate([Generation("a", 1, True, "stop"), Generation("b", 9, False, "length")])
    0.5
    """
    return _mean([1.0 if g.stopped else 0.0 for g in gens])


def mean_answer_tokens(gens: Sequence[_Answer]) -> float:
    """Mean number of generated tokens per answer (end-of-turn token not counted).

    >>> from ladder.generation import Generation
    >>> mean_answer_tokens([Generation("a", 2, True, "stop"), Generation("b", 5, False, "length")])
    3.5
    """
    return _mean([g.num_tokens for g in gens])


def repetition(text: str, n: int = 3) -> float:
    """Share of repeated word n-grams in ``text``: ``(total - unique) / total``.

    Words are the whitespace-separated pieces of the lower-cased text (punctuation stays
    attached). ``total`` counts every word n-gram (``len(words) - n + 1``), ``unique`` the
    distinct ones, so the value is 0 for text without a repeated n-gram and approaches 1 for
    text that loops on one phrase. Texts with fewer than ``n`` words give 0.

    >>> repetition("the cat sat on the mat")
    0.0
    >>> repetition("go go go go go")  # 3 trigrams, 1 distinct
    0.6666666666666666
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    words = text.lower().split()
    if len(words) < n:
        return 0.0
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    return (len(grams) - len(set(grams))) / len(grams)


def behaviour(gens: Sequence[_Answer]) -> dict[str, float]:
    """``mean_answer_tokens``, ``stop_rate`` and ``repetition`` (mean over answers) of ``gens``."""
    return {
        "mean_answer_tokens": mean_answer_tokens(gens),
        "stop_rate": stop_rate(gens),
        "repetition": _mean([repetition(g.text) for g in gens]),
    }


def _mean(values: Sequence[float]) -> float:
    """The mean, ``0.0`` for no values (JSON has no NaN)."""
    return sum(values) / len(values) if values else 0.0
