"""Running the behaviour suites on a loaded model, and comparing two runs item by item.

:func:`run_behaviour` answers every selected item greedily through :func:`ladder.generation.generate`
(batched; suites that share a token budget share the batches), scores each answer and sums the
scores up per metric with a Wilson interval. :func:`find_regressions` compares a checkpoint's
run with its input checkpoint's on the same items with the exact one-sided McNemar test.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from ladder.evals.config import BehaviourConfig
from ladder.evals.stats import ALPHA, TEST_NAME, mcnemar_worse_p, wilson_interval
from ladder.evals.suites import METRICS, score_item, select_items

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from ladder.generation import GenerationSettings

__all__ = ["BEHAVIOUR_FILE", "BehaviourRun", "describe", "find_regressions", "plan", "plan_digest", "rate_record", "run_behaviour"]

#: The file a checkpoint's per-item rows are written to, beside its ``probes.jsonl``.
BEHAVIOUR_FILE = "behaviour.jsonl"
#: How many regressed items a regression names (for the report's examples).
EXAMPLES = 5


@attrs.frozen(kw_only=True)
class BehaviourRun:
    """One checkpoint's answers to the behaviour suites.

    Attributes:
        metrics: ``{metric: {"rate", "k", "n", "ci_low", "ci_high"}}`` (``rate = k / n``).
        rows: one row per item: ``suite``, ``metric``, ``id``, ``prompt``, ``answer``,
            ``num_tokens``, ``stopped``, ``hit``, ``good``, ``detail``.
        outcomes: ``{metric: {item id: good}}``, what the paired test compares.
    """

    metrics: Mapping[str, Mapping[str, Any]]
    rows: tuple[Mapping[str, Any], ...]
    outcomes: Mapping[str, Mapping[str, bool]]


def rate_record(k: int, n: int) -> dict[str, Any]:
    """``{"rate", "k", "n", "ci_low", "ci_high"}`` for ``k`` of ``n`` (95% Wilson interval).

    >>> rate_record(3, 4)["rate"], rate_record(3, 4)["n"]
    (0.75, 4)
    """
    low, high = wilson_interval(k, n)
    return {"rate": k / n if n else 0.0, "k": k, "n": n, "ci_low": low, "ci_high": high}


def plan(config: BehaviourConfig, run_max_new_tokens: int) -> list[tuple[str, dict[str, Any], int]]:
    """``(suite, item, token budget)`` for every item that runs, in suite order."""
    if not config.enabled:
        return []
    return [
        (suite, item, config.budget(suite, run_max_new_tokens))
        for suite in config.suites
        for item in select_items(suite, config.limit(suite))
    ]


def plan_digest(config: BehaviourConfig, settings: GenerationSettings, extra: Sequence[Any] = ()) -> str:
    """A digest of everything a run's answers depend on besides the weights."""
    planned = plan(config, settings.max_new_tokens)
    blob = json.dumps(
        [[[s, i, b] for s, i, b in planned], settings.batch_size, list(extra)], sort_keys=True, default=str
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def run_behaviour(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    config: BehaviourConfig,
    settings: GenerationSettings,
) -> BehaviourRun:
    """Answer and score the configured suites with one loaded model (greedy decoding).

    Args:
        model: a causal LM, or a :class:`~ladder.generation.Generator` (vLLM).
        tokenizer: its tokenizer (its chat template renders the prompts).
        config: which suites, how many items, which budget.
        settings: the run's generation settings; decoding is greedy whatever their
            temperature, ``max_new_tokens`` caps every suite's own budget and
            ``batch_size`` sets the batches.
    """
    from ladder.generation import answer

    planned = plan(config, settings.max_new_tokens)
    by_budget: dict[int, list[int]] = {}
    for index, (_suite, _item, budget) in enumerate(planned):
        by_budget.setdefault(budget, []).append(index)
    answers: dict[int, Any] = {}
    for budget, indices in by_budget.items():
        decoding = attrs.evolve(settings, temperature=0.0, max_new_tokens=budget)
        gens = answer(model, tokenizer, [planned[i][1]["prompt"] for i in indices], decoding)
        answers.update(zip(indices, gens, strict=True))

    rows: list[dict[str, Any]] = []
    counts: dict[str, list[int]] = {}
    outcomes: dict[str, dict[str, bool]] = {}
    for index, (suite, item, _budget) in enumerate(planned):
        gen = answers[index]
        result = score_item(suite, item, gen.text)
        tally = counts.setdefault(result.metric, [0, 0])
        tally[0] += int(result.hit)
        tally[1] += 1
        outcomes.setdefault(result.metric, {})[item["id"]] = result.good
        rows.append({
            "suite": suite, "metric": result.metric, "id": item["id"], "prompt": item["prompt"],
            "answer": gen.text, "num_tokens": gen.num_tokens, "stopped": gen.stopped,
            "hit": result.hit, "good": result.good, "detail": result.detail,
        })
    metrics = {metric: rate_record(k, n) for metric, (k, n) in counts.items()}
    return BehaviourRun(metrics=metrics, rows=tuple(rows), outcomes=outcomes)


def find_regressions(
    before: Mapping[str, Mapping[str, bool]],
    after: Mapping[str, Mapping[str, bool]],
    *,
    compared_to: str,
    alpha: float = ALPHA,
) -> list[dict[str, Any]]:
    """The metrics on which ``after`` is worse than ``before`` beyond noise.

    Both map ``{metric: {item id: good}}`` (:attr:`BehaviourRun.outcomes`); only items both
    answered are compared. A metric regresses when the one-sided exact McNemar p-value of
    "more items went from good to bad than the reverse" is below ``alpha``.

    Returns:
        One entry per regressed metric: ``metric`` (``behaviour.<name>``), ``label``,
        ``before``/``after`` (the metric's rate on the compared items), ``n``, ``worse``,
        ``better``, ``p_value``, ``alpha``, ``test``, ``compared_to`` and ``examples`` (ids
        of items that got worse).

    >>> before = {"knowledge": {"a": True, "b": True, "c": True, "d": True, "e": True}}
    >>> after = {"knowledge": {"a": False, "b": False, "c": False, "d": False, "e": False}}
    >>> found = find_regressions(before, after, compared_to="sft")
    >>> found[0]["before"], found[0]["after"], found[0]["p_value"]
    (1.0, 0.0, 0.03125)
    >>> find_regressions(before, before, compared_to="sft")
    []
    """
    found = []
    for metric, after_items in after.items():
        before_items = before.get(metric)
        if not before_items:
            continue
        common = [i for i in after_items if i in before_items]
        if not common:
            continue
        worse = [i for i in common if before_items[i] and not after_items[i]]
        better = [i for i in common if after_items[i] and not before_items[i]]
        p_value = mcnemar_worse_p(len(worse), len(better))
        if p_value >= alpha:
            continue
        info = METRICS.get(metric)
        higher = info.higher_is_better if info else True

        def rate(items: Mapping[str, bool], higher: bool = higher) -> float:
            good = sum(1 for i in common if items[i])
            return (good if higher else len(common) - good) / len(common)

        found.append({
            "metric": f"behaviour.{metric}",
            "label": info.label if info else metric,
            "before": rate(before_items),
            "after": rate(after_items),
            "n": len(common),
            "worse": len(worse),
            "better": len(better),
            "p_value": p_value,
            "alpha": alpha,
            "test": TEST_NAME,
            "compared_to": compared_to,
            "examples": worse[:EXAMPLES],
        })
    return found


def describe(entry: Mapping[str, Any]) -> str:
    """One line for a :func:`find_regressions` entry (a regression, or a gain read the same way).

    >>> describe({"label": "knowledge retention", "before": 0.65, "after": 0.475, "n": 40,
    ...           "worse": 9, "better": 2, "p_value": 0.0327, "compared_to": "sft"})
    'knowledge retention 65.0% → 47.5% vs sft (40 items: 9 worse, 2 better; p = 0.033)'
    """

    def pct(value: Any) -> str:
        return f"{float(value) * 100:.1f}%" if isinstance(value, (int, float)) else "?"

    p_value = entry.get("p_value")
    if not isinstance(p_value, (int, float)):
        p_text = "?"
    else:
        p_text = f"{p_value:.1e}" if p_value < 0.001 else f"{p_value:.3f}"
    return (
        f"{entry.get('label') or entry.get('metric')} {pct(entry.get('before'))} → {pct(entry.get('after'))} "
        f"vs {entry.get('compared_to')} ({entry.get('n')} items: {entry.get('worse')} worse, "
        f"{entry.get('better')} better; p = {p_text})"
    )
