"""A learnability scan before an RL stage trains: which problems can the input policy sometimes solve?

GRPO learns only from differences within a group. A problem the policy always solves, or never
does, gives every completion the same reward: no signal. The scan samples ``samples``
completions per problem with the input checkpoint (the stage's own temperature and completion
length), scores them with the stage's pass reward, and keeps for training the problems whose pass
rate is strictly between 0 and 1. Its pass@1 (mean pass rate) and pass@k (share of problems
solved at least once) describe where the policy started, and go into ``stage_metrics``.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from ladder.errors import ConfigError

__all__ = ["ScanResult", "learnability_scan", "pass_reward"]

logger = logging.getLogger(__name__)


@attrs.frozen
class ScanResult:
    """What the scan found.

    Attributes:
        kept: the rows to train on (pass rate strictly between 0 and 1, and the anchors
            ``keep_solved`` picked among those passed every time), in their order.
        rates: each scanned row's pass rate, in order.
        metrics: ``scan_problems``, ``scan_samples``, ``scan_pass_at_1``, ``scan_pass_at_k``,
            ``scan_always``, ``scan_never``, ``scan_kept``, ``scan_kept_solved`` and ``scan_reward`` (for
            ``stage_metrics``).
    """

    kept: list[dict[str, Any]]
    rates: list[float]
    metrics: dict[str, Any]


def pass_reward(funcs: Sequence[Any], names: Sequence[str], wanted: str | None) -> tuple[Any, str]:
    """The reward function that decides a pass: ``wanted`` by name, else ``exact_match``, else the first."""
    if not funcs:
        raise ConfigError("learnability_scan needs a reward function to decide what passes; add rewards")
    if wanted is not None:
        if wanted not in names:
            raise ConfigError(f"scan_reward {wanted!r} is not one of the stage's rewards ({', '.join(names)})")
        index = list(names).index(wanted)
    else:
        index = list(names).index("exact_match") if "exact_match" in names else 0
    return funcs[index], names[index]


def learnability_scan(
    model: Any,
    tokenizer: Any,
    rows: Sequence[Mapping[str, Any]],
    reward: Any,
    reward_name: str,
    *,
    samples: int,
    threshold: float,
    temperature: float,
    max_new_tokens: int,
    seed: int,
    batch_size: int = 32,
    keep_solved: float = 0.0,
) -> ScanResult:
    """Sample ``samples`` completions per row with ``model`` and keep the rows it sometimes passes.

    A completion passes when ``reward`` gives it at least ``threshold``. ``reward`` is called with
    TRL's signature: the completions (as assistant messages when the prompts are conversations)
    and each row's columns, one value per completion. ``keep_solved`` is the share of the rows
    passed every time that are kept too (a seeded pick), as anchors: their groups carry no signal
    while the policy keeps solving them, and do as soon as it starts to fail one.
    """
    from ladder.generation import GenerationSettings, generate

    settings = GenerationSettings(max_new_tokens=max_new_tokens, temperature=temperature, seed=seed,
                                  batch_size=batch_size)
    repeated = [row for row in rows for _ in range(samples)]
    answers = generate(model, tokenizer, [r["prompt"] for r in repeated], settings)
    conversational = bool(repeated) and not isinstance(repeated[0]["prompt"], str)
    completions: list[Any] = [
        [{"role": "assistant", "content": a.text}] if conversational else a.text for a in answers
    ]
    columns = {key: [r.get(key) for r in repeated] for key in repeated[0] if key != "prompt"} if repeated else {}
    scores = list(reward(completions, prompts=[r["prompt"] for r in repeated], **columns))
    passed = [s is not None and float(s) >= threshold for s in scores]
    rates = [sum(passed[i * samples:(i + 1) * samples]) / samples for i in range(len(rows))]
    solved = [i for i, rate in enumerate(rates) if rate == 1.0]
    anchors = set(random.Random(seed).sample(solved, round(keep_solved * len(solved))))
    kept = [dict(r) for i, (r, rate) in enumerate(zip(rows, rates, strict=True)) if 0.0 < rate < 1.0 or i in anchors]
    n = max(len(rows), 1)
    metrics = {
        "scan_reward": reward_name,
        "scan_problems": len(rows),
        "scan_samples": samples,
        "scan_pass_at_1": sum(rates) / n,
        "scan_pass_at_k": sum(rate > 0 for rate in rates) / n,
        "scan_always": len(solved),
        "scan_never": sum(rate == 0.0 for rate in rates),
        "scan_kept": len(kept),
        "scan_kept_solved": len(anchors),
    }
    logger.info(
        "learnability scan: %d of %d problems are sometimes solved (pass@1 %.2f, pass@%d %.2f; %d always, "
        "%d never solved)%s", len(kept) - len(anchors), len(rows), metrics["scan_pass_at_1"], samples,
        metrics["scan_pass_at_k"], metrics["scan_always"], metrics["scan_never"],
        f"; {len(anchors)} always solved kept as anchors" if anchors else "")
    return ScanResult(kept, rates, metrics)
