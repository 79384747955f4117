"""What ladder's RL stages (GRPO, RLOO) share, as plain functions.

Both stages sample a group of ``num_generations`` completions per prompt, score them with
rewards, and push the policy towards the completions that beat their group's baseline. The
rewards are programs a recipe names (``rewards:``, see :mod:`ladder.rewards`), a learned reward
model from an earlier ``rm`` stage (``reward_model:``), or both. GRPO and RLOO differ in the
baseline (the group mean and standard deviation, or the mean of the *other* completions) and in
where the KL penalty to the input policy goes (the loss, or the reward); TRL's trainers
implement that. Everything else (reading the prompts, resolving and checking the rewards,
loading the reward model, the batch arithmetic, watching the learning signal, the held-out
checks against reward hacking, and publishing) is here, and each stage module holds only its
config defaults and the names of its TRL classes (an :class:`Algorithm`).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from ladder.data.length import enforce_rows, kept_indices, preflight_rows, prompt_lengths
from ladder.data.loading import as_spec, content_hash, load_rows
from ladder.data.verifiable import DEFAULT_INSTRUCTION, normalize_verifiable_rows
from ladder.errors import ConfigError, DataError, LadderError, MissingDependencyError, StageError
from ladder.stage import config_to_dict
from ladder.training.chat_template import input_eos_ids
from ladder.training.lora import LoraSettings, adapter_off

if TYPE_CHECKING:
    from transformers import TrainerCallback

    from ladder.checkpoint import Checkpoint
    from ladder.stage import StageContext

__all__ = [
    "REFERENCE_REWARDS",
    "REWARD_MODEL_PATH_NAME",
    "Algorithm",
    "RLStageConfig",
    "ZeroSpreadWatch",
    "build_rl_trainer",
    "check_use_vllm",
    "fingerprint_rl_data",
    "first_last",
    "generation_batch_problems",
    "heldout_pair_rows",
    "indexed_prompt_rows",
    "input_eos_ids",
    "is_path_reference",
    "learned_reward_defaults",
    "load_reward_model",
    "program_rewards",
    "prompt_rows",
    "resolve_reward_checkpoint",
    "resolve_use_vllm",
    "reward_folder_problems",
    "reward_model_name",
    "run_rl_stage",
    "validate_rl_stage",
]

logger = logging.getLogger(__name__)

#: The reference recipe's rewards: +1.0 for the right answer, +0.1 for the ``<answer>`` format.
REFERENCE_REWARDS: dict[str, float] = {"exact_match": 1.0, "tag_format": 0.1}
#: The name a reward model given as a folder (not a stage) is logged under: ``rewards/reward_model/mean``.
REWARD_MODEL_PATH_NAME = "reward_model"

# Groups whose completions all got the same reward teach nothing. Above this mean share of
# such groups, over the whole run or over its first _EARLY_STEPS logged steps, the stage warns.
_ZERO_SPREAD_LIMIT = 0.5
_EARLY_STEPS = 10
# Columns TRL passes to reward functions under its own names; a dataset column with one of
# these names would collide with them ("got multiple values for keyword argument").
_RESERVED_COLUMNS = ("prompts", "completions", "completion_ids", "trainer_state", "log_extra", "log_metric")
# Reward hacking, as the stage flags it: the learned reward rose while the policy moved towards
# the *rejected* answers of held-out pairs, or the answers' length changed by more than this share.
_LENGTH_DRIFT_LIMIT = 0.5
_USE_VLLM: tuple[Any, ...] = ("auto", True, False)

_ge0 = attrs.validators.ge(0)
_gt0 = attrs.validators.gt(0)
_ge0f = attrs.validators.ge(0.0)
_gt0f = attrs.validators.gt(0.0)


# ------------------------------------------------------------------------------------------------
# the config both stages share


def _lora(value: Any) -> LoraSettings:
    if isinstance(value, LoraSettings):
        return value
    return LoraSettings(**dict(value or {}))


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
class RLStageConfig:
    """Settings GRPO and RLOO share (each stage's config adds its own ``beta`` default).

    ``rewards`` and ``reward_model`` can be combined: the stage's reward is the weighted sum
    of the reward functions and the reward model's score. With ``reward_model`` set and
    ``rewards``/``instruction`` not given, the stage learns from the reward model alone and
    leaves the prompts as they are (:func:`learned_reward_defaults`).
    """

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
    beta: float = attrs.field(
        default=0.04, validator=_ge0f, metadata={"help": "KL penalty towards the input model (0: none)"}
    )
    learning_rate: float = attrs.field(default=1e-5, validator=_gt0f, metadata={"help": "peak learning rate"})
    num_train_epochs: float = attrs.field(default=1.0, validator=_gt0f, metadata={"help": "epochs over the problems"})
    max_steps: int = attrs.field(
        default=-1,
        validator=attrs.validators.instance_of(int),
        metadata={"help": "stop after N optimizer steps (-1: use epochs)"},
    )
    per_device_train_batch_size: int = attrs.field(
        default=4, validator=_gt0, metadata={"help": "completions (not problems) per device per micro-batch"}
    )
    gradient_accumulation_steps: int = attrs.field(default=2, validator=_gt0, metadata={"help": "accumulation"})
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
    lora: LoraSettings = attrs.field(factory=LoraSettings, converter=_lora, metadata={"help": "LoRA settings"})
    eval_batch_size: int = attrs.field(
        default=8, validator=_gt0, metadata={"help": "sequences scored together on heldout_pairs"}
    )
    precision: str = attrs.field(
        default="auto",
        validator=attrs.validators.in_(("auto", "bf16", "fp16", "fp32")),
        metadata={"help": "auto: bf16 on GPUs that support it, fp32 on CPU; bf16 on a CPU autocasts where it has native bf16"},
    )
    save_steps: int = attrs.field(default=50, validator=_ge0, metadata={"help": "resumable checkpoint every N steps"})
    trainer_kwargs: dict[str, Any] = attrs.field(
        factory=dict, converter=dict, metadata={"help": "passed through to TRL's config (GRPOConfig, RLOOConfig)"}
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
    if config.use_vllm is True and importlib.util.find_spec("vllm") is None:
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


# ------------------------------------------------------------------------------------------------
# pre-flight arithmetic


def _num_processes() -> int:
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


def _batch_problems(cfg: RLStageConfig, algorithm: str) -> tuple[int | None, list[str]]:
    kw = cfg.trainer_kwargs
    return generation_batch_problems(
        num_generations=int(kw.get("num_generations", cfg.num_generations)),
        per_device_train_batch_size=int(kw.get("per_device_train_batch_size", cfg.per_device_train_batch_size)),
        gradient_accumulation_steps=int(kw.get("gradient_accumulation_steps", cfg.gradient_accumulation_steps)),
        steps_per_generation=kw.get("steps_per_generation", cfg.steps_per_generation),
        generation_batch_size=kw.get("generation_batch_size"),
        num_processes=_num_processes(),
        algorithm=algorithm,
    )


# ------------------------------------------------------------------------------------------------
# prompts and rewards


def prompt_rows(cfg: RLStageConfig) -> tuple[list[dict[str, Any]], str, list[DataError]]:
    """The stage's prompts as ``{"prompt": [messages], "answer"?: str, ...}`` rows.

    With a reward model a row needs no reference answer (only the reward functions that read
    one need it, which pre-flight checks per reward).
    """
    rows, label, problems, _indices = indexed_prompt_rows(cfg)
    return rows, label, problems


def indexed_prompt_rows(cfg: RLStageConfig) -> tuple[list[dict[str, Any]], str, list[DataError], list[int]]:
    """:func:`prompt_rows` and each kept row's number in the file (for messages)."""
    rows, label = load_rows(as_spec(cfg.dataset))
    normalised, problems = normalize_verifiable_rows(
        rows,
        label,
        system_prompt=cfg.system_prompt,
        instruction=cfg.instruction,
        prompt_template=cfg.prompt_template,
        require_answer=cfg.reward_model is None,
    )
    indices = kept_indices(len(rows), problems)
    if cfg.limit is not None:
        normalised, indices = normalised[: cfg.limit], indices[: cfg.limit]
    return normalised, label, problems, indices


def heldout_pair_rows(cfg: RLStageConfig) -> tuple[list[dict[str, Any]], str, list[DataError]]:
    """``heldout_pairs`` as normalised preference pairs (empty without them)."""
    if cfg.heldout_pairs is None:
        return [], "", []
    from ladder.data.preference import normalize_preference_rows

    rows, label = load_rows(as_spec(cfg.heldout_pairs))
    pairs, problems = normalize_preference_rows(rows, label)
    return pairs, label, problems


def _has_program_rewards(cfg: RLStageConfig) -> bool:
    return not (isinstance(cfg.rewards, (Mapping, list)) and not cfg.rewards)


def program_rewards(cfg: RLStageConfig) -> tuple[list[Any], list[float]]:
    """The checked reward functions (with the stage's timeout) and their weights; none for ``{}``."""
    from ladder.rewards import resolve_rewards

    if not _has_program_rewards(cfg):
        return [], []
    funcs, weights = resolve_rewards(cfg.rewards, timeout_s=cfg.reward_timeout_s)
    return list(funcs), list(weights)


def _reward_items(spec: Any) -> list[Any]:
    """The entries of a rewards spec, each resolvable on its own (to report every bad name)."""
    if isinstance(spec, Mapping):
        return [{key: weight} for key, weight in spec.items()]
    if isinstance(spec, list):
        return [[entry] for entry in spec]
    return [spec]


def _reward_problems(cfg: RLStageConfig) -> tuple[list[Any], list[str]]:
    """Resolve every reward; return the functions and *every* problem (not just the first)."""
    from ladder.rewards import resolve_rewards, reward_name

    if not _has_program_rewards(cfg):
        if cfg.reward_model is None:
            return [], ["rewards: none given and no reward_model, so nothing would be learned; name rewards "
                        "(e.g. {exact_match: 1.0}) or set reward_model to an earlier rm stage"]
        if cfg.reward_model_weight == 0:
            return [], ["reward_model_weight is 0 and there are no rewards, so nothing would be learned"]
        return [], []
    problems: list[str] = []
    for item in _reward_items(cfg.rewards):
        try:
            resolve_rewards(item, check=False)
        except LadderError as exc:
            problems.append(f"rewards: {exc}")
    if problems:
        return [], problems
    try:
        funcs, weights = program_rewards(cfg)
    except LadderError as exc:  # e.g. two rewards with one name
        return [], [f"rewards: {exc}"]
    if cfg.reward_model is not None:
        learned = reward_model_name(cfg.reward_model)
        if learned in [reward_name(f) for f in funcs]:
            problems.append(
                f"reward_model {cfg.reward_model!r} is logged as {learned!r}, the name of one of the rewards too; "
                "TRL logs rewards by name, so rename the rm stage"
            )
        weights = [*weights, cfg.reward_model_weight]
    if not any(w != 0 for w in weights):
        problems.append("rewards: every weight is 0, so nothing would be learned; give one a non-zero weight")
    return funcs, problems


def _trainer_kwargs_problems(cfg: RLStageConfig, algo: Algorithm) -> list[str]:
    import dataclasses

    config_class, _ = algo.trl_classes()
    known = {f.name for f in dataclasses.fields(config_class)}
    unknown = sorted(set(cfg.trainer_kwargs) - known)
    if not unknown:
        return []
    plural = "s" if len(unknown) > 1 else ""
    names = ", ".join(map(repr, unknown))
    return [f"trainer_kwargs: unknown trl.{algo.config_class} setting{plural} {names}; check their spelling in "
            "TRL's docs"]


# ------------------------------------------------------------------------------------------------
# the learned reward


def is_path_reference(ref: str) -> bool:
    """Whether ``reward_model`` names a folder (it has a path separator or starts with ``~``).

    A bare name is a stage name, so a stage called ``rm`` is never mistaken for a folder
    ``./rm`` in the working directory; write ``./rm`` for the folder.

    Example:
        >>> is_path_reference("rm"), is_path_reference("./rm"), is_path_reference("runs/x/02-rm/model")
        (False, True, True)
    """
    return "/" in ref or os.sep in ref or ref.startswith("~")


def reward_model_name(ref: str) -> str:
    """The name TRL logs the reward model's score under (``rewards/<name>/mean``).

    Example:
        >>> reward_model_name("rm"), reward_model_name("./checkpoints/my-rm")
        ('rm', 'reward_model')
    """
    return REWARD_MODEL_PATH_NAME if is_path_reference(ref) else ref


def reward_folder_problems(path: str | os.PathLike[str]) -> list[str]:
    """Why a folder is not a usable reward checkpoint (empty when it is one).

    A reward checkpoint is a sequence classifier with one output (``num_labels=1``), saved with
    its tokenizer and a chat template, as ladder's ``rm`` stage writes ``NN-rm/model``.
    """
    folder = Path(path).expanduser()
    if not folder.is_dir():
        return [f"reward_model {str(path)!r}: no such folder; give an earlier rm stage's name or a reward "
                "checkpoint folder (e.g. runs/<run>/02-rm/model)"]
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return [f"reward_model {str(path)!r}: no readable config.json, so it is not a saved model"]
    problems = []
    architectures = config.get("architectures") or []
    labels = len(config.get("id2label") or {}) or config.get("num_labels", 2)
    if not any(str(a).endswith("ForSequenceClassification") for a in architectures) or labels != 1:
        problems.append(
            f"reward_model {str(path)!r} is not a reward model (architectures {architectures}, {labels} labels); "
            "a reward model is a sequence classifier with one output, as an rm stage writes"
        )
    has_template = (folder / "chat_template.jinja").is_file() or "chat_template" in _json(
        folder / "tokenizer_config.json"
    )
    if not has_template:
        problems.append(
            f"reward_model {str(path)!r} has no chat template, so prompts and answers cannot be rendered as the "
            "conversations it scores"
        )
    return problems


def _json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _folder_identity(path: str) -> str:
    """Content identity of a reward checkpoint folder, for the stage's fingerprint.

    A folder ladder published carries its fingerprint in the ``COMPLETE`` marker of its stage
    directory; any other folder is identified by its files' names, sizes and modification times.
    """
    folder = Path(path).expanduser().resolve()
    for marker in (folder / "COMPLETE", folder.parent / "COMPLETE"):
        found = _json(marker).get("fingerprint")
        if found:
            return str(found)
    if not folder.is_dir():
        return "missing"
    stats = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir() if p.is_file())
    return content_hash([{"name": n, "size": s, "mtime": m} for n, s, m in stats])


