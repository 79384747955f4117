"""Answer-checking rewards: ``exact_match`` (numbers and short text) and ``multiple_choice``.

Both follow TRL's reward signature, ``f(completions, **columns) -> list[float | None]``, and
return ``None`` for a row whose reference answer is missing, which TRL reads as "no reward
from this function for this sample" rather than as a wrong answer.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

from ladder.rewards._common import (
    extract_answer_text,
    gold_answer,
    last_number,
    last_tag_block,
    normalize_text,
    parse_number,
    score_rows,
    strip_answer_prefix,
)

__all__ = ["answers_match", "exact_match", "extract_choice", "extract_final_answer", "multiple_choice"]


def extract_final_answer(text: str) -> str | None:
    """The final answer a completion commits to, as text, or ``None``.

    In order: the last ``<answer>...</answer>`` block; else the last ``\\boxed{...}``; else
    what follows the last ``####``; else the last number in the text; else the last non-empty
    line with any "The answer is" prefix removed. An answer block that is present but empty
    yields ``""`` (the model used the tags and gave nothing), never a number found elsewhere.

    Example:
        >>> extract_final_answer("6*7 = 42. <answer>42</answer>")
        '42'
        >>> extract_final_answer("6*7 is 42, so 42 it is.")
        '42'
        >>> extract_final_answer("Thinking...\\nThe answer is Paris.")
        'Paris.'
    """
    marked = extract_answer_text(text)
    if marked is not None:
        return marked
    number = last_number(text)
    if number is not None:
        return _format_number(number)
    return _last_line(text)


def _last_line(text: str) -> str | None:
    lines = [line for line in text.splitlines() if line.strip()]
    return strip_answer_prefix(lines[-1]).strip() if lines else None


def _format_number(value: Fraction) -> str:
    return str(value.numerator) if value.denominator == 1 else str(value)


def answers_match(predicted: str | None, gold: str) -> bool:
    """Whether a predicted answer equals a reference answer.

    If ``gold`` reads as a number (:func:`~ladder.rewards._common.parse_number`), the
    prediction must be that number: the whole predicted text if it is one number, else the
    last number inside it (so ``"42 apples"`` matches ``42``). Otherwise both are compared as
    normalised text (case, whitespace, markdown emphasis, quotes and a trailing period ignored).

    Example:
        >>> answers_match("42.0", "42"), answers_match("$1,000", "1000"), answers_match("3/4", "0.75")
        (True, True, True)
        >>> answers_match("-7", "7"), answers_match("Paris.", "paris"), answers_match(None, "1")
        (False, True, False)
    """
    if predicted is None:
        return False
    gold_number = parse_number(gold)
    if gold_number is not None:
        predicted_number = parse_number(predicted)
        if predicted_number is None:
            predicted_number = last_number(predicted)
        return predicted_number is not None and predicted_number == gold_number
    predicted_text = normalize_text(strip_answer_prefix(predicted))
    return bool(predicted_text) and predicted_text == normalize_text(gold)


def _golds(value: Any) -> list[str] | None:
    """Reference answers of one row: a list of accepted answers, or one."""
    values = value if isinstance(value, (list, tuple)) else [value]
    golds = [g for g in (gold_answer(v) for v in values) if g is not None]
    return golds or None


def exact_match(completions: Sequence[Any], answer: Sequence[Any], **kwargs: Any) -> list[float | None]:
    """1.0 when the completion's final answer equals the row's ``answer``, else 0.0.

    The final answer is the last ``<answer>...</answer>`` block, else the last ``\\boxed{}``,
    else the text after ``####``, else the last number in the text (see
    :func:`extract_final_answer`). Tags win: ``<answer>41</answer> no wait, 42`` scores 0 against
    42. Numbers are compared exactly as fractions after normalisation (``42.0`` = ``42``,
    ``1,000`` = ``1000``, ``$5`` = ``5``, ``5%`` = ``5``, ``3/4`` = ``0.75``, ``-3`` != ``3``);
    anything else as normalised text (see :func:`answers_match`).

    Args:
        completions: the completions, strings or conversational message lists.
        answer: the ``answer`` column, one per completion: GSM8K style (``"... #### 42"``) or
            plain (``"42"``, ``"Paris"``, ``42``), or a list of accepted answers.
        **kwargs: other columns and TRL's extras (``prompts``, ``trainer_state``...), ignored.

    Returns:
        One float per completion; ``None`` where the reference answer is missing or blank.

    Example:
        >>> exact_match(
        ...     ["<answer>72</answer>", "I get 72.0", [{"role": "assistant", "content": "71"}], "x"],
        ...     answer=["#### 72", "72", "72", None],
        ... )
        [1.0, 1.0, 0.0, None]
    """
    return score_rows(completions, answer, _golds, _exact_score)


def _exact_score(text: str, golds: list[str]) -> float:
    predicted = extract_answer_text(text)
    if predicted is None:
        if any(parse_number(g) is not None for g in golds):
            predicted = _number_or_none(last_number(text))
        else:
            predicted = _last_line(text)
    return 1.0 if any(answers_match(predicted, g) for g in golds) else 0.0


def _number_or_none(value: Fraction | None) -> str | None:
    return None if value is None else _format_number(value)


# --------------------------------------------------------------------------------------------
# multiple choice

_LETTERS = "ABCDEFGHIJ"
# The whole answer is a letter: "B", "(B)", "B)", "B.", "B: Paris", "**B**".
_CHOICE_ALONE = re.compile(r"^\s*[\(\[]?([A-J])[\)\]]?\s*(?:$|[.:)\]]\s*|[\s]*[-\u2013]\s+)", re.DOTALL)
# "the answer is (B)", "Answer: B", "correct option is B" anywhere in free text.
_CHOICE_PHRASE = re.compile(
    r"(?i:answer|correct\s+(?:option|choice))\s*(?i:is|=)?\s*:?\s*(?i:option|choice)?\s*:?\s*"
    r"[\(\[]?([A-J])\b[\)\]]?"
)
_CHOICE_WHOLE = re.compile(r"\s*[\(\[]?([A-J])[\)\]]?\.?\s*")


def extract_choice(text: str) -> str | None:
    """The option letter (A-J) a completion commits to, or ``None``.

    Looks inside the last ``<answer>`` block first (``"B"``, ``"(B)"``, ``"B. Paris"``,
    ``"The answer is B"``), then whether the whole completion is a letter (``"B"``, ``"(B)."``),
    then for the last "answer is (B)" / "Answer: B" / "correct option is B" phrase in the text.
    A block listing several letters (``"A B C D"``, ``"A/B"``) commits to none. Letters must be
    capitals outside the tags, so "the answer is a cat" is not option A.

    Example:
        >>> extract_choice("<answer>(C)</answer>"), extract_choice("So the answer is (B).")
        ('C', 'B')
        >>> extract_choice("<answer>A B C D</answer>") is None
        True
    """
    text = text.replace("**", "")
    block = last_tag_block(text)
    if block is not None:
        alone = _CHOICE_ALONE.match(block.strip().upper() if len(block.strip()) == 1 else block)
        if alone:
            return alone.group(1)
        phrases = _CHOICE_PHRASE.findall(block)
        return phrases[-1] if phrases else None
    whole = _CHOICE_WHOLE.fullmatch(text)
    if whole:
        return whole.group(1)
    phrases = _CHOICE_PHRASE.findall(text)
    return phrases[-1] if phrases else None


def _gold_letter(value: Any) -> str | None:
    """A row's correct option: a letter (``"B"``, ``"(b)"``) or a 0-based index (``1`` is B)."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return _LETTERS[value] if 0 <= value < len(_LETTERS) else None
    text = str(gold_answer(value) or "").strip().strip("()[].").strip().upper()
    return text if len(text) == 1 and text in _LETTERS else None


def multiple_choice(completions: Sequence[Any], answer: Sequence[Any], **kwargs: Any) -> list[float | None]:
    """1.0 when the completion picks the row's correct option letter, else 0.0.

    The choice is read by :func:`extract_choice`. The ``answer`` column holds the correct
    letter (``"B"``, ``"(b)"``) or, as in MMLU, a 0-based integer index (``1`` means B).

    Args:
        completions: the completions, strings or conversational message lists.
        answer: the correct option per completion.
        **kwargs: other columns and TRL's extras, ignored.

    Returns:
        One float per completion; ``None`` where the correct option is missing or not a letter
        A-J or an index 0-9.

    Example:
        >>> multiple_choice(
        ...     ["<answer>B</answer>", "The answer is (C).", "<answer>A, B</answer>", "B", "x"],
        ...     answer=["B", "b", "A", 1, None],
        ... )
        [1.0, 0.0, 0.0, 1.0, None]
    """
    return score_rows(completions, answer, _gold_letter, _choice_score)


def _choice_score(text: str, gold: str) -> float:
    return 1.0 if extract_choice(text) == gold else 0.0
