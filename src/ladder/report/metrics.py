"""Which metrics the report knows, how it shows them, which way is "better", which are headlines.

:data:`METRICS` is the one table that declares, per metric, its label, its unit, its direction
(up is good, down is good, or neither) and whether it is a *headline*: a number measured on
every model, the base included, that is not fixed by construction. The report's main table
shows the headlines; every other number (sample sizes, margins, the DPO implicit-reward
diagnostic, training numbers, stage-specific numbers, metrics ladder does not know) is in the
folded table below it. Formatting lives in :mod:`ladder.report.format` (re-exported here).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import attrs

from ladder.report.format import Unit, delta_tone, format_delta, format_duration, format_value, is_number
from ladder.report.run import StageView

__all__ = [
    "METRICS",
    "SECTIONS",
    "MetricSpec",
    "Unit",
    "delta_tone",
    "flatten",
    "format_delta",
    "format_duration",
    "format_value",
    "is_rate_record",
    "is_warning",
    "section_of",
    "spec_for",
    "warnings_of",
]


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
        headline: shown in the main table: measured on every model it applies to, the base
            included, and never constant by construction.
    """

    label: str
    unit: Unit = "float"
    direction: int = 0
    help: str = ""
    compare: bool = True
    headline: bool = False


# Sections of the metric tables, in order: (key, title). ``behaviour_evals`` holds the behaviour
# suites' rate records (``behaviour.knowledge`` ...), ``behaviour`` the probe answers' shape.
SECTIONS: tuple[tuple[str, str], ...] = (
    ("behaviour_evals", "Behaviour evaluations (independent of every stage's training data)"),
    ("eval", "Held-out evaluations (the stages' own targets)"),
    ("behaviour", "Behaviour on probes"),
    ("train", "Training"),
    ("stage_metrics", "Stage-specific"),
)


def _rate(label: str, direction: int, help: str) -> MetricSpec:
    return MetricSpec(label=label, unit="pct", direction=direction, help=help, headline=True)


def _before_after(
    key: str, label: str, *, unit: Unit = "float", help: tuple[str, str] = ("", "")
) -> dict[str, MetricSpec]:
    """The specs of one held-out measure a stage takes before and after training
    (``stage_metrics.heldout_before.<key>``, ``stage_metrics.heldout_after.<key>``)."""
    return {
        f"stage_metrics.heldout_{when}.{key}": MetricSpec(label=f"{label} {when}", unit=unit, help=text)
        for when, text in zip(("before", "after"), help, strict=True)
    }


_EXACT = _rate("exact match", 1, "share of held-out verifiable problems answered exactly right")
_FORMAT = _rate("format rate", 1, "share of held-out answers in the expected format")
_N = MetricSpec(label="items evaluated", unit="int", compare=False)

