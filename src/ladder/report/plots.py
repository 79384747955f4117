"""Training curves and the metrics-across-stages chart, as small PNGs.

Which charts a stage gets depends on the keys its trainer log holds, not on its kind, so a
plugin stage whose trainer logs TRL's usual keys gets the same pictures: ``loss`` for every
stage, ``rewards/accuracies`` and ``rewards/margins`` (DPO), ``reward`` / ``reward_std`` /
``rewards/<func>/mean`` / ``frac_reward_zero_std`` / ``completions/mean_length`` / ``kl``
(GRPO), ``accuracy`` / ``margin`` (reward model).

matplotlib is imported inside the functions and used through ``Figure`` directly (no
``pyplot``), so no global backend state is touched and nothing opens a window.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from ladder.report.metrics import METRICS, spec_for
from ladder.report.run import RunView, StageView, series

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["Plot", "stage_plots", "metrics_plot", "render_plots", "write_plots"]

logger = logging.getLogger(__name__)

DPI = 100
# A calm palette that stays distinguishable in print; stage colours follow column order.
PALETTE = ("#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3", "#8C8C8C")
_INK = "#333333"
_GRID = "#E5E5E5"


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
        return f"plots/{self.filename}"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "x"


def _style(ax: Axes, *, title: str, ylabel: str, xlabel: str = "step") -> None:
    ax.set_title(title, loc="left", fontsize=11, color=_INK, fontweight="bold")
    ax.set_xlabel(xlabel, fontsize=9, color=_INK)
    ax.set_ylabel(ylabel, fontsize=9, color=_INK)
    ax.tick_params(labelsize=8, colors=_INK)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    for side in ("left", "bottom"):
        ax.spines[side].set_color("#AAAAAA")
    ax.grid(True, color=_GRID, linewidth=0.8)
    ax.set_axisbelow(True)
    if xlabel == "step":
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _figure(width: float = 4.8, height: float = 3.0, *, constrained: bool = False) -> Figure:
    from matplotlib.figure import Figure

    if constrained:
        return Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    # Fixed margins for the many one-axes charts: constrained layout draws every figure
    # twice, which doubles the report's rendering time for the same picture.
    fig = Figure(figsize=(width, height), dpi=DPI)
    fig.subplots_adjust(left=0.17, right=0.97, top=0.88, bottom=0.16)
    return fig


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, facecolor="white")
    return buf.getvalue()


def _line(
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
    style = "--" if dashed else "-"
    marker = "o" if len(values) <= 30 else None
    if smooth and len(values) > 40:
        ax.plot(steps, values, style, color=color, alpha=0.25, linewidth=0.8)
        ax.plot(steps, _ema(values), style, color=color, linewidth=1.8, label=label)
    else:
        ax.plot(steps, values, style, color=color, linewidth=1.6, marker=marker,
                markersize=3.5, label=label)


def _ema(values: Sequence[float]) -> list[float]:
    alpha = min(0.3, 10.0 / len(values))
    out: list[float] = []
    acc = values[0]
    for v in values:
        acc = alpha * v + (1 - alpha) * acc
        out.append(acc)
    return out


def _legend(ax: Axes) -> None:
    handles, _labels = ax.get_legend_handles_labels()
    if len(handles) > 1:
        ax.legend(fontsize=8, frameon=False)


def _train_records(stage: StageView) -> list[Mapping[str, Any]]:
    # Evaluation records carry eval_* keys and the final summary carries train_* keys;
    # the training curves come from the per-step records only.
    return [r for r in stage.log if not any(str(k).startswith("eval_") for k in r)]


def _eval_records(stage: StageView) -> list[Mapping[str, Any]]:
    return [r for r in stage.log if any(str(k).startswith("eval_") for k in r)]


def _has(records: Sequence[Mapping[str, Any]], key: str) -> bool:
    return bool(series(records, key)[0])


ChartFn = Callable[[StageView, "Axes"], str | None]


def _chart_loss(stage: StageView, ax: Axes) -> str | None:
    train = _train_records(stage)
    steps, values = series(train, "loss")
    e_steps, e_values = series(_eval_records(stage), "eval_loss")
    if not steps and not e_steps:
        return None
    if steps:
        _line(ax, steps, values, color=PALETTE[0], label="train", smooth=True)
    if e_steps:
        _line(ax, e_steps, e_values, color=PALETTE[1], label="eval", dashed=True)
    _style(ax, title=f"Loss · {stage.label}", ylabel="loss")
    _legend(ax)
    return "Loss"


def _chart_preference_accuracy(stage: StageView, ax: Axes) -> str | None:
    records = _train_records(stage)
    plotted = False
    for key, label, color in (("rewards/accuracies", "DPO reward accuracy", PALETTE[2]),
                              ("accuracy", "reward-model accuracy", PALETTE[2])):
        steps, values = series(records, key)
        if steps:
            _line(ax, steps, [v * 100 for v in values], color=color, label=label)
            plotted = True
            break
    if not plotted:
        return None
    ax.axhline(50, color="#999999", linewidth=0.8, linestyle=":")
    ax.set_ylim(-2, 102)
    _style(ax, title=f"Preference accuracy · {stage.label}", ylabel="chosen ranked higher (%)")
    return "Preference accuracy"


def _chart_margins(stage: StageView, ax: Axes) -> str | None:
    records = _train_records(stage)
    lines = [
        ("rewards/margins", "margin", PALETTE[0], False),
        ("rewards/chosen", "chosen", PALETTE[2], True),
        ("rewards/rejected", "rejected", PALETTE[3], True),
        ("margin", "margin", PALETTE[0], False),
    ]
    plotted = False
    for key, label, color, dashed in lines:
        steps, values = series(records, key)
        if steps:
            _line(ax, steps, values, color=color, label=label, dashed=dashed)
            plotted = True
    if not plotted:
        return None
    ax.axhline(0, color="#999999", linewidth=0.8, linestyle=":")
    _style(ax, title=f"Implicit rewards · {stage.label}", ylabel="reward")
    _legend(ax)
    return "Rewards and margin"


def _reward_funcs(records: Sequence[Mapping[str, Any]]) -> list[str]:
    names: list[str] = []
    for rec in records:
        for key in rec:
            m = re.fullmatch(r"rewards/(.+)/mean", str(key))
            if m and m.group(1) not in names:
                names.append(m.group(1))
    return names


def _chart_reward(stage: StageView, ax: Axes) -> str | None:
    records = _train_records(stage)
    steps, values = series(records, "reward")
    if not steps:
        return None
    std_by_step = dict(zip(*series(records, "reward_std"), strict=True))
    if std_by_step:
        band = [(s, v, std_by_step[s]) for s, v in zip(steps, values, strict=True) if s in std_by_step]
        ax.fill_between([b[0] for b in band], [b[1] - b[2] for b in band],
                        [b[1] + b[2] for b in band], color=PALETTE[0], alpha=0.15,
                        linewidth=0, label="± std")
    _line(ax, steps, values, color=PALETTE[0], label="reward (mean)")
    for i, name in enumerate(_reward_funcs(records)):
        f_steps, f_values = series(records, f"rewards/{name}/mean")
        if f_steps:
            _line(ax, f_steps, f_values, color=PALETTE[(i + 1) % len(PALETTE)], label=name,
                  dashed=True)
    _style(ax, title=f"Reward · {stage.label}", ylabel="reward")
    _legend(ax)
    return "Reward"


def _chart_zero_std(stage: StageView, ax: Axes) -> str | None:
    steps, values = series(_train_records(stage), "frac_reward_zero_std")
    if not steps:
        return None
    _line(ax, steps, [v * 100 for v in values], color=PALETTE[3])
    ax.set_ylim(-2, 102)
    _style(ax, title=f"Groups with no reward spread · {stage.label}",
           ylabel="% of groups, all rewards equal")
    return "Groups with zero reward spread"


def _chart_length(stage: StageView, ax: Axes) -> str | None:
    records = _train_records(stage)
    steps, values = series(records, "completions/mean_length")
    if not steps:
        return None
    lo = dict(zip(*series(records, "completions/min_length"), strict=True))
    hi = dict(zip(*series(records, "completions/max_length"), strict=True))
    band = [s for s in steps if s in lo and s in hi]
    if band:
        ax.fill_between(band, [lo[s] for s in band], [hi[s] for s in band], color=PALETTE[4],
                        alpha=0.15, linewidth=0, label="min–max")
    _line(ax, steps, values, color=PALETTE[4], label="mean")
    _style(ax, title=f"Completion length · {stage.label}", ylabel="tokens")
    _legend(ax)
    return "Completion length"


def _chart_kl(stage: StageView, ax: Axes) -> str | None:
    steps, values = series(_train_records(stage), "kl")
    if not steps:
        return None
    _line(ax, steps, values, color=PALETTE[5])
    _style(ax, title=f"KL to reference · {stage.label}", ylabel="KL")
    return "KL to reference"


def _chart_grad_norm(stage: StageView, ax: Axes) -> str | None:
    steps, values = series(_train_records(stage), "grad_norm")
    if not steps:
        return None
    _line(ax, steps, values, color=PALETTE[7], smooth=True)
    _style(ax, title=f"Gradient norm · {stage.label}", ylabel="grad norm")
    return "Gradient norm"


# Chart order in the report; each chart appears only when its keys are in the log.
STAGE_CHARTS: tuple[tuple[str, ChartFn], ...] = (
    ("loss", _chart_loss),
    ("preference-accuracy", _chart_preference_accuracy),
    ("margins", _chart_margins),
    ("reward", _chart_reward),
    ("zero-std", _chart_zero_std),
    ("completion-length", _chart_length),
    ("kl", _chart_kl),
    ("grad-norm", _chart_grad_norm),
)


def stage_plots(stage: StageView) -> list[Plot]:
    """Every training chart ``stage``'s trainer log supports (none without a log)."""
    plots: list[Plot] = []
    if not stage.log:
        return plots
    for key, chart in STAGE_CHARTS:
        fig = _figure()
        ax = fig.add_subplot()
        try:
            title = chart(stage, ax)
        except Exception:  # a chart is never worth failing the report over
            logger.warning("could not draw %s for stage %s", key, stage.name, exc_info=True)
            continue
        if title is None:
            continue
        plots.append(
            Plot(
                stage=stage.name,
                key=key,
                title=f"{title} · {stage.label}",
                filename=f"{stage.index:02d}-{_slug(stage.name)}-{key}.png",
                png=_png(fig),
            )
        )
    return plots


