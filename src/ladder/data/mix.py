"""Mixing datasets, and renaming a dataset's columns onto the names ladder reads.

Both work on loaded rows (:class:`~ladder.data.rows.Rows`); :func:`ladder.data.loading.load_rows`
applies them as a dataset spec's ``columns:`` and ``mix:`` say.

A part of a mix takes ``fraction`` of its own rows (``0.7``: 70 %) or ``count`` rows, as
open-instruct's ``dataset_mixer`` reads a float and an integer, or all of them. With the mix's
``seed`` the rows taken are a seeded sample of the part and the mixture is shuffled; without
one they are the part's first rows, one part after the other. Either way the same spec gives
the same rows.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

from ladder.data.rows import DataChecks, Origin, Rows
from ladder.errors import DataError

__all__ = ["combine", "rename_columns", "take"]


def rename_columns(rows: list[dict[str, Any]], columns: Mapping[str, str], label: str) -> list[dict[str, Any]]:
    """Rename the file's columns onto ladder's names: ``columns`` maps ladder's name -> the file's.

    Raises:
        DataError: a mapped column is in no row (naming it and the columns there are), or a row
            has both a mapped column and the name it maps onto (one would be lost).

    Example:
        >>> rename_columns([{"question": "Hi", "response": "Hello"}], {"instruction": "question",
        ...                 "output": "response"}, "qa.jsonl")
        [{'instruction': 'Hi', 'output': 'Hello'}]
    """
    present = sorted({key for row in rows for key in row})
    missing = [(name, col) for name, col in columns.items() if col not in present]
    if missing:
        listed = ", ".join(f"{name!r} to {col!r}" for name, col in missing)
        raise DataError(
            f"columns: maps {listed}, but the dataset has no such column; its columns are {present}",
            source=label,
            field=missing[0][1],
        )
    renamed = set(columns.values())
    out = []
    for i, row in enumerate(rows):
        for name, col in columns.items():
            if name != col and name in row and name not in renamed and col in row:
                raise DataError(
                    f"the row has both {col!r} and {name!r}, and columns: maps {col!r} onto {name!r}, so one would "
                    f"be lost; remove one of them, or map {name!r} elsewhere too",
                    source=label,
                    row=i,
                    field=name,
                )
        new = {k: v for k, v in row.items() if k not in renamed}
        new.update({name: row[col] for name, col in columns.items() if col in row})
        out.append(new)
    return out


def take(rows: Rows, label: str, *, fraction: float | None, count: int | None, seed: int | None,
         part: int) -> Rows:
    """The rows a part of a mix contributes (see the module docstring).

    Raises:
        DataError: ``count`` is more than the part has, or ``fraction`` leaves no row.
    """
    n = len(rows)
    if count is not None:
        if count > n:
            raise DataError(
                f"the mix asks for count: {count} rows but this part has {n}; ask for at most {n}, or use "
                "fraction (of the part's own rows)",
                source=label,
            )
        wanted = count
    elif fraction is not None:
        wanted = int(n * fraction)
        if wanted == 0:
            raise DataError(f"fraction: {fraction} of {n} rows takes no row; raise it, or use count", source=label)
    else:
        wanted = n
    if seed is None:
        return rows[:wanted]
    picked = random.Random(f"{seed}:{part}").sample(range(n), wanted)
    return rows.subset(sorted(picked))


def combine(parts: Sequence[tuple[Rows, str, int]], seed: int | None, drop: Sequence[str]) -> Rows:
    """The parts' rows as one :class:`Rows` (shuffled with ``seed``), each row keeping its origin.

    ``parts`` holds ``(rows taken, part's label, rows the part had)``; the checks record, per
    part, how many rows were available and how many were taken.
    """
    rows: list[dict[str, Any]] = []
    origins: list[Origin] = []
    sources = []
    for taken, label, available in parts:
        rows += list(taken)
        origins += taken.origins
        sources.append({"source": label, "available": available, "taken": len(taken)})
    order = list(range(len(rows)))
    if seed is not None:
        random.Random(seed).shuffle(order)
    checks = DataChecks(loaded=len(rows), sources=sources)
    return Rows([rows[i] for i in order], origins=[origins[i] for i in order], drop=drop, checks=checks)
