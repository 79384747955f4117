"""Reading raw text for CPT: ``.txt`` files (documents separated by blank lines) or rows with ``text``."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import attrs

from ladder.sdk import DataError, as_spec, load_rows

__all__ = ["load_texts"]


def _read_txt(path: Path) -> list[dict[str, Any]]:
    """Documents of a text file, separated by one or more blank lines."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise DataError("no such file; give an existing .txt file", source=str(path)) from exc
    except UnicodeDecodeError as exc:
        raise DataError(f"not UTF-8 text ({exc.reason}); re-encode it as UTF-8", source=str(path)) from exc
    except OSError as exc:
        raise DataError(f"cannot read it: {exc.strerror}", source=str(path)) from exc
    docs = [d.strip("\n") for d in re.split(r"\n[ \t]*\n", text)]
    rows = [{"text": d} for d in docs if d.strip()]
    if not rows:
        raise DataError("no text in the file; put documents in it, separated by blank lines", source=str(path))
    return rows


def load_texts(dataset: Any) -> tuple[list[str], str, list[DataError]]:
    """Load the documents and check every row. Returns ``(texts, label, problems)``.

    Args:
        dataset: anything :func:`ladder.sdk.load_rows` accepts (with ``limit`` and ``seed``
            honoured), or a ``.txt`` file.

    Raises:
        DataError: the dataset cannot be read at all (row problems are returned instead).
    """
    spec = as_spec(dataset)
    if isinstance(spec.source, (str, os.PathLike)) and Path(spec.source).suffix.lower() == ".txt":
        path = Path(spec.source).expanduser()
        # Reuse load_rows on the parsed documents so `limit`/`seed` mean the same for every source.
        rows, _ = load_rows(attrs.evolve(spec, source=_read_txt(path)))
        label = str(spec.source)
    else:
        rows, label = load_rows(spec)
    texts: list[str] = []
    problems: list[DataError] = []
    for i, row in enumerate(rows):
        value = row.get("text")
        if value is None:
            problems.append(DataError("missing field; CPT rows need their raw text in `text`", source=label, row=i,
                                      field="text"))
        elif not isinstance(value, str):
            problems.append(DataError(f"expected a string, got {type(value).__name__}", source=label, row=i,
                                      field="text"))
        elif not value.strip():
            problems.append(DataError("empty text; remove the row", source=label, row=i, field="text"))
        else:
            texts.append(value)
    return texts, label, problems
