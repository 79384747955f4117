"""The report page's two grids: the metric tables and the probe answers.

Hooks for tests and scrapers: ``td[data-stage][data-metric][data-value]`` (``data-value`` is
the number from ``metrics.json`` as JSON; a behaviour rate adds ``data-n``, ``data-ci-low``,
``data-ci-high``; a regressed cell ``data-regression="true"`` and ``data-p-value``), and
``td[data-probe][data-stage]`` (``data-passed`` when the probe has an expectation).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from ladder.report.charts import Plot
from ladder.report.format import format_value
from ladder.report.html_parts import e, img, stage_th
from ladder.report.metrics import SECTIONS
from ladder.report.run import RunView, StageView
from ladder.report.table import MetricCell, MetricRow, metric_rows, split_headline

__all__ = ["metrics_section", "probes_section"]


def _regression_flag(cell: MetricCell) -> str:
    r = cell.regression
    if r is None:
        return ""
    title = (
        f"regression vs {r.get('compared_to')}: {format_value(r.get('before'), 'pct')} → "
        f"{format_value(r.get('after'), 'pct')} on {r.get('n')} items ({r.get('worse')} worse, "
        f"{r.get('better')} better), p = {r.get('p_value', 0):.3g}, {r.get('test')}"
    )
    return f'<span class="flag regression" title="{e(title)}">▼ regression</span>'


def _cell(row: MetricRow, cell: MetricCell) -> str:
    stage = e(cell.stage.name)
    if not cell.present:
        return f'<td class="missing" data-stage="{stage}">—</td>'
    raw = json.dumps(cell.value)
    delta = ""
    if cell.delta is not None:
        delta = f'<span class="delta {cell.tone}" title="vs {e(cell.compared_to)}">{e(cell.delta)}</span>'
    extra = ""
    data = ""
    if cell.record is not None:
        extra = f'<span class="ci" title="95% Wilson interval, sample size">{e(cell.interval or "")} n={cell.n}</span>'
        data = (f' data-n="{cell.n}" data-ci-low="{e(json.dumps(cell.record.get("ci_low")))}"'
                f' data-ci-high="{e(json.dumps(cell.record.get("ci_high")))}"')
    if cell.regression is not None:
        data += f' data-regression="true" data-p-value="{e(json.dumps(cell.regression.get("p_value")))}"'
    is_number = isinstance(cell.value, (int, float)) and not isinstance(cell.value, bool)
    classes = [c for c in ("" if is_number or cell.value is None else "text",
                           "regressed" if cell.regression is not None else "") if c]
    cls = f' class="{" ".join(classes)}"' if classes else ""
    return (
        f'<td{cls} data-stage="{stage}" data-metric="{e(row.path)}" data-value="{e(raw)}"{data} '
        f'title="{e(raw)}"><span class="v">{e(cell.text)}</span>{extra}{delta}{_regression_flag(cell)}</td>'
    )


def _row(row: MetricRow) -> str:
    arrow = {1: "↑ better", -1: "↓ better"}.get(row.spec.direction, "")
    head = (
        f'<th scope="row" title="{e(row.spec.help or row.path)}">{e(row.spec.label)}'
        + (f'<span class="dir">{arrow}</span>' if arrow else "")
        + "</th>"
    )
    return f'<tr data-metric="{e(row.path)}">{head}{"".join(_cell(row, c) for c in row.cells)}</tr>'


def _table(run: RunView, rows: Sequence[MetricRow]) -> str:
    ncols = len(run.stages) + 1
    head = "".join(stage_th(run, s) for s in run.stages)
    body = []
    for section, title in SECTIONS:
        section_rows = [r for r in rows if r.section == section]
        if not section_rows:
            continue
        body.append(f'<tr class="section"><th colspan="{ncols}">{e(title)}</th></tr>')
        body.extend(_row(r) for r in section_rows)
    return (
        f'<table class="metrics"><thead><tr><th scope="col">metric</th>{head}</tr></thead>'
        f'<tbody>{"".join(body)}</tbody></table>'
    )


def metrics_section(run: RunView, plots: Sequence[Plot]) -> str:
    rows = metric_rows(run)
    across = next((p for p in plots if p.stage is None and p.key == "metrics"), None)
    chart = img(across, cls="wide") if across else ""
    if not rows:
        return (
            '<section id="metrics"><h2>Metrics</h2>'
            '<p class="lead">No stage recorded any metrics.</p></section>'
        )
    main, extra = split_headline(rows)
    legend = (
        '<p class="legend">Rates are percentages (1 decimal) with their 95% interval and sample '
        "size; changes in percentage points (pt). Each change compares a stage with the stage it "
        'started from: <span class="good">green</span> moved the good way, <span class="bad">red'
        "</span> the bad way, grey has no preferred direction. <strong>▼ regression</strong> marks a behaviour "
        "evaluation that got worse beyond noise (exact McNemar test, one-sided, α = 0.05). Hover a "
        "number for the exact value in metrics.json.</p>"
    )
    # Sample sizes, margins, diagnostics, training and stage-specific numbers: folded, so the
    # numbers every model is measured on stay at a glance.
    folded = (
        f"<details><summary>Diagnostics, training and stage-specific numbers ({len(extra)})</summary>"
        f'<div class="scroll">{_table(run, extra)}</div></details>'
        if extra
        else ""
    )
    table = (
        f'<div class="scroll" style="margin-top:12px">{_table(run, main)}</div>'
        if main
        else '<p class="muted">No headline metric was recorded.</p>'
    )
    return (
        '<section id="metrics"><h2>Metrics</h2>'
        '<p class="lead">One column per model: the base, then each stage\'s output.</p>'
        f"{chart}{table}{legend}{folded}</section>"
    )


def probes_section(run: RunView) -> str:
    ids = run.probe_ids()
    if not ids:
        return (
            '<section id="probes"><h2>Probes</h2>'
            '<p class="lead">No probe answers were recorded.</p></section>'
        )
    stages = list(run.stages)
    head = "".join(stage_th(run, s) for s in stages)
    rows = []
    for pid in ids:
        expect = next((p.expect for s in stages if (p := s.probe(pid)) is not None and p.expect), None)
        wanted = f'<div class="expects">expects {e(expect)}</div>' if expect else ""
        cells = [
            (
                f'<th scope="row"><div class="pid">{e(pid)}</div>'
                f'<div class="prompt">{e(run.prompt_of(pid))}</div>{wanted}</th>'
            )
        ]
        cells.extend(_answer_cell(stage, pid) for stage in stages)
        rows.append(f'<tr data-probe="{e(pid)}">{"".join(cells)}</tr>')
    cols = '<colgroup><col class="prompt-col">' + "<col>" * len(stages) + "</colgroup>"
    return (
        '<section id="probes"><h2>Probes</h2>'
        '<p class="lead">The same prompts, same decoding, answered by every model. '
        '<span class="flag">token limit</span> marks an answer cut off by the generation '
        'limit instead of ending on its own; <span class="expect pass">✓</span> / '
        '<span class="expect fail">✗</span> whether a probe with a known answer got it.</p>'
        f'<div class="scroll"><table class="probes" style="--cols:{len(stages)}">{cols}'
        f'<thead><tr><th scope="col">probe</th>{head}</tr></thead>'
        f'<tbody>{"".join(rows)}</tbody></table></div></section>'
    )


def _answer_cell(stage: StageView, pid: str) -> str:
    answer = stage.probe(pid)
    attrs = f'data-probe="{e(pid)}" data-stage="{e(stage.name)}"'
    if answer is None:
        why = {
            "failed": "stage failed",
            "pending": "not run",
            "running": "still running",
        }.get(stage.status, "no answer recorded")
        return f'<td class="answer none" {attrs}>{e(why)}</td>'
    meta = []
    mark = ""
    if answer.passed is not None:
        attrs += f' data-passed="{str(answer.passed).lower()}"'
        mark = (f'<span class="expect {"pass" if answer.passed else "fail"}" title="expected: '
                f'{e(answer.expect or "")}">{"✓" if answer.passed else "✗"}</span>')
    if answer.num_tokens is not None:
        meta.append(f"{answer.num_tokens} tokens")
    if answer.hit_limit:
        meta.append('<span class="flag" title="generation hit the token limit">token limit</span>')
    elif answer.stopped:
        meta.append("stopped")
    text = (
        f'<div class="text">{e(answer.answer)}</div>'
        if answer.answer
        else '<div class="text empty">(empty answer)</div>'
    )
    cls = "answer limit" if answer.hit_limit else "answer"
    return (
        f'<td class="{cls}" {attrs} data-hit-limit="{str(answer.hit_limit).lower()}">{text}'
        f'<div class="meta">{mark}{" · ".join(meta)}</div></td>'
    )
