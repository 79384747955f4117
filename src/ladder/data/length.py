"""Row checks every stage shares: token lengths against a limit, and exact duplicate rows.

Over-length rows are never handled silently. A stage's ``overlength`` setting says what happens
to rows longer than its limit (SFT/DPO/RM ``max_length``, GRPO ``max_prompt_length``):

- ``error`` (the default): pre-flight reports them (how many, which rows, how long) and nothing
  trains;
- ``drop``: they are left out of training;
- ``truncate``: they are cut to the limit, keeping their start (TRL's ``keep_start``). Only where
  the trainer can do so without changing what the row means: SFT and DPO.

Dropped and truncated rows are logged with their count and recorded in the stage's
``metrics.json`` (``stage_metrics.data_checks``). Pre-flight measures with the base model's
tokenizer (every stage keeps the tokenizer it starts from) when the base model is a local
folder or already in the Hugging Face cache; the stage measures again with its input
checkpoint's own tokenizer before training, and that count is the one recorded.

Exact duplicate rows are kept (each trains as often as it appears, as in TRL, LLaMA-Factory and
axolotl) but never silently: pre-flight logs a warning naming them, and their count is recorded.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from ladder.data.pretokenizer import preflight_tokenizer
from ladder.data.rendering import check_tools_render
from ladder.data.rendering import render_chat as _render
from ladder.data.rows import DataChecks, Origin
from ladder.errors import DataError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from ladder.stage import StageContext

__all__ = [
    "OVERLENGTH_POLICIES",
    "LengthCheck",
    "LengthRule",
    "check_lengths",
    "duplicate_rows",
    "enforce_rows",
    "preflight_rows",
    "duplicates_warning",
    "kept_indices",
    "pair_lengths",
    "preflight_tokenizer",
    "prompt_lengths",
    "chat_lengths",
    "token_lengths",
]

logger = logging.getLogger(__name__)

OVERLENGTH_POLICIES = ("error", "drop", "truncate")
_SHOWN = 5  # rows named in a message


@attrs.frozen
class LengthCheck:
    """What :func:`check_lengths` found and did.

    Attributes:
        rows: the rows to train on (over-length rows left out under ``drop``).
        problems: one :class:`DataError` under ``error`` when some row is too long, else empty.
        summary: JSON-able facts for ``metrics.json``: limit, policy, rows over it, dropped,
            truncated, longest.
    """

    rows: list[Any]
    problems: list[DataError]
    summary: dict[str, Any]


def token_lengths(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str]) -> list[int]:
    """Token count of each text, without added special tokens (chat templates write their own)."""
    if not texts:
        return []
    encoded = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    return [len(ids) for ids in encoded]


def chat_lengths(tokenizer: PreTrainedTokenizerBase, rows: Sequence[Mapping[str, Any]],
                 template: str | None = None) -> list[int]:
    """Tokens of each SFT row (``{"messages": [...]}``, with its ``tools``) rendered with the chat template."""
    return token_lengths(tokenizer, [_render(tokenizer, r["messages"], template, tools=r.get("tools")) for r in rows])


def pair_lengths(tokenizer: PreTrainedTokenizerBase, rows: Sequence[Mapping[str, Any]],
                 template: str | None = None) -> list[int]:
    """Tokens of the longer side (prompt + chosen, prompt + rejected) of each preference pair."""
    texts = []
    for r in rows:
        for side in ("chosen", "rejected"):
            texts.append(_render(tokenizer, [*r["prompt"], {"role": "assistant", "content": r[side]}], template))
    lengths = token_lengths(tokenizer, texts)
    return [max(lengths[i], lengths[i + 1]) for i in range(0, len(lengths), 2)]


def prompt_lengths(tokenizer: PreTrainedTokenizerBase, rows: Sequence[Mapping[str, Any]],
                   template: str | None = None) -> list[int]:
    """Tokens of each prompt (``{"prompt": [messages]}``) rendered up to the assistant's turn."""
    prompts = [_render(tokenizer, list(r["prompt"]), template, generation_prompt=True) for r in rows]
    return token_lengths(tokenizer, prompts)


def kept_indices(n_rows: int, problems: Sequence[DataError]) -> list[int]:
    """Original row numbers of the rows a normaliser kept (those without a problem), in order.

    Normalisers return the good rows only; this maps their positions back to the file's rows,
    so a later message can name the row a user sees. The normalisers' rows carry their exact
    origins (:class:`~ladder.data.rows.Rows`, also right after a shuffle, a mix or a ``drop:``),
    which :func:`preflight_rows` and :func:`enforce_rows` use instead when they have them.
    """
    bad = {p.row for p in problems if p.row is not None}
    return [i for i in range(n_rows) if i not in bad]


