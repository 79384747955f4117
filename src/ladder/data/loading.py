"""Load dataset rows from a local file, an in-memory list, a ``datasets.Dataset`` or the hub.

Rows are plain dicts from here on; the per-stage modules (:mod:`ladder.data.sft`, …)
validate them and turn them into the shape the TRL trainer expects.
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


@attrs.frozen(kw_only=True)
class DatasetSpec:
    """Where a dataset comes from.

    ``source`` is a local file (.json/.jsonl/.parquet/.csv), a directory saved with
    ``Dataset.save_to_disk``, a preset name (``alpaca_en``, ``dpo_en_zh_20k``, ``gsm8k``), a hub
    id, an in-memory list of dicts, or a ``datasets.Dataset``.
    """

    source: Any = attrs.field(metadata={"help": "file path, preset, hub id, list of rows or Dataset"})
    split: str | None = attrs.field(default=None, metadata={"help": "split of a hub dataset"})
    name: str | None = attrs.field(default=None, metadata={"help": "config name of a hub dataset"})
    limit: int | None = attrs.field(
        default=None,
        validator=attrs.validators.optional(attrs.validators.ge(1)),
        metadata={"help": "use only the first N rows (after shuffling when seed is set)"},
    )
    seed: int | None = attrs.field(
        default=None, metadata={"help": "shuffle with this seed before taking `limit` rows"}
    )

    @property
    def label(self) -> str:
        if isinstance(self.source, (str, os.PathLike)):
            return str(self.source)
        if isinstance(self.source, Sequence):
            return "<in-memory rows>"
        return f"<{type(self.source).__name__}>"


def as_spec(value: Any) -> DatasetSpec:
    """Accept a :class:`DatasetSpec`, a mapping with ``source``/``path`` keys, or a bare source."""
    if isinstance(value, DatasetSpec):
        return value
    if isinstance(value, Mapping) and ("source" in value or "path" in value):
        data = dict(value)
        data["source"] = data.pop("source", None) or data.pop("path")
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


def load_rows(spec: Any) -> tuple[list[dict[str, Any]], str]:
    """Load every row of a dataset as dicts. Returns ``(rows, label)``.

    The label names the source in error messages (the file path, preset or hub id).
    """
    spec = as_spec(spec)
    src = spec.source
    label = spec.label
    if isinstance(src, (str, os.PathLike)):
        path = Path(src).expanduser()
        if path.is_file() or path.is_dir() and not (path / "dataset_info.json").exists():
            rows = _read_file(path)
        elif path.is_dir() and (path / "dataset_info.json").exists():
            import datasets

            ds = datasets.load_from_disk(str(path))
            if isinstance(ds, datasets.DatasetDict):
                ds = ds[spec.split or "train"]
            rows = [dict(r) for r in ds]
        elif str(src) in PRESETS or ("/" in str(src) and not path.exists() and not str(src).startswith((".", "/"))):
            rows = _load_hub(spec)
        else:
            raise DataError(
                "no such file or directory; give a .json/.jsonl/.parquet/.csv file, a preset "
                f"({', '.join(sorted(PRESETS))}) or a hub id like 'org/name'",
                source=str(src),
            )
    elif isinstance(src, Sequence):
        rows = list(src)
    elif hasattr(src, "to_list") and hasattr(src, "column_names"):  # datasets.Dataset
        rows = src.to_list()
    else:
        raise DataError(f"cannot load rows from a {type(src).__name__}", source=label)
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise DataError(f"expected an object (dict), got {type(row).__name__}", source=label, row=i)
    empty = [i for i, row in enumerate(rows) if not row]
    if empty:
        others = f" (and {len(empty) - 1} more: rows {', '.join(map(str, empty[1:6]))}{', ...' if len(empty) > 6 else ''})"
        raise DataError(
            f"empty row {{}}: it has no fields{others if len(empty) > 1 else ''}; remove it or fill it in",
            source=label,
            row=empty[0],
        )
    rows = [dict(r) for r in rows]
    if spec.seed is not None:
        import random

        random.Random(spec.seed).shuffle(rows)
    if spec.limit is not None:
        rows = rows[: spec.limit]
    if not rows:
        raise DataError("the dataset is empty", source=label)
    return rows, label


def _load_hub(spec: DatasetSpec) -> list[dict[str, Any]]:
    import datasets

    preset = PRESETS.get(str(spec.source), {})
    path = preset.get("path", str(spec.source))
    name = spec.name or preset.get("name")
    split = spec.split or preset.get("split", "train")
    try:
        ds = datasets.load_dataset(path, name, split=split)
    except Exception as exc:  # network, auth, missing config: all user-facing
        raise DataError(
            f"could not load hub dataset {path!r} (config {name!r}, split {split!r}): {exc}. "
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
