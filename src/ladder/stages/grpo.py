"""Group Relative Policy Optimization (GRPO) on TRL's ``GRPOTrainer`` with a LoRA, merged and verified.

Teaches the model to earn rewards a program can check: for each problem it samples
``num_generations`` completions, scores them with the reward functions, and pushes the policy
towards the completions that scored above their group's mean. A group whose completions all
score the same carries no learning signal; the stage watches for that and says what to change.

Batch sizes count *completions*, not prompts (TRL's convention): every optimizer step sees
``per_device_train_batch_size * gradient_accumulation_steps`` completions per process, i.e.
that number divided by ``num_generations`` distinct problems.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import os
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import attrs

from ladder.data.loading import as_spec, content_hash, load_rows
from ladder.data.verifiable import DEFAULT_INSTRUCTION, normalize_verifiable_rows
from ladder.errors import ConfigError, DataError, LadderError, MissingDependencyError, StageError
from ladder.rewards import reward_name
from ladder.stage import BaseStage, StageContext, config_to_dict
from ladder.training.lora import LoraSettings

if TYPE_CHECKING:
    from transformers import TrainerCallback

    from ladder.checkpoint import Checkpoint

__all__ = ["GRPO", "REFERENCE_REWARDS", "GRPOStageConfig", "ZeroSpreadWatch", "generation_batch_problems"]

logger = logging.getLogger(__name__)

_ge0 = attrs.validators.ge(0)
_gt0 = attrs.validators.gt(0)
_ge0f = attrs.validators.ge(0.0)
_gt0f = attrs.validators.gt(0.0)
_USE_VLLM: tuple[Any, ...] = ("auto", True, False)

#: The reference recipe's rewards: +1.0 for the right answer, +0.1 for the ``<answer>`` format.
REFERENCE_REWARDS: dict[str, float] = {"exact_match": 1.0, "tag_format": 0.1}

# Groups whose completions all got the same reward teach nothing. Above this mean share of
# such groups, over the whole run or over its first _EARLY_STEPS logged steps, the stage warns.
_ZERO_SPREAD_LIMIT = 0.5
_EARLY_STEPS = 10
# Columns TRL passes to reward functions under its own names; a dataset column with one of
# these names would collide with them ("got multiple values for keyword argument").
_RESERVED_COLUMNS = ("prompts", "completions", "completion_ids", "trainer_state", "log_extra", "log_metric")


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


@attrs.frozen(kw_only=True)
class GRPOStageConfig:
    """Settings of the GRPO stage (defaults: the reference recipe, except ``limit``)."""

    dataset: Any = attrs.field(
        metadata={
            "help": "verifiable problems (GSM8K question/answer, prompt/answer, problem/solution): file, preset, "
            "hub id, list or Dataset",
            "data": True,
        }
    )
    rewards: Any = attrs.field(
        factory=lambda: dict(REFERENCE_REWARDS),
        converter=_rewards_spec,
        metadata={"help": "reward name -> weight, a list of names or functions (weight 1), a name or a function"},
    )
    num_generations: int = attrs.field(
        default=2,
        validator=attrs.validators.ge(1),
        metadata={"help": "completions sampled per problem (a group); at least 2"},
    )
    max_completion_length: int = attrs.field(
        default=256, validator=_gt0, metadata={"help": "max new tokens per completion"}
    )
    temperature: float = attrs.field(default=1.0, validator=_gt0f, metadata={"help": "sampling temperature"})
    beta: float = attrs.field(
        default=0.04,
        validator=_ge0f,
        metadata={"help": "KL penalty towards the input model (0: none, TRL's default; no reference pass)"},
    )
    learning_rate: float = attrs.field(default=1e-5, validator=_gt0f, metadata={"help": "peak learning rate"})
    num_train_epochs: float = attrs.field(default=1.0, validator=_gt0f, metadata={"help": "epochs over the problems"})
    max_steps: int = attrs.field(default=-1, metadata={"help": "stop after N optimizer steps (-1: use epochs)"})
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
    precision: str = attrs.field(
        default="auto",
        validator=attrs.validators.in_(("auto", "bf16", "fp16", "fp32")),
        metadata={"help": "auto: bf16 on GPUs that support it, fp32 on CPU"},
    )
    save_steps: int = attrs.field(default=50, validator=_ge0, metadata={"help": "resumable checkpoint every N steps"})
    trainer_kwargs: dict[str, Any] = attrs.field(
        factory=dict, converter=dict, metadata={"help": "passed through to trl.GRPOConfig"}
    )


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
) -> tuple[int | None, list[str]]:
    """Check GRPO's batch arithmetic the way TRL 1.16's ``GRPOConfig.__post_init__`` does.

    TRL generates one *generation batch* of completions at a time:
    ``per_device_train_batch_size * num_processes * steps_per_generation`` completions, where
    ``steps_per_generation`` defaults to ``gradient_accumulation_steps``. It must hold whole
    groups of ``num_generations`` completions of the same problem, and a group needs at least
    two completions to have a spread.

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
            f"num_generations={num_generations}: GRPO compares completions of the same problem, so it needs at "
            f"least 2 per problem; set num_generations to 2 or more (the reference recipe uses 2)"
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