def check_lengths(
    rows: Sequence[Any],
    lengths: Sequence[int],
    *,
    limit: int,
    policy: str,
    source: str,
    setting: str = "max_length",
    indices: Sequence[int | Origin] | None = None,
    what: str = "row",
    can_truncate: bool = True,
    log: bool = True,
) -> LengthCheck:
    """Apply an ``overlength`` policy to rows whose token ``lengths`` exceed ``limit``.

    Args:
        rows: the normalised rows.
        lengths: each row's token count (same order).
        limit: the stage's limit in tokens.
        policy: ``error``, ``drop`` or ``truncate`` (see the module docstring).
        source: the dataset's label, for messages.
        setting: the name of the limit's setting, for messages.
        indices: each row's number in the file (default: its position), or its
            :class:`~ladder.data.rows.Origin` (named with its source when that is not ``source``).
        what: what a row is called in messages (``row``, ``pair``, ``prompt``).
        can_truncate: whether the stage offers ``truncate`` (named in the error's advice).
        log: log a warning naming the dropped or truncated rows (pre-flight does not).

    Returns:
        A :class:`LengthCheck`. Under ``truncate`` the rows are returned whole: the trainer cuts
        them (TRL's ``keep_start``); the summary records how many.

    Example:
        >>> check = check_lengths(["a", "b", "c"], [3, 9, 12], limit=8, policy="error", source="d.jsonl")
        >>> print(check.problems[0])  # doctest: +NORMALIZE_WHITESPACE
        d.jsonl, row 1: 2 rows are longer than max_length 8 tokens (row 1: 9 tokens, row 2: 12 tokens);
        raise max_length, or set overlength: drop (leave them out) or truncate (cut them to 8 tokens)
        >>> check_lengths(["a", "b", "c"], [3, 9, 12], limit=8, policy="drop", source="d").rows
        ['a']
    """
    if policy not in OVERLENGTH_POLICIES or (policy == "truncate" and not can_truncate):
        raise ValueError(f"overlength policy {policy!r} is not available here")
    if len(lengths) != len(rows):
        raise ValueError(f"got {len(lengths)} lengths for {len(rows)} rows")
    numbers = list(indices) if indices is not None else list(range(len(rows)))
    over = [(numbers[i], n) for i, n in enumerate(lengths) if n > limit]
    summary: dict[str, Any] = {
        "limit": limit,
        "setting": setting,
        "policy": policy,
        "overlength_rows": len(over),
        "longest": max(lengths, default=0),
        "dropped": 0,
        "truncated": 0,
    }
    if not over:
        return LengthCheck(list(rows), [], summary)
    count = f"{len(over)} {what}{'s' if len(over) > 1 else ''}"
    listed = ", ".join(f"{_name(what, i, source)}: {n} tokens" for i, n in over[:_SHOWN])
    if len(over) > _SHOWN:
        listed += f", and {len(over) - _SHOWN} more"
    if policy == "error":
        fixes = "overlength: drop (leave them out)"
        if can_truncate:
            fixes += f" or truncate (cut them to {limit} tokens)"
        problem = DataError(
            f"{count} {'are' if len(over) > 1 else 'is'} longer than {setting} {limit} tokens ({listed}); "
            f"raise {setting}, or set {fixes}",
            source=_place(over[0][0], source)[0],
            row=_place(over[0][0], source)[1],
        )
        return LengthCheck(list(rows), [problem], summary)
    if policy == "drop":
        keep = [r for r, n in zip(rows, lengths, strict=True) if n <= limit]
        summary["dropped"] = len(over)
        if not keep:
            problem = DataError(
                f"every {what} is longer than {setting} {limit} tokens (longest: {summary['longest']}), so "
                f"overlength: drop leaves nothing to train on; raise {setting}",
                source=source,
            )
            return LengthCheck(keep, [problem], summary)
        if log:
            logger.warning("%s: dropped %s longer than %s %d tokens (%s)", source, count, setting, limit, listed)
        return LengthCheck(keep, [], summary)
    summary["truncated"] = len(over)
    if log:
        logger.warning("%s: %s longer than %s %d tokens will be cut to it, keeping the start (%s)", source, count,
                       setting, limit, listed)
    return LengthCheck(list(rows), [], summary)


def _name(what: str, number: int | Origin, source: str) -> str:
    """``row 3``, or ``b.jsonl row 3`` for a row of a mix's part."""
    if isinstance(number, Origin):
        return f"{what} {number.row}" if number.source == source else f"{number.source} {what} {number.row}"
    return f"{what} {number}"


def _place(number: int | Origin, source: str) -> tuple[str, int]:
    return (number.source, number.row) if isinstance(number, Origin) else (source, number)


def _numbers(rows: Sequence[Any], indices: Sequence[int] | None) -> Sequence[int | Origin] | None:
    """The rows' own origins when they carry them (a normaliser's rows), else ``indices``."""
    origins = getattr(rows, "origins", None)
    if isinstance(origins, list) and len(origins) == len(rows):
        return origins
    return indices


def duplicate_rows(
    rows: Sequence[Mapping[str, Any]], indices: Sequence[int | Origin] | None = None
) -> list[tuple[Any, Any]]:
    """``(row, first row it repeats)`` for every exact duplicate (same keys and values).

    ``indices`` gives each row's number in the file (default: its position).

    Example:
        >>> duplicate_rows([{"a": 1}, {"a": 2}, {"a": 1}, {"a": 1}])
        [(2, 0), (3, 0)]
    """
    numbers = list(indices) if indices is not None else list(range(len(rows)))
    first: dict[str, int] = {}
    found = []
    for i, row in enumerate(rows):
        key = json.dumps(row, sort_keys=True, default=str, ensure_ascii=False)
        if key in first:
            found.append((numbers[i], first[key]))
        else:
            first[key] = numbers[i]
    return found


