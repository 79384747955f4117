"""Direct preference optimisation (DPO) on TRL's ``DPOTrainer`` with a LoRA, merged and verified.

Teaches preference: between two answers to the same prompt, make the chosen one more likely
relative to the input checkpoint (the reference policy). A new LoRA is trained on the merged
input model; the reference is that same model with the adapter disabled, so no second copy of
the weights is loaded. The chat template is the input checkpoint's, unchanged.

Held-out pairs (a seeded ``heldout_fraction`` of the data, or ``eval_dataset``) are scored
before and after training: DPO's implicit-reward accuracy and margin, and the reference-free
log-prob accuracy (see :mod:`ladder.evaluate`).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, ClassVar

import attrs

from ladder.data.length import OVERLENGTH_POLICIES, enforce_rows, kept_indices, pair_lengths, preflight_rows
from ladder.data.loading import as_spec, content_hash, load_rows
from ladder.data.preference import normalize_preference_rows, split_heldout
from ladder.errors import ConfigError, DataError, LadderError
from ladder.stage import BaseStage, StageContext, config_to_dict
from ladder.training.chat_template import input_eos_ids
from ladder.training.lora import LoraSettings, adapter_off

if TYPE_CHECKING:
    from ladder.checkpoint import Checkpoint

__all__ = ["DPO", "DPOStageConfig"]

logger = logging.getLogger(__name__)

_ge0 = attrs.validators.ge(0)
_gt0 = attrs.validators.gt(0)


def _lora(value: Any) -> LoraSettings:
    if isinstance(value, LoraSettings):
        return value
    return LoraSettings(**dict(value or {}))


@attrs.frozen(kw_only=True)
class DPOStageConfig:
    """Settings of the DPO stage (defaults: the reference recipe)."""

    dataset: Any = attrs.field(
        metadata={
            "help": "preference pairs (prompt/chosen/rejected, chosen/rejected conversations, or LLaMA-Factory's "
            "conversations/chosen/rejected): file, preset, hub id, list or Dataset",
            "data": True,
        }
    )
    eval_dataset: Any = attrs.field(
        default=None,
        metadata={
            "help": "held-out pairs to measure preference accuracy on; when set, every dataset row trains and "
            "heldout_fraction is not used",
            "data": True,
        },
    )
    heldout_fraction: float = attrs.field(
        default=0.05,
        validator=[attrs.validators.ge(0.0), attrs.validators.le(0.5)],
        metadata={
            "help": "share of the dataset held out (seeded) to measure preference accuracy on; at least one pair "
            "when the set has 20 rows or more; 0 to train on everything"
        },
    )
    lora: LoraSettings = attrs.field(factory=LoraSettings, converter=_lora, metadata={"help": "LoRA settings"})
    beta: float = attrs.field(
        default=0.1, validator=_gt0, metadata={"help": "DPO beta: higher keeps the policy closer to the reference"}
    )
    learning_rate: float = attrs.field(default=5e-6, validator=_gt0, metadata={"help": "peak learning rate"})
    num_train_epochs: float = attrs.field(default=1.0, validator=_gt0, metadata={"help": "epochs over the data"})
    max_steps: int = attrs.field(
        default=-1,
        validator=attrs.validators.instance_of(int),
        metadata={"help": "stop after N optimizer steps (-1: use epochs)"},
    )
    per_device_train_batch_size: int = attrs.field(default=4, validator=_gt0, metadata={"help": "pairs per batch"})
    gradient_accumulation_steps: int = attrs.field(default=2, validator=_gt0, metadata={"help": "accumulation"})
    max_length: int = attrs.field(
        default=1024,
        validator=_gt0,
        metadata={
            "help": "max tokens of prompt + answer; what happens to longer pairs is `overlength`'s choice (under "
            "truncate they keep their start, TRL's keep_start)"
        },
    )
    overlength: str = attrs.field(
        default="error",
        validator=attrs.validators.in_(OVERLENGTH_POLICIES),
        metadata={
            "help": "pairs whose prompt + answer is longer than max_length: error (stop before training), drop "
            "(leave them out) or truncate (TRL cuts them, keeping the start); dropped and truncated pairs are "
            "logged and counted in metrics.json"
        },
    )
    eval_batch_size: int = attrs.field(
        default=8, validator=_gt0, metadata={"help": "sequences scored together when measuring held-out pairs"}
    )
    chat_template: str | None = attrs.field(
        default=None,
        metadata={"help": "chat template (text) to use instead of the input checkpoint's; the output keeps it"},
    )
    precision: str = attrs.field(
        default="auto",
        validator=attrs.validators.in_(("auto", "bf16", "fp16", "fp32")),
        metadata={"help": "auto: bf16 on GPUs that support it, fp32 on CPU; bf16 on a CPU autocasts where it has native bf16"},
    )
    save_steps: int = attrs.field(default=50, validator=_ge0, metadata={"help": "resumable checkpoint every N steps"})
    trainer_kwargs: dict[str, Any] = attrs.field(
        factory=dict,
        converter=dict,
        metadata={"help": "passed through to trl.DPOConfig (e.g. loss_type, label_smoothing)"},
    )


def _trained_tokens(trainer: Any, cfg: DPOStageConfig) -> int:
    """Tokens the policy trained on: TRL's own count (``num_tokens``), else an estimate."""
    logged = [r["num_tokens"] for r in trainer.state.log_history if isinstance(r.get("num_tokens"), (int, float))]
    if logged:
        return int(logged[-1])
    data = trainer.train_dataset
    # Each pair is two sequences: prompt + chosen and prompt + rejected.
    tokens = sum(
        2 * len(p) + len(c) + len(r)
        for p, c, r in zip(data["prompt_ids"], data["chosen_ids"], data["rejected_ids"], strict=True)
    )
    return int(tokens * max(cfg.num_train_epochs, 1.0)) if cfg.max_steps < 0 else tokens