def resolve_reward_checkpoint(ref: str, ctx: StageContext, stage_name: str) -> Checkpoint:
    """The reward checkpoint ``reward_model`` names: an earlier stage's output, or a folder.

    Raises:
        ConfigError: naming both stages when the named stage produced a policy, or when the
            reference names no earlier stage and no reward checkpoint folder.
    """
    from ladder.checkpoint import Checkpoint

    if ref in ctx.checkpoints:
        found = ctx.checkpoints[ref]
        if found.kind != "reward":
            raise ConfigError(
                f"stage {stage_name!r}: reward_model={ref!r} names stage {ref!r}, which produces a {found.kind} "
                "checkpoint, not a reward model; name an rm stage"
            )
        return found
    if not is_path_reference(ref):
        earlier = ", ".join(name for name in ctx.checkpoints if name != "base") or "none"
        raise ConfigError(
            f"stage {stage_name!r}: reward_model={ref!r} names no earlier stage (earlier stages: {earlier}); name "
            "an rm stage that runs before it, or give a reward checkpoint folder as a path (./folder)"
        )
    problems = reward_folder_problems(ref)
    if problems:
        raise ConfigError(f"stage {stage_name!r}: {problems[0]}")
    path = str(Path(ref).expanduser().resolve())
    return Checkpoint(path=path, stage=REWARD_MODEL_PATH_NAME, kind="reward", fingerprint=_folder_identity(ref))


