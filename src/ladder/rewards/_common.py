"""Helpers shared by the built-in rewards: completion text, tag extraction, numbers.

Pure Python and cheap to import; nothing here knows about TRL beyond the shapes of its
arguments.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence
from fractions import Fraction
from typing import Any, TypeVar

__all__ = [
    "completion_text",
    "completion_texts",
    "extract_answer_text",
    "gold_answer",
    "last_number",
    "last_tag_block",
    "normalize_text",
    "parse_number",
    "score_rows",
]

T = TypeVar("T")

# --------------------------------------------------------------------------------------------
# completions


def completion_text(completion: Any) -> str:
    """The text of one completion, in either of the shapes TRL passes.

    TRL passes a plain string for a standard dataset and a list of messages for a
    conversational one (usually one assistant message; more after tool calls). Only assistant
    messages (or messages without a role) count: tool results are not the model's words.
    Content may be a string or a list of ``{"type": "text", "text": ...}`` blocks.

    Args:
        completion: a string, a message dict, or a list of message dicts.

    Returns:
        The assistant text, messages joined by newlines.

    Raises:
        TypeError: the completion has neither shape.

    Example:
        >>> completion_text("<answer>4</answer>")
        '<answer>4</answer>'
        >>> completion_text([{"role": "assistant", "content": "hi"}])
        'hi'
        >>> completion_text([{"role": "assistant", "content": [{"type": "text", "text": "a"}]},
        ...                  {"role": "tool", "content": "ignored"}])
        'a'
    """
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        messages: Sequence[Any] = [completion]
    elif isinstance(completion, (list, tuple)):
        messages = completion
    else:
        raise TypeError(f"a completion must be a string or a list of messages, got {type(completion).__name__}")
    parts: list[str] = []
    for message in messages:
        if isinstance(message, str):
            parts.append(message)
            continue
        if not isinstance(message, dict):
            raise TypeError(f"a conversational completion must hold message dicts, got {type(message).__name__}")
        if message.get("role", "assistant") != "assistant":
            continue
        content = message.get("content")
        if content is None:  # e.g. an assistant turn that only calls a tool
            continue
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            for block in content:
                if isinstance(block, str):
                    parts.append(block)
                elif isinstance(block, dict) and block.get("type", "text") == "text":
                    parts.append(str(block.get("text", "")))
        else:
            parts.append(str(content))
    return "\n".join(parts)


def completion_texts(completions: Sequence[Any]) -> list[str]:
    """:func:`completion_text` over a batch."""
    return [completion_text(c) for c in completions]


def score_rows(
    completions: Sequence[Any],
    column: Sequence[Any],
    reference: Callable[[Any], T | None],
    score: Callable[[str, T], float],
) -> list[float | None]:
    """``score(text, reference(value))`` for each completion and its row's ``column`` value.

    A row whose reference is ``None`` (no answer, no pattern) gets ``None``: TRL then skips the
    sample for this reward rather than counting it as wrong.

    Example:
        >>> score_rows(["4", "5", "x"], ["4", "4", None], gold_answer, lambda text, gold: float(text == gold))
        [1.0, 0.0, None]
    """
    rewards: list[float | None] = []
    for completion, value in zip(completions, column, strict=True):
        ref = reference(value)
        rewards.append(None if ref is None else score(completion_text(completion), ref))
    return rewards


# --------------------------------------------------------------------------------------------
# tags


def last_tag_block(text: str, tag: str = "answer") -> str | None:
    """The content of the last complete ``<tag>...</tag>`` block, or ``None``.

    The last closing tag is paired with the nearest opening tag before it, so a nested
    ``<answer><answer>4</answer></answer>`` yields ``"4"``. Matching ignores case.

    Example:
        >>> last_tag_block("<answer>1</answer> then <answer> 2 </answer>")
        ' 2 '
        >>> last_tag_block("<answer>unclosed") is None
        True
    """
    lowered = text.lower()
    close = lowered.rfind(f"</{tag}>")
    if close < 0:
        return None
    start = lowered.rfind(f"<{tag}>", 0, close)
    if start < 0:
        return None
    return text[start + len(tag) + 2 : close]


_BOXED = re.compile(r"\\boxed\s*\{")


def _last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}``, braces balanced."""
    matches = list(_BOXED.finditer(text))
    if not matches:
        return None
    i = matches[-1].end()
    depth = 1
    j = i
    while j < len(text) and depth:
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
        j += 1
    return text[i : j - 1] if depth == 0 else None