# ------------------------------------------------------------------------------------------------
# the stage


def _reward_items(spec: Any) -> list[Any]:
    """The entries of a rewards spec, each resolvable on its own (to report every bad name)."""
    if isinstance(spec, Mapping):
        return [{key: weight} for key, weight in spec.items()]
    if isinstance(spec, list):
        return [[entry] for entry in spec]
    return [spec]


def _input_eos_ids(checkpoint: Checkpoint, model: Any, tokenizer: Any, template: str | None) -> list[int]:
    """The input checkpoint's end-of-turn ids, kept; the template's end-of-turn added if missing."""
    from ladder.training.chat_template import eos_token_ids

    ids = [int(t) for t in checkpoint.eos_token_ids]
    if not ids:
        value = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
        ids = [int(v) for v in value] if isinstance(value, (list, tuple)) else [int(value)] if value is not None else []
    for tid in eos_token_ids(tokenizer, template):
        if tid not in ids:
            ids.append(tid)
    return ids


class GRPO(BaseStage):
    """GRPO on verifiable problems with a LoRA, merged and verified.

    ``GRPO(dataset="gsm8k", limit=1000, input="sft")``; see :class:`GRPOStageConfig`.
    """

    kind: ClassVar[str] = "grpo"
    Config: ClassVar[type] = GRPOStageConfig

    def __init__(self, config: Any = None, /, *, name: str | None = None, input: str | None = None, **settings: Any):
        super().__init__(config, name=name, input=input, **settings)
        if self.config.use_vllm is True and importlib.util.find_spec("vllm") is None:
            raise MissingDependencyError("vllm (for use_vllm: true)", extra="vllm")

    # data and rewards -------------------------------------------------------------------------
    def _rows(self) -> tuple[list[dict[str, Any]], str, list[DataError]]:
        cfg: GRPOStageConfig = self.config
        rows, label = load_rows(as_spec(cfg.dataset))
        normalised, problems = normalize_verifiable_rows(
            rows,
            label,
            system_prompt=cfg.system_prompt,
            instruction=cfg.instruction,
            prompt_template=cfg.prompt_template,
        )
        if cfg.limit is not None:
            normalised = normalised[: cfg.limit]
        return normalised, label, problems

    def _rewards(self) -> tuple[list[Any], list[float]]:
        """The checked reward functions (with the stage's timeout) and their weights."""
        from ladder.rewards import resolve_rewards

        funcs, weights = resolve_rewards(self.config.rewards, timeout_s=self.config.reward_timeout_s)
        return list(funcs), list(weights)

    def _batch_problems(self) -> tuple[int | None, list[str]]:
        cfg: GRPOStageConfig = self.config
        kw = cfg.trainer_kwargs
        return generation_batch_problems(
            num_generations=int(kw.get("num_generations", cfg.num_generations)),
            per_device_train_batch_size=int(kw.get("per_device_train_batch_size", cfg.per_device_train_batch_size)),
            gradient_accumulation_steps=int(kw.get("gradient_accumulation_steps", cfg.gradient_accumulation_steps)),
            steps_per_generation=kw.get("steps_per_generation", cfg.steps_per_generation),
            generation_batch_size=kw.get("generation_batch_size"),
            num_processes=_num_processes(),
        )

    def _reward_problems(self) -> tuple[list[Any], list[str]]:
        """Resolve every reward; return the functions and *every* problem (not just the first)."""
        from ladder.rewards import resolve_rewards

        problems: list[str] = []
        for item in _reward_items(self.config.rewards):
            try:
                resolve_rewards(item, check=False)
            except LadderError as exc:
                problems.append(f"rewards: {exc}")
        if problems:
            return [], problems
        try:
            funcs, weights = self._rewards()
        except LadderError as exc:  # e.g. two rewards with one name
            return [], [f"rewards: {exc}"]
        if not any(w != 0 for w in weights):
            problems.append("rewards: every weight is 0, so nothing would be learned; give one a non-zero weight")
        return funcs, problems

    def _trainer_kwargs_problems(self) -> list[str]:
        import dataclasses

        from trl import GRPOConfig

        known = {f.name for f in dataclasses.fields(GRPOConfig)}
        unknown = sorted(set(self.config.trainer_kwargs) - known)
        if not unknown:
            return []
        plural = "s" if len(unknown) > 1 else ""
        names = ", ".join(map(repr, unknown))
        return [f"trainer_kwargs: unknown trl.GRPOConfig setting{plural} {names}; check their spelling in TRL's docs"]

    # Stage protocol ---------------------------------------------------------------------------
    def validate(self, ctx: StageContext) -> list[str]:
        """Batch arithmetic, reward names, data rows, reward columns, a sample call of each reward."""
        from ladder.rewards import check_reward_on_sample, required_columns

        cfg: GRPOStageConfig = self.config
        generation_batch, problems = self._batch_problems()
        problems += self._trainer_kwargs_problems()
        funcs, reward_problems = self._reward_problems()
        problems += reward_problems
        try:
            rows, label, data_problems = self._rows()
        except LadderError as exc:
            return [f"stage {self.name!r}: {p}" for p in [*problems, str(exc)]]
        problems += [str(p) for p in data_problems]
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
        return [f"stage {self.name!r}: {p}" for p in problems]

    def fingerprint_data(self) -> Any:
        rows, _label, _problems = self._rows()
        return content_hash(rows)

    def build_trainer(self, checkpoint: Checkpoint, ctx: StageContext) -> tuple[Any, dict[str, Any]]:
        """The configured ``trl.GRPOTrainer`` (not yet trained) and the facts :meth:`run` needs.

        Public so the exact prompts, rewards and generation settings can be inspected.
        """
        from datasets import Dataset
        from trl import GRPOConfig, GRPOTrainer

        from ladder.training.common import log_callback, quiet_trainer, trainer_args
        from ladder.training.lora import peft_config
        from ladder.training.models import load_model, load_tokenizer

        cfg: GRPOStageConfig = self.config
        rows, label, problems = self._rows()
        if problems:  # validate() ran already; this guards direct callers
            raise problems[0]
        funcs, weights = self._rewards()
        tokenizer = load_tokenizer(checkpoint, ctx.options)
        template = checkpoint.chat_template or tokenizer.chat_template
        if isinstance(template, dict):
            template = template.get("default")
        if not template:
            raise ConfigError(
                f"stage {self.name!r}: the input checkpoint {checkpoint.path!r} has no chat template, so the "
                "problems cannot be rendered as chats; run SFT before GRPO (input=...), or start from an "
                "instruct model"
            )
        tokenizer.chat_template = template
        model = load_model(checkpoint, ctx.options)
        eos_ids = _input_eos_ids(checkpoint, model, tokenizer, template)
        # Rollouts must stop at the end of the assistant's turn, not only at the document EOS (a
        # base model's generation config often names <|endoftext|> alone); TRL reads this.
        model.generation_config.eos_token_id = eos_ids if len(eos_ids) > 1 else eos_ids[0]
        use_vllm = _resolve_use_vllm(cfg.use_vllm, cfg.vllm_mode)
        args = GRPOConfig(
            **trainer_args(
                ctx,
                learning_rate=cfg.learning_rate,
                num_train_epochs=cfg.num_train_epochs,
                max_steps=cfg.max_steps,
                per_device_train_batch_size=cfg.per_device_train_batch_size,
                gradient_accumulation_steps=cfg.gradient_accumulation_steps,
                save_steps=cfg.save_steps,
                precision_name=cfg.precision,
                trainer_kwargs={
                    "num_generations": cfg.num_generations,
                    "max_completion_length": cfg.max_completion_length,
                    "temperature": cfg.temperature,
                    "beta": cfg.beta,
                    "steps_per_generation": cfg.steps_per_generation,
                    "reward_weights": weights,
                    "use_vllm": use_vllm,
                    "vllm_mode": cfg.vllm_mode,
                    **cfg.trainer_kwargs,
                },
            )
        )
        watch = ZeroSpreadWatch(num_generations=int(args.num_generations or cfg.num_generations))
        # A new LoRA on the (merged) input model; with beta > 0 TRL computes the reference
        # log-probs by disabling the adapter, so no second copy of the model is loaded.
        trainer = GRPOTrainer(
            model=model,
            reward_funcs=funcs,
            args=args,
            train_dataset=Dataset.from_list(rows),
            processing_class=tokenizer,
            peft_config=peft_config(cfg.lora),
            callbacks=[log_callback(ctx), watch.callback()],
        )
        quiet_trainer(trainer)
        facts = {
            "rows": rows,
            "label": label,
            "tokenizer": tokenizer,
            "template": template,
            "eos_ids": eos_ids,
            "reward_names": [reward_name(f) for f in funcs],
            "reward_weights": weights,
            "use_vllm": use_vllm,
            "watch": watch,
        }
        return trainer, facts

    def run(self, checkpoint: Checkpoint, ctx: StageContext) -> Checkpoint:
        from ladder.training.common import last_complete_trainer_checkpoint, publish_policy, train_summary

        cfg: GRPOStageConfig = self.config
        trainer, facts = self.build_trainer(checkpoint, ctx)
        rows, tokenizer, watch = facts["rows"], facts["tokenizer"], facts["watch"]
        names = facts["reward_names"]
        resume = last_complete_trainer_checkpoint(ctx.trainer_dir)
        if resume is not None:
            logger.info("resuming %s from %s", self.name, resume)
        start = time.perf_counter()
        trainer.train(resume_from_checkpoint=str(resume) if resume else None)
        runtime = time.perf_counter() - start
        watch.finish()
        from ladder.training.common import main_process_model

        trained = main_process_model(trainer, checkpoint, ctx)  # every process of a launch calls it
        if trained is None:  # not the main process: the main one publishes
            return checkpoint

        history = trainer.state.log_history
        tokens = _numbers(history, "num_tokens")
        summary = train_summary(history, runtime_s=runtime, tokens=int(tokens[-1]) if tokens else None)
        summary.update(_first_last(history, "reward"))
        stage_metrics: dict[str, Any] = {
            "rows": len(rows),
            "dataset": facts["label"],
            "num_generations": trainer.args.num_generations,
            "generation_batch_size": trainer.args.generation_batch_size,
            "generation_backend": "vllm" if facts["use_vllm"] else "transformers",
            "reward_weights": dict(zip(names, facts["reward_weights"], strict=True)),
            "rewards": {name: _first_last(history, f"rewards/{name}/mean", prefix="") for name in names},
            **_first_last(history, "completions/mean_length", prefix="completion_length"),
            **watch.metrics(),
        }
        if cfg.beta:
            stage_metrics.update(_first_last(history, "kl", prefix="kl"))
        verify = [
            tokenizer.apply_chat_template(r["prompt"], tokenize=False, add_generation_prompt=True) for r in rows[:3]
        ]
        return publish_policy(
            trained,
            tokenizer,
            ctx,
            stage_name=self.name,
            stage_kind=self.kind,
            parent=checkpoint,
            config=config_to_dict(cfg),
            chat_template=facts["template"],
            eos_ids=facts["eos_ids"],
            verify_texts=verify,
            train=summary,
            stage_metrics=stage_metrics,
        )


