"""Small HTML pieces the report's sections share: escaping, timestamps, badges, images, headers.

Every piece of text that came from the run goes through :func:`e` (:func:`html.escape`);
nothing from a run is ever trusted as markup.
"""

from __future__ import annotations

import base64
import datetime as _dt
import json
from html import escape
from importlib import resources
from typing import Any

from ladder.report.charts import Plot
from ladder.report.run import RunView, StageView

__all__ = ["badge", "css", "e", "img", "json_block", "stage_th", "when"]


def e(value: Any) -> str:
    return escape(str(value), quote=True)


def css() -> str:
    return resources.files("ladder.report").joinpath("report.css").read_text(encoding="utf-8")


def when(ts: float | None) -> str:
    """A timestamp as ``2025-01-31 14:05:09 UTC`` (``—`` for ``None``)."""
    if ts is None:
        return "—"
    return _dt.datetime.fromtimestamp(ts, tz=_dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def badge(status: str) -> str:
    return f'<span class="badge status-{e(status)}">{e(status)}</span>'


def json_block(data: Any) -> str:
    return f"<pre>{e(json.dumps(data, indent=2, sort_keys=True, default=str))}</pre>"


def img(plot: Plot, *, cls: str = "", caption: bool = False) -> str:
    data = base64.b64encode(plot.png).decode("ascii")
    stage = f' data-stage="{e(plot.stage)}"' if plot.stage is not None else ""
    return (
        f'<figure class="{cls}"><img src="data:image/png;base64,{data}" alt="{e(plot.title)}"'
        f' data-plot="{e(plot.key)}"{stage}>'
        + (f"<figcaption>{e(plot.title)}</figcaption>" if caption else "")
        + "</figure>"
    )


def stage_th(run: RunView, stage: StageView) -> str:
    parent = run.parent_of(stage)
    branch = (
        f'<span class="from">from {e(parent.name)}</span>'
        if parent is not None and parent.index != stage.index - 1
        else ""
    )
    status = badge(stage.status) if stage.status != "complete" else ""
    return f'<th scope="col" data-stage="{e(stage.name)}">{e(stage.label)}{status}{branch}</th>'
