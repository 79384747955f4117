"""The report's charts as small PNGs: the metrics-across-stages chart and every stage's curves.

matplotlib is imported inside the functions and used through ``Figure`` directly (no
``pyplot``), so no global backend state is touched and nothing opens a window. The training
curves are drawn by :mod:`ladder.report.curves`, the shared drawing helpers live in
:mod:`ladder.report.charts`.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ladder.report.charts import INK, PALETTE, Plot, figure, png, style
from ladder.report.curves import stage_plots
from ladder.report.metrics import METRICS, is_rate_record
from ladder.report.run import RunView

__all__ = ["Plot", "stage_plots", "metrics_plot", "render_plots", "write_plots"]



# The run-wide chart's rates, in order: (short label, the paths it may sit at, flat or nested).
_ACROSS_RATES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("knowledge", ("behaviour.knowledge",)),
    ("instructions", ("behaviour.instructions",)),
    ("refusal", ("behaviour.refusal",)),
    ("over-refusal ↓", ("behaviour.over_refusal",)),
    ("arithmetic", ("behaviour.arithmetic",)),
    ("exact match", ("eval.exact_match", "eval.verifiable.exact_match")),
    ("format rate", ("eval.format_rate", "eval.verifiable.format_rate")),
    ("pref. acc./token", ("eval.preference.accuracy_per_token",)),
    ("stop rate", ("behaviour.stop_rate",)),
)


def metrics_plot(run: RunView) -> Plot | None:
    """Grouped bars of the rate metrics (one bar per stage) and the mean answer length.

    ``None`` when no stage recorded any of them.
    """
    stages = [s for s in run.stages if s.metrics]
    rates = [(label, paths) for label, paths in _ACROSS_RATES
             if any(_first(s.metrics, paths) is not None for s in stages)]
    length = "behaviour.mean_answer_tokens"
    has_length = any(_get(s.metrics, length) is not None for s in stages)
    if not rates and not has_length:
        return None

    fig = figure(10.0, 3.4, constrained=True)
    if rates and has_length:
        grid = fig.add_gridspec(1, 3)
        ax_rates = fig.add_subplot(grid[0, :2])
        ax_len = fig.add_subplot(grid[0, 2])
    elif rates:
        ax_rates, ax_len = fig.add_subplot(), None
    else:
        ax_rates, ax_len = None, fig.add_subplot()

    width = 0.8 / max(len(stages), 1)
    if ax_rates is not None:
        for j, stage in enumerate(stages):
            xs, hs = [], []
            for i, (_label, paths) in enumerate(rates):
                v = _first(stage.metrics, paths)
                if v is not None:
                    xs.append(i - 0.4 + width * (j + 0.5))
                    hs.append(v * 100)
            bars = ax_rates.bar(xs, hs, width=width * 0.92, color=PALETTE[j % len(PALETTE)],
                                label=stage.label)
            ax_rates.bar_label(bars, fmt="%.0f", fontsize=6, padding=1, color=INK)
        ax_rates.set_xticks(range(len(rates)), [label for label, _ in rates], fontsize=7, rotation=20, ha="right")
        ax_rates.set_ylim(0, 122)  # headroom for the legend above 100%
        ax_rates.set_yticks(range(0, 101, 20))
        style(ax_rates, title="Rates across stages", ylabel="%", xlabel="")
        ax_rates.legend(fontsize=7, frameon=False, ncols=min(len(stages), 6), loc="upper left")
    if ax_len is not None:
        xs, hs, colors, labels = [], [], [], []
        for j, stage in enumerate(stages):
            v = _get(stage.metrics, length)
            if v is not None:
                xs.append(len(xs))
                hs.append(v)
                colors.append(PALETTE[j % len(PALETTE)])
                labels.append(stage.label)
        bars = ax_len.bar(xs, hs, color=colors, width=0.7)
        ax_len.bar_label(bars, fmt="%.0f", fontsize=6, padding=1, color=INK)
        ax_len.set_xticks(xs, labels, fontsize=7, rotation=20)
        style(ax_len, title=METRICS[length].label.capitalize(), ylabel="tokens", xlabel="")
    return Plot(
        stage=None,
        key="metrics",
        title="Metrics across stages",
        filename="metrics-across-stages.png",
        png=png(fig),
    )


def _first(metrics: Mapping[str, Any], paths: Sequence[str]) -> float | None:
    for path in paths:
        value = _get(metrics, path)
        if value is not None:
            return value
    return None


def _get(metrics: Mapping[str, Any], path: str) -> float | None:
    node: Any = metrics
    for part in path.split("."):
        if not isinstance(node, Mapping):
            return None
        node = node.get(part)
    if is_rate_record(node):  # a behaviour suite's {"rate", "n", ...}
        node = node["rate"]
    if isinstance(node, bool) or not isinstance(node, (int, float)):
        return None
    return float(node)


def render_plots(run: RunView) -> list[Plot]:
    """Every chart of the run: the across-stages chart first, then each stage's curves."""
    plots: list[Plot] = []
    across = metrics_plot(run)
    if across is not None:
        plots.append(across)
    for stage in run.stages:
        plots.extend(stage_plots(stage))
    return plots


def write_plots(plots: Sequence[Plot], directory: Path) -> None:
    """Write ``plots`` under ``directory`` atomically; remove PNGs left from older reports."""
    directory.mkdir(parents=True, exist_ok=True)
    keep = {p.filename for p in plots}
    for plot in plots:
        _atomic_write_bytes(directory / plot.filename, plot.png)
    for old in directory.glob("*.png"):
        if old.name not in keep:
            with contextlib.suppress(OSError):
                old.unlink()


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    # Same recipe as ladder.atomic.atomic_write_text (temp file beside, fsync, os.replace),
    # for bytes, which that helper does not take.
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
