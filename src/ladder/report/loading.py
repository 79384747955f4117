"""Reading a run directory into a :class:`~ladder.report.run.RunView`.

The loader is deliberately forgiving: a report is most useful exactly when a run went wrong,
so a missing or half-written file never stops it. Whatever could not be read is recorded in
``problems`` (on the run or the stage) and shown in the report instead of raising.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ladder.errors import ConfigError
from ladder.evals.runner import BEHAVIOUR_FILE
from ladder.report.run import BASE_DIR, BASE_NAME, ProbeAnswer, RunView, StageView

__all__ = ["load_run"]

_STAGE_DIR = re.compile(r"^(\d{2})-(.+)$")
_TMP_INFIX = ".tmp-"


def load_run(run_dir: str | os.PathLike[str]) -> RunView:
    """Read a run directory into a :class:`RunView`.

    Tolerant of missing files: a stage without ``metrics.json`` or ``probes.jsonl`` gets
    empty ones and a line in its ``problems``; a run without ``manifest.json`` is rebuilt
    from its ``NN-name`` directories. A crashed stage's partial trainer log is read from its
    ``NN-name.tmp-*`` leftover.

    Args:
        run_dir: the directory ``ladder run`` wrote.

    Raises:
        ConfigError: ``run_dir`` is not a directory, or holds neither a manifest nor any
            stage directory.
    """
    root = Path(run_dir)
    if not root.is_dir():
        raise ConfigError(
            f"run directory {str(root)!r} does not exist; pass the directory `ladder run` "
            f"created (runs/<name>)"
        )
    problems: list[str] = []
    manifest_path = root / "manifest.json"
    manifest: dict[str, Any] | None = None
    if manifest_path.is_file():
        try:
            loaded = json.loads(manifest_path.read_text(encoding="utf-8"))
            if isinstance(loaded, dict):
                manifest = loaded
            else:
                problems.append("manifest.json does not hold a JSON object; it was ignored")
        except (OSError, ValueError) as e:
            problems.append(f"manifest.json could not be read ({e}); it was ignored")
    else:
        problems.append("manifest.json is missing; stages were inferred from the directories")

    if manifest is not None:
        entries = [e for e in manifest.get("stages") or [] if isinstance(e, dict)]
    else:
        entries = _entries_from_dirs(root)
        if not entries and not (root / BASE_DIR).is_dir():
            raise ConfigError(
                f"{str(root)!r} is not a ladder run directory: it has no manifest.json and no "
                f"NN-<stage> directories; pass the directory `ladder run` created"
            )

    stages = [_load_base(root, manifest)]
    for position, entry in enumerate(entries, start=1):
        stages.append(_load_stage(root, entry, position))

    m = manifest or {}
    return RunView(
        path=root,
        name=str(m.get("run_name") or root.name),
        status=str(m.get("status") or ("unknown" if manifest is None else "running")),
        **_fields(m, _RUN_FIELDS),
        stages=tuple(stages),
        problems=tuple(problems),
    )


def _entries_from_dirs(root: Path) -> list[dict[str, Any]]:
    """Manifest-like stage entries rebuilt from ``NN-name`` (and ``NN-name.tmp-*``) dirs."""
    found: dict[int, dict[str, Any]] = {}
    for child in sorted(root.iterdir()):
        if not child.is_dir():
            continue
        name = child.name.split(_TMP_INFIX, 1)[0]
        match = _STAGE_DIR.match(name)
        if not match or int(match.group(1)) == 0:
            continue
        index = int(match.group(1))
        complete = _TMP_INFIX not in child.name and (child / "COMPLETE").is_file()
        entry = found.setdefault(
            index,
            {"name": match.group(2), "index": index, "dir": name, "status": "failed"},
        )
        if complete:
            entry["status"] = "complete"
        if entry["status"] != "complete":
            entry["error"] = "no manifest; the stage directory was never published (no COMPLETE)"
        else:
            entry.pop("error", None)
    return [found[i] for i in sorted(found)]


def _load_base(root: Path, manifest: Mapping[str, Any] | None) -> StageView:
    base = _mapping((manifest or {}).get("base"))
    directory = root / BASE_DIR
    problems: list[str] = []
    metrics = _read_json_object(directory / "metrics.json", problems)
    probes = _read_probes(directory / "probes.jsonl", problems)
    behaviour = _read_behaviour(directory / BEHAVIOUR_FILE, problems)
    exists = directory.is_dir()
    if not exists:
        # Not an error: a run with probes and evaluations turned off never writes it.
        problems = [f"{BASE_DIR}/ is missing: the base model was not evaluated"]
    return StageView(
        name=BASE_NAME,
        kind="base",
        index=0,
        dir_name=BASE_DIR,
        path=directory if exists else None,
        status="complete" if exists else "skipped",
        fingerprint=_opt_str(base.get("fingerprint")),
        checkpoint={"path": base["path"]} if base.get("path") else None,
        metrics=metrics,
        probes=probes,
        behaviour=behaviour,
        problems=tuple(problems),
    )


def _load_stage(root: Path, entry: Mapping[str, Any], position: int) -> StageView:
    name = str(entry.get("name") or f"stage{position}")
    index = _opt_int(entry.get("index")) or position
    dir_name = str(entry.get("dir") or f"{index:02d}-{name}")
    status = str(entry.get("status") or "pending")
    published = root / dir_name
    problems: list[str] = []
    path: Path | None = None
    partial = False
    if published.is_dir():
        path = published
    else:
        leftovers = sorted(
            (p for p in root.glob(f"{dir_name}{_TMP_INFIX}*") if p.is_dir()),
            key=lambda p: p.stat().st_mtime,
        )
        if leftovers:
            path = leftovers[-1]
            partial = True

    metrics: Mapping[str, Any] = {}
    probes: tuple[ProbeAnswer, ...] = ()
    behaviour: tuple[Mapping[str, Any], ...] = ()
    log: tuple[Mapping[str, Any], ...] = ()
    log_source: Path | None = None
    # What a stage should have left depends on how far it got: only a finished stage
    # is expected to have metrics and probes, so only their absence there is a problem.
    finished = status in ("complete", "reused")
    if path is not None:
        sink = problems if finished else []
        metrics = _read_json_object(path / "metrics.json", sink)
        probes = _read_probes(path / "probes.jsonl", sink)
        behaviour = _read_behaviour(path / BEHAVIOUR_FILE, problems)
        log_source = _find_log(path)
        log = _read_log(log_source, problems, required=finished)
    elif finished:
        problems.append(f"{dir_name}/ is missing although the manifest says {status!r}")
    if not log and not finished:
        # A stage that raised has its temp directory removed; the pipeline keeps its trainer
        # log beside the resumable state (RUN/.trainer/<name>-<fingerprint>/trainer_log.jsonl),
        # and the last trainer checkpoint there holds the log history too.
        kept = _kept_log(root, name, _opt_str(entry.get("fingerprint")))
        if kept is not None:
            log = _read_log(kept, problems, required=False)
            log_source = kept if log else None
            partial = bool(log)
        state = None if log else _trainer_state(root, name, _opt_str(entry.get("fingerprint")))
        if state is not None:
            log = _read_log_history(state, problems)
            log_source = state if log else None
            partial = bool(log)
    if not metrics and isinstance(entry.get("metrics"), dict):
        metrics = entry["metrics"]

    checkpoint = entry.get("checkpoint")
    return StageView(
        name=name,
        kind=str(entry.get("kind") or metrics.get("kind") or name),
        index=index,
        dir_name=dir_name,
        path=path,
        status=status,
        **_fields(entry, _STAGE_FIELDS),
        checkpoint=checkpoint if isinstance(checkpoint, dict) else None,
        metrics=metrics,
        probes=probes,
        behaviour=behaviour,
        log=log,
        log_source=log_source if log else None,
        partial_log=partial and bool(log),
        problems=tuple(problems),
    )


def _kept_log(root: Path, name: str, fingerprint: str | None) -> Path | None:
    """The trainer log the pipeline kept for an unfinished stage, the newest if several."""
    base = root / ".trainer"
    if not base.is_dir():
        return None
    pattern = f"{name}-{fingerprint}" if fingerprint else f"{name}-*"
    found = [p for p in base.glob(f"{pattern}/trainer_log.jsonl") if p.is_file() and p.stat().st_size]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def _trainer_state(root: Path, name: str, fingerprint: str | None) -> Path | None:
    """The newest ``trainer_state.json`` of the stage's resumable trainer directory."""
    base = root / ".trainer"
    if not base.is_dir():
        return None
    pattern = f"{name}-{fingerprint}" if fingerprint else f"{name}-*"
    best: tuple[int, Path] | None = None
    for state in base.glob(f"{pattern}/checkpoint-*/trainer_state.json"):
        step = state.parent.name.rsplit("-", 1)[-1]
        key = int(step) if step.isdigit() else -1
        if best is None or key > best[0]:
            best = (key, state)
    return best[1] if best else None


