"""Atomic publication of artifacts: write into a temp dir, mark it complete, rename.

A reader trusts a directory only when it holds the completion marker, and the marker is
written last, inside the temp dir, before the single ``rename`` that publishes it. A crash
at any moment therefore leaves either the old state or the complete new one, plus at most a
``*.tmp-*`` leftover that :func:`clean_leftovers` removes.

A killed process and a power loss differ: after a power loss, what the page cache had not yet
written is gone, and a file renamed into place can come back empty or cut short. So before the
marker is written every file and directory below the temp dir is fsynced (:func:`fsync_tree`),
then the marker, the temp dir and, after the rename, its parent: a marker that survived a power
loss vouches for bytes that survived it too.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ladder.layout import COMPLETE, TMP_INFIX, leftover_of

__all__ = [
    "COMPLETE_MARKER",
    "atomic_dir",
    "atomic_write_text",
    "atomic_write_json",
    "is_complete",
    "clean_leftovers",
    "fsync_tree",
]

COMPLETE_MARKER = COMPLETE
_TMP_INFIX = TMP_INFIX


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _publishable(path: Path, *, directory: bool) -> None:
    """mkstemp/mkdtemp create owner-only entries; published ones get the usual umask modes."""
    with contextlib.suppress(OSError):
        os.chmod(path, (0o777 if directory else 0o666) & ~_umask())


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root: str | os.PathLike[str]) -> None:
    """fsync every file below ``root``, then every directory bottom-up (their entries), then ``root``.

    Symbolic links are not followed (what they point to is not part of the tree). A file that
    cannot be synced raises: publishing it would promise bytes that may not be on disk.
    """
    root = Path(root)
    for top, dirs, files in os.walk(root, topdown=False):
        base = Path(top)
        for name in files:
            path = base / name
            if not path.is_symlink():
                _fsync_file(path)
        _fsync_dir(base)


def is_complete(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a published directory (it holds the completion marker)."""
    return (Path(path) / COMPLETE_MARKER).is_file()


@contextlib.contextmanager
def atomic_dir(
    final: str | os.PathLike[str], *, info: dict[str, Any] | None = None, replace: bool = False
) -> Iterator[Path]:
    """Yield a temp directory beside ``final``; on success publish it as ``final``.

    The body writes into the yielded directory. On normal exit the completion marker (holding
    ``info`` as JSON) is written and the directory renamed to ``final``. On any exception the
    temp directory is removed and nothing at ``final`` changes.

    Args:
        final: where the directory is published.
        info: JSON-able facts stored in the completion marker (e.g. the fingerprint). It is
            read when the body exits, so the body may still add to it.
        replace: replace an existing ``final`` (it is moved aside first, then deleted).
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists() and not replace:
        raise FileExistsError(f"{final} already exists; pass replace=True to overwrite it")
    tmp = Path(tempfile.mkdtemp(prefix=f"{final.name}{_TMP_INFIX}", dir=final.parent))
    _publishable(tmp, directory=True)
    try:
        yield tmp
        fsync_tree(tmp)  # every byte the marker vouches for is on disk before the marker is
        marker = {"completed_at": time.time(), **(info or {})}
        _write_file(tmp / COMPLETE_MARKER, json.dumps(marker, indent=2, sort_keys=True))
        _fsync_dir(tmp)
        if final.exists():
            old = final.with_name(f"{final.name}{_TMP_INFIX}old-{os.getpid()}")
            os.rename(final, old)
            os.rename(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, final)
        _fsync_dir(final.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _write_file(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write a single file atomically (temp file in the same directory, then ``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}{_TMP_INFIX}", dir=path.parent)
    os.close(fd)
    try:
        _write_file(Path(tmp), text)
        _publishable(Path(tmp), directory=False)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_json(path: str | os.PathLike[str], data: Any) -> None:
    """Write ``data`` as pretty JSON atomically."""
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def clean_leftovers(directory: str | os.PathLike[str], *, exact: bool = False) -> list[Path]:
    """Remove temp leftovers of interrupted writes directly inside ``directory``.

    A published directory that :func:`atomic_dir` had moved aside to replace it, when the
    replacement never arrived (a crash between the two renames), is moved back instead.

    Args:
        directory: where to look (not recursively).
        exact: only names exactly of the forms ladder's temp entries get
            (:func:`ladder.layout.leftover_of`: ``<name>.tmp-XXXXXXXX``, ``<name>.tmp-old-<pid>``);
            otherwise any name holding ``.tmp-``. A run directory is cleaned exactly, since
            its entries are named after stages the user names.

    Returns the removed paths. Published directories and files are never touched.
    """
    directory = Path(directory)
    removed: list[Path] = []
    if not directory.is_dir():
        return removed
    for child in sorted(directory.iterdir()):
        found = leftover_of(child.name)
        if found is None and (exact or _TMP_INFIX not in child.name):
            continue
        published, moved_aside = found if found is not None else (child.name.split(_TMP_INFIX, 1)[0], False)
        if moved_aside and child.is_dir() and not child.is_symlink():
            # atomic_dir(replace=True) was stopped between its two renames: the published
            # directory was moved aside and its replacement never arrived. Put it back.
            final = directory / published
            if not final.exists() and is_complete(child):
                os.rename(child, final)
                continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                child.unlink()
        removed.append(child)
    return removed
