"""SFT rows, in every shape below, normalised to ``{"messages": [...]}`` (plus ``"tools"`` when
the row defines tools) for TRL's ``SFTTrainer`` with assistant-only loss.

- Alpaca: ``instruction``, optional ``input`` (after a blank line), ``output``; optional
  ``system``, and ``history`` (``[[user, assistant], ...]``, LLaMA-Factory's earlier turns),
  which become the turns before the instruction (counted as ``history`` in ``data_checks``).
- ``messages`` (OpenAI/Hugging Face) or ``conversations`` (ShareGPT ``from``/``value``,
  including LLaMA-Factory's ``function_call`` and ``observation`` turns); an optional
  ``system`` column (prepended unless the chat starts with a system turn) and ``tools``
  column (a list of tool schemas or its JSON text). Assistant tool calls are kept and trained
  on; see :mod:`ladder.data.messages` for each message's shape.
- ``prompt`` + ``completion``, each a string or a list of messages.

Use :func:`sft_dataset` to hand the rows to the trainer: tool calls and tool schemas differ
from row to row, and a plain ``Dataset.from_list`` would merge their keys into one Arrow schema
and give every row the others' keys as ``null`` (a call ``{"city": "Paris"}`` would train as
``{"city": "Paris", "query": null}``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ladder.data.messages import At, Changes, parse_messages, parse_tools, with_system
from ladder.data.rows import Origin, Rows, normalise_each
from ladder.errors import DataError

if TYPE_CHECKING:
    from datasets import Dataset

__all__ = ["normalize_sft_rows", "sft_dataset", "sft_row", "sft_row_to_messages"]


def _need_str(row: Mapping[str, Any], field: str, at: At, *, allow_empty: bool = False) -> str:
    if field not in row or row[field] is None:
        raise at.error("missing field", field)
    value = row[field]
    if not isinstance(value, str):
        raise at.error(f"expected a string, got {type(value).__name__}", field)
    if not allow_empty and not value.strip():
        raise at.error("empty text", field)
    return value


def _history(row: Mapping[str, Any], at: At) -> list[dict[str, Any]]:
    value = row.get("history")
    if value is None or (isinstance(value, Sequence) and not isinstance(value, str) and not value):
        return []
    if not isinstance(value, Sequence) or isinstance(value, str):
        raise at.error(f"expected a list of [user, assistant] pairs, got {type(value).__name__}", "history")
    turns = []
    for k, pair in enumerate(value):
        if (not isinstance(pair, Sequence) or isinstance(pair, str) or len(pair) != 2
                or not all(isinstance(t, str) for t in pair)):
            raise at.error("expected a [user, assistant] pair of strings", f"history[{k}]")
        if not pair[1].strip():
            raise at.error("empty assistant turn", f"history[{k}][1]")
        turns += [{"role": "user", "content": pair[0]}, {"role": "assistant", "content": pair[1]}]
    return turns


def _alpaca(row: Mapping[str, Any], at: At, changes: Changes) -> list[dict[str, Any]]:
    instruction = _need_str(row, "instruction", at)
    extra = row.get("input")
    if extra is not None and not isinstance(extra, str):
        raise at.error(f"expected a string, got {type(extra).__name__}", "input")
    output = _need_str(row, "output", at)
    user = f"{instruction}\n\n{extra}" if extra and extra.strip() else instruction
    history = _history(row, at)
    if history:
        changes.append(("history", "history", f"{len(history) // 2} earlier exchange(s) put before the instruction"))
    return [*history, {"role": "user", "content": user}, {"role": "assistant", "content": output}]


def _check_chat(chat: list[dict[str, Any]], field: str, at: At, tools: list[dict[str, Any]] | None) -> None:
    if not any(m["role"] == "assistant" for m in chat):
        raise at.error("no assistant turn to learn from", field)
    defined = {t["function"]["name"] for t in tools or []}
    for j, m in enumerate(chat):
        if m["role"] != "assistant":
            continue
        if not m["content"].strip() and not m.get("tool_calls"):
            raise at.error("empty assistant turn", f"{field}[{j}].content")
        for k, call in enumerate(m.get("tool_calls", ())):
            name = call["function"]["name"]
            if tools is not None and name not in defined:
                raise at.error(f"calls {name!r}, which the row's tools do not define ({', '.join(sorted(defined))})",
                               f"{field}[{j}].tool_calls[{k}]")


def sft_row(row: Mapping[str, Any], source: str | Origin, index: int | None = None, *,
            changes: Changes | None = None) -> dict[str, Any]:
    """One row (any shape above) as ``{"messages": [...]}`` plus ``"tools"`` when it has some.

    Args:
        row: the raw row.
        source: the dataset's label (or the row's :class:`~ladder.data.rows.Origin`).
        index: the row's number in its source, for errors.
        changes: collects ``(reason, field, why)`` for each change worth counting.

    Raises:
        DataError: naming the source, row and field.

    Example:
        >>> sft_row({"instruction": "Hi", "output": "Hello", "history": [["1+1?", "2"]]}, "a.json", 0)["messages"]
        ... # doctest: +NORMALIZE_WHITESPACE
        [{'role': 'user', 'content': '1+1?'}, {'role': 'assistant', 'content': '2'},
         {'role': 'user', 'content': 'Hi'}, {'role': 'assistant', 'content': 'Hello'}]
    """
    at = At(source, index)
    changes = changes if changes is not None else []
    tools = None
    if "messages" in row or "conversations" in row:
        field = "messages" if "messages" in row else "conversations"
        chat = with_system(parse_messages(row[field], field, at, tools=True, changes=changes), row, at, changes)
        tools = parse_tools(row.get("tools"), "tools", at)
    elif "instruction" in row:
        field = "instruction"
        chat = with_system(_alpaca(row, at, changes), row, at, changes)
    elif "prompt" in row or "completion" in row:
        field = "completion"
        completion = row.get("completion")
        if isinstance(completion, list):
            comp = parse_messages(completion, "completion", at, tools=True, changes=changes)
        else:
            comp = [{"role": "assistant", "content": _need_str(row, "completion", at)}]
        prompt = row.get("prompt")
        if isinstance(prompt, list):
            prefix = parse_messages(prompt, "prompt", at, tools=True, changes=changes)
        else:
            prefix = [{"role": "user", "content": _need_str(row, "prompt", at)}]
        chat = with_system(prefix + comp, row, at, changes)
        tools = parse_tools(row.get("tools"), "tools", at)
    else:
        raise at.error(
            f"unrecognised row shape (keys: {sorted(row)}); use Alpaca (instruction/input/output), "
            "messages, conversations, or prompt/completion"
        )
    _check_chat(chat, field, at, tools)
    return {"messages": chat, "tools": tools} if tools else {"messages": chat}


def sft_row_to_messages(row: Mapping[str, Any], source: str, index: int) -> list[dict[str, Any]]:
    """One row (any supported shape) as a chat. Raises :class:`DataError` naming the field."""
    return sft_row(row, source, index)["messages"]


def normalize_sft_rows(rows: Sequence[Mapping[str, Any]], source: str) -> tuple[Rows, list[DataError]]:
    """Normalise every row; return ``(rows, problems)`` so pre-flight can report all at once.

    The rows are a :class:`~ladder.data.rows.Rows`: each one's origin and the
    :class:`~ladder.data.rows.DataChecks` (rows dropped under the dataset's ``drop:``, rows
    changed) come with them.

    Example:
        >>> rows, problems = normalize_sft_rows([{"instruction": "Hi", "output": "Hello"}, {"x": 1}], "d.jsonl")
        >>> rows[0]
        {'messages': [{'role': 'user', 'content': 'Hi'}, {'role': 'assistant', 'content': 'Hello'}]}
        >>> str(problems[0])[:28], rows.origins[0]
        ('d.jsonl, row 1: unrecognised', Origin(source='d.jsonl', row=0))
    """
    return normalise_each(rows, source, lambda row, origin, changes: sft_row(row, origin, changes=changes))


def sft_dataset(rows: Sequence[Mapping[str, Any]]) -> Dataset:
    """The rows (``messages``, or conversational ``prompt``/``completion``) as a ``datasets.Dataset``
    that gives each row back exactly as it is.

    Messages (and tool schemas) are stored as JSON, not as one Arrow struct merged over all
    rows: merged structs hand every message the keys of all others as ``None`` and every tool
    call the argument names of all others, which the chat template would then render.
    """
    from datasets import Dataset
    from datasets.features import Features, Json, List

    columns = [key for key in ("messages", "prompt", "completion") if any(key in r for r in rows)] or ["messages"]
    features = {key: List(Json()) for key in columns}
    if any("tools" in r for r in rows):
        features["tools"] = Json()
    return Dataset.from_list([dict(r) for r in rows], features=Features(features))
