"""Group Relative Policy Optimization (GRPO) on TRL's ``GRPOTrainer`` with a LoRA, merged and verified.

Teaches the model to earn rewards: for each problem it samples ``num_generations``
completions, scores them with the reward functions (programs that check the answer) and/or a
learned reward model (``reward_model``, an earlier ``rm`` stage), and pushes the policy towards
the completions that scored above their group's mean. A group whose completions all score the
same carries no learning signal; the stage watches for that and says what to change.

Batch sizes count *completions*, not prompts (TRL's convention): every optimizer step sees
``per_device_train_batch_size * gradient_accumulation_steps`` completions per process, i.e.
that number divided by ``num_generations`` distinct problems.

The mechanics GRPO shares with RLOO (prompts, rewards, the reward model, pre-flight,
publishing) are plain functions in :mod:`ladder.training.rl`; docs/rlhf.md explains RL against
a learned reward.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import attrs

from ladder.stage import BaseStage, StageContext
from ladder.training import rl
from ladder.training.rl import REFERENCE_REWARDS, RLStageConfig, ZeroSpreadWatch, generation_batch_problems

if TYPE_CHECKING:
    from ladder.checkpoint import Checkpoint

__all__ = ["GRPO", "REFERENCE_REWARDS", "GRPOStageConfig", "ZeroSpreadWatch", "generation_batch_problems"]

ALGORITHM = rl.Algorithm(name="GRPO", config_class="GRPOConfig", trainer_class="GRPOTrainer")


@attrs.frozen(kw_only=True)
class GRPOStageConfig(RLStageConfig):
    """Settings of the GRPO stage (defaults: the reference recipe, except ``limit``).

    The fields are :class:`~ladder.training.rl.RLStageConfig`'s; GRPO's own is the KL default.
    """

    beta: float = attrs.field(
        default=0.04,
        validator=attrs.validators.ge(0.0),
        metadata={
            "help": "KL penalty towards the input model, in the loss (0: none, TRL's default, no reference pass; "
            "keep it > 0 with a reward_model)"
        },
    )


class GRPO(BaseStage):
    """GRPO on verifiable problems and/or a learned reward model, with a LoRA, merged and verified.

    ``GRPO(dataset="gsm8k", limit=1000, input="sft")``, or
    ``GRPO(dataset=prompts, reward_model="rm", input="sft")``; see :class:`GRPOStageConfig`.
    """

    kind: ClassVar[str] = "grpo"
    Config: ClassVar[type] = GRPOStageConfig
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
        """The configured ``trl.GRPOTrainer`` (not yet trained) and the facts :meth:`run` needs.

        Public so the exact prompts, rewards and generation settings can be inspected.
        """
        return rl.build_rl_trainer(self, checkpoint, ctx, ALGORITHM)

    def run(self, checkpoint: Checkpoint, ctx: StageContext) -> Checkpoint:
        return rl.run_rl_stage(self, checkpoint, ctx, ALGORITHM)
