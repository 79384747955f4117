"""Verifiable problems: rows with a prompt and a reference answer a program can check.

Every accepted shape is normalised to ``{"prompt": [messages], "answer": str, ...}``, the
conversational prompt TRL's ``GRPOTrainer`` renders with the chat template, and the plain-text
reference answer the rewards (``exact_match``) and the held-out evaluation compare against.
Columns the row had besides the ones consumed are kept: custom rewards receive them as
keyword arguments.

Accepted shapes:

- GSM8K: ``question`` + ``answer`` where the answer is a worked solution ending in
  ``#### 42``. The reference answer is what follows ``####``; the whole worked solution is
  kept in ``solution``.
- ``prompt`` (a string or a list of chat messages) + ``answer``.
- ``problem`` + ``solution`` (MATH style), with an optional ``answer`` column. Without one,
  the reference answer is read from the solution's last ``\\boxed{...}``, ``<answer>`` block
  or ``####``.

Prompt messages may be ShareGPT or OpenAI style, with content as text or a list of text parts
(see :mod:`ladder.data.messages`); tool calls are for SFT data only.

An RL stage that learns from a reward model alone needs no reference answer: with
``require_answer=False`` a row may be a prompt only (``prompt``, ``question`` or ``problem``
without an answer); a reference answer that is there is still read and checked.

Unless the recipe says otherwise the user's message gets an instruction appended that asks
for the final answer in ``<answer></answer>`` tags (:data:`DEFAULT_INSTRUCTION`), the format
the reference recipe's ``tag_format`` reward pays for.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import Any

from ladder.data.messages import At, Changes, parse_messages
from ladder.data.rows import Origin, Rows, normalise_each
from ladder.errors import DataError

__all__ = ["DEFAULT_INSTRUCTION", "format_prompt", "normalize_verifiable_rows", "verifiable_row"]

DEFAULT_INSTRUCTION = "Put the final answer in <answer></answer> tags."

_SHAPES = (
    "GSM8K (question + answer with '#### N'), prompt (text or messages) + answer, "
    "or problem + solution (MATH style, optional answer)"
)


def format_prompt(text: str, instruction: str | None, prompt_template: str | None) -> str:
    """The user's message: ``text`` put through ``prompt_template``, or ``text`` + instruction.

    ``prompt_template`` is a Python format string with ``{prompt}`` (the problem's text) and,
    optionally, ``{instruction}``. Without one, a non-empty instruction is appended after a
    blank line, unless the text already contains it (so normalising twice changes nothing).

    Example:
        >>> format_prompt("2+2?", DEFAULT_INSTRUCTION, None)
        '2+2?\\n\\nPut the final answer in <answer></answer> tags.'
        >>> format_prompt("2+2?", None, "Q: {prompt}\\nA:")
        'Q: 2+2?\\nA:'
    """
    if prompt_template:
        return prompt_template.format(prompt=text, instruction=instruction or "")
    if not instruction or instruction in text:
        return text
    return f"{text.rstrip()}\n\n{instruction}"


def _text(row: Mapping[str, Any], field: str, source: str, index: int) -> str:
    value = row.get(field)
    if value is None:
        raise DataError("missing field", source=source, row=index, field=field)
    if not isinstance(value, str):
        raise DataError(f"expected a string, got {type(value).__name__}", source=source, row=index, field=field)
    if not value.strip():
        raise DataError("empty text", source=source, row=index, field=field)
    return value


def _answer(value: Any, field: str, source: str, index: int) -> str:
    """A reference answer as stripped text; numbers are accepted and written as text."""
    if value is None:
        raise DataError("missing reference answer", source=source, row=index, field=field)
    if isinstance(value, bool) or not isinstance(value, (str, numbers.Number)):
        raise DataError(
            f"expected the reference answer as a string or number, got {type(value).__name__}",
            source=source,
            row=index,
            field=field,
        )
    if isinstance(value, numbers.Integral):
        text = str(int(value))
    elif isinstance(value, float) and value.is_integer():
        text = str(int(value))  # 42.0 from a CSV or parquet column is the answer 42
    else:
        text = str(value)
    text = text.strip()
    if not text:
        raise DataError("empty reference answer", source=source, row=index, field=field)
    return text


def _after_hashes(text: str) -> str | None:
    """What follows the last GSM8K ``####`` marker, or ``None`` without one."""
    if "####" not in text:
        return None
    return text.rsplit("####", 1)[1].strip().replace(",", "") or None


def _answer_from_solution(solution: str) -> str | None:
    from ladder.rewards._common import extract_answer_text

    found = extract_answer_text(solution)
    return found.strip() if found and found.strip() else None


def _messages(value: Any, source: str, index: int) -> list[dict[str, Any]]:
    if not isinstance(value, Sequence) or isinstance(value, str) or not value:
        raise DataError(
            "expected the prompt as a string or a non-empty list of messages", source=source, row=index, field="prompt"
        )
    out = parse_messages(value, "prompt", At(source, index))
    if out[-1]["role"] == "assistant":
        raise DataError(
            "the prompt ends with an assistant turn; the model answers after the last user turn, so end the "
            "prompt with a user message",
            source=source,
            row=index,
            field="prompt",
        )
    if not any(m["role"] == "user" and m["content"].strip() for m in out):
        raise DataError("the prompt has no non-empty user message", source=source, row=index, field="prompt")
    return out


def verifiable_row(
    row: Mapping[str, Any],
    source: str,
    index: int,
    *,
    system_prompt: str | None = None,
    instruction: str | None = DEFAULT_INSTRUCTION,
    prompt_template: str | None = None,
    require_answer: bool = True,
    changes: Changes | None = None,
) -> dict[str, Any]:
    """One row (any accepted shape) as ``{"prompt": [messages], "answer": str, ...}``.

    Args:
        row: the raw row.
        source: the dataset's label, for error messages.
        index: the row's index, for error messages.
        system_prompt: a system message put first, unless the prompt already starts with one.
        instruction: appended to the (last) user message; ``None`` or ``""`` to leave it as is.
        prompt_template: a format string with ``{prompt}`` (and optionally ``{instruction}``)
            that builds the user message instead.
        require_answer: ``False`` accepts a row without any reference answer (no ``answer``
            key in the result); one that is there is still read and checked.
        changes: collects ``(reason, field, why)`` for each change worth counting (a
            ``system_prompt`` not added because the prompt has its own).

    Raises:
        DataError: naming the source, row and field, when the row has no usable prompt or answer.

    Example:
        >>> r = verifiable_row({"question": "1+1?", "answer": "1+1=2\\n#### 2"}, "demo", 0, instruction=None)
        >>> r["prompt"], r["answer"], r["solution"]
        ([{'role': 'user', 'content': '1+1?'}], '2', '1+1=2\\n#### 2')
    """
    out = dict(row)
    # Without a required answer, a row that has none is a prompt only.
    unanswered = not require_answer and row.get("answer") is None and row.get("solution") is None
    if "question" in row and "prompt" not in row:  # GSM8K
        text = _text(row, "question", source, index)
        raw = row.get("answer")
        if unanswered:
            out.pop("answer", None)
        elif isinstance(raw, str) and "####" in raw:
            gold = _after_hashes(raw)
            if gold is None:
                raise DataError("nothing after '####'", source=source, row=index, field="answer")
            out["answer"] = gold
            out.setdefault("solution", raw)
        else:
            out["answer"] = _answer(raw, "answer", source, index)
        messages = [{"role": "user", "content": text}]
    elif "prompt" in row:
        prompt = row.get("prompt")
        if isinstance(prompt, str):
            messages = [{"role": "user", "content": _text(row, "prompt", source, index)}]
        else:
            messages = _messages(prompt, source, index)
        if unanswered:
            out.pop("answer", None)
        elif "answer" not in row and isinstance(row.get("solution"), str):
            found = _answer_from_solution(row["solution"])
            if found is None:
                raise DataError(
                    "missing field; no 'answer' column and no \\boxed{}, <answer> or '####' answer in 'solution'",
                    source=source,
                    row=index,
                    field="answer",
                )
            out["answer"] = found
        else:
            raw = row.get("answer")
            gold = _after_hashes(raw) if isinstance(raw, str) else None
            out["answer"] = gold or _answer(raw, "answer", source, index)
    elif "problem" in row:  # MATH style
        text = _text(row, "problem", source, index)
        if unanswered:
            out.pop("answer", None)
        elif row.get("answer") is not None:
            out["answer"] = _answer(row["answer"], "answer", source, index)
        else:
            solution = _text(row, "solution", source, index)
            found = _answer_from_solution(solution)
            if found is None:
                raise DataError(
                    "no reference answer: the row has no 'answer' column and the solution has no \\boxed{}, "
                    "<answer> block or '####' to read one from; add an 'answer' column",
                    source=source,
                    row=index,
                    field="solution",
                )
            out["answer"] = found
        messages = [{"role": "user", "content": text}]
    else:
        raise DataError(f"unrecognised row shape (keys: {sorted(row)}); use {_SHAPES}", source=source, row=index)

    last_user = max(i for i, m in enumerate(messages) if m["role"] == "user")
    messages[last_user] = {
        "role": "user",
        "content": format_prompt(messages[last_user]["content"], instruction, prompt_template),
    }
    if system_prompt and messages[0]["role"] != "system":
        messages.insert(0, {"role": "system", "content": system_prompt})
    elif system_prompt and messages[0]["content"] != system_prompt and changes is not None:
        changes.append(("system_ignored", "prompt[0]", "the prompt starts with its own system turn"))
    out["prompt"] = messages
    return out


def normalize_verifiable_rows(
    rows: Sequence[Mapping[str, Any]],
    source: str,
    *,
    system_prompt: str | None = None,
    instruction: str | None = DEFAULT_INSTRUCTION,
    prompt_template: str | None = None,
    require_answer: bool = True,
) -> tuple[Rows, list[DataError]]:
    """Normalise every row; return ``(rows, problems)`` so pre-flight can report all at once.

    Args:
        rows: raw rows (see the module docstring for the accepted shapes).
        source: the dataset's label (file, preset or hub id), used in error messages.
        system_prompt: an optional system message for every prompt.
        instruction: appended to each prompt's user message (default: answer in
            ``<answer></answer>`` tags); ``None`` or ``""`` for none.
        prompt_template: a format string with ``{prompt}`` that builds the user message instead.
        require_answer: ``False`` accepts prompt-only rows (for a stage whose only reward is a
            reward model).

    Returns:
        The normalised rows (those without problems, as a :class:`~ladder.data.rows.Rows` with
        their origins and data checks) and one :class:`DataError` per bad row.

    Example:
        >>> rows, problems = normalize_verifiable_rows(
        ...     [{"prompt": "2+2?", "answer": 4}, {"question": "3+3?"}], "demo", instruction=None
        ... )
        >>> rows[0]["prompt"], rows[0]["answer"]
        ([{'role': 'user', 'content': '2+2?'}], '4')
        >>> str(problems[0])
        "demo, row 1, field 'answer': missing reference answer"
    """
    if prompt_template is not None:
        _check_template(prompt_template, source)

    def one(row: Mapping[str, Any], origin: Origin, changes: Changes) -> dict[str, Any]:
        return verifiable_row(row, origin.source, origin.row, system_prompt=system_prompt, instruction=instruction,
                              prompt_template=prompt_template, require_answer=require_answer, changes=changes)

    return normalise_each(rows, source, one)


def _check_template(template: str, source: str) -> None:
    try:
        rendered = template.format(prompt="\x00", instruction="")
    except (KeyError, IndexError, ValueError) as exc:
        raise DataError(
            f"prompt_template {template!r} is not a valid format string ({exc}); use {{prompt}} for the "
            "problem's text and optionally {instruction}; double any literal braces ({{{{ and }}}})",
            source=source,
        ) from exc
    if "\x00" not in rendered:
        raise DataError(
            f"prompt_template {template!r} has no {{prompt}} placeholder, so every prompt would be the same",
            source=source,
        )
