"""Which metrics the report knows, how it formats them, and which way is "better".

:data:`METRICS` is the one table that declares, per metric, its label, its unit and its
direction (up is good, down is good, or neither). The HTML and Markdown reports both format
through :func:`format_value` and :func:`format_delta`, so the two always agree, and tests can
recompute the text a cell should show from ``metrics.json``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any, Literal

import attrs

from ladder.report.run import RunView, StageView

__all__ = [
    "MetricSpec",
    "METRICS",
    "SECTIONS",
    "MetricRow",
    "spec_for",
    "format_value",
    "format_delta",
    "delta_tone",
    "metric_rows",
    "flatten",
    "is_warning",
    "warnings_of",
    "MetricCell",
]

Unit = Literal["pct", "float", "int", "tokens", "seconds"]


@attrs.frozen(kw_only=True)
class MetricSpec:
    """How one metric is shown.

    Attributes:
        label: the row title.
        unit: ``pct`` (a 0-1 rate shown as a percentage with 1 decimal), ``float`` (3
            decimals), ``int`` (thousands separators), ``tokens`` (1 decimal), ``seconds``
            (a duration).
        direction: ``1`` when up is good, ``-1`` when down is good, ``0`` when neither (or
            when comparing across stages means nothing, as for training losses).
        help: one line shown as the row's tooltip; docs/reading-the-report.md says more.
        compare: whether a change across stages is shown (not for sample counts).
    """

    label: str
    unit: Unit = "float"
    direction: int = 0
    help: str = ""
    compare: bool = True


# Sections of metrics.json shown in the table, in order, with their headings.
SECTIONS: tuple[tuple[str, str], ...] = (
    ("eval", "Evaluation (held-out)"),
    ("behaviour", "Behaviour on probes"),
    ("train", "Training"),
    ("stage_metrics", "Stage-specific"),
)

# Keys are "<section>.<key>" paths into metrics.json (nested dicts joined with dots). Both
# the flat evaluation keys (eval.exact_match) and the nested ones ladder's evaluator writes
# (eval.verifiable.exact_match) are declared, so either shape gets labels and colours.
_PREF_ACC = MetricSpec(
    label="preference accuracy", unit="pct", direction=1,
    help="share of held-out pairs where the model prefers the chosen answer: DPO's implicit reward "
    "beta*(logp - logp_base) against the base model (the base itself scores 50% by construction)",
)
_PREF_MARGIN = MetricSpec(
    label="preference margin", unit="float", direction=1,
    help="mean implicit-reward gap (chosen minus rejected) on held-out pairs",
)
_EXACT = MetricSpec(
    label="exact match", unit="pct", direction=1,
    help="share of held-out verifiable problems answered exactly right",
)
_FORMAT = MetricSpec(
    label="format rate", unit="pct", direction=1,
    help="share of held-out answers in the expected format",
)
METRICS: dict[str, MetricSpec] = {
    "eval.preference_accuracy": _PREF_ACC,
    "eval.preference_margin": _PREF_MARGIN,
    "eval.exact_match": _EXACT,
    "eval.format_rate": _FORMAT,
    "eval.preference.accuracy": _PREF_ACC,
    "eval.preference.margin": _PREF_MARGIN,
    "eval.preference.n": MetricSpec(label="preference pairs evaluated", unit="int", compare=False),
    "eval.preference.logp_accuracy": MetricSpec(
        label="preference log-prob accuracy", unit="pct", direction=1,
        help="share of pairs whose chosen answer has the higher summed log-probability (favours shorter answers)",
    ),
    "eval.preference.logp_margin": MetricSpec(
        label="preference log-prob margin", unit="float", direction=1,
        help="mean summed log-probability gap, chosen minus rejected",
    ),
    "eval.rm_accuracy": MetricSpec(
        label="reward-model accuracy", unit="pct", direction=1,
        help="share of the reward stage's held-out pairs whose chosen answer its reward model scores higher",
    ),
    "eval.verifiable.exact_match": _EXACT,
    "eval.verifiable.format_rate": _FORMAT,
    "eval.verifiable.n": MetricSpec(
        label="verifiable problems evaluated", unit="int", compare=False
    ),
    "behaviour.mean_answer_tokens": MetricSpec(
        label="mean answer length (tokens)", unit="tokens", direction=0,
        help="average generated tokens per probe answer",
    ),
    "behaviour.stop_rate": MetricSpec(
        label="stop rate", unit="pct", direction=1,
        help="share of probe answers that ended on their own, before the token limit",
    ),
    "behaviour.repetition": MetricSpec(
        label="repetition", unit="pct", direction=-1,
        help="share of repeated word 3-grams in an answer, averaged over probes (0 = none)",
    ),
    "train.loss_first": MetricSpec(label="loss (first step)", help="training loss at the first log"),
    "train.loss_last": MetricSpec(label="loss (last step)", help="training loss at the last log"),
    "train.reward_first": MetricSpec(label="reward (first steps)", help="GRPO/RLOO mean reward, first logs"),
    "train.reward_last": MetricSpec(label="reward (last steps)", help="GRPO/RLOO mean reward, last logs"),
    "train.steps": MetricSpec(label="optimizer steps", unit="int"),
    "train.runtime_s": MetricSpec(label="training time", unit="seconds"),
    "train.train_tokens": MetricSpec(label="tokens trained on", unit="int"),
    "stage_metrics.heldout_before.accuracy": MetricSpec(
        label="held-out accuracy before", unit="pct",
        help="preference accuracy on the stage's held-out pairs before training",
    ),
    "stage_metrics.heldout_after.accuracy": MetricSpec(
        label="held-out accuracy after", unit="pct",
        help="preference accuracy on the stage's held-out pairs after training",
    ),
    "stage_metrics.heldout_before.margin": MetricSpec(label="held-out margin before"),
    "stage_metrics.heldout_after.margin": MetricSpec(label="held-out margin after"),
    "stage_metrics.heldout_before.logp_accuracy": MetricSpec(
        label="held-out log-prob accuracy before", unit="pct",
        help="share of the stage's held-out pairs whose chosen answer the input policy finds more likely",
    ),
    "stage_metrics.heldout_after.logp_accuracy": MetricSpec(
        label="held-out log-prob accuracy after", unit="pct",
        help="share of the stage's held-out pairs whose chosen answer the trained policy finds more likely",
    ),
    "stage_metrics.learned_reward_first": MetricSpec(
        label="learned reward (first steps)", help="the reward model's mean score of the completions, first logs",
    ),
    "stage_metrics.learned_reward_last": MetricSpec(
        label="learned reward (last steps)", help="the reward model's mean score of the completions, last logs",
    ),
    "stage_metrics.kl_first": MetricSpec(label="KL to the input (first steps)", direction=-1),
    "stage_metrics.kl_last": MetricSpec(
        label="KL to the input (last steps)", direction=-1,
        help="how far the policy moved from the model it started from (the KL penalty's measure)",
    ),
    "stage_metrics.completion_length_first": MetricSpec(label="completion length (first steps)", unit="tokens"),
    "stage_metrics.completion_length_last": MetricSpec(label="completion length (last steps)", unit="tokens"),
    "stage_metrics.completion_length_change": MetricSpec(
        label="completion length change", unit="pct",
        help="relative change of the mean completion length, first to last steps (a reward-hacking sign when large)",
    ),
    "stage_metrics.rows": MetricSpec(label="training rows", unit="int"),
    "stage_metrics.lora_delta_max_abs": MetricSpec(
        label="LoRA: max |weight change|", help="largest change the trained adapter makes to a weight (0: untrained)",
    ),
    "stage_metrics.merge_max_abs_diff": MetricSpec(
        label="merge check: max |logit diff|",
        help="largest logit difference between adapter-on-base and the merged model",
    ),
}

# Metrics whose across-stage movement is meaningful get deltas; training numbers of
# different algorithms (an SFT loss vs a DPO loss) do not compare, so they get none.
_DELTA_SECTIONS = ("eval", "behaviour")


def spec_for(path: str, value: Any = None) -> MetricSpec:
    """The :class:`MetricSpec` for a metric path, or a neutral guess for an unknown one.

    >>> spec_for("eval.exact_match").unit
    'pct'
    >>> spec_for("train.my_counter", 3).unit
    'int'
    """
    spec = METRICS.get(path)
    if spec is not None:
        return spec
    key = path.rsplit(".", 1)[-1]
    if isinstance(value, int) and not isinstance(value, bool):
        unit: Unit = "int"
    elif key.endswith(("_rate", "accuracy", "_frac")) or key.startswith("frac_"):
        unit = "pct"
    elif key.endswith(("_s", "_seconds")):
        unit = "seconds"
    else:
        unit = "float"
    # Unknown nested metrics keep their path (minus the section) so that, e.g., a reward
    # weight and a reward value of the same function do not share a label; TRL-style
    # segments ("rewards/exact_match/mean_first") keep only their last part.
    parts = [part.rsplit("/", 1)[-1] for part in path.split(".")[1:]]
    label = " › ".join(parts) or key
    return MetricSpec(label=label.replace("_", " "), unit=unit, compare=key != "n")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def format_value(value: Any, unit: Unit) -> str:
    """The text a metric cell shows.

    >>> format_value(0.4567, "pct"), format_value(2.34567, "float"), format_value(12345, "int")
    ('45.7%', '2.346', '12,345')
    >>> format_value(42.25, "tokens"), format_value(75.5, "seconds"), format_value(None, "pct")
    ('42.2', '1 min 16 s', '—')
    """
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if not _is_number(value):
        return str(value)
    v = float(value)
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "∞" if v > 0 else "−∞"
    if unit == "pct":
        return f"{v * 100:.1f}%"
    if unit == "int":
        return f"{round(v):,}"
    if unit == "tokens":
        return f"{v:.1f}"
    if unit == "seconds":
        return format_duration(v)
    if v != 0 and abs(v) < 1e-3:
        return f"{v:.2e}"
    return f"{v:,.3f}"


def format_duration(seconds: float) -> str:
    """``12.3 s``, ``1 min 15.5 s``, ``2 h 05 min``.

    >>> format_duration(3.14159), format_duration(7500)
    ('3.1 s', '2 h 05 min')
    """
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        minutes, rest = divmod(round(seconds), 60)
        return f"{minutes} min {rest:02d} s"
    hours, rest_s = divmod(seconds, 3600)
    return f"{int(hours)} h {int(rest_s // 60):02d} min"


def format_delta(value: Any, previous: Any, unit: Unit) -> str | None:
    """The change from ``previous`` to ``value`` (``None`` when either is not a number).

    Rates move in percentage points.

    >>> format_delta(0.5, 0.25, "pct"), format_delta(1.0, 1.5, "float"), format_delta(3, 3, "int")
    ('+25.0 pt', '−0.500', '±0')
    """
    if not (_is_number(value) and _is_number(previous)):
        return None
    diff = float(value) - float(previous)
    if not math.isfinite(diff):
        return None
    if unit == "pct":
        text, zero = f"{abs(diff) * 100:.1f} pt", round(diff * 100, 1) == 0
    elif unit in ("int",):
        text, zero = f"{abs(round(diff)):,}", round(diff) == 0
    elif unit in ("tokens", "seconds"):
        text, zero = f"{abs(diff):.1f}", round(diff, 1) == 0
    else:
        text, zero = f"{abs(diff):.3f}", round(diff, 3) == 0
    if zero:
        return "±0"
    return ("+" if diff > 0 else "−") + text


def delta_tone(value: Any, previous: Any, direction: int) -> str:
    """``good``, ``bad`` or ``neutral`` for a movement, given the metric's direction.

    >>> delta_tone(0.6, 0.5, 1), delta_tone(0.6, 0.5, -1), delta_tone(0.6, 0.5, 0)
    ('good', 'bad', 'neutral')
    """
    if direction == 0 or not (_is_number(value) and _is_number(previous)):
        return "neutral"
    diff = float(value) - float(previous)
    if not math.isfinite(diff) or diff == 0:
        return "neutral"
    return "good" if diff * direction > 0 else "bad"


def flatten(data: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """``("a.b.c", value)`` for every leaf of nested dicts, in insertion order.

    >>> list(flatten({"a": {"b": 1, "c": {"d": 2}}, "e": 3}))
    [('a.b', 1), ('a.c.d', 2), ('e', 3)]
    """
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from flatten(value, prefix=f"{path}.")
        else:
            yield path, value


@attrs.frozen(kw_only=True)
class MetricCell:
    """One stage's value of one metric, with its movement vs the stage's input."""

    stage: StageView
    present: bool
    value: Any = None
    text: str = "—"
    delta: str | None = None
    tone: str = "neutral"
    compared_to: str | None = None


@attrs.frozen(kw_only=True)
class MetricRow:
    """One row of the metrics table: a metric path, its spec, and one cell per stage."""

    path: str
    section: str
    spec: MetricSpec
    cells: tuple[MetricCell, ...]


def _lookup(metrics: Mapping[str, Any], path: str) -> tuple[bool, Any]:
    node: Any = metrics
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False, None
        node = node[part]
    return True, node


def metric_rows(run: RunView) -> list[MetricRow]:
    """Every metric any stage recorded, grouped by section, known metrics first.

    Deltas compare a stage with the stage it started from (its ``input``), which for a
    straight ladder is the previous column and for a branch is the stage it branched off.
    """
    rows: list[MetricRow] = []
    for section, _ in SECTIONS:
        paths: list[str] = []
        for stage in run.stages:
            block = stage.metrics.get(section)
            if isinstance(block, Mapping):
                for path, _value in flatten(block, prefix=f"{section}."):
                    if path not in paths:
                        paths.append(path)
        known = [p for p in METRICS if p in paths]
        paths = known + [p for p in paths if p not in METRICS]
        for path in paths:
            if is_warning(path):
                continue
            rows.append(_row(run, section, path))
    return rows


def is_warning(path: str) -> bool:
    """Whether a metric path holds a warning sentence (shown as a note, not in the table).

    >>> is_warning("stage_metrics.zero_spread_warning"), is_warning("eval.exact_match")
    (True, False)
    """
    return path.rsplit(".", 1)[-1].endswith("warning")


def warnings_of(stage: StageView) -> list[str]:
    """The warning sentences a stage recorded in its metrics (``*_warning`` keys)."""
    return [
        str(value)
        for path, value in flatten(stage.metrics)
        if is_warning(path) and isinstance(value, str) and value
    ]


def _row(run: RunView, section: str, path: str) -> MetricRow:
    sample = None
    for stage in run.stages:
        present, value = _lookup(stage.metrics, path)
        if present and value is not None:
            sample = value
            break
    spec = spec_for(path, sample)
    cells = []
    for stage in run.stages:
        present, value = _lookup(stage.metrics, path)
        delta = None
        tone = "neutral"
        compared = None
        if present and spec.compare and section in _DELTA_SECTIONS:
            parent = run.parent_of(stage)
            if parent is not None:
                p_present, p_value = _lookup(parent.metrics, path)
                if p_present:
                    delta = format_delta(value, p_value, spec.unit)
                    tone = delta_tone(value, p_value, spec.direction)
                    compared = parent.name
        cells.append(
            MetricCell(
                stage=stage,
                present=present,
                value=value,
                text=format_value(value, spec.unit) if present else "—",
                delta=delta,
                tone=tone,
                compared_to=compared,
            )
        )
    return MetricRow(path=path, section=section, spec=spec, cells=tuple(cells))
