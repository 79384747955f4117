"""Group Relative Policy Optimization (GRPO) on TRL's ``GRPOTrainer`` (LoRA or full), merged and verified.

Teaches the model to earn rewards: for each problem it samples ``num_generations``
completions, scores them with the reward functions (programs that check the answer) and/or a
learned reward model (``reward_model``, an earlier ``rm`` stage), and pushes the policy towards
the completions that scored above their group's mean. A group whose completions all score the
same carries no learning signal; the stage watches for that and says what to change.

Batch sizes count *completions*, not prompts (TRL's convention): every optimizer step sees
``per_device_train_batch_size * gradient_accumulation_steps`` completions per process, i.e.
that number divided by ``num_generations`` distinct problems.

The mechanics GRPO shares with RLOO are :class:`ladder.training.rl.RLStage`; docs/rlhf.md
explains RL against a learned reward.
"""

from __future__ import annotations

from typing import ClassVar

import attrs

from ladder.settings import training_default
from ladder.training.rl import REFERENCE_REWARDS, Algorithm, RLStage, RLStageConfig, ZeroSpreadWatch
from ladder.training.rl import generation_batch_problems

__all__ = [
    "GRPO",
    "GRPO_LOSS_TYPES",
    "IMPORTANCE_SAMPLING_LEVELS",
    "REFERENCE_REWARDS",
    "GRPOStageConfig",
    "ZeroSpreadWatch",
    "generation_batch_problems",
]

#: TRL 1.16's ``GRPOConfig.loss_type`` values (``dapo`` is its default).
GRPO_LOSS_TYPES = ("dapo", "grpo", "dr_grpo", "bnpo", "cispo", "sapo", "luspo", "vespo")
#: ``token``: one importance ratio per token (GRPO); ``sequence``: one per completion (GSPO).
IMPORTANCE_SAMPLING_LEVELS = ("token", "sequence")


@attrs.frozen(kw_only=True)
class GRPOStageConfig(RLStageConfig):
    """Settings of the GRPO stage (defaults: the reference recipe, except ``limit``).

    The fields are :class:`~ladder.training.rl.RLStageConfig`'s; GRPO's own are the KL default and
    the loss: ``loss_type`` and ``importance_sampling_level`` (GSPO is ``loss_type: grpo`` with
    ``importance_sampling_level: sequence``), passed to TRL's ``GRPOConfig`` as they are.
    """

    trl_config: ClassVar[str] = "GRPOConfig"
    trl_fields: ClassVar[tuple[str, ...]] = ("loss_type", "importance_sampling_level")

    loss_type: str = attrs.field(
        default="dapo",
        validator=attrs.validators.in_(GRPO_LOSS_TYPES),
        metadata={
            "help": "how token losses are aggregated (TRL's GRPOConfig.loss_type): dapo (TRL's default: over the "
            "active tokens of the accumulated batch), grpo (per sequence length), dr_grpo (a constant), bnpo (the "
            "local batch's tokens), cispo, sapo, luspo (needs importance_sampling_level: sequence), vespo"
        },
    )
    importance_sampling_level: str = attrs.field(
        default="token",
        validator=attrs.validators.in_(IMPORTANCE_SAMPLING_LEVELS),
        metadata={"help": "token: one importance ratio per token (GRPO); sequence: one per completion (GSPO, with "
                          "loss_type: grpo)"},
    )

    beta: float = training_default(
        "beta", 0.04, of=RLStageConfig,
        help="KL penalty towards the input model, in the loss (0: none, TRL's default, no reference pass; keep it "
        "> 0 with a reward_model)",
    )


class GRPO(RLStage):
    """GRPO on verifiable problems and/or a learned reward model, merged and verified.

    ``GRPO(dataset="gsm8k", limit=1000, input="sft")``, or
    ``GRPO(dataset=prompts, reward_model="rm", input="sft")``; see :class:`GRPOStageConfig`.
    """

    kind: ClassVar[str] = "grpo"
    Config: ClassVar[type] = GRPOStageConfig
    algorithm: ClassVar[Algorithm] = Algorithm(name="GRPO", config_class="GRPOConfig", trainer_class="GRPOTrainer")
