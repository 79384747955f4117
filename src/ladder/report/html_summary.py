"""The report page's summary: regressions first (red), then gains, then what was compared."""

from __future__ import annotations

from ladder.evals.runner import describe
from ladder.report.html_parts import e
from ladder.report.run import RunView
from ladder.report.summary import ALPHA, Finding, summarise

__all__ = ["summary_section"]


def _examples(finding: Finding) -> str:
    if not finding.examples:
        return ""
    before = finding.parent.label if finding.parent is not None else "input"
    rows = "".join(
        f'<tr data-example="{e(x.id)}"><td>{e(x.prompt)}</td><td class="answer">{e(x.before)}</td>'
        f'<td class="answer">{e(x.after)}</td></tr>'
        for x in finding.examples
    )
    return (
        f"<details><summary>Items that got worse ({len(finding.examples)} shown)</summary>"
        f'<table class="examples"><thead><tr><th>prompt</th><th>{e(before)}</th>'
        f"<th>{e(finding.stage.label)}</th></tr></thead><tbody>{rows}</tbody></table></details>"
    )


def summary_section(run: RunView) -> str:
    summary = summarise(run)
    parts = []
    if summary.regressions:
        items = "".join(
            f'<li data-regression-stage="{e(f.stage.name)}" data-regression-metric="{e(f.metric)}">'
            f"<strong>{e(f.stage.label)}</strong>: {e(describe(f.entry))}{_examples(f)}</li>"
            for f in summary.regressions
        )
        count = len(summary.regressions)
        parts.append(
            f'<div class="alert regressions" id="regressions"><h2>{count} regression{"s" if count > 1 else ""} '
            f"beyond noise</h2><p>A stage answered these behaviour evaluations worse than the model it "
            f"started from, by more than chance explains (exact McNemar test, one-sided, α = {ALPHA}).</p>"
            f'<ul class="problems">{items}</ul></div>'
        )
    if summary.gains:
        items = "".join(
            f'<li data-gain-stage="{e(f.stage.name)}" data-gain-metric="{e(f.metric)}"><strong>{e(f.stage.label)}</strong>: '
            f"{e(describe(f.entry))}</li>"
            for f in summary.gains
        )
        parts.append(f'<div class="panel gains"><strong>Gains beyond noise</strong><ul class="problems">{items}</ul></div>')
    if summary.compared and not summary.regressions:
        names = ", ".join(s.label for s in summary.compared)
        parts.append(
            f'<p class="ok" data-no-regressions="true">No regression beyond noise: {e(names)} each compared '
            f"with the model it started from on every behaviour evaluation (exact McNemar test, one-sided, "
            f"α = {ALPHA}).</p>"
        )
    elif not summary.measured and run.trained:
        parts.append(
            '<p class="note">No behaviour evaluation ran (<code>evals: {behaviour: false}</code>, or no '
            "probes), so this report shows only what each stage was trained for, not what it cost.</p>"
        )
    if not parts:
        return ""
    return f'<section id="summary"><h2>Summary</h2>{"".join(parts)}</section>'
