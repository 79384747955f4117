"""The report's summary: what each stage cost and gained on the behaviour evaluations.

Regressions are what the pipeline recorded in each stage's ``metrics.json`` (``regressions``,
see :func:`ladder.evals.find_regressions`). Gains are found here the same way, from the two
checkpoints' per-item rows (``behaviour.jsonl``), with the test run the other way round, so a
gain and a cost are held to the same standard of evidence. Each finding names a few items that
moved, with both answers, so a reader sees what "knowledge retention fell" looks like.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from ladder.evals.runner import find_regressions
from ladder.evals.stats import ALPHA, TEST_NAME
from ladder.report.run import RunView, StageView
from ladder.report.table import regressions_of

__all__ = ["ALPHA", "TEST_NAME", "Example", "Finding", "Summary", "summarise"]

#: Items shown per finding.
SHOWN = 3


@attrs.frozen(kw_only=True)
class Example:
    """One item that moved: its prompt and the two answers."""

    id: str
    prompt: str
    before: str
    after: str


@attrs.frozen(kw_only=True)
class Finding:
    """One metric that moved beyond noise between a stage and its input checkpoint."""

    stage: StageView
    parent: StageView | None
    entry: Mapping[str, Any]
    examples: tuple[Example, ...] = ()

    @property
    def metric(self) -> str:
        return str(self.entry["metric"])

    @property
    def label(self) -> str:
        return str(self.entry.get("label") or self.metric)


@attrs.frozen(kw_only=True)
class Summary:
    """Regressions and gains of every stage, and how many comparisons were made.

    Attributes:
        compared: stages whose behaviour was compared with their input checkpoint.
        measured: whether any model ran the behaviour suites at all.
    """

    regressions: tuple[Finding, ...] = ()
    gains: tuple[Finding, ...] = ()
    compared: tuple[StageView, ...] = ()
    measured: bool = False


def _outcomes(stage: StageView) -> dict[str, dict[str, bool]]:
    out: dict[str, dict[str, bool]] = {}
    for row in stage.behaviour:
        if isinstance(row.get("good"), bool):
            out.setdefault(str(row["metric"]), {})[str(row["id"])] = row["good"]
    return out


def _examples(stage: StageView, parent: StageView | None, entry: Mapping[str, Any]) -> tuple[Example, ...]:
    if parent is None:
        return ()
    metric = str(entry["metric"]).split(".", 1)[-1]
    shown = []
    for item_id in list(entry.get("examples") or [])[:SHOWN]:
        after = stage.behaviour_item(metric, str(item_id))
        before = parent.behaviour_item(metric, str(item_id))
        if after is None or before is None:
            continue
        shown.append(Example(id=str(item_id), prompt=str(after.get("prompt", "")),
                             before=str(before.get("answer", "")), after=str(after.get("answer", ""))))
    return tuple(shown)


def _gains(stage: StageView, parent: StageView) -> list[Mapping[str, Any]]:
    before, after = _outcomes(parent), _outcomes(stage)
    if not before or not after:
        return []
    found = []
    # "parent worse than stage" is "stage better than parent".
    for entry in find_regressions(after, before, compared_to=parent.name):
        found.append({**entry, "before": entry["after"], "after": entry["before"],
                      "better": entry["worse"], "worse": entry["better"]})
    return found


def summarise(run: RunView) -> Summary:
    """The :class:`Summary` of a run."""
    regressions: list[Finding] = []
    gains: list[Finding] = []
    compared: list[StageView] = []
    measured = False
    for stage in run.stages:
        if any(row.get("metric") for row in stage.behaviour) or any(
            isinstance(v, Mapping) and "rate" in v for v in (stage.metrics.get("behaviour") or {}).values()
        ):
            measured = True
        if stage.is_base:
            continue
        parent = run.parent_of(stage)
        if isinstance(stage.metrics.get("regressions"), list):
            compared.append(stage)
        for entry in regressions_of(stage):
            regressions.append(Finding(stage=stage, parent=parent, entry=entry,
                                       examples=_examples(stage, parent, entry)))
        if parent is not None:
            for entry in _gains(stage, parent):
                gains.append(Finding(stage=stage, parent=parent, entry=entry))
    return Summary(regressions=tuple(regressions), gains=tuple(gains), compared=tuple(compared), measured=measured)
