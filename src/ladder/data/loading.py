"""Load dataset rows from a local file, an in-memory list, a ``datasets.Dataset`` or the hub.

Rows are plain dicts from here on; the per-stage modules (:mod:`ladder.data.sft`, …)
validate them and turn them into the shape the TRL trainer expects. A spec may rename the
file's columns (``columns:``), mix several datasets (``mix:``, :mod:`ladder.data.mix`), pick
a hub dataset's ``config`` and ``split``, and ask for unusable rows to be left out and
counted (``drop:``) instead of stopping the run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from ladder.data.mix import combine, rename_columns, take
from ladder.data.rows import DROP_REASONS, DataChecks, Rows
from ladder.errors import DataError

__all__ = ["DatasetSpec", "PRESETS", "load_rows", "content_hash", "as_spec"]

logger = logging.getLogger(__name__)

# Named presets for users online (hub id, config name, split, column mapping notes).
PRESETS: dict[str, dict[str, Any]] = {
    "alpaca_en": {"path": "tatsu-lab/alpaca", "split": "train"},
    "dpo_en_zh_20k": {"path": "llamafactory/DPO-En-Zh-20k", "name": "en", "split": "train"},
    "gsm8k": {"path": "openai/gsm8k", "name": "main", "split": "train"},
    "gsm8k_test": {"path": "openai/gsm8k", "name": "main", "split": "test"},
}

_FILE_TYPES = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv"}


_SPEC_KEYS = ("source", "path", "config", "name", "split", "limit", "seed", "columns", "drop", "mix", "fraction",
              "count")


def _columns(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise DataError(f"columns: expected a mapping of ladder's column names to the file's, got {value!r}")
    return dict(value)


def _drop(value: Any) -> tuple[str, ...]:
    values = (value,) if isinstance(value, str) else tuple(value or ())
    unknown = [v for v in values if v not in DROP_REASONS]
    if unknown:
        raise DataError(f"drop: unknown {unknown!r}; use {list(DROP_REASONS)} (non_text: rows with image/audio "
                        "parts; invalid: every row that cannot be used)")
    return values


def _parts(value: Any) -> tuple[DatasetSpec, ...]:
    if value is None or (isinstance(value, (list, tuple)) and not value):  # no mix (a spec written out has [])
        return ()
    if not isinstance(value, Sequence) or isinstance(value, str):
        raise DataError(f"mix: expected a list of datasets, got {value!r}")
    return tuple(as_spec(part) for part in value)


@attrs.frozen(kw_only=True)
class DatasetSpec:
    """Where a dataset comes from, and which of its rows to use.

    ``source`` is a local file (.json/.jsonl/.parquet/.csv), a directory saved with
    ``Dataset.save_to_disk``, a preset name (``alpaca_en``, ``dpo_en_zh_20k``, ``gsm8k``), a hub
    id, an in-memory list of dicts, or a ``datasets.Dataset``. Or, instead of a source, ``mix``:
    a list of such specs, each with ``fraction`` or ``count`` (see :mod:`ladder.data.mix`).
    """

    source: Any = attrs.field(default=None, metadata={"help": "file path, preset, hub id, list of rows or Dataset"})
    config: str | None = attrs.field(default=None, metadata={"help": "config (subset) name of a hub dataset"})
    split: str | None = attrs.field(default=None, metadata={"help": "split of a hub dataset (default: train)"})
    limit: int | None = attrs.field(
        default=None,
        validator=attrs.validators.optional(attrs.validators.ge(1)),
        metadata={"help": "use only the first N rows (after shuffling when seed is set)"},
    )
    seed: int | None = attrs.field(
        default=None, metadata={"help": "shuffle with this seed before taking `limit` rows (a mix: sample with it)"}
    )
    columns: dict[str, str] = attrs.field(
        factory=dict, converter=_columns, metadata={"help": "ladder's column name -> the file's, e.g. {output: answer}"}
    )
    drop: tuple[str, ...] = attrs.field(
        default=(), converter=_drop,
        metadata={"help": "leave out (and count) rows instead of stopping: non_text (image parts), invalid (any)"},
    )
    mix: tuple[DatasetSpec, ...] = attrs.field(default=(), converter=_parts,
                                               metadata={"help": "several datasets, each with fraction or count"})
    fraction: float | None = attrs.field(default=None, metadata={"help": "in a mix: this share of the part's rows"})
    count: int | None = attrs.field(default=None, metadata={"help": "in a mix: this many of the part's rows"})

    def __attrs_post_init__(self) -> None:
        where = self.label
        if (self.source is None) == (not self.mix):
            raise DataError("a dataset needs either a source or a mix: list", source=where)
        if self.fraction is not None and not 0 < self.fraction <= 1:
            raise DataError(f"fraction must be in (0, 1], got {self.fraction}", source=where)
        if self.count is not None and (isinstance(self.count, bool) or not isinstance(self.count, int)
                                       or self.count < 1):
            raise DataError(f"count must be a whole number of rows, at least 1, got {self.count!r}", source=where)
        if self.fraction is not None and self.count is not None:
            raise DataError("give fraction or count, not both", source=where)
        for part in self.mix:
            if part.mix:
                raise DataError("a part of a mix cannot itself be a mix; list its parts in the outer mix",
                                source=part.label)
            if part.drop:
                raise DataError("drop: applies to the whole mix; put it next to mix:, not on a part",
                                source=part.label)
        if self.mix and self.columns:
            raise DataError("columns: applies to one dataset; put it on each part of the mix", source=where)

    @property
    def name(self) -> str | None:
        """The hub config name (``config``), under its ``datasets.load_dataset`` name."""
        return self.config

    @property
    def label(self) -> str:
        if self.mix:
            return f"mix({', '.join(part.label for part in self.mix)})"
        if isinstance(self.source, (str, os.PathLike)):
            return str(self.source)
        if isinstance(self.source, Sequence):
            return "<in-memory rows>"
        return f"<{type(self.source).__name__}>"


def as_spec(value: Any) -> DatasetSpec:
    """Accept a :class:`DatasetSpec`, a mapping (``source``/``path`` or ``mix`` plus the spec's
    settings; ``name`` is accepted for ``config``), or a bare source.

    Raises:
        DataError: an unknown key (listing the known ones) or a setting that does not fit.
    """
    if isinstance(value, DatasetSpec):
        return value
    if isinstance(value, Mapping) and ("source" in value or "path" in value or "mix" in value):
        data = dict(value)
        unknown = sorted(set(data) - set(_SPEC_KEYS))
        where = str(data.get("source", data.get("path", "mix")))
        if unknown:
            raise DataError(f"unknown dataset setting(s) {', '.join(map(repr, unknown))}; known: "
                            f"{', '.join(k for k in _SPEC_KEYS if k not in ('path', 'name'))}", source=where)
        if "path" in data:
            data["source"] = data.pop("source", None) or data.pop("path")
        if "name" in data:
            if data.get("config") not in (None, data["name"]):
                raise DataError("give config (the hub config name) once, not as both config and name", source=where)
            data["config"] = data.pop("name")
        return DatasetSpec(**data)
    return DatasetSpec(source=value)


def _not_utf8(path: Path, exc: UnicodeDecodeError, row: int | None = None, line: int | None = None) -> DataError:
    at = f"line {line}, " if line is not None else ""
    return DataError(
        f"not UTF-8 text: byte {exc.object[exc.start]:#04x} at {at}offset {exc.start}; a binary file or another "
        "encoding? Save the file as UTF-8",
        source=str(path),
        row=row,
    )


def _read_file(path: Path) -> list[dict[str, Any]]:
    if path.is_dir():
        raise DataError(
            "is a folder, not a dataset file, and holds no dataset saved with Dataset.save_to_disk (no "
            "dataset_info.json); give a .json/.jsonl/.parquet/.csv file inside it, or such a saved dataset",
            source=str(path),
        )
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        rows = []
        with open(path, "rb") as f:
            for lineno, raw in enumerate(f, 1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise _not_utf8(path, exc, row=len(rows), line=lineno) from None
                if not line.strip():
                    continue
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise DataError(
                        f"invalid JSON ({exc.msg}); each line must be one JSON object",
                        source=str(path),
                        row=len(rows),
                    ) from exc
        return rows
    if suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError as exc:
            raise _not_utf8(path, exc) from None
        except json.JSONDecodeError as exc:
            raise DataError(f"invalid JSON at line {exc.lineno}: {exc.msg}", source=str(path)) from exc
        if isinstance(data, Mapping):
            # {"train": [...]} or {"data": [...]}: take the only list value
            lists = [v for v in data.values() if isinstance(v, list)]
            if len(lists) != 1:
                raise DataError("expected a JSON list of row objects", source=str(path))
            data = lists[0]
        if not isinstance(data, list):
            raise DataError("expected a JSON list of row objects", source=str(path))
        return data
    import datasets

    kind = _FILE_TYPES.get(suffix)
    if kind is None:
        raise DataError(
            f"unsupported file type {suffix!r}; use .json, .jsonl, .parquet or .csv",
            source=str(path),
        )
    ds = datasets.load_dataset(kind, data_files=str(path), split="train")
    return [dict(r) for r in ds]


def load_rows(spec: Any) -> tuple[Rows, str]:
    """Load every row of a dataset as dicts. Returns ``(rows, label)``.

    The label names the source in error messages (the file path, preset or hub id). The rows
    are a :class:`~ladder.data.rows.Rows`: a list that also carries each row's origin (its
    source and row number there), the spec's ``drop`` policy and the checks so far, for the
    normalisers.
    """
    spec = as_spec(spec)
    if spec.mix:
        parts = []
        for k, part in enumerate(spec.mix):
            rows, label = _load_one(part)
            parts.append((take(rows, label, fraction=part.fraction, count=part.count, seed=spec.seed, part=k), label,
                          len(rows)))
        mixed = combine(parts, spec.seed, spec.drop)
        mixed = mixed[: spec.limit] if spec.limit is not None else mixed
        mixed.checks.loaded = len(mixed)
        return mixed, spec.label
    if spec.fraction is not None or spec.count is not None:
        raise DataError("fraction and count choose a part's rows in a mix:; use limit for one dataset",
                        source=spec.label)
    return _load_one(spec)


def _load_one(spec: DatasetSpec) -> tuple[Rows, str]:
    """One dataset's rows (no mix), renamed, shuffled and cut as its spec says."""
    label = spec.label
    raw = _read_source(spec)
    for i, row in enumerate(raw):
        if not isinstance(row, Mapping):
            raise DataError(f"expected an object (dict), got {type(row).__name__}", source=label, row=i)
    empty = [i for i, row in enumerate(raw) if not row]
    if empty:
        others = f" (and {len(empty) - 1} more: rows {', '.join(map(str, empty[1:6]))}{', ...' if len(empty) > 6 else ''})"
        raise DataError(
            f"empty row {{}}: it has no fields{others if len(empty) > 1 else ''}; remove it or fill it in",
            source=label,
            row=empty[0],
        )
    plain = [dict(r) for r in raw]
    if spec.columns:
        plain = rename_columns(plain, spec.columns, label)
    rows = Rows(plain, label=label, drop=spec.drop)
    if spec.seed is not None:
        import random

        order = list(range(len(rows)))
        random.Random(spec.seed).shuffle(order)
        rows = rows.subset(order)
    if spec.limit is not None:
        rows = rows[: spec.limit]
    if not rows:
        raise DataError("the dataset is empty", source=label)
    rows.checks = DataChecks(loaded=len(rows), columns=dict(spec.columns))
    return rows, label


