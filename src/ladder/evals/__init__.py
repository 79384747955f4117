"""Behaviour evaluations independent of every stage's training data.

A stage's own metrics measure what it was trained on. These measure what it was *not* trained
on, so that the cost of a stage (the "alignment tax") is as visible as its gain: knowledge
retention, instruction following, refusal of harmful requests and over-refusal of benign ones,
and arithmetic. :func:`ladder.insight.observe` runs them on the base model and after every stage
with the same loaded model and greedy decoding, records each metric with its sample size and a
95% Wilson interval, and flags a stage that is worse than its input checkpoint beyond noise (an
exact one-sided McNemar test on the items both answered) as a *regression*.

* :mod:`ladder.evals.suites`: the suites, their shipped items and how an answer is scored;
* :mod:`ladder.evals.config`: ``evals: {behaviour: {suites, limit, max_new_tokens}}``;
* :mod:`ladder.evals.runner`: running the suites on a model and finding regressions;
* :mod:`ladder.evals.matching`, :mod:`~ladder.evals.instructions`, :mod:`~ladder.evals.refusal`:
  alias matching, instruction checks and refusal detection;
* :mod:`ladder.evals.stats`: the Wilson interval and the exact McNemar test.

Importing this package does not import torch.
"""

from __future__ import annotations

from ladder.evals.config import DEFAULT_LIMIT, DEFAULT_SUITES, BehaviourConfig, resolve_behaviour
from ladder.evals.refusal import detect_refusal, is_refusal
from ladder.evals.runner import BehaviourRun, find_regressions, run_behaviour
from ladder.evals.stats import ALPHA, TEST_NAME, mcnemar_worse_p, wilson_interval
from ladder.evals.suites import METRICS, SUITES, load_items

__all__ = [
    "ALPHA",
    "DEFAULT_LIMIT",
    "DEFAULT_SUITES",
    "METRICS",
    "SUITES",
    "TEST_NAME",
    "BehaviourConfig",
    "BehaviourRun",
    "detect_refusal",
    "find_regressions",
    "is_refusal",
    "load_items",
    "mcnemar_worse_p",
    "resolve_behaviour",
    "run_behaviour",
    "wilson_interval",
]
