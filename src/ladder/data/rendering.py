"""Rendering rows with a chat template, and checking the template renders what the rows hold.

A chat template that knows nothing of tools renders an assistant turn that only calls a tool
as an empty turn, and leaves the ``tools`` definitions out: training on it would teach the
model to answer with nothing. :func:`check_tools_render` finds that before training, with the
template the stage trains with, and names the row and field.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ladder.errors import DataError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

__all__ = ["check_tools_render", "render_chat"]

_PROBE = "ladder_probe_tool_7f3a"  # a name no template or data holds


def render_chat(
    tokenizer: PreTrainedTokenizerBase,
    messages: Sequence[Mapping[str, Any]],
    template: str | None,
    *,
    tools: Sequence[Mapping[str, Any]] | None = None,
    generation_prompt: bool = False,
) -> str:
    """The chat as text, with the row's tool definitions when it has some (as TRL renders it)."""
    return tokenizer.apply_chat_template(list(messages), tools=list(tools) if tools else None, tokenize=False,
                                         chat_template=template, add_generation_prompt=generation_prompt)


def _where_origin(rows: Sequence[Any], position: int, source: str) -> tuple[str, int]:
    origins = getattr(rows, "origins", None)
    if isinstance(origins, list) and len(origins) == len(rows):
        return origins[position].source, origins[position].row
    return source, position


def check_tools_render(
    tokenizer: PreTrainedTokenizerBase, rows: Sequence[Mapping[str, Any]], template: str | None, source: str
) -> None:
    """Raise when the template drops the first row's tool calls or tool definitions.

    Renders the first row with a tool call (and the first with ``tools``) twice, the second
    time with the function's name changed; the same text both times means the template
    ignores it. One row per kind suffices: a template treats every row alike.

    Raises:
        DataError: naming the row and the field (``messages[j].tool_calls`` or ``tools``).
    """
    advice = ("so training would teach the model to leave it out; train with a chat template that renders tools "
              "(Qwen2.5, Llama 3.1 and most recent instruct models have one), or set the stage's chat_template to one")
    calls = next(((i, j) for i, row in enumerate(rows) for j, m in enumerate(row.get("messages", ()))
                  if m.get("tool_calls")), None)
    if calls is not None:
        i, j = calls
        row = rows[i]
        renamed = copy.deepcopy(list(row["messages"]))
        for call in renamed[j]["tool_calls"]:
            call["function"]["name"] = _PROBE
        if _same(tokenizer, template, (row["messages"], row.get("tools")), (renamed, row.get("tools"))):
            where, number = _where_origin(rows, i, source)
            raise DataError(f"the chat template does not render this assistant turn's tool calls, {advice}",
                            source=where, row=number, field=f"messages[{j}].tool_calls")
    defined = next((i for i, row in enumerate(rows) if row.get("tools")), None)
    if defined is not None:
        row = rows[defined]
        renamed_tools = copy.deepcopy(list(row["tools"]))
        renamed_tools[0]["function"]["name"] = _PROBE
        if _same(tokenizer, template, (row["messages"], row["tools"]), (row["messages"], renamed_tools)):
            where, number = _where_origin(rows, defined, source)
            raise DataError(f"the chat template does not render the row's tool definitions, {advice}",
                            source=where, row=number, field="tools")


def _same(tokenizer: PreTrainedTokenizerBase, template: str | None, *chats: tuple[Any, Any]) -> bool:
    first, second = (render_chat(tokenizer, messages, template, tools=tools) for messages, tools in chats)
    return first == second