def extract_answer_text(text: str, tag: str = "answer") -> str | None:
    """The explicitly marked final answer of a completion, or ``None`` if none is marked.

    Looks, in order, for the last ``<answer>...</answer>`` block, the last ``\\boxed{...}``, and
    the text after the last GSM8K-style ``####``.

    Example:
        >>> extract_answer_text("so <answer>42</answer>")
        '42'
        >>> extract_answer_text(r"thus \\boxed{\\frac{1}{2}}")
        '\\\\frac{1}{2}'
        >>> extract_answer_text("x #### 7")
        '7'
        >>> extract_answer_text("it is 7") is None
        True
    """
    block = last_tag_block(text, tag)
    if block is not None:
        return block.strip()
    boxed = _last_boxed(text)
    if boxed is not None:
        return boxed.strip()
    if "####" in text:
        return text.rsplit("####", 1)[1].strip()
    return None


def gold_answer(value: Any) -> str | None:
    """A dataset's reference answer as text: GSM8K ``"... #### 42"`` becomes ``"42"``.

    Returns ``None`` for a missing answer (``None`` or blank), so rewards can skip the row.

    Example:
        >>> gold_answer("Natalia sold 48/2 = 24 clips.\\n#### 72")
        '72'
        >>> gold_answer(42)
        '42'
        >>> gold_answer("  ") is None
        True
    """
    if value is None:
        return None
    text = str(value)
    if "####" in text:
        text = text.rsplit("####", 1)[1]
    text = text.strip()
    return text or None


# --------------------------------------------------------------------------------------------
# numbers

# A number as people write it: optional sign and currency, thousands commas, decimals, an
# optional "/denominator" and an optional percent sign. The look-behind stops "3-4" from
# reading as "-4" and "v1.2.3" style tokens from yielding pieces.
_NUMBER = re.compile(
    r"(?<![\w.])"
    r"[-+\u2212]?(?:\\?\$|[\u20ac\u00a3\u00a5])?\s?"
    r"(?:\d{1,3}(?:,\d{3})+|\d+)?(?:\.\d+)?"
    r"(?:\s?/\s?\d+(?:\.\d+)?)?"
    r"%?"
)
_THOUSANDS = re.compile(r"^\d{1,3}(?:,\d{3})+(?:\.\d+)?$")
_LATEX_FRAC = re.compile(r"^\\[dt]?frac\{\s*([^{}]+?)\s*\}\{\s*([^{}]+?)\s*\}$")
_LATEX_WRAPPERS = re.compile(r"\\(?:text|mathrm|textbf|mathbf)\{([^{}]*)\}")


