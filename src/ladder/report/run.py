"""A small typed, read-only view of a run directory, for the report.

The loader is deliberately forgiving: a report is most useful exactly when a run went wrong,
so a missing or half-written file never stops it. Whatever could not be read is recorded in
``problems`` (on the run or the stage) and shown in the report instead of raising.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from ladder.errors import ConfigError

__all__ = ["ProbeAnswer", "StageView", "RunView", "load_run", "series"]

logger = logging.getLogger(__name__)

BASE_NAME = "base"
BASE_DIR = "00-base"
_STAGE_DIR = re.compile(r"^(\d{2})-(.+)$")
_TMP_INFIX = ".tmp-"


@attrs.frozen(kw_only=True)
class ProbeAnswer:
    """One probe answered by one model (a line of ``probes.jsonl``).

    Attributes:
        id: the probe's id; the same ids appear, in the same order, for every stage.
        prompt: the prompt text.
        answer: the generated answer text (raw; escape it before showing it as HTML).
        num_tokens: generated tokens, when recorded.
        stopped: whether generation ended on an end-of-turn token.
        finish_reason: ``"stop"`` or ``"length"`` (hit the token limit), when recorded.
    """

    id: str
    prompt: str
    answer: str
    num_tokens: int | None = None
    stopped: bool | None = None
    finish_reason: str | None = None

    @property
    def hit_limit(self) -> bool:
        """Whether the answer was cut off by the generation token limit."""
        if self.finish_reason is not None:
            return self.finish_reason == "length"
        return self.stopped is False


@attrs.frozen(kw_only=True)
class StageView:
    """One column of the report: the base model or one stage, with what it left behind.

    Attributes:
        name: the stage's pipeline name (``"base"`` for the base model).
        kind: the stage type (``"sft"``, ``"dpo"``, ``"grpo"``, ...; ``"base"`` for the base).
        index: 0 for the base, 1.. for stages in pipeline order.
        dir_name: the published directory name (``"01-sft"``).
        path: the directory the files were read from: the published one, or for a crashed
            stage the newest ``<dir>.tmp-*`` leftover holding a partial trainer log; ``None``
            when neither exists.
        input: the name of the stage this one started from (``None`` for the base).
        status: ``complete``, ``reused``, ``failed``, ``running`` or ``pending`` (from the
            manifest); ``skipped`` for a base model that was not evaluated.
        error: the error a failed stage recorded.
        metrics: the stage's ``metrics.json`` (or the manifest's copy of it).
        probes: the probe answers, in file order.
        log: the trainer log records (``trainer_log.jsonl``), in file order.
        log_source: the file ``log`` was read from.
        partial_log: whether ``log`` is what an unfinished stage left behind: the trainer log
            in its ``.tmp-*`` directory, or the ``log_history`` of its last trainer
            checkpoint under ``RUN/.trainer/``.
        traceback: the traceback a failed stage recorded.
        problems: files that were missing or unreadable, as sentences.
    """

    name: str
    kind: str
    index: int
    dir_name: str
    path: Path | None = None
    input: str | None = None
    status: str = "complete"
    fingerprint: str | None = None
    config: Mapping[str, Any] = attrs.field(factory=dict)
    started_at: float | None = None
    finished_at: float | None = None
    duration_s: float | None = None
    error: str | None = None
    checkpoint: Mapping[str, Any] | None = None
    metrics: Mapping[str, Any] = attrs.field(factory=dict)
    probes: tuple[ProbeAnswer, ...] = ()
    log: tuple[Mapping[str, Any], ...] = ()
    log_source: Path | None = None
    partial_log: bool = False
    traceback: str | None = None
    problems: tuple[str, ...] = ()

    @property
    def is_base(self) -> bool:
        return self.index == 0

    @property
    def label(self) -> str:
        """Short column title, e.g. ``"01 sft"``."""
        return f"{self.index:02d} {self.name}"

    @property
    def failed(self) -> bool:
        return self.status == "failed"

    def probe(self, probe_id: str) -> ProbeAnswer | None:
        """This stage's answer to ``probe_id``, or ``None``."""
        for p in self.probes:
            if p.id == probe_id:
                return p
        return None


