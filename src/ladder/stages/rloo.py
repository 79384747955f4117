"""REINFORCE Leave-One-Out (RLOO) on TRL's ``RLOOTrainer`` (LoRA or full), merged and verified.

Like GRPO, RLOO samples ``num_generations`` completions per prompt and scores them with reward
functions and/or a learned reward model (``reward_model``, an earlier ``rm`` stage). Each
completion's baseline is the mean reward of the *other* completions of its group (leave one
out), so its advantage is an unbiased REINFORCE estimate without a learned value model. The KL
penalty to the input policy is subtracted from the reward (sequence-level, as in the RLOO
paper) rather than added to the loss as GRPO does; TRL's default ``beta`` for RLOO is 0.05.

Settings, data shapes, batch arithmetic and pre-flight are GRPO's (both are
:class:`ladder.training.rl.RLStage`); see docs/rlhf.md.
"""

from __future__ import annotations

from typing import ClassVar

import attrs

from ladder.settings import training_default
from ladder.training.rl import Algorithm, RLStage, RLStageConfig

__all__ = ["RLOO", "RLOOStageConfig"]


@attrs.frozen(kw_only=True)
class RLOOStageConfig(RLStageConfig):
    """Settings of the RLOO stage: GRPO's (:class:`~ladder.training.rl.RLStageConfig`), with RLOO's KL default."""

    trl_config: ClassVar[str] = "RLOOConfig"

    beta: float = training_default(
        "beta", 0.05, of=RLStageConfig,
        help="KL penalty towards the input model, subtracted from the reward (0: none, no reference pass; TRL's "
        "RLOO default 0.05)",
    )


class RLOO(RLStage):
    """RLOO on prompts with reward functions and/or a learned reward model, merged and verified.

    ``RLOO(dataset=prompts, reward_model="rm", input="sft")``; see :class:`RLOOStageConfig`.
    """

    kind: ClassVar[str] = "rloo"
    Config: ClassVar[type] = RLOOStageConfig
    algorithm: ClassVar[Algorithm] = Algorithm(name="RLOO", config_class="RLOOConfig", trainer_class="RLOOTrainer")
