"""Content identity of local files and folders, for fingerprints.

A fingerprint must change when what a stage reads changes, and only then: renaming or moving a
model folder keeps its identity, replacing its weights changes it. Reading every byte of a
multi-GB checkpoint at every run would be slow, so:

- a folder ladder published carries its own fingerprint in its stage's ``COMPLETE`` marker;
- a ``.safetensors`` file is identified by its size and its header (tensor names, dtypes,
  shapes and byte offsets) plus a hash of its first and last MiB;
- any other file up to 64 MiB by a hash of its bytes; a larger one by its size and a hash of
  its first and last MiB.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path

from ladder.layout import COMPLETE

__all__ = ["path_identity", "file_identity"]

_WHOLE_LIMIT = 64 << 20
_EDGE = 1 << 20
# Folders inside a model directory that are not part of the model.
_SKIP_DIRS = {".git", "__pycache__", ".cache"}


def _edges(path: Path, size: int) -> bytes:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read(_EDGE))
        if size > _EDGE:
            f.seek(max(size - _EDGE, _EDGE))
            h.update(f.read(_EDGE))
    return h.digest()


def _safetensors_header(path: Path) -> bytes:
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) < 8:
            return b""
        (length,) = struct.unpack("<Q", raw)
        return f.read(min(length, 100 << 20))


def file_identity(path: str | os.PathLike[str]) -> str:
    """A hex identity of one file's content (see the module docs)."""
    path = Path(path)
    size = path.stat().st_size
    h = hashlib.sha256(str(size).encode())
    if path.suffix == ".safetensors":
        h.update(_safetensors_header(path))
        h.update(_edges(path, size))
    elif size <= _WHOLE_LIMIT:
        h.update(path.read_bytes())
    else:
        h.update(_edges(path, size))
    return h.hexdigest()[:16]


def _marker_fingerprint(folder: Path) -> str | None:
    for marker in (folder / COMPLETE, folder.parent / COMPLETE):
        try:
            found = json.loads(marker.read_text(encoding="utf-8")).get("fingerprint")
        except (OSError, ValueError, AttributeError):
            continue
        if found:
            return str(found)
    return None


def path_identity(path: str | os.PathLike[str]) -> str:
    """A hex identity of a file or folder's content; ``"missing"`` when it does not exist.

    A folder inside (or being) a stage directory ladder published is identified by that
    stage's fingerprint; any other folder by its files' relative paths and identities.
    """
    path = Path(path).expanduser()
    if path.is_file():
        return file_identity(path)
    if not path.is_dir():
        return "missing"
    published = _marker_fingerprint(path.resolve())
    if published is not None:
        return f"ladder:{published}"
    h = hashlib.sha256()
    for root, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS)
        for name in sorted(files):
            file = Path(root) / name
            h.update(str(file.relative_to(path)).encode())
            h.update(file_identity(file).encode())
    return h.hexdigest()[:16]
