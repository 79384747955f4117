"""The settings GRPO and RLOO share, and what tells the two algorithms apart."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any, ClassVar

import attrs

from ladder.data.verifiable import DEFAULT_INSTRUCTION
from ladder.errors import MissingDependencyError
from ladder.settings import TrainingSettings, training_default

__all__ = ["REFERENCE_REWARDS", "Algorithm", "RLStageConfig", "check_use_vllm", "learned_reward_defaults"]

#: The reference recipe's rewards: +1.0 for the right answer, +0.1 for the ``<answer>`` format.
REFERENCE_REWARDS: dict[str, float] = {"exact_match": 1.0, "tag_format": 0.1}
_USE_VLLM: tuple[Any, ...] = ("auto", True, False)

_ge0 = attrs.validators.ge(0)
_gt0 = attrs.validators.gt(0)
_ge0f = attrs.validators.ge(0.0)
_gt0f = attrs.validators.gt(0.0)


def _rewards_spec(value: Any) -> Any:
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, str) or callable(value):
        return value
    raise TypeError(
        f"rewards must be a mapping of reward name to weight, a list of names or functions, a name or a "
        f"function; got {type(value).__name__}"
    )


def _use_vllm_value(value: Any) -> Any:
    if isinstance(value, str) and value.lower() in ("auto", "true", "false"):
        return {"auto": "auto", "true": True, "false": False}[value.lower()]
    return value


def _reward_model_ref(value: Any) -> Any:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"reward_model must be an earlier stage's name or a folder path, got {type(value).__name__}")


def _finite(instance: Any, attribute: Any, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{attribute.name} must be a finite number, got {value!r}")


@attrs.frozen(kw_only=True)
class RLStageConfig(TrainingSettings):
    """Settings GRPO and RLOO share (each stage's config adds its own ``beta`` default).

    ``rewards`` and ``reward_model`` can be combined: the stage's reward is the weighted sum
    of the reward functions and the reward model's score. With ``reward_model`` set and
    ``rewards``/``instruction`` not given, the stage learns from the reward model alone and
    leaves the prompts as they are (:func:`learned_reward_defaults`).
    """

    #: Settings of the algorithm's own that go to its TRL config under the same name (GRPO's
    #: ``loss_type``, ``importance_sampling_level``); checked here, passed through as they are.
    trl_fields: ClassVar[tuple[str, ...]] = ()

    dataset: Any = attrs.field(
        metadata={
            "help": "prompts: verifiable problems (GSM8K question/answer, prompt/answer, problem/solution), or, "
            "with a reward_model, prompts alone; file, preset, hub id, list or Dataset",
            "data": True,
        }
    )
    rewards: Any = attrs.field(
        factory=lambda: dict(REFERENCE_REWARDS),
        converter=_rewards_spec,
        metadata={
            "help": "reward name -> weight, a list of names or functions (weight 1), a name or a function; {} for "
            "none (with a reward_model)"
        },
    )
    reward_model: str | None = attrs.field(
        default=None,
        converter=_reward_model_ref,
        metadata={
            "checkpoint_ref": "reward",
            "help": "a learned reward: the name of an earlier `rm` stage, or a reward checkpoint folder (a path "
            "with a '/', e.g. ./my-rm); its score is added to the rewards with reward_model_weight"
        },
    )
    reward_model_weight: float = attrs.field(
        default=1.0, validator=_finite, metadata={"help": "weight of the reward model's score in the reward"}
    )
    heldout_pairs: Any = attrs.field(
        default=None,
        metadata={
            "help": "preference pairs the policy is scored on before and after training (log-prob and "
            "implicit-reward accuracy): an independent check of what a learned reward teaches",
            "data": True,
        },
    )
    num_generations: int = attrs.field(
        default=2,
        validator=attrs.validators.ge(1),
        metadata={"help": "completions sampled per problem (a group); at least 2"},
    )
    max_completion_length: int = attrs.field(
        default=256, validator=_gt0, metadata={"help": "max new tokens per completion"}
    )
    max_prompt_length: int = attrs.field(
        default=512,
        validator=_gt0,
        metadata={"help": "max tokens of a prompt rendered with the chat template (longer ones per `overlength`)"},
    )
    overlength: str = attrs.field(
        default="error",
        validator=attrs.validators.in_(("error", "drop")),
        metadata={
            "help": "prompts longer than max_prompt_length: error (stop before training) or drop (leave them out, "
            "logged and counted in metrics.json); not truncate: a cut problem cannot be solved"
        },
    )
    temperature: float = attrs.field(default=1.0, validator=_gt0f, metadata={"help": "sampling temperature"})
    learning_rate: float = training_default("learning_rate", 1e-5)
    per_device_train_batch_size: int = training_default(
        "per_device_train_batch_size", 4, help="completions (not problems) per device per micro-batch"
    )
    gradient_accumulation_steps: int = training_default("gradient_accumulation_steps", 2)
    beta: float = attrs.field(
        default=0.04, validator=_ge0f, metadata={"help": "KL penalty towards the input model (0: none)"}
    )
    steps_per_generation: int | None = attrs.field(
        default=None,
        validator=attrs.validators.optional(_gt0),
        metadata={"help": "micro-batches generated at once (default: gradient_accumulation_steps)"},
    )
    limit: int | None = attrs.field(
        default=None,
        validator=attrs.validators.optional(attrs.validators.ge(1)),
        metadata={"help": "train on the first N problems only (the reference recipe uses 1,000)"},
    )
    system_prompt: str | None = attrs.field(default=None, metadata={"help": "system message for every problem"})
    instruction: str | None = attrs.field(
        default=DEFAULT_INSTRUCTION,
        metadata={"help": "appended to every problem's user message (null: none)"},
    )
    prompt_template: str | None = attrs.field(
        default=None,
        metadata={"help": "format string with {prompt} (and {instruction}) for the user message, instead"},
    )
    reward_timeout_s: float = attrs.field(
        default=60.0, validator=_gt0f, metadata={"help": "seconds one reward call may take before it fails the stage"}
    )
    use_vllm: Any = attrs.field(
        default="auto",
        converter=_use_vllm_value,
        validator=attrs.validators.in_(_USE_VLLM),
        metadata={"help": "auto: vLLM rollouts when vllm is installed and a GPU is present; true; false"},
    )
    vllm_mode: str = attrs.field(
        default="colocate",
        validator=attrs.validators.in_(("colocate", "server")),
        metadata={"help": "colocate (vLLM in the training process) or server (a running `trl vllm-serve`)"},
    )
    learnability_scan: int = attrs.field(
        default=0,
        validator=[attrs.validators.instance_of(int), attrs.validators.ge(0)],
        metadata={
            "help": "before training, sample this many completions per problem with the input policy and train only "
            "on problems it solves sometimes but not always (0: no scan; at least 2)"
        },
    )
    scan_reward: str | None = attrs.field(
        default=None,
        metadata={"help": "the reward that decides a pass in the scan (default: exact_match, else the first)"},
    )
    scan_threshold: float = attrs.field(
        default=1.0, validator=_finite, metadata={"help": "a completion passes when scan_reward gives it at least this"}
    )
    scan_keep_solved: float = attrs.field(
        default=0.0,
        converter=float,
        validator=[attrs.validators.ge(0.0), attrs.validators.le(1.0)],
        metadata={
            "help": "share of the problems the scan found always solved that are trained on anyway, as anchors "
            "(a seeded pick): no signal while the policy keeps solving them, a penalty as soon as it unlearns one"
        },
    )
    scan_limit: int | None = attrs.field(
        default=None,
        validator=attrs.validators.optional(attrs.validators.ge(1)),
        metadata={"help": "scan (and then train on) only the first N problems, to bound the scan's cost"},
    )
    dynamic_sampling: bool = attrs.field(
        default=False,
        validator=attrs.validators.instance_of(bool),
        metadata={
            "help": "drop groups whose completions all got the same reward and refill their slots with fresh "
            "problems (DAPO's filter_groups); what stays without signal is masked out of the loss"
        },
    )
    max_refills: int = attrs.field(
        default=2,
        validator=[attrs.validators.instance_of(int), attrs.validators.ge(0)],
        metadata={"help": "extra generation rounds per step that dynamic sampling may spend refilling"},
    )
    save_rollouts: bool = attrs.field(
        default=True,
        validator=attrs.validators.instance_of(bool),
        metadata={"help": "write every generated completion with its rewards and advantage to rollouts.jsonl"},
    )
    merged_rollouts: bool = attrs.field(
        default=True,
        validator=attrs.validators.instance_of(bool),
        metadata={
            "help": "generate rollouts with the LoRA merged into the weights, unmerged after (transformers "
            "backend; the same policy without the adapter's extra matmuls per layer, and without its dropout)"
        },
    )
    eval_batch_size: int = attrs.field(
        default=8, validator=_gt0, metadata={"help": "sequences scored together on heldout_pairs"}
    )


def learned_reward_defaults(config: Any, settings: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """A stage's constructor arguments with the defaults of RL against a reward model alone.

    When ``reward_model`` is set (in the mapping ``config`` or in ``settings``) and ``rewards``
    was not given, the stage has no reward functions (``rewards={}``), and unless
    ``instruction`` was given the prompts get no answer-format instruction: a reward model
    scores answers to the prompts it was trained on. A config instance is taken as it is.

    Example:
        >>> learned_reward_defaults(None, {"dataset": "d.jsonl", "reward_model": "rm"})[1]
        {'dataset': 'd.jsonl', 'reward_model': 'rm', 'rewards': {}, 'instruction': None}
    """
    if not isinstance(config, (Mapping, type(None))):
        return config, settings
    given = {**dict(config or {}), **settings}
    if given.get("reward_model") is None or "rewards" in given:
        return config, settings
    settings = {**settings, "rewards": {}}
    if "instruction" not in given:
        settings["instruction"] = None
    return config, settings


def check_use_vllm(config: RLStageConfig) -> None:
    """Raise :class:`MissingDependencyError` for ``use_vllm: true`` without vllm (at construction)."""
    from ladder.vllm_support import vllm_installed

    if config.use_vllm is True and not vllm_installed():
        raise MissingDependencyError("vllm (for use_vllm: true)", extra="vllm")


@attrs.frozen(kw_only=True)
class Algorithm:
    """What distinguishes one RL stage from another here: its name and its TRL classes."""

    name: str  # "GRPO", in messages
    config_class: str  # the trl config class, e.g. "GRPOConfig"
    trainer_class: str  # the trl trainer class, e.g. "GRPOTrainer"

    def trl_classes(self) -> tuple[type, type]:
        """``(config class, trainer class)`` from ``trl`` (imported here, not at import time)."""
        import trl

        return getattr(trl, self.config_class), getattr(trl, self.trainer_class)
