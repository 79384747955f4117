"""REINFORCE Leave-One-Out (RLOO) on TRL's ``RLOOTrainer`` with a LoRA, merged and verified.

Like GRPO, RLOO samples ``num_generations`` completions per prompt and scores them with reward
functions and/or a learned reward model (``reward_model``, an earlier ``rm`` stage). Each
completion's baseline is the mean reward of the *other* completions of its group (leave one
out), so its advantage is an unbiased REINFORCE estimate without a learned value model. The KL
penalty to the input policy is subtracted from the reward (sequence-level, as in the RLOO
paper) rather than added to the loss as GRPO does; TRL's default ``beta`` for RLOO is 0.05.

Settings, data shapes, batch arithmetic and pre-flight are GRPO's (the shared mechanics are in
:mod:`ladder.training.rl`); see docs/rlhf.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import attrs

from ladder.stage import BaseStage, StageContext
from ladder.training import rl
from ladder.training.rl import RLStageConfig

if TYPE_CHECKING:
    from ladder.checkpoint import Checkpoint

__all__ = ["RLOO", "RLOOStageConfig"]

ALGORITHM = rl.Algorithm(name="RLOO", config_class="RLOOConfig", trainer_class="RLOOTrainer")


@attrs.frozen(kw_only=True)
class RLOOStageConfig(RLStageConfig):
    """Settings of the RLOO stage: GRPO's (:class:`~ladder.training.rl.RLStageConfig`), with RLOO's KL default."""

    beta: float = attrs.field(
        default=0.05,
        validator=attrs.validators.ge(0.0),
        metadata={
            "help": "KL penalty towards the input model, subtracted from the reward (0: none, no reference pass; "
            "TRL's RLOO default 0.05)"
        },
    )


class RLOO(BaseStage):
    """RLOO on prompts with reward functions and/or a learned reward model, LoRA, merged and verified.

    ``RLOO(dataset=prompts, reward_model="rm", input="sft")``; see :class:`RLOOStageConfig`.
    """

    kind: ClassVar[str] = "rloo"
    Config: ClassVar[type] = RLOOStageConfig
    input_kind: ClassVar[str] = "policy"
    output_kind: ClassVar[str] = "policy"

    def __init__(self, config: Any = None, /, *, name: str | None = None, input: str | None = None, **settings: Any):
        config, settings = rl.learned_reward_defaults(config, settings)
        super().__init__(config, name=name, input=input, **settings)
        rl.check_use_vllm(self.config)

    def validate(self, ctx: StageContext) -> list[str]:
        """Batch arithmetic, reward names, data rows, reward columns, a sample call of each reward."""
        return rl.validate_rl_stage(self, ctx, ALGORITHM)

    def fingerprint_data(self) -> Any:
        return rl.fingerprint_rl_data(self.config)

    def build_trainer(self, checkpoint: Checkpoint, ctx: StageContext) -> tuple[Any, dict[str, Any]]:
        """The configured ``trl.RLOOTrainer`` (not yet trained) and the facts :meth:`run` needs."""
        return rl.build_rl_trainer(self, checkpoint, ctx, ALGORITHM)

    def run(self, checkpoint: Checkpoint, ctx: StageContext) -> Checkpoint:
        return rl.run_rl_stage(self, checkpoint, ctx, ALGORITHM)
