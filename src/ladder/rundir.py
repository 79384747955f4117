"""The run directory and its ``manifest.json`` (lineage, configs, fingerprints, timings)."""

from __future__ import annotations

import json
import logging
import platform
import re
import time
import traceback
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import attrs

from ladder.atomic import atomic_write_json, is_complete
from ladder.checkpoint import Checkpoint
from ladder.errors import ConfigError
from ladder.layout import COMPLETE, MANIFEST, TMP_INFIX, stage_dir_name
from ladder.redaction import redact

__all__ = ["Manifest", "published_checkpoint", "record_failure", "redact", "safe_name", "stage_dir_name", "versions"]

logger = logging.getLogger(__name__)

_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def safe_name(name: str, what: str = "stage name") -> str:
    """Reject names that could escape the run directory (``..``, ``/``, absolute paths), or
    that hold ``.tmp-``, which marks the temp entries of unfinished writes."""
    if not isinstance(name, str) or not _SAFE.match(name) or ".." in name:
        raise ConfigError(
            f"invalid {what} {name!r}: use letters, digits, '_', '-' and '.', starting with a letter "
            f"or digit (at most 64 characters, no '..' or '/'); it names a directory in the run"
        )
    if TMP_INFIX in name:
        raise ConfigError(
            f"invalid {what} {name!r}: {TMP_INFIX!r} marks the temp directories of unfinished writes in a run, "
            f"which the next run removes; rename it (e.g. {name.replace(TMP_INFIX, '-')!r})"
        )
    return name


def versions(extra_packages: tuple[str, ...] = ()) -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("ladder", "torch", "transformers", "trl", "peft", "datasets", "accelerate", "vllm", *extra_packages):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            continue
    return out


@attrs.define
class Manifest:
    """``manifest.json``: rewritten atomically after every change, so it is always whole."""

    path: Path
    data: dict[str, Any]

    @classmethod
    def start(cls, run_dir: Path, *, run_name: str, recipe: Mapping[str, Any], settings: Mapping[str, Any],
              base: Mapping[str, Any], stages: list[dict[str, Any]]) -> Manifest:
        path = run_dir / MANIFEST
        previous: dict[str, Any] = {}
        if path.exists():
            import json

            try:
                previous = json.loads(path.read_text(encoding="utf-8"))
            except ValueError:
                previous = {}
        data = {
            "ladder_version": versions().get("ladder", "unknown"),
            "run_name": run_name,
            "created_at": previous.get("created_at", time.time()),
            "updated_at": time.time(),
            "status": "running",
            "recipe": dict(recipe),
            "settings": dict(settings),
            "versions": versions(),
            "base": dict(base),
            "stages": stages,
            "error": None,
            "attempts": int(previous.get("attempts", 0)) + 1,
        }
        m = cls(path, data)
        m.save()
        return m

    def stage(self, name: str) -> dict[str, Any]:
        for s in self.data["stages"]:
            if s["name"] == name:
                return s
        raise KeyError(name)

    def update_stage(self, name: str, **fields: Any) -> None:
        self.stage(name).update(fields)
        self.save()

    def finish(self, status: str, error: str | None = None) -> None:
        self.data["status"] = status
        self.data["error"] = error
        self.save()

    def save(self) -> None:
        self.data["updated_at"] = time.time()
        atomic_write_json(self.path, redact(self.data))  # every credential, wherever it is, stays out


def published_checkpoint(final_dir: Path, fp: str, parent: Checkpoint | None) -> Checkpoint | None:
    """The checkpoint published complete at ``final_dir`` with fingerprint ``fp``, or ``None``."""
    if not is_complete(final_dir):
        return None
    try:
        marker = json.loads((final_dir / COMPLETE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if marker.get("fingerprint") != fp or "checkpoint" not in marker:
        return None
    return Checkpoint.from_dict(marker["checkpoint"], parent=parent)


def record_failure(manifest: Manifest, current: str, exc: BaseException, progress: Any, *, is_stage: bool,
                   write_report: Any) -> None:
    """Record why the run stopped: in the manifest, on the display (``progress``), in the report.

    Each step is on its own: one that fails (a full disk, a broken display) is logged and the
    next still runs, and the caller re-raises ``exc``, the error that stopped the run, never
    one raised while recording it. An interruption (SIGTERM, Ctrl-C) is recorded as
    ``interrupted``: the trainer checkpoints stay, and the same command resumes. ``is_stage``:
    ``current`` names a stage (not the final merge); ``write_report``: writes the run's report.
    """
    status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
    error = f"{type(exc).__name__}: {exc}" if status == "failed" else str(exc) or "interrupted"
    trace = traceback.format_exc(limit=20)
    steps: list[tuple[str, Any]] = []
    if is_stage:
        steps.append(("the stage's status", lambda: manifest.update_stage(
            current, status=status, error=error, traceback=trace, finished_at=time.time())))
    steps.append(("the run's status", lambda: manifest.finish(status, error=f"stage {current!r} {status}: {error}")))
    if progress is not None:
        steps.append(("the display", lambda: progress.stage_finished(current, status, None, None)))
    steps.append(("the report", write_report))
    for what, step in steps:
        try:
            step()
        except Exception:
            logger.warning("stage %r %s, and recording %s failed too", current, status, what, exc_info=True)
