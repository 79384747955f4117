"""What ladder logs to the trackers once a stage is observed: the probe answers and the metrics
table (as the report shows them) and the metrics as scalars, in the stage's tracked run."""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from ladder.layout import PROBES

if TYPE_CHECKING:
    from ladder.tracking import TrackedRun

__all__ = ["Tables", "log_stage", "stage_tables"]

logger = logging.getLogger(__name__)


def _read_probes(stage_dir: Path) -> list[dict[str, Any]]:
    rows = []
    try:
        lines = (stage_dir / PROBES).read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


@attrs.frozen
class Tables:
    """What one stage's observation shows, as plain tables and numbers."""

    probe_columns: tuple[str, ...]
    probes: list[list[Any]]
    metric_columns: tuple[str, ...]
    metrics: list[list[Any]]
    scalars: dict[str, float]


def stage_tables(metrics: Mapping[str, Any], stage_dir: Path) -> Tables:
    """The probe answers (``probes.jsonl``) and the metrics table of one stage, as the report
    shows them (its sections, labels and number formats), and its numbers as scalars."""
    from ladder.report.metrics import SECTIONS, flatten, format_value, is_warning, spec_for

    probes = [[str(r.get("id", "")), str(r.get("prompt", "")), str(r.get("answer", "")),
               r.get("num_tokens"), str(r.get("finish_reason") or "")] for r in _read_probes(stage_dir)]
    rows: list[list[Any]] = []
    scalars: dict[str, float] = {}
    for section, heading in SECTIONS:
        block = metrics.get(section)
        if not isinstance(block, Mapping):
            continue
        for path, value in flatten(block, prefix=f"{section}."):
            if value is None or is_warning(path) or isinstance(value, (Mapping, list)):
                continue
            spec = spec_for(path, value)
            rows.append([heading, spec.label, format_value(value, spec.unit), path])
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                scalars["ladder/" + path.replace(".", "/")] = float(value)
    return Tables(("id", "prompt", "answer", "tokens", "finish"), probes,
                  ("section", "metric", "value", "key"), rows, scalars)


def _markdown(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(value: Any) -> str:
        return "" if value is None else str(value).replace("|", "\\|").replace("\n", "<br>")

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _to_tensorboard(tracked: TrackedRun, tables: Tables, step: int) -> None:
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=str(tracked.tensorboard_dir))
    try:
        if tables.probes:
            writer.add_text("ladder/probes", _markdown(tables.probe_columns, tables.probes), step)
        writer.add_text("ladder/metrics", _markdown(tables.metric_columns, tables.metrics), step)
        for key, value in tables.scalars.items():
            writer.add_scalar(key, value, step)
    finally:
        writer.close()


def _to_trackio(tracked: TrackedRun, tables: Tables, step: int) -> None:
    import trackio

    trackio.init(project=tracked.run, name=tracked.name, resume="allow")
    try:
        logged: dict[str, Any] = {"ladder/metrics": trackio.Table(columns=list(tables.metric_columns),
                                                                  data=tables.metrics)}
        if tables.probes:
            logged["ladder/probes"] = trackio.Table(columns=list(tables.probe_columns), data=tables.probes)
        trackio.log({**logged, **tables.scalars}, step=step)
    finally:
        trackio.finish()


def _to_wandb(tracked: TrackedRun, tables: Tables, step: int) -> None:
    import wandb

    from ladder.tracking import wandb_run

    run = wandb_run(tracked)
    try:
        logged: dict[str, Any] = {"ladder/metrics": wandb.Table(columns=list(tables.metric_columns),
                                                                data=tables.metrics)}
        if tables.probes:
            logged["ladder/probes"] = wandb.Table(columns=list(tables.probe_columns), data=tables.probes)
        run.log({**logged, **tables.scalars, "train/global_step": step})
    finally:
        run.finish()


def _to_mlflow(tracked: TrackedRun, tables: Tables, step: int) -> None:
    import mlflow

    experiment = os.environ.get("MLFLOW_EXPERIMENT_NAME") or tracked.run
    mlflow.set_experiment(experiment)
    found = mlflow.search_runs(
        experiment_names=[experiment], output_format="list", max_results=1, order_by=["attributes.start_time DESC"],
        filter_string=(f"tags.`ladder.stage` = '{tracked.stage}' and "
                       f"tags.`ladder.fingerprint` = '{tracked.fingerprint}'"),
    )
    run_id = found[0].info.run_id if found else None
    with mlflow.start_run(run_id=run_id, run_name=None if run_id else tracked.name, tags=tracked.tags):
        if tables.probes:
            mlflow.log_table(dict(zip(tables.probe_columns, map(list, zip(*tables.probes)), strict=True)),
                             artifact_file="ladder/probes.json")
        if tables.metrics:
            mlflow.log_table(dict(zip(tables.metric_columns, map(list, zip(*tables.metrics)), strict=True)),
                             artifact_file="ladder/metrics.json")
        mlflow.log_metrics(tables.scalars, step=step)


_WRITERS = {"tensorboard": _to_tensorboard, "trackio": _to_trackio, "wandb": _to_wandb, "mlflow": _to_mlflow}


def log_stage(report_to: Sequence[str], tracked: TrackedRun, metrics: Mapping[str, Any], stage_dir: Path) -> None:
    """Log one observed stage (or the base) to every tracker: the probe answers and the metrics
    table, and the metrics as scalars at the stage's last training step.

    A tracker that fails is logged as a warning: tracking never fails a run that trained.
    """
    if not report_to:
        return
    tables = stage_tables(metrics, stage_dir)
    step = int((metrics.get("train") or {}).get("steps") or 0)
    for name in report_to:
        try:
            _WRITERS[name](tracked, tables, step)
        except Exception:
            logger.warning("could not log %s's probes and metrics to %s", tracked.name, name, exc_info=True)
