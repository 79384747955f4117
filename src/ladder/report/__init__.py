"""The run report: ``report.html``, ``report.md`` and ``plots/*.png`` in a run directory.

``write_report(run_dir)`` reads what a run left behind (:func:`load_run`) and writes a
self-contained HTML page (inline CSS, images as data URIs, no script, no external request) and
the same content in Markdown. It works on a finished run, a running one, and a failed one:
what finished is shown, what failed is named with its error.

Importing this package is cheap; matplotlib is imported only when plots are drawn.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import attrs

from ladder.atomic import atomic_write_text
from ladder.layout import PLOTS_DIR
from ladder.report.loading import load_run
from ladder.report.run import ProbeAnswer, RunView, StageView

__all__ = ["ReportPaths", "write_report", "load_run", "RunView", "StageView", "ProbeAnswer"]

logger = logging.getLogger(__name__)


@attrs.frozen(kw_only=True)
class ReportPaths:
    """Where :func:`write_report` wrote the report.

    Attributes:
        html: ``RUN/report.html``.
        md: ``RUN/report.md``.
        plots: the PNGs written under ``RUN/plots/``.
    """

    html: Path
    md: Path
    plots: tuple[Path, ...] = ()


def write_report(run_dir: str | os.PathLike[str]) -> ReportPaths:
    """Write ``report.html``, ``report.md`` and ``plots/*.png`` into ``run_dir``.

    Every file is written atomically, so a reader never sees half a report; PNGs that an
    earlier report wrote and this one no longer draws are removed from ``plots/``.

    Args:
        run_dir: the directory ``ladder run`` created (``runs/<name>``).

    Returns:
        The paths written.

    Raises:
        ConfigError: ``run_dir`` does not exist or is not a ladder run directory.
    """
    from ladder.report.html import render_html
    from ladder.report.markdown import render_markdown
    from ladder.report.plots import render_plots, write_plots

    started = time.monotonic()
    run = load_run(run_dir)
    plots = render_plots(run)
    plot_dir = run.path / PLOTS_DIR
    write_plots(plots, plot_dir)
    now = time.time()
    html_path = run.path / "report.html"
    md_path = run.path / "report.md"
    atomic_write_text(html_path, render_html(run, plots, generated_at=now))
    atomic_write_text(md_path, render_markdown(run, plots, generated_at=now))
    logger.info(
        "report for run %s written to %s (%d plots, %.1f s)",
        run.name, html_path, len(plots), time.monotonic() - started,
    )
    return ReportPaths(
        html=html_path, md=md_path, plots=tuple(plot_dir / p.filename for p in plots)
    )
