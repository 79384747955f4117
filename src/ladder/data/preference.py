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
- H4 UltraFeedback (``HuggingFaceH4/ultrafeedback_binarized``): a ``prompt`` string and
  ``chosen``/``rejected`` as whole conversations (``[user, assistant]``, or longer ones sharing
  earlier turns); the prompt is the start both share, and the ``prompt`` column must agree
  with it (its last user turn, or its first); the other columns (``messages``, scores,
  ``prompt_id``) are not used;
- an optional ``system`` string, prepended when the prompt has no system message (a different
  system turn already there wins, counted as ``system_ignored``).

Message content may be a list of text parts; see :mod:`ladder.data.messages`.

:func:`split_heldout` makes the deterministic train/held-out split the DPO stage reports
preference accuracy on.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

from ladder.data.messages import At, Changes, parse_message, parse_messages, with_system
from ladder.data.rows import Origin, Rows, normalise_each
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

Message = dict[str, Any]


def _present(row: Mapping[str, Any], field: str, at: At) -> Any:
    if field not in row or row[field] is None:
        raise at.error("missing field", field)
    return row[field]


def _answer(value: Any, field: str, at: At, changes: Changes) -> str:
    """``chosen``/``rejected`` given next to an explicit prompt: text, one message, or a list of one."""
    if isinstance(value, str):
        text = value
    elif isinstance(value, Mapping):
        msg = parse_message(value, field, at, changes=changes)
        if msg["role"] != "assistant":
            raise at.error(f"the answer must be an assistant message, got role {msg['role']!r}", field)
        text = msg["content"]
    elif isinstance(value, Sequence):
        msgs = parse_messages(value, field, at, changes=changes)
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


def _split_implicit(chosen: Any, rejected: Any, at: At, changes: Changes) -> tuple[list[Message], str, str]:
    """Whole conversations sharing a prefix -> (prompt, chosen text, rejected text)."""
    c = parse_messages(chosen, "chosen", at, changes=changes)
    r = parse_messages(rejected, "rejected", at, changes=changes)
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


