"""The metric tables: one row per metric, one cell per model, changes and regression flags.

:func:`metric_rows` reads every stage's ``metrics.json``; each cell carries its value, its
change against the stage's *input* checkpoint (the stage it started from, which for a branch is
not the previous column), a behaviour rate's sample size and 95% interval, and, when the stage
recorded it, the regression on that metric (see :func:`ladder.evals.find_regressions`).
:func:`split_headline` separates the main table's rows from the folded ones.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from ladder.report.format import delta_tone, format_delta, format_interval, format_value, is_number
from ladder.report.metrics import METRICS, SECTIONS, MetricSpec, flatten, is_rate_record, is_warning, section_of, spec_for
from ladder.report.run import RunView, StageView

__all__ = ["MetricCell", "MetricRow", "metric_rows", "regressions_of", "split_headline"]

_TOP = ("eval", "behaviour", "train", "stage_metrics")
# Metrics whose across-stage movement is meaningful get deltas; training numbers of
# different algorithms (an SFT loss vs a DPO loss) do not compare, so they get none.
_DELTA_SECTIONS = ("behaviour_evals", "eval", "behaviour")


@attrs.frozen(kw_only=True)
class MetricCell:
    """One stage's value of one metric, with its movement vs the stage's input.

    Attributes:
        value: the number (a behaviour rate record's ``rate``), as ``metrics.json`` has it.
        n: a behaviour rate's sample size; ``interval``: its 95% Wilson interval, as text.
        regression: the stage's regression entry for this metric, when it recorded one.
    """

    stage: StageView
    present: bool
    value: Any = None
    text: str = "—"
    delta: str | None = None
    tone: str = "neutral"
    compared_to: str | None = None
    n: int | None = None
    interval: str | None = None
    record: Mapping[str, Any] | None = None
    regression: Mapping[str, Any] | None = None


@attrs.frozen(kw_only=True)
class MetricRow:
    """One row of the metrics table: a metric path, its spec, and one cell per stage."""

    path: str
    section: str
    spec: MetricSpec
    cells: tuple[MetricCell, ...]

    @property
    def headline(self) -> bool:
        return self.spec.headline


def regressions_of(stage: StageView) -> list[Mapping[str, Any]]:
    """The regression entries a stage recorded (``metrics.json``'s ``regressions``), well-formed only."""
    found = stage.metrics.get("regressions")
    if not isinstance(found, list):
        return []
    return [r for r in found if isinstance(r, Mapping) and isinstance(r.get("metric"), str)]


def _lookup(metrics: Mapping[str, Any], path: str) -> tuple[bool, Any]:
    node: Any = metrics
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False, None
        node = node[part]
    return True, node


def metric_rows(run: RunView) -> list[MetricRow]:
    """Every metric any stage recorded, grouped by section, known metrics first."""
    found: dict[str, list[str]] = {key: [] for key, _ in SECTIONS}
    for stage in run.stages:
        tops = {k: v for k, v in stage.metrics.items() if k in _TOP and isinstance(v, Mapping)}
        for path, value in flatten(tops):
            section = section_of(path, value)
            if section in found and path not in found[section] and not is_warning(path):
                found[section].append(path)
    rows = []
    for section, _ in SECTIONS:
        paths = found[section]
        ordered = [p for p in METRICS if p in paths] + [p for p in paths if p not in METRICS]
        rows.extend(_row(run, section, path) for path in ordered)
    return rows


def split_headline(rows: Sequence[MetricRow]) -> tuple[list[MetricRow], list[MetricRow]]:
    """``(headline rows, every other row)``, each in table order."""
    return [r for r in rows if r.headline], [r for r in rows if not r.headline]


def _number(value: Any) -> Any:
    return value["rate"] if is_rate_record(value) else value


def _row(run: RunView, section: str, path: str) -> MetricRow:
    sample = None
    for stage in run.stages:
        present, value = _lookup(stage.metrics, path)
        if present and value is not None:
            sample = value
            break
    spec = spec_for(path, sample)
    cells = []
    for stage in run.stages:
        present, raw = _lookup(stage.metrics, path)
        value = _number(raw)
        delta, tone, compared = None, "neutral", None
        if present and spec.compare and section in _DELTA_SECTIONS:
            parent = run.parent_of(stage)
            if parent is not None:
                p_present, p_raw = _lookup(parent.metrics, path)
                if p_present:
                    delta = format_delta(value, _number(p_raw), spec.unit)
                    # A change too small to show ("±0") is not coloured either.
                    tone = "neutral" if delta == "±0" else delta_tone(value, _number(p_raw), spec.direction)
                    compared = parent.name
        record = raw if is_rate_record(raw) else None
        regression = next((r for r in regressions_of(stage) if r["metric"] == path), None)
        cells.append(
            MetricCell(
                stage=stage,
                present=present,
                value=value,
                text=format_value(value, spec.unit) if present else "—",
                delta=delta,
                tone=tone,
                compared_to=compared,
                n=int(record["n"]) if record is not None and is_number(record.get("n")) else None,
                interval=format_interval(record.get("ci_low"), record.get("ci_high")) if record else None,
                record=record,
                regression=regression,
            )
        )
    return MetricRow(path=path, section=section, spec=spec, cells=tuple(cells))
