"""One RL stage over TRL's group-sampling trainers; GRPO and RLOO are this stage with their own
TRL classes (an :class:`~ladder.training.rl.config.Algorithm`) and defaults.

Each problem gets ``num_generations`` completions, scored by reward functions and/or a learned
reward model; TRL's trainer pushes the policy towards the completions that beat their group's
baseline. Around that: reading the prompts, resolving and checking the rewards, loading the
reward model, the batch arithmetic, watching the learning signal, the held-out checks against
reward hacking, and publishing.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, ClassVar

from ladder.data.length import LengthRule, enforce_rows, preflight_rows, prompt_lengths
from ladder.data.loading import content_hash
from ladder.errors import DataError, LadderError, MissingDependencyError, StageError
from ladder.settings import is_path_reference
from ladder.stage import BaseStage, StageContext, StageResult
from ladder.training.rl.batch import batch_problems
from ladder.training.rl.config import Algorithm, check_use_vllm, learned_reward_defaults
from ladder.training.rl.reward_model import (
    REWARD_MODEL_PATH_NAME,
    load_reward_model,
    resolve_reward_checkpoint,
    reward_folder_problems,
    reward_model_name,
)
from ladder.training.rl.rewards import (
    heldout_pair_rows,
    indexed_prompt_rows,
    program_rewards,
    reward_call_problems,
    reward_problems,
)
from ladder.training.rl.signal import ZeroSpreadWatch, first_last, numbers, reward_hacking_warning

if TYPE_CHECKING:
    from ladder.checkpoint import Checkpoint
    from ladder.training.rl.config import RLStageConfig

__all__ = ["RLStage", "resolve_use_vllm"]

logger = logging.getLogger(__name__)


def resolve_use_vllm(setting: Any, mode: str) -> bool:
    """Whether rollouts go through vLLM; ``"auto"`` means: wherever vLLM can generate here."""
    from ladder.vllm_support import vllm_installed, vllm_unusable_reason

    if setting is False:
        return False
    reason = vllm_unusable_reason()
    if setting == "auto":
        if reason is None:
            logger.info("generating rollouts with vLLM (%s mode)", mode)
            return True
        logger.info("generating rollouts with transformers (%s); vLLM is much faster on a GPU", reason)
        return False
    if not vllm_installed():
        raise MissingDependencyError("vllm (for use_vllm: true)", extra="vllm")
    if reason is not None:
        raise StageError(f"use_vllm: true, but {reason}; set use_vllm: auto or false")
    return True


class RLStage(BaseStage):
    """A group-sampling RL stage on prompts with reward functions and/or a learned reward model.

    Subclasses set ``kind``, ``Config`` (an :class:`~ladder.training.rl.config.RLStageConfig`)
    and ``algorithm``.
    """

    algorithm: ClassVar[Algorithm]
    input_kind: ClassVar[str] = "policy"
    output_kind: ClassVar[str] = "policy"

    def __init__(self, config: Any = None, /, *, name: str | None = None, input: str | None = None, **settings: Any):
        config, settings = learned_reward_defaults(config, settings)
        super().__init__(config, name=name, input=input, **settings)
        check_use_vllm(self.config)

    # data ---------------------------------------------------------------------------------------
    def prompts(self) -> tuple[list[dict[str, Any]], str, list[DataError], list[int]]:
        """The prompt rows, their label, problems and row numbers (loaded once per run)."""
        return self.cached("prompts", lambda: indexed_prompt_rows(self.config))

    def heldout_pairs(self) -> tuple[list[dict[str, Any]], str, list[DataError]]:
        return self.cached("heldout_pairs", lambda: heldout_pair_rows(self.config))

    def fingerprint_data(self) -> Any:
        """Content identity of the prompts and the held-out pairs (a reward model given as a stage
        or a folder enters the fingerprint through the pipeline, as a checkpoint reference)."""
        rows = self.prompts()[0]
        pairs = self.heldout_pairs()[0]
        return {"prompts": content_hash(rows), "heldout_pairs": content_hash(pairs)} if pairs else content_hash(rows)

    # pre-flight ---------------------------------------------------------------------------------
    def check(self, ctx: StageContext) -> list[str]:
        """Batch arithmetic, rewards (names, columns, a sample call of each), the reward model
        folder, the prompts and ``heldout_pairs``. A ``reward_model`` naming a stage is checked by
        the pipeline, which knows the stages."""
        cfg: RLStageConfig = self.config
        generation_batch, problems = batch_problems(cfg, self.algorithm.name)
        funcs, found = reward_problems(cfg)
        problems += found
        if generation_batch:  # a code reward that can outlast reward_timeout_s on one batch
            from ladder.rewards import reward_time_problems
            from ladder.training.rl.batch import num_processes

            problems += reward_time_problems(funcs, generation_batch // num_processes(), cfg.reward_timeout_s)
        if cfg.reward_model is not None and is_path_reference(cfg.reward_model):
            problems += reward_folder_problems(cfg.reward_model)
        try:
            problems += [f"heldout_pairs: {p}" for p in self.heldout_pairs()[2]]
        except LadderError as exc:
            problems.append(f"heldout_pairs: {exc}")
        try:
            rows, label, data_problems, indices = self.prompts()
            problems += [str(p) for p in data_problems]
            problems += preflight_rows(ctx, rows, indices, source=label, rule=self._length_rule())
        except LadderError as exc:
            return [*problems, str(exc)]
        if rows:
            problems += reward_call_problems(cfg, funcs, rows, label, generation_batch)
        problems += self._scan_problems(funcs)
        return problems

    def _length_rule(self) -> LengthRule:
        cfg: RLStageConfig = self.config
        return LengthRule(lengths_of=prompt_lengths, limit=cfg.max_prompt_length, policy=cfg.overlength,
                          setting="max_prompt_length", what="prompt", can_truncate=False)

    def _scan_problems(self, funcs: list[Any]) -> list[str]:
        from ladder.rewards import reward_name

        cfg: RLStageConfig = self.config
        if not cfg.learnability_scan:
            return []
        if cfg.learnability_scan == 1:
            return ["learnability_scan: 1 sample per problem cannot tell a sometimes-solved problem from an always- "
                    "or never-solved one; use 2 or more (e.g. 4), or 0 for no scan"]
        names = [reward_name(f) for f in funcs]
        if not names:
            return ["learnability_scan needs a reward function to decide what passes (a reward_model alone has no "
                    "pass/fail); add rewards or set learnability_scan: 0"]
        if cfg.scan_reward is not None and cfg.scan_reward not in names:
            return [f"scan_reward {cfg.scan_reward!r} is not one of the stage's rewards ({', '.join(names)})"]
        return []

    # training -----------------------------------------------------------------------------------
    def build_trainer(self, checkpoint: Checkpoint, ctx: StageContext) -> tuple[Any, dict[str, Any]]:
        """The configured TRL trainer (not yet trained) and the facts :meth:`run` needs.

        The policy gets a new LoRA on the (merged) input model; with ``beta > 0`` TRL computes the
        reference log-probs by disabling the adapter, so no second copy of the policy is loaded.
        A reward model goes into ``reward_funcs`` after the reward functions, with its tokenizer
        in ``reward_processing_classes`` and its weight last in ``reward_weights``.
        """
        from datasets import Dataset

        from ladder.rewards import reward_name
        from ladder.training.args import trainer_args_from
        from ladder.training.chat_format import chat_template_for, input_eos_ids
        from ladder.training.lora import peft_config_for
        from ladder.training.models import load_tokenizer
        from ladder.training.modes import load_training_model
        from ladder.training.rl import rollouts

        cfg: RLStageConfig = self.config
        algo = self.algorithm
        rows, label, problems, indices = self.prompts()
        if problems:  # validate() ran already; this guards direct callers
            raise problems[0]
        heldout, _pair_label, pair_problems = self.heldout_pairs()
        if pair_problems:
            raise pair_problems[0]
        funcs, weights = program_rewards(cfg)
        names = [reward_name(f) for f in funcs]
        reward_funcs: list[Any] = list(funcs)
        processing: list[Any] = [None] * len(funcs)
        learned: dict[str, Any] | None = None
        if cfg.reward_model is not None:
            rm_checkpoint = resolve_reward_checkpoint(cfg.reward_model, ctx, self.name)
            name = reward_model_name(cfg.reward_model)
            rm, rm_tokenizer = load_reward_model(rm_checkpoint, name, ctx.options)
            reward_funcs.append(rm)
            processing.append(rm_tokenizer)
            weights = [*weights, cfg.reward_model_weight]
            names.append(name)
            learned = {"name": name, "path": rm_checkpoint.path, "stage": rm_checkpoint.stage}
            if not cfg.beta:
                logger.warning(
                    "%s: beta is 0, so nothing keeps the policy near its input while it optimises a learned "
                    "reward; a reward model is easy to exploit (reward hacking); RLHF keeps a KL penalty (beta > 0)",
                    self.name,
                )
        tokenizer = load_tokenizer(checkpoint, ctx.options)
        template = chat_template_for(
            tokenizer, checkpoint, where=f"stage {self.name!r}",
            fix=f"run SFT before {algo.name} (input=...), or start from an instruct model")
        # Measured with this checkpoint's tokenizer and template; over-length prompts per `overlength`.
        rows, data_checks = enforce_rows(tokenizer, rows, indices, source=label, rule=self._length_rule(),
                                         template=template)
        use_vllm = resolve_use_vllm(cfg.use_vllm, cfg.vllm_mode)
        # vLLM starts from the weights at the model's path: a chain of adapters is merged to disk for it.
        model = load_training_model(checkpoint, ctx, cfg, on_disk=use_vllm)
        eos_ids = input_eos_ids(checkpoint, model, tokenizer, template)
        # Rollouts must stop at the end of the assistant's turn, not only at the document EOS (a
        # base model's generation config often names <|endoftext|> alone); TRL reads this.
        model.generation_config.eos_token_id = eos_ids if len(eos_ids) > 1 else eos_ids[0]
        scan = self._scan(model, tokenizer, rows, funcs, names[: len(funcs)], ctx) if cfg.learnability_scan else None
        if scan is not None:
            rows = scan.kept
        if use_vllm:
            from ladder.vllm_support import keep_cpu_weights_reloadable, prepare_in_process

            prepare_in_process()
            keep_cpu_weights_reloadable()  # TRL syncs the policy's weights into vLLM every step
        config_class, trainer_class = algo.trl_classes()
        args = config_class(**trainer_args_from(
            ctx, cfg, num_generations=cfg.num_generations, max_completion_length=cfg.max_completion_length,
            temperature=cfg.temperature, beta=cfg.beta, steps_per_generation=cfg.steps_per_generation,
            reward_weights=weights, use_vllm=use_vllm, vllm_mode=cfg.vllm_mode,
            **{name: getattr(cfg, name) for name in type(cfg).trl_fields}))
        watch = ZeroSpreadWatch(num_generations=int(args.num_generations or cfg.num_generations), algorithm=algo.name)
        trainer = trainer_class(
            model=model,
            reward_funcs=reward_funcs,
            args=args,
            train_dataset=Dataset.from_list(rows),
            processing_class=tokenizer,
            reward_processing_classes=processing,
            peft_config=peft_config_for(cfg),
            callbacks=[watch.callback()],
        )
        self._install_sampling(trainer, ctx, weights)
        merged_rollouts = cfg.merged_rollouts and rollouts.install(trainer)
        facts = {
            "rows": rows, "label": label, "heldout": heldout, "tokenizer": tokenizer, "template": template,
            "eos_ids": eos_ids, "reward_names": names, "reward_weights": weights, "reward_model": learned,
            "use_vllm": use_vllm, "merged_rollouts": merged_rollouts, "watch": watch, "data_checks": data_checks,
            "scan": scan.metrics if scan is not None else None,
        }
        return trainer, facts

    def _scan(self, model: Any, tokenizer: Any, rows: list[dict[str, Any]], funcs: list[Any], names: list[str],
              ctx: StageContext) -> Any:
        """The learnability scan (:mod:`ladder.training.rl.scan`) of the first ``scan_limit`` problems."""
        from ladder.training.rl.batch import batch_problems
        from ladder.training.rl.scan import learnability_scan, pass_reward

        cfg: RLStageConfig = self.config
        reward, name = pass_reward(funcs, names, cfg.scan_reward)
        scanned = rows[: cfg.scan_limit] if cfg.scan_limit else rows
        result = learnability_scan(model, tokenizer, scanned, reward, name, samples=cfg.learnability_scan,
                                   threshold=cfg.scan_threshold, temperature=cfg.temperature,
                                   max_new_tokens=cfg.max_completion_length, seed=ctx.seed,
                                   keep_solved=cfg.scan_keep_solved)
        generation_batch, _ = batch_problems(cfg, self.algorithm.name)
        groups = (generation_batch or 0) // max(cfg.num_generations, 1)
        if len(result.kept) < max(groups, 1):
            raise StageError(
                f"stage {self.name!r}: the learnability scan kept {len(result.kept)} of {len(scanned)} problems (the "
                f"input policy solved {result.metrics['scan_always']} every time and {result.metrics['scan_never']} "
                f"never, in {cfg.learnability_scan} samples each), fewer than one generation batch needs ({groups}); "
                "give problems matched to the model, more of them (scan_limit), more samples, or learnability_scan: 0"
            )
        return result

    def _install_sampling(self, trainer: Any, ctx: StageContext, weights: list[float]) -> None:
        """Dynamic sampling and the rollout log (:mod:`ladder.training.rl.sampling`)."""
        from ladder.training.rl import sampling

        cfg: RLStageConfig = self.config
        recorder = sampling.RolloutRecorder(ctx.work_dir / sampling.ROLLOUTS_FILE, weights=weights,
                                            group_size=int(trainer.num_generations), enabled=cfg.save_rollouts)

        def on_step(values: dict[str, float]) -> None:
            for key, value in values.items():
                trainer._metrics["train"][f"dynamic_sampling/{key}"].append(value)

        if cfg.dynamic_sampling or cfg.save_rollouts:
            sampling.install(trainer, dynamic=cfg.dynamic_sampling, max_refills=cfg.max_refills,
                             recorder=recorder if cfg.save_rollouts else None, seed=ctx.seed,
                             on_step=on_step if cfg.dynamic_sampling else None)

    def run(self, checkpoint: Checkpoint, ctx: StageContext) -> StageResult:
        """Build the trainer, measure ``heldout_pairs``, train, measure again, publish the merged policy.

        ``stage_metrics`` gets, besides the rewards' first/last means and the zero-spread watch:
        ``learned_reward_first``/``_last`` (the reward model's score), ``kl_first``/``_last``
        (with ``beta > 0``), ``completion_length_first``/``_last``/``_change`` and, with
        ``heldout_pairs``, ``heldout_before``/``heldout_after`` (see
        :func:`ladder.evaluate.heldout_preference`; implicit reward with ``beta = 1``), and a
        ``reward_hacking_warning`` when the learned reward rose while the policy moved towards the
        rejected held-out answers or the answers' length changed by more than half.
        """
        from ladder.evaluate import heldout_preference
        from ladder.training.fit import fit
        from ladder.training.lora import input_policy
        from ladder.training.publish import publish

        cfg: RLStageConfig = self.config
        trainer, facts = self.build_trainer(checkpoint, ctx)
        rows, tokenizer, watch, heldout = facts["rows"], facts["tokenizer"], facts["watch"], facts["heldout"]
        # Before train(): the input policy (the adapter disabled; a full fine-tune has not moved yet).
        before, input_scores = heldout_preference(input_policy(trainer.model), tokenizer, heldout, beta=1.0,
                                                  batch_size=cfg.eval_batch_size)
        fitted = fit(trainer, ctx, checkpoint)  # every process of a launch calls it
        watch.finish()
        if fitted is None:  # not the main process: the main one measures and publishes
            return StageResult(checkpoint)
        after, _ = heldout_preference(fitted.model, tokenizer, heldout, reference_scores=input_scores, beta=1.0,
                                      batch_size=cfg.eval_batch_size)
        history = fitted.history
        summary = fitted.summary(tokens=fitted.trained_tokens)
        summary.update(first_last(history, "reward"))
        stage_metrics = self._stage_metrics(trainer, facts, history)
        if facts["scan"] is not None:
            stage_metrics["learnability_scan"] = facts["scan"]
        if cfg.dynamic_sampling:
            stage_metrics.update(first_last(history, "dynamic_sampling/zero_spread_generated",
                                            prefix="dynamic_zero_spread_generated"))
            in_loss = numbers(history, "dynamic_sampling/zero_spread_in_loss")
            stage_metrics["dynamic_zero_spread_in_loss_max"] = max(in_loss) if in_loss else None
        if heldout:
            stage_metrics["heldout_rows"] = len(heldout)
            stage_metrics["heldout_before"] = before
            stage_metrics["heldout_after"] = after
        warning = reward_hacking_warning(stage_metrics)
        if warning:
            logger.warning("%s: %s", self.name, warning)
            stage_metrics["reward_hacking_warning"] = warning
        verify = [tokenizer.apply_chat_template(r["prompt"], tokenize=False, add_generation_prompt=True)
                  for r in rows[:3]]
        out = publish(fitted.model, tokenizer, ctx, parent=checkpoint, config=cfg, chat_template=facts["template"],
                      eos_ids=facts["eos_ids"], verify_texts=verify)
        stage_metrics.update(out.metrics)
        return StageResult(out.checkpoint, {"train": summary, "stage_metrics": stage_metrics})

    def _stage_metrics(self, trainer: Any, facts: dict[str, Any], history: list[dict[str, Any]]) -> dict[str, Any]:
        names = facts["reward_names"]
        stage_metrics: dict[str, Any] = {
            "rows": len(facts["rows"]),
            "data_checks": facts["data_checks"],
            "dataset": facts["label"],
            "num_generations": trainer.args.num_generations,
            "generation_batch_size": trainer.args.generation_batch_size,
            "generation_backend": "vllm" if facts["use_vllm"] else "transformers",
            "merged_rollouts": facts["merged_rollouts"],
            "reward_weights": dict(zip(names, facts["reward_weights"], strict=True)),
            "rewards": {name: first_last(history, f"rewards/{name}/mean", prefix="") for name in names},
            **first_last(history, "completions/mean_length", prefix="completion_length"),
            **facts["watch"].metrics(),
        }
        length = (stage_metrics.get("completion_length_first"), stage_metrics.get("completion_length_last"))
        if length[0] and length[1] is not None:
            stage_metrics["completion_length_change"] = length[1] / length[0] - 1.0
        learned = facts["reward_model"]
        if learned is not None:
            stage_metrics["reward_model"] = (learned["stage"] if learned["stage"] != REWARD_MODEL_PATH_NAME
                                             else learned["path"])
            stage_metrics.update(first_last(history, f"rewards/{learned['name']}/mean", prefix="learned_reward"))
        if self.config.beta:
            stage_metrics.update(first_last(history, "kl", prefix="kl"))
        return stage_metrics