def _read_source(spec: DatasetSpec) -> list[Any]:
    src = spec.source
    if not isinstance(src, (str, os.PathLike)):
        _no_hub_settings(spec, "in-memory rows")
        if isinstance(src, Sequence):
            return list(src)
        if hasattr(src, "to_list") and hasattr(src, "column_names"):  # datasets.Dataset
            return src.to_list()
        raise DataError(f"cannot load rows from a {type(src).__name__}", source=spec.label)
    path = Path(src).expanduser()
    if path.is_file() or (path.is_dir() and not (path / "dataset_info.json").exists()):
        _no_hub_settings(spec, "a local file")
        return _read_file(path)  # a plain folder is refused there, by name
    if path.is_dir() and (path / "dataset_info.json").exists():
        import datasets

        ds = datasets.load_from_disk(str(path))
        if isinstance(ds, datasets.DatasetDict):
            ds = ds[spec.split or "train"]
        return [dict(r) for r in ds]
    if str(src) in PRESETS or ("/" in str(src) and not path.exists() and not str(src).startswith((".", "/"))):
        return _load_hub(spec)
    raise DataError(
        "no such file or directory; give a .json/.jsonl/.parquet/.csv file, a preset "
        f"({', '.join(sorted(PRESETS))}) or a hub id like 'org/name'",
        source=str(src),
    )


