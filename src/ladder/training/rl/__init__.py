"""What ladder's RL stages (GRPO, RLOO) share, split by job.

Both stages sample a group of ``num_generations`` completions per prompt, score them with
rewards, and push the policy towards the completions that beat their group's baseline. The
rewards are programs a recipe names (``rewards:``, see :mod:`ladder.rewards`), a learned reward
model from an earlier ``rm`` stage (``reward_model:``), or both. GRPO and RLOO differ in the
baseline (the group mean and standard deviation, or the mean of the *other* completions) and in
where the KL penalty to the input policy goes (the loss, or the reward); TRL's trainers
implement that. The modules here hold the rest:

- :mod:`~ladder.training.rl.config`: the settings both share, and the :class:`Algorithm` (TRL classes);
- :mod:`~ladder.training.rl.batch`: the batch arithmetic (whole groups in every generation batch);
- :mod:`~ladder.training.rl.rewards`: the prompts, the reward functions and their pre-flight;
- :mod:`~ladder.training.rl.reward_model`: a learned reward (an ``rm`` stage or a folder);
- :mod:`~ladder.training.rl.signal`: the learning signal and reward-hacking checks;
- :mod:`~ladder.training.rl.stage`: :class:`RLStage`, which GRPO and RLOO are.
"""

from __future__ import annotations

from ladder.settings import is_path_reference
from ladder.training.rl.batch import generation_batch_problems
from ladder.training.rl.config import REFERENCE_REWARDS, Algorithm, RLStageConfig, learned_reward_defaults
from ladder.training.rl.reward_model import (
    REWARD_MODEL_PATH_NAME,
    load_reward_model,
    resolve_reward_checkpoint,
    reward_folder_problems,
    reward_model_name,
)
from ladder.training.rl.rewards import heldout_pair_rows, program_rewards, prompt_rows
from ladder.training.rl.signal import ZeroSpreadWatch, first_last, reward_hacking_warning
from ladder.training.rl.stage import RLStage, resolve_use_vllm

__all__ = [
    "REFERENCE_REWARDS",
    "REWARD_MODEL_PATH_NAME",
    "Algorithm",
    "RLStage",
    "RLStageConfig",
    "ZeroSpreadWatch",
    "first_last",
    "generation_batch_problems",
    "heldout_pair_rows",
    "is_path_reference",
    "learned_reward_defaults",
    "load_reward_model",
    "program_rewards",
    "prompt_rows",
    "resolve_reward_checkpoint",
    "resolve_use_vllm",
    "reward_folder_problems",
    "reward_hacking_warning",
    "reward_model_name",
]
