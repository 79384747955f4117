"""Chat messages as people have them, turned into the shape chat templates and TRL expect.

One message is either OpenAI/Hugging Face style, ``{"role", "content"}`` with ``role`` one of
``system``, ``user``, ``assistant``, ``tool``, or ShareGPT style, ``{"from", "value"}`` with
``from`` one of ``human``/``user``, ``gpt``/``assistant``, ``system``, ``function_call``,
``observation``/``tool`` (LLaMA-Factory's names). Out comes ``{"role", "content": str}``, plus:

- ``tool_calls`` on an assistant turn, each ``{"type": "function", "function": {"name",
  "arguments": {...}}}`` (and its ``id`` when given): the shape transformers' chat templates
  and TRL's ``SFTTrainer`` render. ``arguments`` given as JSON text are parsed (templates
  write them with ``tojson``); a flat ``{"name", "arguments"}`` call is wrapped. A ShareGPT
  ``function_call`` turn (its ``value`` a JSON call or list of calls) becomes such a turn with
  empty content.
- ``name`` and ``tool_call_id`` on a tool turn (a ShareGPT ``observation`` is a tool turn).

``content`` may be a list of parts (``[{"type": "text", "text": ...}]``, OpenAI and multimodal
style): the text parts are joined with nothing between them, as multimodal chat templates
render them. A non-text part (an image, audio, a file) raises
:class:`~ladder.data.rows.NonTextContentError`, which a dataset's ``drop: [non_text]`` turns
into a counted drop. Keys with a ``None`` value are left out (Arrow writes them for missing
keys); any other key is left out and counted as a change (``ignored_fields``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from ladder.data.rows import NonTextContentError, Origin
from ladder.errors import DataError

__all__ = ["ROLES", "SPEAKERS", "At", "content_text", "parse_message", "parse_messages", "parse_tools", "with_system"]

ROLES = ("system", "user", "assistant", "tool")
#: ShareGPT / LLaMA-Factory speaker names -> chat roles (``function_call``: an assistant tool call).
SPEAKERS = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "system": "system",
    "function_call": "assistant",
    "observation": "tool",
    "tool": "tool",
}
_TEXT_PARTS = ("text", "input_text", "output_text")
_EXTRA_KEYS = {"assistant": ("tool_calls",), "tool": ("name", "tool_call_id")}
Changes = list[tuple[str, "str | None", str]]


class At:
    """Where a row came from, so that every error names its source, row and field."""

    __slots__ = ("index", "source")

    def __init__(self, source: str | Origin, index: int | None = None) -> None:
        if isinstance(source, Origin):
            source, index = source.source, source.row
        self.source = source
        self.index = index

    def error(self, message: str, field: str | None = None) -> DataError:
        return DataError(message, source=self.source, row=self.index, field=field)


def content_text(value: Any, field: str, at: At) -> str:
    """A message's content as text: a string, or the text parts of a list of parts, joined.

    Raises:
        NonTextContentError: a part is an image, audio, video or file.
        DataError: anything else that is not text.

    Example:
        >>> content_text([{"type": "text", "text": "Hi "}, {"type": "text", "text": "there"}], "c", At("x", 0))
        'Hi there'
    """
    if isinstance(value, str):
        return value
    if isinstance(value, Sequence) and all(isinstance(p, Mapping) and "type" in p for p in value):
        texts = []
        for k, part in enumerate(value):
            kind = part["type"]
            if kind in _TEXT_PARTS:
                text = part.get("text")
                if not isinstance(text, str):
                    raise at.error(f"expected the text of a {kind!r} part as a string, got {type(text).__name__}",
                                   f"{field}[{k}].text")
                texts.append(text)
            else:
                raise NonTextContentError(
                    f"a part of type {kind!r}: ladder trains on text only; remove the part, or set drop: [non_text] "
                    "on the dataset to leave such rows out (they are counted in data_checks)",
                    source=at.source, row=at.index, field=f"{field}[{k}]",
                )
        return "".join(texts)
    got = "a list of " + type(value[0]).__name__ if isinstance(value, Sequence) and value else type(value).__name__
    raise at.error(f"expected string content or a list of {{type, text}} parts, got {got}", field)


def _arguments(value: Any, field: str, at: At) -> dict[str, Any]:
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else {}
        except json.JSONDecodeError as exc:
            raise at.error(f"the arguments are not valid JSON ({exc.msg})", field) from exc
    if not isinstance(value, Mapping):
        raise at.error(f"expected the arguments as a JSON object, got {type(value).__name__}", field)
    return dict(value)


def _tool_call(call: Any, field: str, at: At) -> dict[str, Any]:
    if not isinstance(call, Mapping):
        raise at.error(f"expected a tool call object, got {type(call).__name__}", field)
    if call.get("type", "function") != "function":
        raise at.error(f"unknown tool call type {call.get('type')!r}; only 'function' calls are supported",
                       f"{field}.type")
    function = call.get("function", call)  # OpenAI nests the call in "function"; flat calls are common too
    where = f"{field}.function" if "function" in call else field
    if not isinstance(function, Mapping):
        raise at.error(f"expected an object, got {type(function).__name__}", where)
    name = function.get("name")
    if not isinstance(name, str) or not name.strip():
        raise at.error("missing tool name", f"{where}.name")
    out: dict[str, Any] = {"type": "function",
                           "function": {"name": name, "arguments": _arguments(function.get("arguments"),
                                                                              f"{where}.arguments", at)}}
    if isinstance(call.get("id"), str):
        out["id"] = call["id"]
    return out


def _tool_calls(value: Any, field: str, at: At) -> list[dict[str, Any]]:
    if isinstance(value, Mapping):
        value = [value]
    if not isinstance(value, Sequence) or isinstance(value, str) or not value:
        raise at.error("expected a non-empty list of tool calls", field)
    return [_tool_call(c, f"{field}[{k}]", at) for k, c in enumerate(value)]


def _sharegpt_call(value: Any, field: str, at: At) -> list[dict[str, Any]]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise at.error(f'a function_call turn holds a JSON call {{"name": ..., "arguments": {{...}}}} (or a '
                           f"list of them); this one is not valid JSON ({exc.msg})", field) from exc
    return _tool_calls(value, field, at)


def parse_message(
    m: Any, where: str, at: At, *, tools: bool = False, changes: Changes | None = None
) -> dict[str, Any]:
    """One message (either style) as ``{"role", "content", ...}``; see :func:`parse_messages`."""
    if not isinstance(m, Mapping):
        raise at.error(f"expected a message object, got {type(m).__name__}", where)
    m = {k: v for k, v in m.items() if v is not None}
    sharegpt = "from" in m and "role" not in m
    if sharegpt:
        speaker = m.get("from")
        role = SPEAKERS.get(speaker) if isinstance(speaker, str) else None
        if role is None:
            raise at.error(f"unknown speaker {speaker!r}; use one of {sorted(SPEAKERS)}", f"{where}.from")
        content_key, known = "value", {"from", "value"}
    else:
        role = m.get("role")
        if role not in ROLES:
            raise at.error(f"unknown role {role!r}; use one of {list(ROLES)}", f"{where}.role")
        content_key, known = "content", {"role", "content", *_EXTRA_KEYS.get(role, ())}
    out: dict[str, Any] = {"role": role}
    calls = None
    if sharegpt and speaker == "function_call":
        if "value" not in m:
            raise at.error("missing field", f"{where}.value")
        calls = _sharegpt_call(m["value"], f"{where}.value", at)
        out["content"] = ""
    else:
        if "tool_calls" in m and role == "assistant":
            calls = _tool_calls(m["tool_calls"], f"{where}.tool_calls", at)
        if content_key in m:
            out["content"] = content_text(m[content_key], f"{where}.{content_key}", at)
        elif calls is not None:
            out["content"] = ""  # a turn that only calls tools; templates read "" as no text
        else:
            raise at.error("missing field", f"{where}.{content_key}")
    if calls is not None:
        if not tools:
            raise at.error("tool calls are supported in SFT data only", where)
        out["tool_calls"] = calls
    if role == "tool":
        for key in ("name", "tool_call_id"):
            if isinstance(m.get(key), str):
                out[key] = m[key]
    ignored = sorted(set(m) - known)
    if ignored and changes is not None:
        changes.append(("ignored_fields", where, f"left out {', '.join(ignored)}"))
    return out


def parse_messages(
    value: Any, field: str, at: At, *, tools: bool = False, changes: Changes | None = None
) -> list[dict[str, Any]]:
    """A non-empty list of messages (either style, mixed) in the shape described above.

    Args:
        value: the row's list of messages.
        field: the field's name, for errors (``messages``, ``conversations``, ``chosen``…).
        at: where the row is.
        tools: accept tool calls (SFT); otherwise a tool call is an error.
        changes: collects ``(reason, field, why)`` for keys left out.

    Example:
        >>> parse_messages([{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}], "c", At("x", 0))
        [{'role': 'user', 'content': 'Hi'}, {'role': 'assistant', 'content': 'Hello'}]
    """
    if not isinstance(value, Sequence) or isinstance(value, str) or not value:
        raise at.error("expected a non-empty list of messages", field)
    out = [parse_message(m, f"{field}[{j}]", at, tools=tools, changes=changes) for j, m in enumerate(value)]
    if tools:
        for j, m in enumerate(out):
            before = out[j - 1] if j else None
            if m["role"] == "tool" and (before is None or not (before["role"] == "tool" or before.get("tool_calls"))):
                raise at.error("a tool result with no tool call before it; put the assistant's call first",
                               f"{field}[{j}]")
    return out


def parse_tools(value: Any, field: str, at: At) -> list[dict[str, Any]] | None:
    """A row's tool definitions as ``[{"type": "function", "function": {"name", ...}}]``, or ``None``.

    Accepts a list of schemas or its JSON text (LLaMA-Factory's ``tools`` column); a bare
    ``{"name", "description", "parameters"}`` schema is wrapped. Empty means no tools.

    Example:
        >>> parse_tools('[{"name": "f", "parameters": {}}]', "tools", At("x", 0))
        [{'type': 'function', 'function': {'name': 'f', 'parameters': {}}}]
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise at.error(f"the tool definitions are not valid JSON ({exc.msg})", field) from exc
    if isinstance(value, Mapping):
        value = [value]
    if not isinstance(value, Sequence) or isinstance(value, str):
        raise at.error(f"expected a list of tool definitions, got {type(value).__name__}", field)
    out = []
    for k, tool in enumerate(value):
        if not isinstance(tool, Mapping):
            raise at.error(f"expected a tool definition object, got {type(tool).__name__}", f"{field}[{k}]")
        function = tool.get("function") if "function" in tool else tool
        name = function.get("name") if isinstance(function, Mapping) else None
        if not isinstance(name, str) or not name.strip():
            raise at.error("a tool definition without a name", f"{field}[{k}]")
        out.append({"type": tool.get("type", "function"), "function": dict(function)} if "function" in tool
                   else {"type": "function", "function": dict(tool)})
    return out or None


def with_system(chat: list[dict[str, Any]], row: Mapping[str, Any], at: At, changes: Changes) -> list[dict[str, Any]]:
    """``chat`` with the row's ``system`` column as its first turn, unless it starts with one.

    A different system turn already there wins (counted as ``system_ignored``); ``""`` is no
    system prompt (LLaMA-Factory writes it so).
    """
    system = row.get("system")
    if system is None:
        return chat
    if not isinstance(system, str):
        raise at.error(f"expected a string, got {type(system).__name__}", "system")
    if not system.strip():
        return chat
    if chat and chat[0]["role"] == "system":
        if chat[0]["content"] != system:
            changes.append(("system_ignored", "system", "the chat starts with its own system turn"))
        return chat
    return [{"role": "system", "content": system}, *chat]
