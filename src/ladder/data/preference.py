"""Preference rows: a prompt and two answers, one preferred.

Every accepted shape is normalised to one shape, shared by the DPO stage, the held-out
preference evaluation and reward-model training::

    {"prompt": [{"role": ..., "content": ...}, ...], "chosen": str, "rejected": str}

``prompt`` is the conversation up to (and ending with) the turn being answered; ``chosen`` and
``rejected`` are the assistant's text for that turn. Accepted inputs:

- explicit ``prompt``/``chosen``/``rejected``: each a string or a list of messages (TRL's
  standard and conversational preference formats); ``question`` is accepted for ``prompt``
  (Intel/orca_dpo_pairs);
- implicit prompt: ``chosen`` and ``rejected`` are whole conversations sharing a prefix; the
  prompt is that prefix, and what follows must be one assistant message on each side
  (Anthropic/hh-rlhf style, after TRL's ``extract_prompt``);
- LLaMA-Factory's ranking format (llamafactory/DPO-En-Zh-20k): ``conversations`` as a
  ShareGPT list of ``{"from", "value"}`` messages ending with the human turn, and ``chosen``/
  ``rejected`` as single ``{"from": "gpt", "value": ...}`` messages (or plain strings);
- an optional ``system`` string, prepended when the prompt has no system message.

:func:`split_heldout` makes the deterministic train/held-out split the DPO stage reports
preference accuracy on.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

from ladder.errors import DataError

__all__ = [
    "MIN_ROWS_FOR_HELDOUT",
    "heldout_count",
    "normalize_preference_rows",
    "preference_row",
    "split_heldout",
]

# Sets this large always hold out at least one pair when a held-out fraction is asked for.
MIN_ROWS_FOR_HELDOUT = 20

_ROLES = {"system", "user", "assistant", "tool"}
# ShareGPT / LLaMA-Factory speaker names -> chat roles.
_SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "system": "system",
    "observation": "tool",
    "tool": "tool",
}


class _Row:
    """Where a row came from, for errors that name source, row and field."""

    __slots__ = ("index", "source")

    def __init__(self, source: str, index: int) -> None:
        self.source = source
        self.index = index

    def error(self, message: str, field: str | None = None) -> DataError:
        return DataError(message, source=self.source, row=self.index, field=field)


def _message(m: Any, where: str, at: _Row) -> dict[str, str]:
    if not isinstance(m, Mapping):
        raise at.error(f"expected a message object, got {type(m).__name__}", where)
    if "from" in m and "role" not in m:  # ShareGPT
        speaker = m.get("from")
        role = _SHAREGPT_ROLES.get(str(speaker)) if isinstance(speaker, str) else None
        content_field = "value"
        if role is None:
            raise at.error(
                f"unknown speaker {speaker!r}; use one of {sorted(_SHAREGPT_ROLES)}", f"{where}.from"
            )
    else:
        role = m.get("role")
        content_field = "content"
        if role not in _ROLES:
            raise at.error(f"unknown role {role!r}; use one of {sorted(_ROLES)}", f"{where}.role")
    content = m.get(content_field)
    if content is None:
        raise at.error("missing field", f"{where}.{content_field}")
    if not isinstance(content, str):
        raise at.error(f"expected string content, got {type(content).__name__}", f"{where}.{content_field}")
    return {"role": role, "content": content}


def _messages(value: Any, field: str, at: _Row) -> list[dict[str, str]]:
    if not isinstance(value, Sequence) or isinstance(value, str) or not value:
        raise at.error("expected a non-empty list of messages", field)
    return [_message(m, f"{field}[{j}]", at) for j, m in enumerate(value)]


def _present(row: Mapping[str, Any], field: str, at: _Row) -> Any:
    if field not in row or row[field] is None:
        raise at.error("missing field", field)
    return row[field]


def _answer(value: Any, field: str, at: _Row) -> str:
    """``chosen``/``rejected`` given next to an explicit prompt: text, one message, or a list of one."""
    if isinstance(value, str):
        text = value
    elif isinstance(value, Mapping):
        msg = _message(value, field, at)
        if msg["role"] != "assistant":
            raise at.error(f"the answer must be an assistant message, got role {msg['role']!r}", field)
        text = msg["content"]
    elif isinstance(value, Sequence):
        msgs = _messages(value, field, at)
        if len(msgs) != 1:
            raise at.error(
                f"expected a single assistant message, got {len(msgs)} messages; put earlier turns in the prompt",
                field,
            )
        if msgs[0]["role"] != "assistant":
            raise at.error(f"the answer must be an assistant message, got role {msgs[0]['role']!r}", f"{field}[0]")
        text = msgs[0]["content"]
    else:
        raise at.error(f"expected a string or an assistant message, got {type(value).__name__}", field)
    if not text.strip():
        raise at.error("empty answer", field)
    return text


def _split_implicit(chosen: Any, rejected: Any, at: _Row) -> tuple[list[dict[str, str]], str, str]:
    """Whole conversations sharing a prefix -> (prompt, chosen text, rejected text)."""
    c = _messages(chosen, "chosen", at)
    r = _messages(rejected, "rejected", at)
    shared = 0
    while shared < min(len(c), len(r)) and c[shared] == r[shared]:
        shared += 1
    if shared == len(c) and shared == len(r):
        raise at.error("identical chosen and rejected: the pair teaches nothing; remove the row", "chosen")
    texts = []
    for name, conv in (("chosen", c), ("rejected", r)):
        rest = conv[shared:]
        if len(rest) != 1:
            what = "nothing" if not rest else f"{len(rest)} messages"
            raise at.error(
                f"after the prefix shared with the other answer, expected exactly one assistant message, "
                f"found {what}; give an explicit prompt/chosen/rejected instead",
                name,
            )
        if rest[0]["role"] != "assistant":
            raise at.error(
                f"the last differing message must be the assistant's, got role {rest[0]['role']!r}",
                f"{name}[{shared}]",
            )
        if not rest[0]["content"].strip():
            raise at.error("empty answer", f"{name}[{shared}].content")
        texts.append(rest[0]["content"])
    return c[:shared], texts[0], texts[1]


def _with_system(prompt: list[dict[str, str]], row: Mapping[str, Any], at: _Row) -> list[dict[str, str]]:
    system = row.get("system")
    if system is None or (prompt and prompt[0]["role"] == "system"):
        return prompt
    if not isinstance(system, str):
        raise at.error(f"expected a string, got {type(system).__name__}", "system")
    if not system.strip():
        return prompt  # LLaMA-Factory writes "" for "no system prompt"
    return [{"role": "system", "content": system}, *prompt]


def _check_prompt(prompt: list[dict[str, str]], field: str, at: _Row) -> None:
    users = [m for m in prompt if m["role"] == "user"]
    if not users:
        raise at.error("the prompt has no user turn; every pair must answer a user message", field)
    if prompt[-1]["role"] == "assistant":
        raise at.error(
            "the prompt ends with an assistant turn; it must end with the turn the answers reply to", field
        )
    if not any(m["content"].strip() for m in users):
        raise at.error("empty prompt: every user turn is blank", field)


def preference_row(row: Mapping[str, Any], source: str, index: int) -> dict[str, Any]:
    """One row (any supported shape) as ``{"prompt": messages, "chosen": str, "rejected": str}``.

    Raises:
        DataError: naming ``source``, the row ``index`` and the offending field.
    """
    at = _Row(source, index)
    prompt_field = "prompt"
    if "conversations" in row:  # LLaMA-Factory ranking format
        prompt_field = "conversations"
        prompt = _messages(row["conversations"], "conversations", at)
        chosen = _answer(_present(row, "chosen", at), "chosen", at)
        rejected = _answer(_present(row, "rejected", at), "rejected", at)
    elif row.get("prompt") is not None or row.get("question") is not None:
        prompt_field = "prompt" if row.get("prompt") is not None else "question"
        value = row[prompt_field]
        if isinstance(value, str):
            prompt = [{"role": "user", "content": value}]
        else:
            prompt = _messages(value, prompt_field, at)
        chosen = _answer(_present(row, "chosen", at), "chosen", at)
        rejected = _answer(_present(row, "rejected", at), "rejected", at)
    elif "chosen" in row or "rejected" in row:
        c, r = _present(row, "chosen", at), _present(row, "rejected", at)
        if isinstance(c, str) or isinstance(r, str):
            raise at.error(
                "missing field; chosen/rejected are plain text, so a prompt is needed (or give both as whole "
                "conversations sharing the prompt)",
                "prompt",
            )
        prompt, chosen, rejected = _split_implicit(c, r, at)
        prompt_field = "chosen"
    else:
        raise at.error(
            f"unrecognised preference row (keys: {sorted(row)}); use prompt/chosen/rejected, "
            "chosen/rejected conversations, or LLaMA-Factory's conversations/chosen/rejected"
        )
    if chosen.strip() == rejected.strip():
        raise at.error("identical chosen and rejected: the pair teaches nothing; remove the row", "chosen")
    prompt = _with_system(prompt, row, at)
    _check_prompt(prompt, prompt_field, at)
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected}


def normalize_preference_rows(
    rows: Sequence[Mapping[str, Any]], source: str
) -> tuple[list[dict[str, Any]], list[DataError]]:
    """Normalise every row; return ``(rows, problems)`` so pre-flight can report all at once.

    Rows with a problem are left out of the returned rows.

    >>> rows, problems = normalize_preference_rows(
    ...     [{"prompt": "Hi", "chosen": "Hello!", "rejected": "Go away."},
    ...      {"prompt": "Hi", "chosen": "Same", "rejected": "Same"}], "demo")
    >>> rows[0]
    {'prompt': [{'role': 'user', 'content': 'Hi'}], 'chosen': 'Hello!', 'rejected': 'Go away.'}
    >>> str(problems[0])
    "demo, row 1, field 'chosen': identical chosen and rejected: the pair teaches nothing; remove the row"
    """
    out: list[dict[str, Any]] = []
    problems: list[DataError] = []
    for i, row in enumerate(rows):
        try:
            if not isinstance(row, Mapping):
                raise DataError(f"expected an object (dict), got {type(row).__name__}", source=source, row=i)
            out.append(preference_row(row, source, i))
        except DataError as exc:
            problems.append(exc)
    return out, problems


def heldout_count(n_rows: int, fraction: float) -> int:
    """How many of ``n_rows`` :func:`split_heldout` holds out for ``fraction``."""
    if fraction <= 0 or n_rows < 2:
        return 0
    n = int(n_rows * fraction)
    if n_rows >= MIN_ROWS_FOR_HELDOUT:
        n = max(n, 1)
    return min(n, n_rows - 1)  # always leave something to train on


def split_heldout(
    rows: Sequence[Any], fraction: float, seed: int = 0
) -> tuple[list[Any], list[Any]]:
    """Split rows into ``(train, heldout)``, the same way for the same rows, fraction and seed.

    ``floor(len(rows) * fraction)`` rows are held out, chosen by a seeded shuffle; at least one
    when there are :data:`MIN_ROWS_FOR_HELDOUT` rows or more, and never all of them. Both parts
    keep the rows' original order.

    >>> train, heldout = split_heldout(list(range(40)), 0.1, seed=0)
    >>> len(train), len(heldout)
    (36, 4)
    >>> split_heldout(list(range(40)), 0.1, seed=0) == (train, heldout)
    True
    """
    if not 0 <= fraction < 1:
        raise ValueError(f"fraction must be in [0, 1), got {fraction}")
    n = heldout_count(len(rows), fraction)
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    held = set(order[:n])
    train = [r for i, r in enumerate(rows) if i not in held]
    heldout = [r for i, r in enumerate(rows) if i in held]
    return train, heldout
