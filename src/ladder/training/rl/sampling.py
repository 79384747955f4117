"""Where an RL stage's learning signal comes from: dynamic sampling, and the rollouts it saw.

A group whose completions all got the same reward has zero advantage: it teaches nothing, yet it
takes a slot in the batch and, under token-normalised losses, dilutes the gradient of the groups
that do teach. TRL logs the share of such groups (``frac_reward_zero_std``) but keeps them. With
**dynamic sampling** (DAPO's ``filter_groups``; OpenRLHF's ``dynamic_filtering``), zero-spread
groups are dropped and their slots refilled with groups of fresh problems, generated and scored
the same way, up to ``max_refills`` extra rounds; a slot still without signal after that is
masked out of the loss. So no zero-spread group reaches the loss.

Every generated group is also written to ``rollouts.jsonl`` in the stage directory: the prompt,
each completion, its reward from every reward function, the total, its advantage, and whether it
went into the loss, so a person can see what the policy tried.

Both work by wrapping the trainer's ``_generate_and_score_completions`` (TRL 1.x GRPOTrainer and
RLOOTrainer), whose output holds one row per completion with groups of ``num_generations``
consecutive rows.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["ROLLOUTS_FILE", "RolloutRecorder", "install", "splice_groups", "zero_spread_groups"]

logger = logging.getLogger(__name__)

ROLLOUTS_FILE = "rollouts.jsonl"
_ZERO = 1e-6


def zero_spread_groups(advantages: Any, group_size: int) -> list[bool]:
    """Whether each group of ``group_size`` consecutive rows has all-zero advantages.

    Example:
        >>> import torch
        >>> zero_spread_groups(torch.tensor([0.0, 0.0, 0.7, -0.7]), 2)
        [True, False]
    """
    grouped = advantages.detach().reshape(-1, group_size)
    return [bool(v) for v in (grouped.abs() < _ZERO).all(dim=1).tolist()]


def _pad_cols(tensor: Any, width: int, value: float, *, left: bool) -> Any:
    import torch

    missing = width - tensor.shape[1]
    if missing <= 0:
        return tensor
    pad = torch.full((tensor.shape[0], missing, *tensor.shape[2:]), value, dtype=tensor.dtype, device=tensor.device)
    return torch.cat([pad, tensor] if left else [tensor, pad], dim=1)


def splice_groups(
    base: dict[str, Any],
    extra: Mapping[str, Any],
    pairs: Sequence[tuple[int, int]],
    group_size: int,
    pad_token_id: int,
) -> dict[str, Any]:
    """``base`` with group ``b`` replaced by group ``e`` of ``extra`` for each ``(b, e)`` in ``pairs``.

    Tensors whose first dimension is the number of rows are spliced row by row; prompt tensors are
    left-padded and completion-aligned tensors right-padded to a common width (ids with
    ``pad_token_id``, masks and log-probs with 0). Other values are kept from ``base``.
    """
    import torch

    rows = base["completion_ids"].shape[0]
    out = dict(base)
    for key, value in base.items():
        other = extra.get(key)
        if not (isinstance(value, torch.Tensor) and isinstance(other, torch.Tensor)) or value.dim() == 0:
            continue
        if value.shape[0] != rows:
            continue
        if value.dim() >= 2:
            left = key.startswith("prompt_")
            fill = pad_token_id if key.endswith("_ids") else (1 if key == "tool_mask" else 0)
            width = max(value.shape[1], other.shape[1])
            value, other = _pad_cols(value, width, fill, left=left), _pad_cols(other, width, fill, left=left)
        value = value.clone()
        for b, e in pairs:
            value[b * group_size:(b + 1) * group_size] = other[e * group_size:(e + 1) * group_size]
        out[key] = value
    return out


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, Sequence) and value and isinstance(value[-1], Mapping):
        return str(value[-1].get("content", ""))
    return str(value)


class RolloutRecorder:
    """Appends every generated group to ``rollouts.jsonl`` (main process only)."""

    def __init__(self, path: Path, *, weights: Sequence[float], group_size: int, enabled: bool = True) -> None:
        self.path = path
        self.weights = list(weights)
        self.group_size = group_size
        self.enabled = enabled
        self.rows = 0

    def record(self, trainer: Any, count: int, step: int, in_loss: Sequence[bool], round_: int) -> None:
        """Write the last ``count`` completions the trainer logged, one JSON row each."""
        if not self.enabled or not getattr(trainer.accelerator, "is_main_process", True):
            return
        logs = trainer._logs
        prompts = list(logs["prompt"])[-count:]
        completions = list(logs["completion"])[-count:]
        advantages = list(logs["advantages"])[-count:]
        names = list(getattr(trainer, "reward_func_names", logs["rewards"].keys()))
        per_func = {name: list(logs["rewards"][name])[-count:] for name in names}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            for i in range(len(completions)):
                rewards = {name: _number(per_func[name][i]) for name in names}
                total = sum(w * r for w, r in zip(self.weights, rewards.values(), strict=False) if r is not None)
                group = i // self.group_size
                row = {"step": step, "round": round_, "group": group, "prompt": _text(prompts[i]),
                       "completion": _text(completions[i]), "rewards": rewards, "reward": total,
                       "advantage": _number(advantages[i]),
                       "in_loss": bool(in_loss[group]) if group < len(in_loss) else True}
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
                self.rows += 1


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if number != number else number  # NaN: no reward


def _refill_inputs(dataset: Any, groups: int, group_size: int, rng: random.Random) -> list[dict[str, Any]]:
    """Fresh problems for ``groups`` groups, each repeated ``group_size`` times (as TRL's sampler does)."""
    picks = [rng.randrange(len(dataset)) for _ in range(groups)]
    inputs: list[dict[str, Any]] = []
    for index in picks:
        row = dict(dataset[index])
        inputs.extend(dict(row) for _ in range(group_size))
    return inputs


def install(
    trainer: Any,
    *,
    dynamic: bool,
    max_refills: int,
    recorder: RolloutRecorder | None,
    seed: int,
    on_step: Callable[[dict[str, float]], None] | None = None,
) -> None:
    """Wrap ``trainer._generate_and_score_completions`` for dynamic sampling and rollout recording.

    Refilling needs the whole generation batch on one process; under several processes the
    zero-spread groups of each process's slice are masked out of the loss instead.
    """
    original = trainer._generate_and_score_completions
    group_size = int(trainer.num_generations)
    processes = int(getattr(trainer.accelerator, "num_processes", 1))
    rng = random.Random(seed)
    pad_id = trainer.processing_class.pad_token_id if hasattr(trainer.processing_class, "pad_token_id") else 0
    pad_id = 0 if pad_id is None else pad_id

    def generate(inputs: list[dict[str, Any]]) -> dict[str, Any]:
        out = original(inputs)
        if not trainer.model.training:  # evaluation batches pass through unchanged
            return out
        step = int(trainer.state.global_step) + 1
        zero = zero_spread_groups(out["advantages"], group_size) if out["advantages"].numel() % group_size == 0 \
            else [False] * (out["advantages"].numel() // group_size)
        first_zero = sum(zero)
        if recorder is not None:
            recorder.record(trainer, len(inputs) * processes, step, [not z or not dynamic for z in zero], 0)
        if not dynamic or not any(zero):
            _report(on_step, first_zero, len(zero), 0, 0)
            return out
        refills = 0
        if processes == 1:
            for round_ in range(1, max_refills + 1):
                empty = [g for g, z in enumerate(zero) if z]
                if not empty:
                    break
                extra = original(_refill_inputs(trainer.train_dataset, len(empty), group_size, rng))
                extra_zero = zero_spread_groups(extra["advantages"], group_size)
                usable = [g for g, z in enumerate(extra_zero) if not z]
                if recorder is not None:
                    used = set(usable[: len(empty)])
                    recorder.record(trainer, len(empty) * group_size, step,
                                    [g in used for g in range(len(extra_zero))], round_)
                pairs = list(zip(empty, usable, strict=False))
                if pairs:
                    out = splice_groups(out, extra, pairs, group_size, pad_id)
                    for b, _e in pairs:
                        zero[b] = False
                refills += 1
        masked = [g for g, z in enumerate(zero) if z]
        if masked:  # still no signal after the refills: keep these groups out of the loss
            mask = out["completion_mask"].clone()
            for g in masked:
                mask[g * group_size:(g + 1) * group_size] = 0
            out["completion_mask"] = mask
        loss_mask = out["completion_mask"] if out.get("tool_mask") is None else out["completion_mask"] * out["tool_mask"]
        if "num_items_in_batch" in out:
            out["num_items_in_batch"] = trainer.accelerator.gather(loss_mask.sum()).sum()
        _report(on_step, first_zero, len(zero), refills, len(masked))
        return out

    trainer._generate_and_score_completions = generate


def _report(on_step: Callable[[dict[str, float]], None] | None, zero: int, groups: int, refills: int,
            masked: int) -> None:
    if on_step is not None and groups:
        on_step({"zero_spread_generated": zero / groups, "refill_rounds": float(refills),
                 "zero_spread_in_loss": masked / groups})