def _read_log_history(path: Path, problems: list[str]) -> tuple[Mapping[str, Any], ...]:
    state = _read_json_object(path, problems)
    history = state.get("log_history")
    if not isinstance(history, list):
        return ()
    return tuple(r for r in history if isinstance(r, dict))


def _find_log(directory: Path) -> Path:
    direct = directory / "trainer_log.jsonl"
    if direct.is_file():
        return direct
    # A crashed stage may have left its log one level down (e.g. a trainer output dir).
    nested = sorted(directory.glob("*/trainer_log.jsonl"))
    return nested[0] if nested else direct


def _read_json_object(path: Path, problems: list[str]) -> Mapping[str, Any]:
    if not path.is_file():
        problems.append(f"{_rel(path)} is missing")
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        problems.append(f"{_rel(path)} could not be read ({e})")
        return {}
    if not isinstance(data, dict):
        problems.append(f"{_rel(path)} does not hold a JSON object")
        return {}
    return data


def _read_jsonl(path: Path, problems: list[str]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        problems.append(f"{_rel(path)} could not be read ({e})")
        return rows
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            # A crash mid-write leaves a torn last line; anything else is worth a mention.
            if number != len(lines):
                problems.append(f"{_rel(path)} line {number} is not valid JSON; skipped")
            continue
        if isinstance(row, dict):
            rows.append(row)
        else:
            problems.append(f"{_rel(path)} line {number} is not a JSON object; skipped")
    return rows


def _read_probes(path: Path, problems: list[str]) -> tuple[ProbeAnswer, ...]:
    if not path.is_file():
        problems.append(f"{_rel(path)} is missing")
        return ()
    answers: list[ProbeAnswer] = []
    for row in _read_jsonl(path, problems):
        answers.append(
            ProbeAnswer(
                id=str(row.get("id", len(answers))),
                prompt=str(row.get("prompt", "")),
                answer=str(row.get("answer", "")),
                num_tokens=_opt_int(row.get("num_tokens")),
                stopped=row.get("stopped") if isinstance(row.get("stopped"), bool) else None,
                finish_reason=_opt_str(row.get("finish_reason")),
                expect=_opt_str(row.get("expect")),
                passed=row.get("passed") if isinstance(row.get("passed"), bool) else None,
            )
        )
    return tuple(answers)


def _read_behaviour(path: Path, problems: list[str]) -> tuple[Mapping[str, Any], ...]:
    # Optional: a run with the behaviour suites off (or from before they existed) has none.
    if not path.is_file():
        return ()
    return tuple(r for r in _read_jsonl(path, problems) if isinstance(r.get("metric"), str) and "id" in r)


def _read_log(
    path: Path, problems: list[str], *, required: bool
) -> tuple[Mapping[str, Any], ...]:
    if not path.is_file():
        if required:
            problems.append(f"{_rel(path)} is missing")
        return ()
    return tuple(_read_jsonl(path, problems))


def _rel(path: Path) -> str:
    return f"{path.parent.name}/{path.name}"


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _opt_float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


# What a view takes from the manifest (the run's, or a stage's entry) as it is: each field read
# as its type, and a value of another type read as missing.
_RUN_FIELDS: dict[str, Callable[[Any], Any]] = {
    "ladder_version": _opt_str, "created_at": _opt_float, "recipe": _mapping, "settings": _mapping,
    "versions": _mapping, "base": _mapping, "error": _opt_str,
}
_STAGE_FIELDS: dict[str, Callable[[Any], Any]] = {
    "input": _opt_str, "fingerprint": _opt_str, "config": _mapping, "started_at": _opt_float,
    "finished_at": _opt_float, "duration_s": _opt_float, "error": _opt_str, "traceback": _opt_str,
}


def _fields(entry: Mapping[str, Any], readers: Mapping[str, Callable[[Any], Any]]) -> dict[str, Any]:
    return {key: read(entry.get(key)) for key, read in readers.items()}


def _opt_int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return int(value)