# The run-wide chart's rates, in order; each may sit at a flat or a nested path.
_ACROSS_RATES: tuple[tuple[str, ...], ...] = (
    ("eval.exact_match", "eval.verifiable.exact_match"),
    ("eval.format_rate", "eval.verifiable.format_rate"),
    ("eval.preference_accuracy", "eval.preference.accuracy"),
    ("behaviour.stop_rate",),
)


def metrics_plot(run: RunView) -> Plot | None:
    """Grouped bars of the rate metrics (one bar per stage) and the mean answer length.

    ``None`` when no stage recorded any of them.
    """
    stages = [s for s in run.stages if s.metrics]
    rates: list[tuple[str, ...]] = []
    for paths in _ACROSS_RATES:
        if any(_first(s.metrics, paths) is not None for s in stages):
            rates.append(paths)
    length = "behaviour.mean_answer_tokens"
    has_length = any(_get(s.metrics, length) is not None for s in stages)
    if not rates and not has_length:
        return None

    fig = _figure(10.0, 3.4, constrained=True)
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
            for i, paths in enumerate(rates):
                v = _first(stage.metrics, paths)
                if v is not None:
                    xs.append(i - 0.4 + width * (j + 0.5))
                    hs.append(v * 100)
            bars = ax_rates.bar(xs, hs, width=width * 0.92, color=PALETTE[j % len(PALETTE)],
                                label=stage.label)
            ax_rates.bar_label(bars, fmt="%.0f", fontsize=6, padding=1, color=_INK)
        ax_rates.set_xticks(range(len(rates)),
                            [spec_for(p[0]).label for p in rates], fontsize=8)
        ax_rates.set_ylim(0, 122)  # headroom for the legend above 100%
        ax_rates.set_yticks(range(0, 101, 20))
        _style(ax_rates, title="Rates across stages", ylabel="%", xlabel="")
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
        ax_len.bar_label(bars, fmt="%.0f", fontsize=6, padding=1, color=_INK)
        ax_len.set_xticks(xs, labels, fontsize=7, rotation=20)
        _style(ax_len, title=METRICS[length].label.capitalize(), ylabel="tokens", xlabel="")
    return Plot(
        stage=None,
        key="metrics",
        title="Metrics across stages",
        filename="metrics-across-stages.png",
        png=_png(fig),
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