@attrs.frozen(kw_only=True)
class RunView:
    """A run directory, read: the base model first, then every stage in pipeline order.

    Attributes:
        path: the run directory.
        name: the run's name (the manifest's, else the directory name).
        status: ``complete``, ``failed``, ``running``, or ``unknown`` without a manifest.
        stages: the base model (index 0) followed by every stage, in order.
        problems: run-level files that were missing or unreadable, as sentences.
    """

    path: Path
    name: str
    status: str = "unknown"
    ladder_version: str | None = None
    created_at: float | None = None
    recipe: Mapping[str, Any] = attrs.field(factory=dict)
    settings: Mapping[str, Any] = attrs.field(factory=dict)
    versions: Mapping[str, Any] = attrs.field(factory=dict)
    base: Mapping[str, Any] = attrs.field(factory=dict)
    error: str | None = None
    stages: tuple[StageView, ...] = ()
    problems: tuple[str, ...] = ()

    @property
    def base_model(self) -> str | None:
        """Where the base model came from (hub id or path), when recorded."""
        path = self.base.get("path")
        return str(path) if path else None

    @property
    def trained(self) -> tuple[StageView, ...]:
        """The stages proper (everything but the base model)."""
        return tuple(s for s in self.stages if not s.is_base)

    @property
    def failed_stages(self) -> tuple[StageView, ...]:
        return tuple(s for s in self.stages if s.failed)

    @property
    def duration_s(self) -> float | None:
        """Wall time from the run's creation to its last finished stage, else the sum of
        the stage durations; ``None`` when nothing says."""
        ends = [s.finished_at for s in self.stages if s.finished_at is not None]
        if self.created_at is not None and ends:
            return max(ends) - self.created_at
        durations = [s.duration_s for s in self.stages if s.duration_s is not None]
        return sum(durations) if durations else None

    def relative(self, path: Path | None) -> str:
        """``path`` relative to the run directory when inside it (``""`` for ``None``)."""
        if path is None:
            return ""
        try:
            return str(path.relative_to(self.path))
        except ValueError:
            return str(path)

    def stage(self, name: str) -> StageView | None:
        """The stage (or base) called ``name``, or ``None``."""
        for s in self.stages:
            if s.name == name:
                return s
        return None

    def parent_of(self, stage: StageView) -> StageView | None:
        """The stage whose output ``stage`` started from (the base for the first stage)."""
        if stage.is_base:
            return None
        if stage.input:
            found = self.stage(stage.input)
            # Only an earlier stage can be an input; anything else is a broken manifest,
            # and falling back to the previous stage keeps the lineage a tree.
            if found is not None and found.index < stage.index:
                return found
        earlier = [s for s in self.stages if s.index < stage.index]
        return earlier[-1] if earlier else None

    def probe_ids(self) -> list[str]:
        """Every probe id, in the order the stages list them (first seen first)."""
        ids: list[str] = []
        seen: set[str] = set()
        for s in self.stages:
            for p in s.probes:
                if p.id not in seen:
                    seen.add(p.id)
                    ids.append(p.id)
        return ids

    def prompt_of(self, probe_id: str) -> str:
        for s in self.stages:
            p = s.probe(probe_id)
            if p is not None:
                return p.prompt
        return ""


def series(
    records: Sequence[Mapping[str, Any]], key: str
) -> tuple[list[float], list[float]]:
    """The (steps, values) of ``key`` over trainer log records, skipping gaps.

    Records without the key, with ``None`` or a non-finite value are skipped (TRL logs
    ``None`` for a GRPO reward that returned nothing). A record without ``"step"`` takes its
    position in the log.

    >>> series([{"step": 1, "loss": 2.0}, {"step": 2}, {"step": 3, "loss": None}, {"loss": 1.5}], "loss")
    ([1.0, 4.0], [2.0, 1.5])
    """
    steps: list[float] = []
    values: list[float] = []
    for i, rec in enumerate(records):
        value = rec.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if not math.isfinite(value):
            continue
        step = rec.get("step", i + 1)
        steps.append(float(step) if isinstance(step, (int, float)) else float(i + 1))
        values.append(float(value))
    return steps, values


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
        ladder_version=_opt_str(m.get("ladder_version")),
        created_at=_opt_float(m.get("created_at")),
        recipe=_mapping(m.get("recipe")),
        settings=_mapping(m.get("settings")),
        versions=_mapping(m.get("versions")),
        base=_mapping(m.get("base")),
        error=_opt_str(m.get("error")),
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
    log: tuple[Mapping[str, Any], ...] = ()
    log_source: Path | None = None
    # What a stage should have left depends on how far it got: only a finished stage
    # is expected to have metrics and probes, so only their absence there is a problem.
    finished = status in ("complete", "reused")
    if path is not None:
        sink = problems if finished else []
        metrics = _read_json_object(path / "metrics.json", sink)
        probes = _read_probes(path / "probes.jsonl", sink)
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
        input=_opt_str(entry.get("input")),
        status=status,
        fingerprint=_opt_str(entry.get("fingerprint")),
        config=_mapping(entry.get("config")),
        started_at=_opt_float(entry.get("started_at")),
        finished_at=_opt_float(entry.get("finished_at")),
        duration_s=_opt_float(entry.get("duration_s")),
        error=_opt_str(entry.get("error")),
        checkpoint=checkpoint if isinstance(checkpoint, dict) else None,
        metrics=metrics,
        probes=probes,
        log=log,
        log_source=log_source if log else None,
        partial_log=partial and bool(log),
        traceback=_opt_str(entry.get("traceback")),
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
            )
        )
    return tuple(answers)


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


def _opt_int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return int(value)
