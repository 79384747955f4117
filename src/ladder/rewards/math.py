"""``math_verify``: MATH-style answers compared as mathematics, with Hugging Face's ``math-verify``.

``exact_match`` compares numbers and normalised text, so ``\\dfrac{\\sqrt3}{2}`` against
``\\frac{\\sqrt3}{2}``, ``(1,2)`` against ``(1, 2)`` or ``\\pi/2`` against ``\\frac{\\pi}{2}`` score 0
although they are the same answer. ``math_verify`` parses both sides (LaTeX or plain
expressions) into SymPy and compares them symbolically and numerically.

``math-verify`` limits its own parsing and comparison time with ``signal.alarm``, which raises
outside the main thread, and ladder calls every reward in a worker thread with its own timeout
(``reward_timeout_s``). So this reward turns math-verify's timeouts off
(``parsing_timeout=None``, ``timeout_seconds=None``: no signal is ever set) and relies on ladder's.
The package is optional: ``pip install 'ladder[math]'``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from ladder.errors import MissingDependencyError
from ladder.rewards._common import extract_answer_text, gold_answer, score_rows

__all__ = ["math_verify", "math_answers_match"]


class _OwnTimeoutNotice(logging.Filter):
    """Drops math-verify's "Timeout is disabled" warning: ladder's reward runtime times the call."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Timeout is disabled")


_NOTICE = _OwnTimeoutNotice()


def _math_verify() -> Any:
    try:
        import math_verify
    except ImportError as exc:
        raise MissingDependencyError("math-verify (for the math_verify reward)", extra="math") from exc
    for name in ("math_verify.parser", "math_verify.grader"):
        log = logging.getLogger(name)
        if _NOTICE not in log.filters:
            log.addFilter(_NOTICE)
    return math_verify


def _delimited(text: str) -> str:
    """``text`` as math-verify's LaTeX extraction finds it: inside ``$...$`` unless already marked."""
    stripped = text.strip()
    if "$" in stripped or "\\boxed" in stripped or "\\(" in stripped or "\\[" in stripped:
        return stripped
    return f"${stripped}$"


def _parsed(mv: Any, text: str) -> list[Any]:
    """math-verify's parse of an answer: as LaTeX (delimited), else as a plain expression."""
    found = mv.parse(_delimited(text), parsing_timeout=None)
    if not found:
        found = mv.parse(text, parsing_timeout=None)
    return list(found)


def math_answers_match(predicted: str | None, gold: str) -> bool:
    """Whether a predicted answer equals a reference answer as mathematics (math-verify).

    Example:
        >>> math_answers_match(r"\\dfrac{\\sqrt3}{2}", r"\\frac{\\sqrt3}{2}"), math_answers_match("(1,2)", "(1, 2)")
        (True, True)
        >>> math_answers_match(r"\\pi/2", r"\\frac{\\pi}{2}"), math_answers_match("0.5", "1/3")
        (True, False)

    Raises:
        MissingDependencyError: math-verify is not installed.
    """
    mv = _math_verify()
    if predicted is None or not predicted.strip():
        return False
    golds = _parsed(mv, gold)
    answers = _parsed(mv, predicted)
    return bool(golds and answers and mv.verify(golds, answers, timeout_seconds=None))


def math_verify(completions: Sequence[Any], answer: Sequence[Any], **kwargs: Any) -> list[float | None]:
    """1.0 when the completion's final answer equals the row's ``answer`` as mathematics, else 0.0.

    The final answer is the last ``<answer>...</answer>`` block, else the last ``\\boxed{}``, else
    the text after ``####`` (as for ``exact_match``); a completion that marks none is parsed
    whole (math-verify finds ``$...$`` and plain expressions in prose), else as one LaTeX answer. Both sides are parsed by
    math-verify as LaTeX or plain expressions and compared symbolically and numerically
    (``\\dfrac{\\sqrt3}{2}`` = ``\\frac{\\sqrt3}{2}``, ``(1,2)`` = ``(1, 2)``, ``\\pi/2`` =
    ``\\frac{\\pi}{2}``, ``0.5`` = ``\\frac12``).

    Args:
        completions: the completions, strings or conversational message lists.
        answer: the ``answer`` column, one per completion: LaTeX or plain (``"\\frac{1}{2}"``,
            ``"(1, 2)"``, GSM8K's ``"... #### 42"``), or a list of accepted answers.
        **kwargs: other columns and TRL's extras, ignored.

    Returns:
        One float per completion; ``None`` where the reference answer is missing or math-verify
        cannot parse it (TRL then skips the sample for this reward).

    Raises:
        MissingDependencyError: math-verify is not installed (``pip install 'ladder[math]'``).

    Example:
        >>> math_verify(
        ...     [r"<answer>\\dfrac{\\sqrt3}{2}</answer>", "(1,2)", r"so \\boxed{\\pi/2}", "<answer>0.5</answer>", "3"],
        ...     answer=[r"\\frac{\\sqrt3}{2}", "(1, 2)", r"\\frac{\\pi}{2}", r"\\frac12", "#### 4"],
        ... )
        [1.0, 1.0, 1.0, 1.0, 0.0]
    """
    mv = _math_verify()

    def golds_of(gold_value: Any) -> list[list[Any]] | None:
        values = gold_value if isinstance(gold_value, (list, tuple)) else [gold_value]
        return [parsed for parsed in (_parsed(mv, g) for g in map(gold_answer, values) if g) if parsed] or None

    def score(text: str, golds: list[list[Any]]) -> float:
        marked = extract_answer_text(text)
        if marked is not None:
            answers = _parsed(mv, marked)
        else:  # prose with $...$ or plain expressions in it, else a bare LaTeX answer
            answers = list(mv.parse(text, parsing_timeout=None)) or _parsed(mv, text)
        right = bool(answers) and any(mv.verify(g, answers, timeout_seconds=None) for g in golds)
        return 1.0 if right else 0.0

    return score_rows(completions, answer, golds_of, score)