def _short(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


def _prompt_matches(prompt: str | list[Message], prefix: list[Message], field: str, at: At) -> None:
    """The prompt column agrees with the start both conversations share (H4 UltraFeedback style)."""
    users = [m["content"] for m in prefix if m["role"] == "user"]
    if isinstance(prompt, list):
        if prompt != prefix:
            raise at.error(
                f"the prompt ({len(prompt)} messages) is not the start that chosen and rejected share "
                f"({len(prefix)} messages); the columns may come from different rows", field,
            )
        return
    if not users:
        raise at.error("chosen and rejected share no user turn, so they do not answer the prompt", field)
    if prompt.strip() not in {users[-1].strip(), users[0].strip()}:
        raise at.error(
            f"the prompt {_short(prompt)} is not the user turn that chosen and rejected answer "
            f"({_short(users[-1])}); the columns may come from different rows", field,
        )


def _check_prompt(prompt: list[Message], field: str, at: At) -> None:
    users = [m for m in prompt if m["role"] == "user"]
    if not users:
        raise at.error("the prompt has no user turn; every pair must answer a user message", field)
    if prompt[-1]["role"] == "assistant":
        raise at.error(
            "the prompt ends with an assistant turn; it must end with the turn the answers reply to", field
        )
    if not any(m["content"].strip() for m in users):
        raise at.error("empty prompt: every user turn is blank", field)


def _conversations(chosen: Any, rejected: Any) -> bool:
    """Both answers are message lists and one has more than the answer: whole conversations."""
    lists = all(isinstance(v, Sequence) and not isinstance(v, str) for v in (chosen, rejected))
    return lists and max(len(chosen), len(rejected)) > 1


def preference_row(row: Mapping[str, Any], source: str | Origin, index: int | None = None, *,
                   changes: Changes | None = None) -> dict[str, Any]:
    """One row (any supported shape) as ``{"prompt": messages, "chosen": str, "rejected": str}``.

    The arguments are those of :func:`ladder.data.sft.sft_row`: the row, where it is (a label
    and row number, or an :class:`~ladder.data.rows.Origin`), and a list collecting changes.

    Raises:
        DataError: naming ``source``, the row ``index`` and the offending field.
    """
    at = At(source, index)
    changes = changes if changes is not None else []
    prompt_field = "prompt"
    if "conversations" in row:  # LLaMA-Factory ranking format
        prompt_field = "conversations"
        prompt = parse_messages(row["conversations"], "conversations", at, changes=changes)
        chosen = _answer(_present(row, "chosen", at), "chosen", at, changes)
        rejected = _answer(_present(row, "rejected", at), "rejected", at, changes)
    elif row.get("prompt") is not None or row.get("question") is not None:
        prompt_field = "prompt" if row.get("prompt") is not None else "question"
        value = row[prompt_field]
        given: str | list[Message] = value if isinstance(value, str) else parse_messages(value, prompt_field, at,
                                                                                          changes=changes)
        c, r = _present(row, "chosen", at), _present(row, "rejected", at)
        if _conversations(c, r):  # H4 UltraFeedback: the prompt, and each answer as the whole conversation
            prompt, chosen, rejected = _split_implicit(c, r, at, changes)
            _prompt_matches(given, prompt, prompt_field, at)
        else:
            prompt = [{"role": "user", "content": given}] if isinstance(given, str) else given
            chosen = _answer(c, "chosen", at, changes)
            rejected = _answer(r, "rejected", at, changes)
    elif "chosen" in row or "rejected" in row:
        c, r = _present(row, "chosen", at), _present(row, "rejected", at)
        if isinstance(c, str) or isinstance(r, str):
            raise at.error(
                "missing field; chosen/rejected are plain text, so a prompt is needed (or give both as whole "
                "conversations sharing the prompt)",
                "prompt",
            )
        prompt, chosen, rejected = _split_implicit(c, r, at, changes)
        prompt_field = "chosen"
    else:
        raise at.error(
            f"unrecognised preference row (keys: {sorted(row)}); use prompt/chosen/rejected, "
            "chosen/rejected conversations, or LLaMA-Factory's conversations/chosen/rejected"
        )
    if chosen.strip() == rejected.strip():
        raise at.error("identical chosen and rejected: the pair teaches nothing; remove the row", "chosen")
    prompt = with_system(prompt, row, at, changes)
    _check_prompt(prompt, prompt_field, at)
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected}


def normalize_preference_rows(
    rows: Sequence[Mapping[str, Any]], source: str
) -> tuple[Rows, list[DataError]]:
    """Normalise every row; return ``(rows, problems)`` so pre-flight can report all at once.

    Rows with a problem are left out of the returned rows (a :class:`~ladder.data.rows.Rows`,
    which carries each pair's origin and the :class:`~ladder.data.rows.DataChecks`).

    >>> rows, problems = normalize_preference_rows(
    ...     [{"prompt": "Hi", "chosen": "Hello!", "rejected": "Go away."},
    ...      {"prompt": "Hi", "chosen": "Same", "rejected": "Same"}], "demo")
    >>> rows[0]
    {'prompt': [{'role': 'user', 'content': 'Hi'}], 'chosen': 'Hello!', 'rejected': 'Go away.'}
    >>> str(problems[0])
    "demo, row 1, field 'chosen': identical chosen and rejected: the pair teaches nothing; remove the row"
    """
    return normalise_each(rows, source, lambda row, origin, changes: preference_row(row, origin, changes=changes))


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
    train = [i for i in range(len(rows)) if i not in held]
    heldout = [i for i in range(len(rows)) if i in held]
    if isinstance(rows, Rows):  # both parts keep each pair's origin and the data checks
        return rows.subset(train), rows.subset(heldout)
    return [rows[i] for i in train], [rows[i] for i in heldout]