class DPO(BaseStage):
    """Direct preference optimisation with a LoRA on the input checkpoint, merged and verified."""

    kind: ClassVar[str] = "dpo"
    Config: ClassVar[type] = DPOStageConfig

    def _pairs(self, spec: Any) -> tuple[list[dict[str, Any]], str, list[DataError]]:
        rows, label, problems, _indices = self._indexed_pairs(spec)
        return rows, label, problems

    def _indexed_pairs(self, spec: Any) -> tuple[list[dict[str, Any]], str, list[DataError], list[int]]:
        """Normalised pairs, label, problems, and each kept pair's row number in the file."""
        rows, label = load_rows(as_spec(spec))
        normalised, problems = normalize_preference_rows(rows, label)
        return normalised, label, problems, kept_indices(len(rows), problems)

    def _data(self, seed: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]], str, list[int]]:
        """``(train, heldout, label, train row numbers)``; raises the first data problem."""
        cfg: DPOStageConfig = self.config
        rows, label, problems, indices = self._indexed_pairs(cfg.dataset)
        if problems:  # validate() ran already; this guards direct callers
            raise problems[0]
        if cfg.eval_dataset is not None:
            heldout, _eval_label, eval_problems = self._pairs(cfg.eval_dataset)
            if eval_problems:
                raise eval_problems[0]
            return rows, heldout, label, indices
        train, heldout = split_heldout(rows, cfg.heldout_fraction, seed)
        train_indices, _ = split_heldout(indices, cfg.heldout_fraction, seed)  # the same split, by position
        return train, heldout, label, train_indices

    def validate(self, ctx: StageContext) -> list[str]:
        cfg: DPOStageConfig = self.config
        problems: list[str] = []
        specs = [cfg.dataset] + ([cfg.eval_dataset] if cfg.eval_dataset is not None else [])
        for spec in specs:
            try:
                rows, label, found, indices = self._indexed_pairs(spec)
                if spec is cfg.dataset:  # the training pairs (held-out pairs are only scored)
                    found = [*found, *preflight_rows(ctx, rows, indices, source=label, lengths_of=pair_lengths,
                                                     limit=cfg.max_length, policy=cfg.overlength,
                                                     template=cfg.chat_template, what="pair")]
            except LadderError as exc:
                problems.append(f"stage {self.name!r}: {exc}")
                continue
            problems += [f"stage {self.name!r}: {p}" for p in found]
        problems += [f"stage {self.name!r}: {p}" for p in self._trainer_kwargs_problems()]
        return problems

    def _trainer_kwargs_problems(self) -> list[str]:
        import dataclasses

        from trl import DPOConfig

        known = {f.name for f in dataclasses.fields(DPOConfig)}
        unknown = sorted(set(self.config.trainer_kwargs) - known)
        if not unknown:
            return []
        plural = "s" if len(unknown) > 1 else ""
        names = ", ".join(map(repr, unknown))
        message = (
            f"trainer_kwargs: unknown trl.DPOConfig setting{plural} {names}; check the spelling against TRL's "
            "DPOConfig documentation"
        )
        return [message]

    def fingerprint_data(self) -> Any:
        cfg: DPOStageConfig = self.config
        rows, _label, _problems = self._pairs(cfg.dataset)
        held = self._pairs(cfg.eval_dataset)[0] if cfg.eval_dataset is not None else None
        return {"dataset": content_hash(rows), "eval_dataset": content_hash(held) if held is not None else None}

    def build_trainer(self, checkpoint: Checkpoint, ctx: StageContext) -> tuple[Any, dict[str, Any]]:
        """The configured ``trl.DPOTrainer`` (not yet trained) and the facts :meth:`run` needs.

        Public so the exact data the trainer sees (prompt/chosen/rejected ids) can be inspected.
        """
        from datasets import Dataset
        from trl import DPOConfig, DPOTrainer

        from ladder.training.common import log_callback, quiet_trainer, trainer_args_from
        from ladder.training.lora import peft_config
        from ladder.training.models import load_model, load_tokenizer

        cfg: DPOStageConfig = self.config
        train, heldout, label, train_indices = self._data(ctx.seed)
        tokenizer = load_tokenizer(checkpoint, ctx.options)
        template = cfg.chat_template or tokenizer.chat_template
        if isinstance(template, dict):
            template = template.get("default")
        if not template:
            raise ConfigError(
                f"stage {self.name!r}: the input checkpoint {checkpoint.path!r} has no chat template, so the "
                "pairs cannot be rendered; run SFT before DPO, or set chat_template in the DPO stage"
            )
        tokenizer.chat_template = template
        # Measured with this checkpoint's tokenizer and template; over-length pairs per `overlength`.
        train, data_checks = enforce_rows(tokenizer, train, train_indices, source=label, lengths_of=pair_lengths,
                                          limit=cfg.max_length, policy=cfg.overlength, template=template,
                                          what="pair")
        model = load_model(checkpoint, ctx.options)
        eos_ids = input_eos_ids(checkpoint, model, tokenizer, template)  # before TRL touches the configs

        args = DPOConfig(
            **trainer_args_from(
                ctx,
                cfg,
                dataset_num_proc=None,
                beta=cfg.beta,
                max_length=cfg.max_length,
            )
        )
        # TRL's conversational format: answers as one-message lists, rendered with the template.
        trl_rows = [
            {
                "prompt": r["prompt"],
                "chosen": [{"role": "assistant", "content": r["chosen"]}],
                "rejected": [{"role": "assistant", "content": r["rejected"]}],
            }
            for r in train
        ]
        # ref_model=None + peft_config: TRL computes the reference by disabling the adapter
        # (dpo_trainer.py keeps `self.ref_model = None` for PEFT models); no second copy.
        trainer = DPOTrainer(
            model=model,
            ref_model=None,
            args=args,
            train_dataset=Dataset.from_list(trl_rows),
            processing_class=tokenizer,
            peft_config=peft_config(cfg.lora),
            callbacks=[log_callback(ctx)],
        )
        quiet_trainer(trainer)
        facts = {
            "train": train,
            "heldout": heldout,
            "label": label,
            "tokenizer": tokenizer,
            "template": template,
            "eos_ids": eos_ids,
            "beta": args.beta,
            "data_checks": data_checks,
        }
        return trainer, facts

    def run(self, checkpoint: Checkpoint, ctx: StageContext) -> Checkpoint:
        from ladder.evaluate import heldout_preference
        from ladder.training.common import (
            last_complete_trainer_checkpoint,
            main_process_model,
            publish_policy,
            train_summary,
        )

        cfg: DPOStageConfig = self.config
        trainer, facts = self.build_trainer(checkpoint, ctx)
        tokenizer, heldout, beta = facts["tokenizer"], facts["heldout"], facts["beta"]
        # Before train(): the model is not yet wrapped for distribution, every process holds it whole.
        before, reference_scores = heldout_preference(adapter_off(trainer.model), tokenizer, heldout, beta=beta,
                                                      batch_size=cfg.eval_batch_size)

        resume = last_complete_trainer_checkpoint(ctx.trainer_dir)
        if resume is not None:
            logger.info("resuming %s from %s", self.name, resume)
        start = time.perf_counter()
        trainer.train(resume_from_checkpoint=str(resume) if resume else None)
        runtime = time.perf_counter() - start
        tokens = _trained_tokens(trainer, cfg)
        trained = main_process_model(trainer, checkpoint, ctx)  # every process of a launch calls it
        if trained is None:  # not the main process: the main one measures and publishes
            return checkpoint

        after, _ = heldout_preference(trained, tokenizer, heldout, reference_scores=reference_scores, beta=beta,
                                      batch_size=cfg.eval_batch_size)
        if before is not None and after is not None:
            logger.info(
                "%s held-out preference accuracy %.3f -> %.3f (log-prob accuracy %.3f -> %.3f, %d pairs)",
                self.name, before["accuracy"], after["accuracy"], before["logp_accuracy"],
                after["logp_accuracy"], after["n"],
            )
        train = facts["train"]
        verify = [
            tokenizer.apply_chat_template([*r["prompt"], {"role": "assistant", "content": r["chosen"]}],
                                          tokenize=False)
            for r in train[:3]
        ]
        stage_metrics: dict[str, Any] = {
            "rows": len(train),
            "heldout_rows": len(heldout),
            "dataset": facts["label"],
            "beta": beta,
            "heldout_before": before,
            "heldout_after": after,
            "data_checks": facts["data_checks"],
        }
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
            train=train_summary(trainer.state.log_history, runtime_s=runtime, tokens=tokens),
            stage_metrics=stage_metrics,
        )