def load_reward_model(checkpoint: Checkpoint, name: str, options: Mapping[str, Any] | None = None) -> tuple[Any, Any]:
    """The reward model, ready for ``reward_funcs``, and its tokenizer (``reward_processing_classes``).

    The model is frozen and in eval mode; ``config._name_or_path`` is set to ``name`` because
    TRL logs a model's score as ``rewards/<last part of _name_or_path>/mean``. The tokenizer
    carries the reward model's chat template: TRL renders each prompt + completion with it,
    the text the reward model was trained on (:func:`ladder.evaluate.reward_text`).
    """
    from ladder.training.models import load_model, load_tokenizer

    tokenizer = load_tokenizer(checkpoint, options)
    template = checkpoint.chat_template or tokenizer.chat_template
    if isinstance(template, dict):
        template = template.get("default")
    if not template:
        raise ConfigError(
            f"the reward model {checkpoint.path!r} has no chat template, so the completions cannot be rendered as "
            "the conversations it scores; train it with ladder's rm stage from a chat model"
        )
    tokenizer.chat_template = template
    model = load_model(checkpoint, options, kind="reward")
    model.eval()
    model.requires_grad_(False)
    model.config._name_or_path = name
    # The classifier scores the last token that is not the pad token (TRL sets the same).
    model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


