"""What an RL stage tried: a few rollouts per step from its ``rollouts.jsonl``, best and worst.

An RL stage (GRPO, RLOO) writes every completion it generated to ``rollouts.jsonl`` in its
directory (:mod:`ladder.training.rl.sampling`): the prompt, the completion, each reward
function's score, the weighted total, the advantage, and whether it went into the loss. The
report shows, for each step (up to :data:`MAX_STEPS` steps, spread over the run), the step's
mean reward and the completions with the highest and the lowest reward, so a reader sees what
the policy did when it was rewarded and when it was not. The learnability scan's numbers
(``stage_metrics.learnability_scan``), when the stage ran one, head the section.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from ladder.report.format import format_value

__all__ = ["MAX_STEPS", "ROLLOUTS_FILE", "RolloutStep", "read_rollout_steps", "scan_summary"]

logger = logging.getLogger(__name__)

ROLLOUTS_FILE = "rollouts.jsonl"  # the name ladder.training.rl.sampling writes (not imported: no torch here)
#: Steps shown per stage; a longer run shows this many, evenly spread, first and last included.
MAX_STEPS = 8


@attrs.frozen
class RolloutStep:
    """One training step's rollouts, summarised.

    Attributes:
        step: the trainer's global step the completions were generated for.
        completions: how many completions the step generated (refills included).
        in_loss: how many of them went into the loss.
        mean_reward: their mean weighted reward (``None`` when no reward was recorded).
        best: the completion with the highest reward (a ``rollouts.jsonl`` row).
        worst: the one with the lowest reward (``None`` when all scored the same).
    """

    step: int
    completions: int
    in_loss: int
    mean_reward: float | None
    best: Mapping[str, Any]
    worst: Mapping[str, Any] | None


def _reward(row: Mapping[str, Any]) -> float | None:
    value = row.get("reward")
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def read_rollout_steps(stage_dir: Path | None, max_steps: int = MAX_STEPS) -> tuple[list[RolloutStep], list[str]]:
    """The steps of ``stage_dir/rollouts.jsonl``, summarised; ``([], [])`` when there is no file.

    Returns:
        ``(steps, problems)``: at most ``max_steps`` steps in order, and a sentence per
        unreadable line (the rest is still read).
    """
    if stage_dir is None or not (stage_dir / ROLLOUTS_FILE).is_file():
        return [], []
    by_step: dict[int, list[Mapping[str, Any]]] = {}
    problems: list[str] = []
    path = stage_dir / ROLLOUTS_FILE
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                step = int(row["step"])
            except (ValueError, KeyError, TypeError) as exc:
                problems.append(f"{path.name} line {number}: unreadable rollout ({exc})")
                continue
            if isinstance(row, dict):
                by_step.setdefault(step, []).append(row)
    steps = sorted(by_step)
    if len(steps) > max_steps > 1:  # evenly spread, the first and the last included
        steps = sorted({steps[round(i * (len(steps) - 1) / (max_steps - 1))] for i in range(max_steps)})
    return [_summarise(step, by_step[step]) for step in steps], problems


def _summarise(step: int, rows: Sequence[Mapping[str, Any]]) -> RolloutStep:
    scored = [(r, _reward(r)) for r in rows]
    rewards = [v for _, v in scored if v is not None]
    # Prefer what went into the loss: that is what the policy learnt from.
    pool = [(r, v) for r, v in scored if v is not None and r.get("in_loss", True)] or \
        [(r, v) for r, v in scored if v is not None]
    if pool:
        best = max(pool, key=lambda item: item[1])
        worst = min(pool, key=lambda item: item[1])
        worst_row = worst[0] if worst[1] < best[1] else None
        best_row = best[0]
    else:
        best_row, worst_row = rows[0], None
    return RolloutStep(
        step=step,
        completions=len(rows),
        in_loss=sum(bool(r.get("in_loss", True)) for r in rows),
        mean_reward=sum(rewards) / len(rewards) if rewards else None,
        best=best_row,
        worst=worst_row,
    )


def scan_summary(metrics: Mapping[str, Any]) -> str | None:
    """One sentence on the stage's learnability scan, from its metrics; ``None`` without a scan."""
    scan = (metrics.get("stage_metrics") or {}).get("learnability_scan")
    if not isinstance(scan, Mapping) or "scan_problems" not in scan:
        return None
    k = scan.get("scan_samples")
    anchors = scan.get("scan_kept_solved") or 0
    head = (
        f"Learnability scan: {scan.get('scan_problems')} problems × {k} samples with the input checkpoint; "
        f"pass@1 {format_value(scan.get('scan_pass_at_1'), 'pct')}, pass@{k} "
        f"{format_value(scan.get('scan_pass_at_k'), 'pct')}; "
    )
    if not anchors:
        return head + (f"trained on the {scan.get('scan_kept')} solved sometimes (dropped: "
                       f"{scan.get('scan_always')} always solved, {scan.get('scan_never')} never).")
    return head + (f"trained on the {scan.get('scan_kept') - anchors} solved sometimes and {anchors} of the "
                   f"{scan.get('scan_always')} always solved, kept as anchors (dropped: "
                   f"{scan.get('scan_always') - anchors} always solved, {scan.get('scan_never')} never).")


def rewards_text(row: Mapping[str, Any]) -> str:
    """``reward 1.10 (exact_match 1, tag_format 1) · advantage +0.87`` for a rollout row."""
    parts = []
    total = _reward(row)
    if total is not None:
        parts.append(f"reward {total:.2f}")
    per = row.get("rewards")
    if isinstance(per, Mapping) and per:
        parts[-1:] = [" ".join(parts[-1:]) + " (" + ", ".join(
            f"{name} {value:g}" if isinstance(value, (int, float)) else f"{name} –" for name, value in per.items()
        ) + ")"]
    advantage = row.get("advantage")
    if isinstance(advantage, (int, float)):
        parts.append(f"advantage {advantage:+.2f}")
    if row.get("in_loss") is False:
        parts.append("not in the loss")
    return " · ".join(parts)


def rollouts_html(stage: Any) -> str:
    """The stage's rollouts panel (``<details>`` in its training article); ``""`` without rollouts."""
    from ladder.report.html_parts import e

    steps, problems = read_rollout_steps(stage.path)
    scan = scan_summary(stage.metrics)
    if not steps and scan is None:
        return ""
    out = [f'<p class="note">{e(scan)}</p>'] if scan else []
    for s in steps:
        mean = f"mean reward {s.mean_reward:.2f}" if s.mean_reward is not None else "no reward recorded"
        out.append(f'<div class="rollout-step" data-step="{s.step}"><h4>Step {s.step} · {s.completions} '
                   f"completions, {s.in_loss} in the loss · {e(mean)}</h4>")
        for label, row in (("best", s.best), ("worst", s.worst)):
            if row is None:
                continue
            prompt = "" if label == "worst" and row.get("prompt") == s.best.get("prompt") else \
                f'<p class="muted">Prompt</p><pre class="prompt">{e(row.get("prompt", ""))}</pre>'
            out.append(f'{prompt}<div class="rollout" data-which="{label}"><p><b>{label}</b> · '
                       f'{e(rewards_text(row))}</p><pre>{e(row.get("completion", ""))}</pre></div>')
        out.append("</div>")
    if problems:
        out.append(f'<pre class="muted">{e(chr(10).join(problems[:5]))}</pre>')
    return (f'<details class="rollouts" open><summary>Rollouts: what the policy tried (best and worst of '
            f"each step, from <code>{ROLLOUTS_FILE}</code>)</summary>" + "".join(out) + "</details>")
