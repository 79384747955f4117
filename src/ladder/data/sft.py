"""SFT rows: Alpaca, conversational ``messages`` (or ShareGPT ``conversations``) and
prompt/completion, all normalised to ``{"messages": [...]}`` for assistant-only loss."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ladder.errors import DataError

__all__ = ["normalize_sft_rows", "sft_row_to_messages"]

_ROLES = {"system", "user", "assistant", "tool"}
_SHAREGPT_ROLES = {"human": "user", "gpt": "assistant", "system": "system", "user": "user", "assistant": "assistant"}


def _need_str(row: Mapping[str, Any], field: str, source: str, index: int, *, allow_empty: bool = False) -> str:
    if field not in row or row[field] is None:
        raise DataError("missing field", source=source, row=index, field=field)
    value = row[field]
    if not isinstance(value, str):
        raise DataError(f"expected a string, got {type(value).__name__}", source=source, row=index, field=field)
    if not allow_empty and not value.strip():
        raise DataError("empty text", source=source, row=index, field=field)
    return value


def _check_messages(messages: Any, field: str, source: str, index: int) -> list[dict[str, str]]:
    if not isinstance(messages, Sequence) or isinstance(messages, str) or not messages:
        raise DataError("expected a non-empty list of messages", source=source, row=index, field=field)
    out = []
    for j, m in enumerate(messages):
        where = f"{field}[{j}]"
        if not isinstance(m, Mapping):
            raise DataError("expected a message object", source=source, row=index, field=where)
        if "from" in m and "role" not in m:  # ShareGPT
            role = _SHAREGPT_ROLES.get(str(m["from"]))
            content = m.get("value")
        else:
            role = m.get("role")
            content = m.get("content")
        if role not in _ROLES:
            raise DataError(
                f"unknown role {role!r}; use one of {sorted(_ROLES)}", source=source, row=index, field=f"{where}.role"
            )
        if not isinstance(content, str):
            raise DataError(
                f"expected string content, got {type(content).__name__}",
                source=source,
                row=index,
                field=f"{where}.content",
            )
        if role == "assistant" and not content.strip():
            raise DataError("empty assistant turn", source=source, row=index, field=f"{where}.content")
        out.append({"role": role, "content": content})
    if not any(m["role"] == "assistant" for m in out):
        raise DataError("no assistant turn to learn from", source=source, row=index, field=field)
    return out


def sft_row_to_messages(row: Mapping[str, Any], source: str, index: int) -> list[dict[str, str]]:
    """One row (any supported shape) as a chat. Raises :class:`DataError` naming the field."""
    if "messages" in row:
        return _check_messages(row["messages"], "messages", source, index)
    if "conversations" in row:
        return _check_messages(row["conversations"], "conversations", source, index)
    if "instruction" in row:  # Alpaca
        instruction = _need_str(row, "instruction", source, index)
        extra = row.get("input")
        if extra is not None and not isinstance(extra, str):
            raise DataError(f"expected a string, got {type(extra).__name__}", source=source, row=index, field="input")
        output = _need_str(row, "output", source, index)
        user = f"{instruction}\n\n{extra}" if extra and extra.strip() else instruction
        chat = [{"role": "user", "content": user}, {"role": "assistant", "content": output}]
        if isinstance(row.get("system"), str) and row["system"].strip():
            chat.insert(0, {"role": "system", "content": row["system"]})
        return chat
    if "prompt" in row or "completion" in row:
        completion = row.get("completion")
        if isinstance(completion, list):
            comp = _check_messages(completion, "completion", source, index)
        else:
            comp = [{"role": "assistant", "content": _need_str(row, "completion", source, index)}]
        prompt = row.get("prompt")
        if isinstance(prompt, list):
            prefix = _check_messages(prompt + [{"role": "assistant", "content": "x"}], "prompt", source, index)[:-1]
        else:
            prefix = [{"role": "user", "content": _need_str(row, "prompt", source, index)}]
        return prefix + comp
    raise DataError(
        f"unrecognised row shape (keys: {sorted(row)}); use Alpaca (instruction/input/output), "
        "messages, conversations, or prompt/completion",
        source=source,
        row=index,
    )


def normalize_sft_rows(
    rows: Sequence[Mapping[str, Any]], source: str
) -> tuple[list[dict[str, Any]], list[DataError]]:
    """Normalise every row; return ``(rows, problems)`` so pre-flight can report all at once."""
    out: list[dict[str, Any]] = []
    problems: list[DataError] = []
    for i, row in enumerate(rows):
        try:
            out.append({"messages": sft_row_to_messages(row, source, i)})
        except DataError as exc:
            problems.append(exc)
    return out, problems
