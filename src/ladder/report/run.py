"""A small typed, read-only view of a run directory, for the report.

:func:`ladder.report.loading.load_run` builds it from the files a run left behind.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

__all__ = ["ProbeAnswer", "StageView", "RunView", "series"]

BASE_NAME = "base"
BASE_DIR = "00-base"


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
        expect: what the probe expected (``"answer: 42"``, ``"refuses"``), when it has an
            expectation; ``passed``: whether this answer met it.
    """

    id: str
    prompt: str
    answer: str
    num_tokens: int | None = None
    stopped: bool | None = None
    finish_reason: str | None = None
    expect: str | None = None
    passed: bool | None = None

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
        behaviour: the behaviour suites' per-item rows (``behaviour.jsonl``: ``suite``,
            ``metric``, ``id``, ``prompt``, ``answer``, ``good``, ...), in file order.
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
    behaviour: tuple[Mapping[str, Any], ...] = ()
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

    def behaviour_item(self, metric: str, item_id: str) -> Mapping[str, Any] | None:
        """This stage's answer to one behaviour item (``metric`` without ``behaviour.``), or ``None``."""
        for row in self.behaviour:
            if row.get("metric") == metric and row.get("id") == item_id:
                return row
        return None

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

    def settings_sections(self) -> list[tuple[str, Mapping[str, Any]]]:
        """The manifest's settings the report shows, by title, the empty ones left out."""
        sections = (("Recipe", self.recipe), ("Run settings", self.settings), ("Package versions", self.versions),
                    ("Base model", self.base))
        return [(title, data) for title, data in sections if data]

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
