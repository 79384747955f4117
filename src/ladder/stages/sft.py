"""Supervised fine-tuning (SFT) on TRL's ``SFTTrainer`` with a LoRA, merged and verified.

Teaches form: answering instead of continuing, the chat format, stopping at the end of a turn.
Loss is on assistant tokens only by default (labels are -100 everywhere else).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, ClassVar

import attrs

from ladder.data.length import OVERLENGTH_POLICIES, chat_lengths, enforce_rows, kept_indices, preflight_rows
from ladder.data.loading import as_spec, content_hash, load_rows
from ladder.data.sft import normalize_sft_rows, sft_dataset
from ladder.errors import DataError, LadderError
from ladder.stage import BaseStage, StageContext, config_to_dict
from ladder.training.lora import LoraSettings

if TYPE_CHECKING:
    from ladder.checkpoint import Checkpoint

__all__ = ["SFT", "SFTStageConfig"]

logger = logging.getLogger(__name__)

_ge0 = attrs.validators.ge(0)
_gt0 = attrs.validators.gt(0)


def _lora(value: Any) -> LoraSettings:
    if isinstance(value, LoraSettings):
        return value
    return LoraSettings(**dict(value or {}))


@attrs.frozen(kw_only=True)
class SFTStageConfig:
    """Settings of the SFT stage (defaults: the reference recipe)."""

    dataset: Any = attrs.field(
        metadata={
            "help": "Alpaca, messages or prompt/completion rows: file, preset, hub id, list or Dataset",
            "data": True,
        }
    )
    finetuning: str = attrs.field(
        default="lora",
        validator=attrs.validators.in_(("lora", "full")),
        metadata={"help": "lora (train an adapter, then merge) or full (all weights)"},
    )
    lora: LoraSettings = attrs.field(factory=LoraSettings, converter=_lora, metadata={"help": "LoRA settings"})
    learning_rate: float = attrs.field(default=2e-4, validator=_gt0, metadata={"help": "peak learning rate"})
    num_train_epochs: float = attrs.field(default=1.0, validator=_gt0, metadata={"help": "epochs over the data"})
    max_steps: int = attrs.field(
        default=-1,
        validator=attrs.validators.instance_of(int),
        metadata={"help": "stop after N optimizer steps (-1: use epochs)"},
    )
    per_device_train_batch_size: int = attrs.field(default=4, validator=_gt0, metadata={"help": "batch size"})
    gradient_accumulation_steps: int = attrs.field(default=1, validator=_gt0, metadata={"help": "accumulation"})
    max_length: int = attrs.field(default=1024, validator=_gt0, metadata={"help": "max tokens per row"})
    overlength: str = attrs.field(
        default="error",
        validator=attrs.validators.in_(OVERLENGTH_POLICIES),
        metadata={
            "help": "rows longer than max_length: error (stop before training), drop (leave them out) or truncate "
            "(cut them, keeping the start); dropped and truncated rows are logged and counted in metrics.json"
        },
    )
    assistant_only_loss: bool = attrs.field(
        default=True, validator=attrs.validators.instance_of(bool), metadata={"help": "loss on assistant tokens only"}
    )
    chat_template: str | None = attrs.field(
        default=None, metadata={"help": "chat template (text) with {% generation %} markers, to override"}
    )
    precision: str = attrs.field(
        default="auto",
        validator=attrs.validators.in_(("auto", "bf16", "fp16", "fp32")),
        metadata={"help": "auto: bf16 on GPUs that support it, fp32 on CPU; bf16 on a CPU autocasts where it has native bf16"},
    )
    save_steps: int = attrs.field(default=50, validator=_ge0, metadata={"help": "resumable checkpoint every N steps"})
    trainer_kwargs: dict[str, Any] = attrs.field(
        factory=dict, converter=dict, metadata={"help": "passed through to trl.SFTConfig"}
    )


class SFT(BaseStage):
    """Supervised fine-tuning on chat data with a LoRA (assistant-only loss), merged and verified."""

    kind: ClassVar[str] = "sft"
    Config: ClassVar[type] = SFTStageConfig

    def _rows(self) -> tuple[list[dict[str, Any]], str, list[DataError]]:
        rows, label, problems, _indices = self._indexed_rows()
        return rows, label, problems

    def _indexed_rows(self) -> tuple[list[dict[str, Any]], str, list[DataError], list[int]]:
        """Normalised rows, label, problems, and each kept row's number in the file."""
        rows, label = load_rows(as_spec(self.config.dataset))
        normalised, problems = normalize_sft_rows(rows, label)
        return normalised, label, problems, kept_indices(len(rows), problems)

    def validate(self, ctx: StageContext) -> list[str]:
        cfg: SFTStageConfig = self.config
        try:
            rows, label, problems, indices = self._indexed_rows()
            found = [str(p) for p in problems]
            found += preflight_rows(ctx, rows, indices, source=label, lengths_of=chat_lengths, limit=cfg.max_length,
                                    policy=cfg.overlength, template=cfg.chat_template)
        except LadderError as exc:
            return [f"stage {self.name!r}: {exc}"]
        return [f"stage {self.name!r}: {p}" for p in found]

    def fingerprint_data(self) -> Any:
        rows, _label, _problems = self._rows()
        return content_hash(rows)

    def build_trainer(self, checkpoint: Checkpoint, ctx: StageContext) -> tuple[Any, dict[str, Any]]:
        """The configured ``trl.SFTTrainer`` (not yet trained) and facts :meth:`run` needs.

        Public so the exact data the trainer sees (tokens, labels) can be inspected.
        """
        from trl import SFTConfig, SFTTrainer

        from ladder.training.chat_template import (
            eos_token_ids,
            training_chat_template,
            warn_if_end_of_turn_untrained,
        )
        from ladder.training.common import log_callback, quiet_trainer, trainer_args_from
        from ladder.training.lora import peft_config
        from ladder.training.models import load_model, load_tokenizer

        cfg: SFTStageConfig = self.config
        rows, label, problems, indices = self._indexed_rows()
        if problems:  # validate() ran already; this guards direct callers
            raise problems[0]
        tokenizer = load_tokenizer(checkpoint, ctx.options)
        template = (
            training_chat_template(tokenizer, cfg.chat_template)
            if cfg.assistant_only_loss
            else (cfg.chat_template or tokenizer.chat_template)
        )
        tokenizer.chat_template = template
        # Measured with this checkpoint's tokenizer and template; over-length rows per `overlength`.
        rows, data_checks = enforce_rows(tokenizer, rows, indices, source=label, lengths_of=chat_lengths,
                                         limit=cfg.max_length, policy=cfg.overlength, template=template)
        eos_ids = eos_token_ids(tokenizer, template)  # before TRL may swap the tokenizer's eos
        model = load_model(checkpoint, ctx.options)
        lora = cfg.finetuning == "lora"
        if lora:
            trains_embeddings = bool({"lm_head", "embed_tokens"} & set(cfg.lora.modules_to_save))
            warn_if_end_of_turn_untrained(model, tokenizer, trains_embeddings=trains_embeddings)

        args = SFTConfig(
            **trainer_args_from(
                ctx,
                cfg,
                dataset_num_proc=None,
                max_length=cfg.max_length,
                assistant_only_loss=cfg.assistant_only_loss,
            )
        )
        trainer = SFTTrainer(
            model=model,
            args=args,
            train_dataset=sft_dataset(rows),  # messages kept exactly (tool calls differ row to row)
            processing_class=tokenizer,
            peft_config=peft_config(cfg.lora) if lora else None,
            callbacks=[log_callback(ctx)],
        )
        quiet_trainer(trainer)
        facts = {"rows": rows, "label": label, "tokenizer": tokenizer, "template": template, "eos_ids": eos_ids,
                 "data_checks": data_checks}
        return trainer, facts

    def run(self, checkpoint: Checkpoint, ctx: StageContext) -> Checkpoint:
        from ladder.training.common import (
            last_complete_trainer_checkpoint,
            main_process_model,
            publish_policy,
            train_summary,
        )

        cfg: SFTStageConfig = self.config
        trainer, facts = self.build_trainer(checkpoint, ctx)
        rows, label, tokenizer = facts["rows"], facts["label"], facts["tokenizer"]
        resume = last_complete_trainer_checkpoint(ctx.trainer_dir)
        if resume is not None:
            logger.info("resuming %s from %s", self.name, resume)
        start = time.perf_counter()
        trainer.train(resume_from_checkpoint=str(resume) if resume else None)
        runtime = time.perf_counter() - start
        tokens = sum(len(ids) for ids in trainer.train_dataset["input_ids"])
        tokens = int(tokens * max(cfg.num_train_epochs, 1.0)) if cfg.max_steps < 0 else tokens
        trained = main_process_model(trainer, checkpoint, ctx)  # every process of a launch calls it
        if trained is None:  # not the main process: the main one publishes, this result is discarded
            return checkpoint
        verify = [tokenizer.apply_chat_template(r["messages"], tokenize=False) for r in rows[:3]]
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
            stage_metrics={"rows": len(rows), "dataset": label, "data_checks": facts["data_checks"]},
        )
