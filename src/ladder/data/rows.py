"""Where each row came from, and what loading and normalising did to the rows.

:func:`ladder.data.loading.load_rows` returns a :class:`Rows`: a plain list of row dicts that
also knows each row's :class:`Origin` (its file and row number there, which a shuffle or a mix
no longer matches with its position), the dataset's ``drop`` policy, and a :class:`DataChecks`
ledger. The normalisers (:func:`ladder.data.sft.normalize_sft_rows` and the preference and
verifiable ones) return their rows as a :class:`Rows` too, with the ledger extended by every
row they dropped or changed, so a stage's ``data_checks`` (``metrics.json``) can name them.
Slicing a :class:`Rows` keeps what it knows; any other list operation gives a plain list.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, SupportsIndex, overload

import attrs

from ladder.errors import DataError

__all__ = ["DROP_REASONS", "DataChecks", "NonTextContentError", "Origin", "Rows", "normalise_each"]

logger = logging.getLogger(__name__)

#: What a dataset's ``drop:`` may name: rows with image/audio/… parts, or every unusable row.
DROP_REASONS = ("non_text", "invalid")
_NAMED = 20  # rows named per reason in metrics.json (the count is always exact)


class NonTextContentError(DataError):
    """A message has an image, audio or other non-text part: ladder trains on text."""


@attrs.frozen
class Origin:
    """A row's place in the data a user has: its source (file, preset, hub id) and row number."""

    source: str
    row: int

    def __str__(self) -> str:
        return f"{self.source}, row {self.row}"


@attrs.frozen
class Note:
    """One dropped or changed row: where it is, the field concerned, and why."""

    origin: Origin
    field: str | None
    why: str

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.origin.source, "row": self.origin.row, "field": self.field, "why": self.why}


@attrs.define
class DataChecks:
    """What loading and normalising did to a dataset, for ``metrics.json`` and the report.

    Attributes:
        loaded: rows loaded (after a part's ``limit``, ``fraction`` or ``count``).
        kept: rows the normaliser kept (``None`` before normalising).
        dropped: reason -> rows left out (under a ``drop:`` policy).
        changed: reason -> rows changed in a way that is more than a change of shape.
        columns: the ``columns:`` mapping applied (ladder's name -> the file's), if any.
        sources: for a mix, one entry per part (source, rows available, rows taken).
    """

    loaded: int = 0
    kept: int | None = None
    dropped: dict[str, list[Note]] = attrs.field(factory=dict)
    changed: dict[str, list[Note]] = attrs.field(factory=dict)
    columns: dict[str, str] = attrs.field(factory=dict)
    sources: list[dict[str, Any]] = attrs.field(factory=list)

    def copy(self) -> DataChecks:
        return DataChecks(
            loaded=self.loaded,
            kept=self.kept,
            dropped={k: list(v) for k, v in self.dropped.items()},
            changed={k: list(v) for k, v in self.changed.items()},
            columns=dict(self.columns),
            sources=[dict(s) for s in self.sources],
        )

    def drop(self, reason: str, origin: Origin, field: str | None, why: str) -> None:
        self.dropped.setdefault(reason, []).append(Note(origin, field, why))

    def change(self, reason: str, origin: Origin, field: str | None, why: str) -> None:
        self.changed.setdefault(reason, []).append(Note(origin, field, why))

    def summary(self) -> dict[str, Any]:
        """JSON-able facts: counts per reason (exact) and the first rows of each, named.

        Example:
            >>> checks = DataChecks(loaded=3, kept=2)
            >>> checks.drop("non_text", Origin("a.jsonl", 1), "messages[0].content[1]", "an image part")
            >>> checks.summary()["dropped"]["non_text"]["count"]
            1
        """
        out: dict[str, Any] = {"loaded": self.loaded, "kept": self.kept if self.kept is not None else self.loaded}
        for key, notes in (("dropped", self.dropped), ("changed", self.changed)):
            out[key] = {
                reason: {"count": len(found), "rows": [n.as_dict() for n in found[:_NAMED]]}
                for reason, found in sorted(notes.items())
            }
        if self.columns:
            out["columns"] = dict(self.columns)
        if self.sources:
            out["sources"] = [dict(s) for s in self.sources]
        return out

    def log(self, label: str) -> None:
        """One warning per drop reason and one info line per change reason, naming the first rows."""
        for reason, notes in sorted(self.dropped.items()):
            logger.warning("%s: dropped %d row%s (%s: %s)", label, len(notes), "s" if len(notes) > 1 else "",
                           reason, _listed(notes))
        for reason, notes in sorted(self.changed.items()):
            logger.info("%s: %d row%s changed (%s: %s)", label, len(notes), "s" if len(notes) > 1 else "",
                        reason, _listed(notes))