def duplicates_warning(
    rows: Sequence[Mapping[str, Any]], source: str, indices: Sequence[int | Origin] | None = None
) -> tuple[int, str | None]:
    """The number of exact duplicate rows and a warning naming them (``None`` when there are none)."""
    found = duplicate_rows(rows, indices)
    if not found:
        return 0, None
    shown = ", ".join(f"{_name('row', i, source)} = {_name('row', j, source)}" for i, j in found[:_SHOWN])
    more = f", and {len(found) - _SHOWN} more" if len(found) > _SHOWN else ""
    return len(found), (
        f"{source}: {len(found)} exact duplicate row{'s' if len(found) > 1 else ''} ({shown}{more}); they are kept, "
        f"so each trains as often as it appears; remove them if that is not intended"
    )


LengthsOf = Callable[[Any, Sequence[Any], "str | None"], list[int]]


@attrs.frozen(kw_only=True)
class LengthRule:
    """How a stage measures its rows and applies its ``overlength`` policy, in pre-flight
    (:func:`preflight_rows`) and again before training (:func:`enforce_rows`).

    Attributes:
        lengths_of: each row's tokens given a tokenizer, the rows and a chat template
            (:func:`chat_lengths`, :func:`pair_lengths`, :func:`prompt_lengths`).
        limit, policy, setting, what, can_truncate: as in :func:`check_lengths`.
    """

    lengths_of: LengthsOf
    limit: int
    policy: str
    setting: str = "max_length"
    what: str = "row"
    can_truncate: bool = True

    def check(self, rows: Sequence[Any], lengths: Sequence[int], *, source: str,
              indices: Sequence[int | Origin] | None, log: bool = True) -> LengthCheck:
        """:func:`check_lengths` under this rule."""
        return check_lengths(rows, lengths, limit=self.limit, policy=self.policy, source=source, setting=self.setting,
                             indices=indices, what=self.what, can_truncate=self.can_truncate, log=log)


def preflight_rows(
    ctx: StageContext,
    rows: Sequence[Any],
    indices: Sequence[int],
    *,
    source: str,
    rule: LengthRule,
    template: str | None = None,
) -> list[str]:
    """Pre-flight's row checks for a stage: logs a duplicates warning, returns length problems.

    Lengths are measured only when :func:`preflight_tokenizer` has a tokenizer (the base model
    is a local folder) and the rows render with the chat template; otherwise the stage measures
    them before training.
    """
    indices = _numbers(rows, indices)
    _count, warning = duplicates_warning(rows, source, indices)
    if warning:
        logger.warning(warning)
    tokenizer = preflight_tokenizer(ctx)
    if tokenizer is None or not rows:
        return []
    try:
        check_tools_render(tokenizer, rows, template, source)
        lengths = rule.lengths_of(tokenizer, rows, template)
    except DataError as exc:  # the template drops what the rows hold
        return [str(exc)]
    except Exception:  # e.g. no chat template yet: the stage measures with its own before training
        logger.debug("pre-flight could not measure %s; the stage measures before training", source, exc_info=True)
        return []
    return [str(p) for p in rule.check(rows, lengths, source=source, indices=indices, log=False).problems]


def enforce_rows(
    tokenizer: Any,
    rows: Sequence[Any],
    indices: Sequence[int] | None,
    *,
    source: str,
    rule: LengthRule,
    template: str | None = None,
) -> tuple[list[Any], dict[str, Any]]:
    """The stage's row checks before training, with its input checkpoint's own tokenizer.

    Rows from a normaliser (a :class:`~ladder.data.rows.Rows`) are named by their own
    origins, and bring what loading and normalising did to them.

    Returns:
        ``(rows to train on, data_checks)``: ``data_checks`` (for ``metrics.json``) holds
        ``duplicate_rows``, the ``overlength`` summary of :func:`check_lengths` and, for a
        normaliser's rows, :meth:`~ladder.data.rows.DataChecks.summary` (``loaded``, ``kept``,
        ``dropped`` and ``changed`` per reason with the rows named, ``columns``, ``sources``).

    Raises:
        DataError: under ``overlength: error`` when a row is too long, or under ``drop`` when
            no row is short enough; or when the chat template drops the rows' tool calls.
    """
    numbers = _numbers(rows, indices)
    duplicates, _warning = duplicates_warning(rows, source, numbers)
    check_tools_render(tokenizer, rows, template, source)
    check = rule.check(rows, rule.lengths_of(tokenizer, rows, template) if rows else [], source=source,
                       indices=numbers)
    if check.problems:
        raise check.problems[0]
    found = getattr(rows, "checks", None)
    shapes = found.summary() if isinstance(found, DataChecks) else {}
    return check.rows, {"duplicate_rows": duplicates, "overlength": check.summary, **shapes}