# Keys are "<section>.<key>" paths into metrics.json (nested dicts joined with dots). Both
# the flat evaluation keys (eval.exact_match) and the nested ones ladder's evaluator writes
# (eval.verifiable.exact_match) are declared, so either shape gets labels and colours.
METRICS: dict[str, MetricSpec] = {
    "behaviour.knowledge": _rate(
        "knowledge retention", 1, "short general-knowledge questions answered with an accepted answer"),
    "behaviour.instructions": _rate(
        "instruction following", 1, "prompts whose every checkable constraint (length, format, words) holds"),
    "behaviour.refusal": _rate("refusal of harmful requests", 1, "clearly harmful requests the model refused"),
    "behaviour.over_refusal": _rate(
        "over-refusal of benign requests", -1, "benign look-alike requests (\"kill a Python process\") refused"),
    "behaviour.arithmetic": _rate("arithmetic", 1, "small one- and two-step problems answered right"),
    "eval.preference.accuracy": _rate(
        "preference accuracy", 1, "held-out pairs whose chosen answer the model finds more likely "
        "(summed log-probability; favours the shorter answer)"),
    "eval.preference.accuracy_per_token": _rate(
        "preference accuracy per token", 1, "held-out pairs whose chosen answer has the higher mean "
        "log-probability per token (length-normalised)"),
    "eval.exact_match": _EXACT,
    "eval.format_rate": _FORMAT,
    "eval.verifiable.exact_match": _EXACT,
    "eval.verifiable.format_rate": _FORMAT,
    "eval.rm_accuracy": _rate(
        "reward-model accuracy", 1,
        "share of the reward stage's held-out pairs whose chosen answer its reward model scores higher"),
    "behaviour.stop_rate": _rate(
        "stop rate", 1, "share of probe answers that ended on their own, before the token limit"),
    "behaviour.repetition": _rate(
        "repetition", -1, "share of repeated word 3-grams in an answer, averaged over probes (0 = none)"),
    "behaviour.mean_answer_tokens": MetricSpec(
        label="mean answer length (tokens)", unit="tokens", headline=True,
        help="average generated tokens per probe answer",
    ),
    # Diagnostics: measured, but not headlines.
    "eval.preference.margin": MetricSpec(
        label="preference margin", direction=1, help="mean summed log-probability gap, chosen minus rejected"),
    "eval.preference.margin_per_token": MetricSpec(
        label="preference margin per token", direction=1,
        help="mean per-token log-probability gap, chosen minus rejected"),
    "eval.preference.implicit_accuracy": MetricSpec(
        label="implicit-reward accuracy vs base (DPO diagnostic)", unit="pct", direction=1,
        help="pairs the model moved towards the chosen answer more than the base did: DPO's implicit "
        "reward beta*(logp - logp_base); 50% for the base by construction, so it is not a headline",
    ),
    "eval.preference.implicit_margin": MetricSpec(
        label="implicit-reward margin vs base (DPO diagnostic)", direction=1,
        help="mean implicit-reward gap (chosen minus rejected) against the base model",
    ),
    "eval.preference.n": MetricSpec(label="preference pairs evaluated", unit="int", compare=False),
    "eval.preference.logp_accuracy": MetricSpec(
        label="preference log-prob accuracy (older runs)", unit="pct", direction=1,
        help="share of pairs whose chosen answer has the higher summed log-probability",
    ),
    "eval.preference.logp_margin": MetricSpec(
        label="preference log-prob margin (older runs)", direction=1,
        help="mean summed log-probability gap, chosen minus rejected",
    ),
    "eval.preference_accuracy": MetricSpec(
        label="preference accuracy (flat key)", unit="pct", direction=1,
        help="a stage's own preference accuracy, as it recorded it",
    ),
    "eval.preference_margin": MetricSpec(label="preference margin (flat key)", direction=1),
    "eval.verifiable.n": MetricSpec(label="verifiable problems evaluated", unit="int", compare=False),
    "train.loss_first": MetricSpec(label="loss (first step)", help="training loss at the first log"),
    "train.loss_last": MetricSpec(label="loss (last step)", help="training loss at the last log"),
    "train.reward_first": MetricSpec(label="reward (first steps)", help="GRPO/RLOO mean reward, first logs"),
    "train.reward_last": MetricSpec(label="reward (last steps)", help="GRPO/RLOO mean reward, last logs"),
    "train.steps": MetricSpec(label="optimizer steps", unit="int"),
    "train.runtime_s": MetricSpec(label="training time", unit="seconds"),
    "train.train_tokens": MetricSpec(label="tokens trained on", unit="int"),
    **_before_after("accuracy", "held-out implicit-reward accuracy", unit="pct", help=(
        "the stage's held-out pairs before training, against itself: 50% by construction",
        "the stage's held-out pairs after training, implicit reward against its input",
    )),
    **_before_after("margin", "held-out margin"),
    **_before_after("logp_accuracy", "held-out log-prob accuracy", unit="pct", help=(
        "share of the stage's held-out pairs whose chosen answer the input policy finds more likely",
        "share of the stage's held-out pairs whose chosen answer the trained policy finds more likely",
    )),
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


def spec_for(path: str, value: Any = None) -> MetricSpec:
    """The :class:`MetricSpec` for a metric path, or a neutral guess for an unknown one.

    Unknown metrics are never headlines: nothing says they are measured on every model.

    >>> spec_for("eval.exact_match").unit
    'pct'
    >>> spec_for("train.my_counter", 3).unit, spec_for("eval.my_score", 0.5).headline
    ('int', False)
    """
    spec = METRICS.get(path)
    if spec is not None:
        return spec
    key = path.rsplit(".", 1)[-1]
    if is_rate_record(value):
        unit: Unit = "pct"
    elif isinstance(value, int) and not isinstance(value, bool):
        unit = "int"
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


def is_rate_record(value: Any) -> bool:
    """Whether ``value`` is a behaviour suite's ``{"rate", "k", "n", "ci_low", "ci_high"}`` record.

    >>> is_rate_record({"rate": 0.5, "k": 2, "n": 4, "ci_low": 0.15, "ci_high": 0.85}), is_rate_record(0.5)
    (True, False)
    """
    return isinstance(value, Mapping) and is_number(value.get("rate")) and is_number(value.get("n"))


def section_of(path: str, value: Any = None) -> str:
    """The table section of a metric path (a key of :data:`SECTIONS`).

    >>> section_of("behaviour.knowledge", {"rate": 1.0, "n": 3}), section_of("behaviour.stop_rate", 1.0)
    ('behaviour_evals', 'behaviour')
    """
    top = path.split(".", 1)[0]
    if top == "behaviour" and is_rate_record(value):
        return "behaviour_evals"
    return top


def flatten(data: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """``("a.b.c", value)`` for every leaf of nested dicts, in insertion order.

    A behaviour suite's rate record is one leaf (see :func:`is_rate_record`).

    >>> list(flatten({"a": {"b": 1, "c": {"d": 2}}, "e": 3}))
    [('a.b', 1), ('a.c.d', 2), ('e', 3)]
    >>> list(flatten({"behaviour": {"knowledge": {"rate": 0.5, "n": 2}}}))
    [('behaviour.knowledge', {'rate': 0.5, 'n': 2})]
    """
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and not is_rate_record(value):
            yield from flatten(value, prefix=f"{path}.")
        else:
            yield path, value


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
