"""The batch arithmetic of RL stages: whole groups of completions in every generation batch."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ladder.training.rl.config import RLStageConfig

__all__ = ["batch_problems", "generation_batch_problems", "num_processes"]


def num_processes() -> int:
    """Processes the trainer will run in (``accelerate launch``/``torchrun`` set WORLD_SIZE)."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


def _nearest_multiples(value: int, step: int) -> list[int]:
    """Multiples of ``step`` nearest to ``value`` (one below when positive, one above)."""
    below = (value // step) * step
    above = below + step
    return [m for m in (below, above) if m > 0 and m != value]


def _divisors_near(total: int, value: int) -> list[int]:
    """Divisors of ``total`` that are >= 2, the nearest below and above ``value``."""
    divisors = [d for d in range(2, total + 1) if total % d == 0]
    below = [d for d in divisors if d < value]
    above = [d for d in divisors if d > value]
    return ([below[-1]] if below else []) + ([above[0]] if above else [])


def _join(values: Sequence[int]) -> str:
    return " or ".join(str(v) for v in values)


def generation_batch_problems(
    *,
    num_generations: int,
    per_device_train_batch_size: int,
    gradient_accumulation_steps: int,
    steps_per_generation: int | None = None,
    generation_batch_size: int | None = None,
    num_processes: int = 1,
    algorithm: str = "GRPO",
) -> tuple[int | None, list[str]]:
    """Check the batch arithmetic the way TRL 1.16's ``GRPOConfig``/``RLOOConfig`` do.

    TRL generates one *generation batch* of completions at a time:
    ``per_device_train_batch_size * num_processes * steps_per_generation`` completions, where
    ``steps_per_generation`` defaults to ``gradient_accumulation_steps``. It must hold whole
    groups of ``num_generations`` completions of the same problem, and a group needs at least
    two completions to have a spread (GRPO) or a leave-one-out baseline (RLOO).

    Returns:
        ``(generation_batch_size, problems)``; each problem says which numbers to change and to what.

    Example:
        >>> generation_batch_problems(
        ...     num_generations=4, per_device_train_batch_size=4, gradient_accumulation_steps=2)
        (8, [])
        >>> _, problems = generation_batch_problems(
        ...     num_generations=3, per_device_train_batch_size=4, gradient_accumulation_steps=1)
        >>> print(problems[0])  # doctest: +NORMALIZE_WHITESPACE
        the generation batch (per_device_train_batch_size 4 x steps_per_generation 1 (= gradient_accumulation_steps)
        x 1 process = 4 completions) must hold whole groups of num_generations=3 completions;
        set per_device_train_batch_size to 3 or 6, or steps_per_generation (or gradient_accumulation_steps)
        to 3, or num_generations to 2 or 4
    """
    problems: list[str] = []
    if num_generations < 2:
        problems.append(
            f"num_generations={num_generations}: {algorithm} compares completions of the same problem, so it needs "
            f"at least 2 per problem; set num_generations to 2 or more (the reference recipe uses 2)"
        )
    per_step = per_device_train_batch_size * num_processes
    processes = f"{num_processes} process{'es' if num_processes != 1 else ''}"
    if generation_batch_size is not None and steps_per_generation is not None:
        problems.append(
            "set either generation_batch_size or steps_per_generation (in trainer_kwargs), not both"
        )
        return None, problems
    if generation_batch_size is not None:
        if generation_batch_size % per_step:
            problems.append(
                f"generation_batch_size {generation_batch_size} must be a multiple of per_device_train_batch_size "
                f"{per_device_train_batch_size} x {processes} = {per_step}; set it to "
                f"{_join(_nearest_multiples(generation_batch_size, per_step))}"
            )
            return None, problems
        steps = generation_batch_size // per_step
        how = f"generation_batch_size {generation_batch_size}"
        explicit = True
    else:
        explicit = False
        steps = steps_per_generation or gradient_accumulation_steps
        generation_batch_size = per_step * steps
        how = (
            f"per_device_train_batch_size {per_device_train_batch_size} x steps_per_generation {steps}"
            f"{' (= gradient_accumulation_steps)' if steps_per_generation is None else ''} x {processes} "
            f"= {generation_batch_size} completions"
        )
    if num_generations >= 1 and generation_batch_size % num_generations:
        fixes = []
        if explicit:
            lcm = num_generations * per_step // math.gcd(num_generations, per_step)
            fixes.append(f"generation_batch_size to {_join(_nearest_multiples(generation_batch_size, lcm))}")
        else:
            pdb_step = num_generations // math.gcd(num_generations, steps * num_processes)
            fixes.append(
                f"per_device_train_batch_size to {_join(_nearest_multiples(per_device_train_batch_size, pdb_step))}"
            )
            steps_step = num_generations // math.gcd(num_generations, per_step)
            fixes.append(
                "steps_per_generation (or gradient_accumulation_steps) to "
                f"{_join(_nearest_multiples(steps, steps_step))}"
            )
        near = _divisors_near(generation_batch_size, num_generations)
        if near:
            fixes.append(f"num_generations to {_join(near)}")
        problems.append(
            f"the generation batch ({how}) must hold whole groups of num_generations={num_generations} "
            f"completions; set {', or '.join(fixes)}"
        )
    return generation_batch_size, problems


def batch_problems(cfg: RLStageConfig, algorithm: str) -> tuple[int | None, list[str]]:
    """:func:`generation_batch_problems` for a stage's settings (``trainer_kwargs`` win, as in TRL)."""
    kw = cfg.trainer_kwargs
    return generation_batch_problems(
        num_generations=int(kw.get("num_generations", cfg.num_generations)),
        per_device_train_batch_size=int(kw.get("per_device_train_batch_size", cfg.per_device_train_batch_size)),
        gradient_accumulation_steps=int(kw.get("gradient_accumulation_steps", cfg.gradient_accumulation_steps)),
        steps_per_generation=kw.get("steps_per_generation", cfg.steps_per_generation),
        generation_batch_size=kw.get("generation_batch_size"),
        num_processes=num_processes(),
        algorithm=algorithm,
    )