def _listed(notes: Sequence[Note], shown: int = 3) -> str:
    text = "; ".join(f"{n.origin}: {n.why}" for n in notes[:shown])
    return text + (f"; and {len(notes) - shown} more" if len(notes) > shown else "")


class Rows(list):  # type: ignore[type-arg]
    """A list of row dicts that also knows each row's :class:`Origin`, the ``drop`` policy and
    the :class:`DataChecks` so far. Slices keep all three."""

    origins: list[Origin]
    drop: frozenset[str]
    checks: DataChecks

    def __init__(
        self,
        rows: Iterable[Any] = (),
        *,
        origins: Sequence[Origin] | None = None,
        drop: Iterable[str] = (),
        checks: DataChecks | None = None,
        label: str = "<rows>",
    ) -> None:
        super().__init__(rows)
        self.origins = list(origins) if origins is not None else [Origin(label, i) for i in range(len(self))]
        if len(self.origins) != len(self):
            raise ValueError(f"{len(self.origins)} origins for {len(self)} rows")
        self.drop = frozenset(drop)
        self.checks = checks if checks is not None else DataChecks(loaded=len(self))

    @overload
    def __getitem__(self, key: SupportsIndex) -> Any: ...
    @overload
    def __getitem__(self, key: slice) -> Rows: ...

    def __getitem__(self, key: SupportsIndex | slice) -> Any:
        if isinstance(key, slice):
            return Rows(list.__getitem__(self, key), origins=self.origins[key], drop=self.drop, checks=self.checks)
        return list.__getitem__(self, key)

    def subset(self, positions: Iterable[int]) -> Rows:
        """The rows at ``positions`` (in that order), keeping their origins."""
        picked = list(positions)
        return Rows([self[i] for i in picked], origins=[self.origins[i] for i in picked], drop=self.drop,
                    checks=self.checks)

    @property
    def indices(self) -> list[int]:
        """Each row's number in its source (what :func:`ladder.data.length.kept_indices` estimates)."""
        return [o.row for o in self.origins]


def origins_of(rows: Sequence[Any], source: str) -> list[Origin]:
    """Each row's origin: the ones a :class:`Rows` knows, else ``(source, position)``."""
    known = getattr(rows, "origins", None)
    if isinstance(known, list) and len(known) == len(rows):
        return known
    return [Origin(source, i) for i in range(len(rows))]


Normaliser = Callable[[Mapping[str, Any], Origin, list[tuple[str, str | None, str]]], dict[str, Any]]


def normalise_each(
    rows: Sequence[Any], source: str, normalise: Normaliser
) -> tuple[Rows, list[DataError]]:
    """Run ``normalise`` on every row; collect problems, apply the ``drop`` policy, keep the ledger.

    ``normalise(row, origin, changes)`` returns the trainer row or raises :class:`DataError`
    naming the origin's source and row; it appends ``(reason, field, why)`` to ``changes`` for
    every change worth counting. A row whose problem the dataset's ``drop:`` names (``non_text``
    for an image part, ``invalid`` for any problem) is left out and counted instead of reported.
    """
    origins = origins_of(rows, source)
    drop: frozenset[str] = getattr(rows, "drop", frozenset())
    known = getattr(rows, "checks", None)
    checks = known.copy() if isinstance(known, DataChecks) else DataChecks(loaded=len(rows))
    out: list[dict[str, Any]] = []
    kept: list[Origin] = []
    problems: list[DataError] = []
    for row, origin in zip(rows, origins, strict=True):
        changes: list[tuple[str, str | None, str]] = []
        try:
            if not isinstance(row, Mapping):
                raise DataError(f"expected an object (dict), got {type(row).__name__}", source=origin.source,
                                row=origin.row)
            normalised = normalise(row, origin, changes)
        except DataError as exc:
            reason = "non_text" if isinstance(exc, NonTextContentError) else "invalid"
            if reason in drop or "invalid" in drop:
                checks.drop(reason, origin, exc.field, exc.reason)
            else:
                problems.append(exc)
            continue
        for reason, field, why in changes:
            checks.change(reason, origin, field, why)
        out.append(normalised)
        kept.append(origin)
    checks.kept = len(out)
    if not out and not problems and rows:
        problems.append(DataError(
            f"every row was dropped ({', '.join(sorted(checks.dropped))}), so nothing is left to train on; "
            "look at the rows named above or remove the dataset's drop: setting to see each problem",
            source=source,
        ))
    checks.log(source)
    return Rows(out, origins=kept, drop=drop, checks=checks), problems