# ------------------------------------------------------------------------------------------------
# the stage, as plain functions


def validate_rl_stage(stage: Any, ctx: StageContext, algo: Algorithm) -> list[str]:
    """Pre-flight of an RL stage: batch arithmetic, TRL settings, rewards (names, columns, a
    sample call of each function), the reward model folder, the prompts and ``heldout_pairs``.

    A ``reward_model`` that names a stage is checked by the pipeline, which knows the stages.
    """
    from ladder.rewards import check_reward_on_sample, required_columns, reward_name

    cfg: RLStageConfig = stage.config
    generation_batch, problems = _batch_problems(cfg, algo.name)
    problems += _trainer_kwargs_problems(cfg, algo)
    funcs, reward_problems = _reward_problems(cfg)
    problems += reward_problems
    if generation_batch:  # a code reward that can outlast reward_timeout_s on one batch
        from ladder.rewards import reward_time_problems

        problems += reward_time_problems(funcs, generation_batch // _num_processes(), cfg.reward_timeout_s)
    if cfg.reward_model is not None and is_path_reference(cfg.reward_model):
        problems += reward_folder_problems(cfg.reward_model)
    try:
        _pairs, _pair_label, pair_problems = heldout_pair_rows(cfg)
        problems += [f"heldout_pairs: {p}" for p in pair_problems]
    except LadderError as exc:
        problems.append(f"heldout_pairs: {exc}")
    try:
        rows, label, data_problems, indices = indexed_prompt_rows(cfg)
        problems += [str(p) for p in data_problems]
        problems += preflight_rows(ctx, rows, indices, source=label, lengths_of=prompt_lengths,
                                   limit=cfg.max_prompt_length, policy=cfg.overlength, setting="max_prompt_length",
                                   what="prompt", can_truncate=False)
    except LadderError as exc:
        return [f"stage {stage.name!r}: {p}" for p in [*problems, str(exc)]]
    if rows:
        columns = set().union(*(r.keys() for r in rows))
        clashes = sorted(columns & set(_RESERVED_COLUMNS))
        if clashes:
            problems.append(
                f"{label}: column{'s' if len(clashes) > 1 else ''} {', '.join(map(repr, clashes))} "
                f"clash{'' if len(clashes) > 1 else 'es'} with the arguments TRL passes to reward functions; "
                f"rename {'them' if len(clashes) > 1 else 'it'}"
            )
        generations = int(cfg.trainer_kwargs.get("num_generations", cfg.num_generations))
        groups = generation_batch // generations if generation_batch else 0
        if len(rows) < groups:
            problems.append(
                f"{label}: {len(rows)} usable problem{'s' if len(rows) != 1 else ''}, but one generation batch "
                f"needs {groups} ({generation_batch} completions / num_generations {generations}); add "
                f"problems, or lower per_device_train_batch_size or gradient_accumulation_steps"
            )
        for fn in [] if clashes else funcs:  # a clashing column breaks every reward call
            name = reward_name(fn)
            needed = required_columns(fn)
            absent = [c for c in needed if c not in columns]
            partial = [c for c in needed if c in columns and any(r.get(c) is None for r in rows)]
            if absent or partial:
                missing = absent + partial
                problems.append(
                    f"reward {name!r} needs the column{'s' if len(missing) > 1 else ''} "
                    f"{', '.join(map(repr, missing))} in every row, which {label} "
                    f"{'lacks' if absent else 'leaves empty in some rows'} (its columns: "
                    f"{', '.join(sorted(columns))}); add {'them' if len(missing) > 1 else 'it'} or choose "
                    f"another reward"
                )
                continue
            try:
                check_reward_on_sample(fn, name, rows[:4], timeout_s=cfg.reward_timeout_s)
            except LadderError as exc:
                problems.append(str(exc))
    return [f"stage {stage.name!r}: {p}" for p in problems]


def fingerprint_rl_data(cfg: RLStageConfig) -> Any:
    """Content identity of the prompts, the held-out pairs and a reward model given as a folder.

    A reward model that is a stage's output enters the fingerprint through the pipeline (its
    checkpoint's fingerprint), like the input checkpoint.
    """
    rows, _label, _problems = prompt_rows(cfg)
    pairs, _pair_label, _pair_problems = heldout_pair_rows(cfg)
    data: dict[str, Any] = {"prompts": content_hash(rows)}
    if pairs:
        data["heldout_pairs"] = content_hash(pairs)
    if cfg.reward_model is not None and is_path_reference(cfg.reward_model):
        data["reward_model"] = _folder_identity(cfg.reward_model)
    return data if len(data) > 1 else data["prompts"]


def resolve_use_vllm(setting: Any, mode: str) -> bool:
    """Whether rollouts go through vLLM; ``"auto"`` means: vllm installed and a CUDA GPU present."""
    import torch

    if setting is False:
        return False
    has_vllm = importlib.util.find_spec("vllm") is not None
    has_gpu = torch.cuda.is_available()
    if setting == "auto":
        if has_vllm and has_gpu:
            logger.info("generating rollouts with vLLM (%s mode)", mode)
            return True
        reason = "vllm is not installed" if not has_vllm else "no CUDA GPU"
        logger.info(
            "generating rollouts with transformers (%s); vLLM is much faster on a GPU: pip install 'ladder[vllm]'",
            reason,
        )
        return False
    if not has_vllm:
        raise MissingDependencyError("vllm (for use_vllm: true)", extra="vllm")
    if not has_gpu:
        raise StageError("use_vllm: true needs a CUDA GPU and none is visible; set use_vllm: auto or false")
    return True


def build_rl_trainer(stage: Any, checkpoint: Checkpoint, ctx: StageContext, algo: Algorithm) -> tuple[Any, dict[str, Any]]:
    """The configured TRL trainer (not yet trained) and the facts :func:`run_rl_stage` needs.

    The policy gets a new LoRA on the (merged) input model; with ``beta > 0`` TRL computes the
    reference log-probs by disabling the adapter, so no second copy of the policy is loaded.
    A reward model goes into ``reward_funcs`` after the reward functions, with its tokenizer
    in ``reward_processing_classes`` and its weight last in ``reward_weights``.
    """
    from datasets import Dataset

    from ladder.rewards import reward_name
    from ladder.training.common import log_callback, quiet_trainer, trainer_args_from
    from ladder.training.lora import peft_config
    from ladder.training.models import load_model, load_tokenizer

    cfg: RLStageConfig = stage.config
    rows, label, problems, indices = indexed_prompt_rows(cfg)
    if problems:  # validate() ran already; this guards direct callers
        raise problems[0]
    heldout, _pair_label, pair_problems = heldout_pair_rows(cfg)
    if pair_problems:
        raise pair_problems[0]
    funcs, weights = program_rewards(cfg)
    names = [reward_name(f) for f in funcs]
    reward_funcs: list[Any] = list(funcs)
    processing: list[Any] = [None] * len(funcs)
    learned: dict[str, Any] | None = None
    if cfg.reward_model is not None:
        rm_checkpoint = resolve_reward_checkpoint(cfg.reward_model, ctx, stage.name)
        name = reward_model_name(cfg.reward_model)
        rm, rm_tokenizer = load_reward_model(rm_checkpoint, name, ctx.options)
        reward_funcs.append(rm)
        processing.append(rm_tokenizer)
        weights = [*weights, cfg.reward_model_weight]
        names.append(name)
        learned = {"name": name, "path": rm_checkpoint.path, "stage": rm_checkpoint.stage}
        if not cfg.beta:
            logger.warning(
                "%s: beta is 0, so nothing keeps the policy near its input while it optimises a learned reward; "
                "a reward model is easy to exploit (reward hacking); RLHF keeps a KL penalty (beta > 0)", stage.name
            )
    tokenizer = load_tokenizer(checkpoint, ctx.options)
    template = checkpoint.chat_template or tokenizer.chat_template
    if isinstance(template, dict):
        template = template.get("default")
    if not template:
        raise ConfigError(
            f"stage {stage.name!r}: the input checkpoint {checkpoint.path!r} has no chat template, so the "
            f"problems cannot be rendered as chats; run SFT before {algo.name} (input=...), or start from an "
            "instruct model"
        )
    tokenizer.chat_template = template
    # Measured with this checkpoint's tokenizer and template; over-length prompts per `overlength`.
    rows, data_checks = enforce_rows(tokenizer, rows, indices, source=label, lengths_of=prompt_lengths,
                                     limit=cfg.max_prompt_length, policy=cfg.overlength, template=template,
                                     setting="max_prompt_length", what="prompt", can_truncate=False)
    model = load_model(checkpoint, ctx.options)
    eos_ids = input_eos_ids(checkpoint, model, tokenizer, template)
    # Rollouts must stop at the end of the assistant's turn, not only at the document EOS (a
    # base model's generation config often names <|endoftext|> alone); TRL reads this.
    model.generation_config.eos_token_id = eos_ids if len(eos_ids) > 1 else eos_ids[0]
    use_vllm = resolve_use_vllm(cfg.use_vllm, cfg.vllm_mode)
    config_class, trainer_class = algo.trl_classes()
    args = config_class(
        **trainer_args_from(
            ctx,
            cfg,
            num_generations=cfg.num_generations,
            max_completion_length=cfg.max_completion_length,
            temperature=cfg.temperature,
            beta=cfg.beta,
            steps_per_generation=cfg.steps_per_generation,
            reward_weights=weights,
            use_vllm=use_vllm,
            vllm_mode=cfg.vllm_mode,
        )
    )
    watch = ZeroSpreadWatch(num_generations=int(args.num_generations or cfg.num_generations), algorithm=algo.name)
    trainer = trainer_class(
        model=model,
        reward_funcs=reward_funcs,
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        reward_processing_classes=processing,
        peft_config=peft_config(cfg.lora),
        callbacks=[log_callback(ctx), watch.callback()],
    )
    quiet_trainer(trainer)
    facts = {
        "rows": rows,
        "label": label,
        "heldout": heldout,
        "tokenizer": tokenizer,
        "template": template,
        "eos_ids": eos_ids,
        "reward_names": names,
        "reward_weights": weights,
        "reward_model": learned,
        "use_vllm": use_vllm,
        "watch": watch,
        "data_checks": data_checks,
    }
    return trainer, facts


def run_rl_stage(stage: Any, checkpoint: Checkpoint, ctx: StageContext, algo: Algorithm) -> Checkpoint:
    """Build the trainer, measure ``heldout_pairs``, train, measure again, publish the merged policy.

    ``stage_metrics`` (``metrics.json``) gets, besides the rewards' first/last means and the
    zero-spread watch: ``learned_reward_first``/``_last`` (the reward model's score),
    ``kl_first``/``_last`` (with ``beta > 0``), ``completion_length_first``/``_last``/``_change``
    and, with ``heldout_pairs``, ``heldout_before``/``heldout_after`` (see
    :func:`ladder.evaluate.heldout_preference`; implicit reward with ``beta = 1``). When the
    learned reward rose while the policy moved towards the rejected held-out answers, or the
    answers' length changed by more than half, it records a ``reward_hacking_warning`` (shown as
    a note in the report).
    """
    from ladder.evaluate import heldout_preference
    from ladder.training.common import (
        last_complete_trainer_checkpoint,
        main_process_model,
        publish_policy,
        train_summary,
    )

    cfg: RLStageConfig = stage.config
    trainer, facts = stage.build_trainer(checkpoint, ctx)
    rows, tokenizer, watch, heldout = facts["rows"], facts["tokenizer"], facts["watch"], facts["heldout"]
    names = facts["reward_names"]
    # Before train(): the input policy (the adapter disabled; a full fine-tune has not moved yet).
    policy = trainer.model
    before, input_scores = heldout_preference(adapter_off(policy) if hasattr(policy, "disable_adapter") else policy,
                                              tokenizer, heldout, beta=1.0, batch_size=cfg.eval_batch_size)
    resume = last_complete_trainer_checkpoint(ctx.trainer_dir)
    if resume is not None:
        logger.info("resuming %s from %s", stage.name, resume)
    start = time.perf_counter()
    trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    runtime = time.perf_counter() - start
    watch.finish()
    trained = main_process_model(trainer, checkpoint, ctx)  # every process of a launch calls it
    if trained is None:  # not the main process: the main one measures and publishes
        return checkpoint
    after, _ = heldout_preference(trained, tokenizer, heldout, reference_scores=input_scores, beta=1.0,
                                  batch_size=cfg.eval_batch_size)

    history = trainer.state.log_history
    tokens = _numbers(history, "num_tokens")
    summary = train_summary(history, runtime_s=runtime, tokens=int(tokens[-1]) if tokens else None)
    summary.update(first_last(history, "reward"))
    stage_metrics: dict[str, Any] = {
        "rows": len(rows),
        "data_checks": facts["data_checks"],
        "dataset": facts["label"],
        "num_generations": trainer.args.num_generations,
        "generation_batch_size": trainer.args.generation_batch_size,
        "generation_backend": "vllm" if facts["use_vllm"] else "transformers",
        "reward_weights": dict(zip(names, facts["reward_weights"], strict=True)),
        "rewards": {name: first_last(history, f"rewards/{name}/mean", prefix="") for name in names},
        **first_last(history, "completions/mean_length", prefix="completion_length"),
        **watch.metrics(),
    }
    length = (stage_metrics.get("completion_length_first"), stage_metrics.get("completion_length_last"))
    if length[0] and length[1] is not None:
        stage_metrics["completion_length_change"] = length[1] / length[0] - 1.0
    learned = facts["reward_model"]
    if learned is not None:
        stage_metrics["reward_model"] = learned["stage"] if learned["stage"] != REWARD_MODEL_PATH_NAME else learned[
            "path"]
        stage_metrics.update(first_last(history, f"rewards/{learned['name']}/mean", prefix="learned_reward"))
    if cfg.beta:
        stage_metrics.update(first_last(history, "kl", prefix="kl"))
    if heldout:
        stage_metrics["heldout_rows"] = len(heldout)
        stage_metrics["heldout_before"] = before
        stage_metrics["heldout_after"] = after
    warning = _reward_hacking_warning(stage_metrics)
    if warning:
        logger.warning("%s: %s", stage.name, warning)
        stage_metrics["reward_hacking_warning"] = warning
    verify = [
        tokenizer.apply_chat_template(r["prompt"], tokenize=False, add_generation_prompt=True) for r in rows[:3]
    ]
    return publish_policy(
        trained,
        tokenizer,
        ctx,
        stage_name=stage.name,
        stage_kind=stage.kind,
        parent=checkpoint,
        config=config_to_dict(cfg),
        chat_template=facts["template"],
        eos_ids=facts["eos_ids"],
        verify_texts=verify,
        train=summary,
        stage_metrics=stage_metrics,
    )


def _reward_hacking_warning(metrics: Mapping[str, Any]) -> str | None:
    """A note when the learned reward rose but the independent checks moved the wrong way."""
    first, last = metrics.get("learned_reward_first"), metrics.get("learned_reward_last")
    if first is None or last is None or not last > first:
        return None
    signs = []
    after = metrics.get("heldout_after") or {}
    if isinstance(after.get("accuracy"), float) and after["accuracy"] < 0.5:
        signs.append(
            f"on the held-out pairs the policy moved towards the rejected answers (implicit-reward accuracy "
            f"{after['accuracy']:.0%} against its input)"
        )
    change = metrics.get("completion_length_change")
    if isinstance(change, float) and abs(change) > _LENGTH_DRIFT_LIMIT:
        signs.append(
            f"the answers' mean length went from {metrics['completion_length_first']:.1f} to "
            f"{metrics['completion_length_last']:.1f} tokens ({change:+.0%})"
        )
    if not signs:
        return None
    return (
        f"the learned reward rose ({first:.3g} -> {last:.3g}) but {' and '.join(signs)}: the policy may be "
        "exploiting the reward model rather than getting better (reward hacking). Read the probe answers; raise "
        "beta (the KL penalty), train fewer steps, or improve the reward model's data."
    )


# ------------------------------------------------------------------------------------------------
# training logs


def _numbers(history: Sequence[Mapping[str, Any]], key: str) -> list[float]:
    return [
        float(r[key])
        for r in history
        if isinstance(r.get(key), (int, float)) and not math.isnan(float(r[key])) and "train_runtime" not in r
    ]


def first_last(history: Sequence[Mapping[str, Any]], key: str, *, prefix: str | None = None) -> dict[str, float]:
    """Means of ``key`` over the first and the last logged steps.

    The window is a quarter of the logged steps, at least 1 and at most 10. Keys are
    ``<prefix>_first``/``<prefix>_last`` (``prefix`` defaults to ``key``; ``""`` gives
    ``first``/``last``).

    Example:
        >>> first_last([{"kl": 0.0}, {"kl": 1.0}, {"kl": 2.0}, {"kl": 3.0}], "kl")
        {'kl_first': 0.0, 'kl_last': 3.0}
    """
    values = _numbers(history, key)
    if not values:
        return {}
    prefix = key if prefix is None else prefix
    head = f"{prefix}_" if prefix else ""
    window = max(1, min(10, len(values) // 4))
    return {
        f"{head}first": sum(values[:window]) / window,
        f"{head}last": sum(values[-window:]) / window,
    }


class ZeroSpreadWatch:
    """Watches ``frac_reward_zero_std``: the share of groups whose completions all scored the same.

    Such groups have zero advantage and teach nothing. The watch warns once (``logging`` and
    :meth:`metrics`), as soon as the first :data:`_EARLY_STEPS` logged steps average above
    :data:`_ZERO_SPREAD_LIMIT` (so a user can stop early), or at the end when the whole run does.

    Example:
        >>> watch = ZeroSpreadWatch(num_generations=2, early_steps=2)
        >>> for share in (1.0, 0.5):
        ...     watch.add(share, reward=0.0)
        >>> round(watch.metrics()["zero_spread_share"], 2), "num_generations" in watch.warning
        (0.75, True)
    """

    def __init__(
        self,
        *,
        num_generations: int = 2,
        limit: float = _ZERO_SPREAD_LIMIT,
        early_steps: int = _EARLY_STEPS,
        algorithm: str = "GRPO",
    ) -> None:
        self.num_generations = num_generations
        self.limit = limit
        self.early_steps = early_steps
        self.algorithm = algorithm
        self.values: list[float] = []
        self.rewards: list[float] = []
        self.warning: str | None = None

    def add(self, share: float, *, reward: float | None = None) -> None:
        """Record one logged step's ``frac_reward_zero_std`` (and its mean ``reward``)."""
        if math.isnan(share):
            return
        self.values.append(share)
        if reward is not None and not math.isnan(reward):
            self.rewards.append(reward)
        if self.warning is None and len(self.values) == self.early_steps:
            self._check(f"the first {self.early_steps} steps")

    def finish(self) -> None:
        """Check the whole run (call after training)."""
        if self.warning is None and self.values:
            self._check("this run")

    def _check(self, span: str) -> None:
        share = sum(self.values) / len(self.values)
        if share <= self.limit:
            return
        reward = f" (mean reward {sum(self.rewards) / len(self.rewards):.3g})" if self.rewards else ""
        self.warning = (
            f"{share:.0%} of the problem groups in {span} got the same reward for every completion{reward}, so "
            f"they carried no learning signal: {self.algorithm} learns only from differences within a group. If "
            f"the completions all fail, make success reachable: more generations per problem (num_generations, "
            f"now {self.num_generations}), easier problems or ones matched to the model, a higher temperature, or "
            f"an SFT stage before {self.algorithm} that teaches the answer format. If they all succeed, the model "
            f"has learned what these rewards teach: use harder problems or fewer steps."
        )
        logger.warning(self.warning)

    def metrics(self) -> dict[str, Any]:
        """``zero_spread_share`` (run mean), its first-steps mean, and the warning if one fired."""
        if not self.values:
            return {}
        early = self.values[: self.early_steps]
        out: dict[str, Any] = {
            "zero_spread_share": sum(self.values) / len(self.values),
            "zero_spread_share_first_steps": sum(early) / len(early),
        }
        if self.warning is not None:
            out["zero_spread_warning"] = self.warning
        return out

    def callback(self) -> TrainerCallback:
        """A TrainerCallback feeding this watch from the trainer's logs."""
        from transformers import TrainerCallback

        watch = self

        class _Watch(TrainerCallback):
            def on_log(
                self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any
            ) -> None:
                logs = logs or {}
                share, reward = logs.get("frac_reward_zero_std"), logs.get("reward")
                if isinstance(share, (int, float)):
                    watch.add(float(share), reward=float(reward) if isinstance(reward, (int, float)) else None)

        return _Watch()