def _no_hub_settings(spec: DatasetSpec, what: str) -> None:
    given = [key for key in ("config", "split") if getattr(spec, key) is not None]
    if given:
        raise DataError(f"{' and '.join(given)} pick part of a hub dataset, but the source is {what}; remove "
                        f"{'them' if len(given) > 1 else 'it'}", source=spec.label)


def _load_hub(spec: DatasetSpec) -> list[dict[str, Any]]:
    import datasets

    preset = PRESETS.get(str(spec.source), {})
    path = preset.get("path", str(spec.source))
    config = spec.config or preset.get("name")
    split = spec.split or preset.get("split", "train")
    try:
        ds = datasets.load_dataset(path, name=config, split=split)
    except Exception as exc:  # network, auth, missing config: all user-facing
        raise DataError(
            f"could not load hub dataset {path!r} (config {config!r}, split {split!r}): {exc}. "
            f"Check the id and your network, or download it and point to a local file.",
            source=str(spec.source),
        ) from exc
    return [dict(r) for r in ds]


def content_hash(rows: Sequence[Mapping[str, Any]]) -> str:
    """A stable sha256 of the rows' content (key order does not matter)."""
    h = hashlib.sha256()
    for row in rows:
        h.update(json.dumps(row, sort_keys=True, default=str, ensure_ascii=False).encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()[:16]