def _resolve_use_vllm(setting: Any, mode: str) -> bool:
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


def _numbers(history: Sequence[Mapping[str, Any]], key: str) -> list[float]:
    return [
        float(r[key])
        for r in history
        if isinstance(r.get(key), (int, float)) and not math.isnan(float(r[key])) and "train_runtime" not in r
    ]


def _first_last(history: Sequence[Mapping[str, Any]], key: str, *, prefix: str | None = None) -> dict[str, float]:
    """Means of ``key`` over the first and the last logged steps.

    The window is a quarter of the logged steps, at least 1 and at most 10. Keys are
    ``<prefix>_first``/``<prefix>_last`` (``prefix`` defaults to ``key``; ``""`` gives
    ``first``/``last``).
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
        self, *, num_generations: int = 2, limit: float = _ZERO_SPREAD_LIMIT, early_steps: int = _EARLY_STEPS
    ) -> None:
        self.num_generations = num_generations
        self.limit = limit
        self.early_steps = early_steps
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
            f"they carried no learning signal: GRPO learns only from differences within a group. If the "
            f"completions all fail, make success reachable: more generations per problem (num_generations, now "
            f"{self.num_generations}), easier problems or ones matched to the model, a higher temperature, or an "
            f"SFT stage before GRPO that teaches the answer format. If they all succeed, the model has learned "
            f"what these rewards teach: use harder problems or fewer steps."
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