def parse_number(text: str) -> Fraction | None:
    """Read ``text`` as one number, exactly, or return ``None``.

    Accepted: integers and decimals (``42``, ``42.0``, ``.5``, ``1e3``), signs (``-3``, the
    Unicode minus), thousands commas (``1,000`` but not ``1,00``), currency (``$5``, ``\\$5``,
    ``€5``), a percent sign (``5%`` reads as ``5``: the sign is treated as a unit, not divided
    by 100), fractions (``3/4`` and ``\\frac{3}{4}``, equal to ``0.75``), and a trailing
    sentence period. Numbers are compared as exact fractions, so ``0.333`` is not ``1/3``.

    Example:
        >>> parse_number("1,000") == parse_number("1000.0") == 1000
        True
        >>> parse_number("$-5") == parse_number("-$5") == -5
        True
        >>> parse_number("3/4") == parse_number("0.75")
        True
        >>> parse_number("5%")
        Fraction(5, 1)
        >>> parse_number("42 apples") is None
        True
    """
    s = unicodedata.normalize("NFKC", text).strip()
    s = _LATEX_WRAPPERS.sub(r"\1", s)
    s = s.replace("\u2212", "-").replace("\\!", "").replace("\\,", "").replace("{,}", ",")
    s = s.strip().rstrip(".").strip()
    if (s.startswith("\\(") and s.endswith("\\)")) or (s.startswith("$$") and s.endswith("$$")):
        s = s[2:-2].strip()
    elif len(s) > 1 and s.startswith("$") and s.endswith("$") and s.count("$") == 2:
        s = s[1:-1].strip()  # inline LaTeX math, e.g. "$42$"
    if s.endswith("\\%"):
        s = s[:-2].rstrip()
    elif s.endswith("%"):
        s = s[:-1].rstrip()
    sign = ""
    if s and s[0] in "+-":
        sign, s = s[0], s[1:].lstrip()
    for symbol in ("\\$", "$", "\u20ac", "\u00a3", "\u00a5"):
        if s.startswith(symbol):
            s = s[len(symbol) :].lstrip()
            break
    if not sign and s and s[0] in "+-":  # "$-5"
        sign, s = s[0], s[1:].lstrip()
    frac = _LATEX_FRAC.match(s)
    if frac:
        s = f"{frac.group(1)}/{frac.group(2)}"
    if "," in s:
        if not _THOUSANDS.match(s):
            return None
        s = s.replace(",", "")
    if not s or not re.fullmatch(r"[0-9.eE+\-/ ]+", s):
        return None
    try:
        if "/" in s:
            num, den = s.split("/", 1)
            value = Fraction(num.strip()) / Fraction(den.strip())
        else:
            value = Fraction(s)
    except (ValueError, ZeroDivisionError):
        return None
    return -value if sign == "-" else value


def last_number(text: str) -> Fraction | None:
    """The last number written anywhere in ``text`` (see :func:`parse_number`), or ``None``.

    Example:
        >>> last_number("3 boxes of 4 make 12.")
        Fraction(12, 1)
        >>> last_number("no digits") is None
        True
    """
    for match in reversed([m for m in _NUMBER.finditer(text) if any(c.isdigit() for c in m.group())]):
        value = parse_number(match.group())
        if value is not None:
            return value
    return None


# --------------------------------------------------------------------------------------------
# text

_ANSWER_PREFIX = re.compile(
    r"^\s*(?:(?:so|thus|therefore|hence)[,\s]+)?(?:the\s+)?(?:final\s+)?answer\s*(?:is|:)?\s*:?\s*",
    re.IGNORECASE,
)


def normalize_text(text: str) -> str:
    """Normalise free text for comparison: NFKC, case-folded, whitespace collapsed, markdown
    emphasis, surrounding quotes and trailing ``.``/``!`` removed.

    Example:
        >>> normalize_text("  The  Eiffel tower. ")
        'the eiffel tower'
        >>> normalize_text('**"Paris"**')
        'paris'
    """
    s = unicodedata.normalize("NFKC", text)
    s = " ".join(s.split()).casefold()
    previous = None
    while previous != s:  # peel layers such as **"x".** in any order
        previous = s
        s = s.strip().rstrip(".!").strip()
        for left, right in (("**", "**"), ("*", "*"), ("`", "`"), ('"', '"'), ("'", "'")):
            if len(s) >= len(left) + len(right) and s.startswith(left) and s.endswith(right):
                s = s[len(left) : len(s) - len(right)]
    return s


def strip_answer_prefix(line: str) -> str:
    """Drop a leading "The answer is" / "Answer:" from a line.

    Example:
        >>> strip_answer_prefix("So the final answer is: Paris")
        'Paris'
    """
    return _ANSWER_PREFIX.sub("", line, count=1)
