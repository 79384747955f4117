"""Training curves of one stage, from the keys its trainer log holds.

Which charts a stage gets depends on the keys its trainer log holds, not on its kind, so a
plugin stage whose trainer logs TRL's usual keys gets the same pictures: ``loss`` for every
stage, ``rewards/accuracies`` and ``rewards/margins`` (DPO), ``reward`` / ``reward_std`` /
``rewards/<func>/mean`` / ``frac_reward_zero_std`` / ``completions/mean_length`` / ``kl``
(GRPO), ``accuracy`` / ``margin`` (reward model).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ladder.layout import slug
from ladder.report.charts import PALETTE, Plot, figure, legend, line, png, style
from ladder.report.run import StageView, series

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["STAGE_CHARTS", "stage_plots"]

logger = logging.getLogger(__name__)


def _train_records(stage: StageView) -> list[Mapping[str, Any]]:
    # Evaluation records carry eval_* keys and the final summary carries train_* keys;
    # the training curves come from the per-step records only.
    return [r for r in stage.log if not any(str(k).startswith("eval_") for k in r)]


def _eval_records(stage: StageView) -> list[Mapping[str, Any]]:
    return [r for r in stage.log if any(str(k).startswith("eval_") for k in r)]


def _has(records: Sequence[Mapping[str, Any]], key: str) -> bool:
    return bool(series(records, key)[0])


def _train_series(stage: StageView, key: str) -> tuple[list[Mapping[str, Any]], list[float], list[float]]:
    """The stage's training records and the (steps, values) of ``key`` in them."""
    records = _train_records(stage)
    return (records, *series(records, key))


def _by_step(records: Sequence[Mapping[str, Any]], key: str) -> dict[float, float]:
    """``key``'s value at each step it was logged at: a series drawn beside another."""
    return dict(zip(*series(records, key), strict=True))


def _band(ax: Axes, steps: Sequence[float], low: Sequence[float], high: Sequence[float], *, color: str,
          label: str) -> None:
    """A faint band from ``low`` to ``high``, behind the line of the same colour."""
    ax.fill_between(steps, low, high, color=color, alpha=0.15, linewidth=0, label=label)


ChartFn = Callable[[StageView, "Axes"], str | None]


def _chart_loss(stage: StageView, ax: Axes) -> str | None:
    _, steps, values = _train_series(stage, "loss")
    e_steps, e_values = series(_eval_records(stage), "eval_loss")
    if not steps and not e_steps:
        return None
    if steps:
        line(ax, steps, values, color=PALETTE[0], label="train", smooth=True)
    if e_steps:
        line(ax, e_steps, e_values, color=PALETTE[1], label="eval", dashed=True)
    style(ax, title=f"Loss · {stage.label}", ylabel="loss")
    legend(ax)
    return "Loss"


def _chart_preference_accuracy(stage: StageView, ax: Axes) -> str | None:
    records = _train_records(stage)
    plotted = False
    for key, label, color in (("rewards/accuracies", "DPO reward accuracy", PALETTE[2]),
                              ("accuracy", "reward-model accuracy", PALETTE[2])):
        steps, values = series(records, key)
        if steps:
            line(ax, steps, [v * 100 for v in values], color=color, label=label)
            plotted = True
            break
    if not plotted:
        return None
    ax.axhline(50, color="#999999", linewidth=0.8, linestyle=":")
    ax.set_ylim(-2, 102)
    style(ax, title=f"Preference accuracy · {stage.label}", ylabel="chosen ranked higher (%)")
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
            line(ax, steps, values, color=color, label=label, dashed=dashed)
            plotted = True
    if not plotted:
        return None
    ax.axhline(0, color="#999999", linewidth=0.8, linestyle=":")
    style(ax, title=f"Implicit rewards · {stage.label}", ylabel="reward")
    legend(ax)
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
    records, steps, values = _train_series(stage, "reward")
    if not steps:
        return None
    std_by_step = _by_step(records, "reward_std")
    if std_by_step:
        band = [(s, v, std_by_step[s]) for s, v in zip(steps, values, strict=True) if s in std_by_step]
        _band(ax, [b[0] for b in band], [b[1] - b[2] for b in band], [b[1] + b[2] for b in band], color=PALETTE[0],
              label="± std")
    line(ax, steps, values, color=PALETTE[0], label="reward (mean)")
    for i, name in enumerate(_reward_funcs(records)):
        f_steps, f_values = series(records, f"rewards/{name}/mean")
        if f_steps:
            line(ax, f_steps, f_values, color=PALETTE[(i + 1) % len(PALETTE)], label=name,
                  dashed=True)
    style(ax, title=f"Reward · {stage.label}", ylabel="reward")
    legend(ax)
    return "Reward"


def _one_line(key: str, title: str, ylabel: str, color: str, *, name: str | None = None, percent: bool = False,
              smooth: bool = False) -> ChartFn:
    """A chart of one logged key as one line; ``percent``: a 0-1 share drawn as 0-100 %.
    ``name`` is the plot's title in the report (default: ``title``)."""

    def chart(stage: StageView, ax: Axes) -> str | None:
        _, steps, values = _train_series(stage, key)
        if not steps:
            return None
        line(ax, steps, [v * 100 for v in values] if percent else values, color=color, smooth=smooth)
        if percent:
            ax.set_ylim(-2, 102)
        style(ax, title=f"{title} · {stage.label}", ylabel=ylabel)
        return name or title

    return chart


_chart_zero_std = _one_line("frac_reward_zero_std", "Groups with no reward spread", "% of groups, all rewards equal",
                            PALETTE[3], name="Groups with zero reward spread", percent=True)


def _chart_length(stage: StageView, ax: Axes) -> str | None:
    records, steps, values = _train_series(stage, "completions/mean_length")
    if not steps:
        return None
    lo, hi = _by_step(records, "completions/min_length"), _by_step(records, "completions/max_length")
    band = [s for s in steps if s in lo and s in hi]
    if band:
        _band(ax, band, [lo[s] for s in band], [hi[s] for s in band], color=PALETTE[4], label="min–max")
    line(ax, steps, values, color=PALETTE[4], label="mean")
    style(ax, title=f"Completion length · {stage.label}", ylabel="tokens")
    legend(ax)
    return "Completion length"


_chart_kl = _one_line("kl", "KL to reference", "KL", PALETTE[5])
_chart_grad_norm = _one_line("grad_norm", "Gradient norm", "grad norm", PALETTE[7], smooth=True)


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
        fig = figure()
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
                filename=f"{stage.index:02d}-{slug(stage.name)}-{key}.png",
                png=png(fig),
            )
        )
    return plots
