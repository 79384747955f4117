"""Drawing helpers shared by the report's charts: the :class:`Plot` value, figure, style, PNG.

matplotlib is imported inside the functions and used through ``Figure`` directly (no
``pyplot``), so no global backend state is touched and nothing opens a window.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import TYPE_CHECKING

import attrs

from ladder.layout import PLOTS_DIR

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["DPI", "GRID", "INK", "PALETTE", "Plot", "ema", "figure", "legend", "line", "png", "style"]

DPI = 100
# A calm palette that stays distinguishable in print; stage colours follow column order.
PALETTE = ("#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3", "#8C8C8C")
INK = "#333333"
GRID = "#E5E5E5"


@attrs.frozen(kw_only=True)
class Plot:
    """One rendered chart.

    Attributes:
        stage: the stage it belongs to (``None`` for run-wide charts).
        key: a short id, unique within the stage (``"loss"``, ``"reward"``).
        title: a human title (also the image's alt text).
        filename: the file name under ``RUN/plots/``.
        png: the PNG bytes.
    """

    stage: str | None
    key: str
    title: str
    filename: str
    png: bytes = attrs.field(repr=False)

    @property
    def relpath(self) -> str:
        """The path relative to the run directory, for Markdown links."""
        return f"{PLOTS_DIR}/{self.filename}"


def style(ax: Axes, *, title: str, ylabel: str, xlabel: str = "step") -> None:
    ax.set_title(title, loc="left", fontsize=11, color=INK, fontweight="bold")
    ax.set_xlabel(xlabel, fontsize=9, color=INK)
    ax.set_ylabel(ylabel, fontsize=9, color=INK)
    ax.tick_params(labelsize=8, colors=INK)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    for side in ("left", "bottom"):
        ax.spines[side].set_color("#AAAAAA")
    ax.grid(True, color=GRID, linewidth=0.8)
    ax.set_axisbelow(True)
    if xlabel == "step":
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def figure(width: float = 4.8, height: float = 3.0, *, constrained: bool = False) -> Figure:
    from matplotlib.figure import Figure

    if constrained:
        return Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    # Fixed margins for the many one-axes charts: constrained layout draws every figure
    # twice, which doubles the report's rendering time for the same picture.
    fig = Figure(figsize=(width, height), dpi=DPI)
    fig.subplots_adjust(left=0.17, right=0.97, top=0.88, bottom=0.16)
    return fig


def png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, facecolor="white")
    return buf.getvalue()


def line(
    ax: Axes,
    steps: Sequence[float],
    values: Sequence[float],
    *,
    color: str,
    label: str | None = None,
    dashed: bool = False,
    smooth: bool = False,
) -> None:
    """A series: markers when there are few points, a smoothed line over a faint raw
    one when there are many (a noisy loss otherwise hides its trend)."""
    dash = "--" if dashed else "-"
    marker = "o" if len(values) <= 30 else None
    if smooth and len(values) > 40:
        ax.plot(steps, values, dash, color=color, alpha=0.25, linewidth=0.8)
        ax.plot(steps, ema(values), dash, color=color, linewidth=1.8, label=label)
    else:
        ax.plot(steps, values, dash, color=color, linewidth=1.6, marker=marker,
                markersize=3.5, label=label)


def ema(values: Sequence[float]) -> list[float]:
    alpha = min(0.3, 10.0 / len(values))
    out: list[float] = []
    acc = values[0]
    for v in values:
        acc = alpha * v + (1 - alpha) * acc
        out.append(acc)
    return out


def legend(ax: Axes) -> None:
    handles, _labels = ax.get_legend_handles_labels()
    if len(handles) > 1:
        ax.legend(fontsize=8, frameon=False)

