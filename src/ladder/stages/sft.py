"""Supervised fine-tuning (SFT) on TRL's ``SFTTrainer`` (LoRA or full), merged and verified.

Teaches form: answering instead of continuing, the chat format, stopping at the end of a turn.
Loss is on assistant tokens only by default (labels are -100 everywhere else).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, ClassVar

import attrs

from ladder.data.length import OVERLENGTH_POLICIES, LengthRule, chat_lengths, enforce_rows, kept_indices, preflight_rows
from ladder.data.loading import as_spec, content_hash, load_rows
from ladder.data.sft import normalize_sft_rows, sft_dataset
from ladder.errors import DataError
from ladder.settings import TrainingSettings, setting
from ladder.stage import BaseStage, StageContext, StageResult
from ladder.training.templates import named_template

if TYPE_CHECKING:
    from ladder.checkpoint import Checkpoint

__all__ = ["SFT", "SFTStageConfig"]

logger = logging.getLogger(__name__)


@attrs.frozen(kw_only=True)
class SFTStageConfig(TrainingSettings):
    """Settings of the SFT stage (defaults: the reference recipe)."""

    trl_config: ClassVar[str] = "SFTConfig"

    dataset: Any = setting(
        help="Alpaca, messages or prompt/completion rows: file, preset, hub id, list or Dataset", data=True
    )
    max_length: int = setting(1024, validator=attrs.validators.gt(0), help="max tokens per row")
    overlength: str = setting(
        "error", choices=OVERLENGTH_POLICIES,
        help="rows longer than max_length: error (stop before training), drop (leave them out) or truncate "
        "(cut them, keeping the start); dropped and truncated rows are logged and counted in metrics.json",
    )
    assistant_only_loss: bool = setting(
        True, validator=attrs.validators.instance_of(bool), help="loss on assistant tokens only"
    )
    packing: bool = setting(
        False, validator=attrs.validators.instance_of(bool),
        help="pack rows into max_length blocks (TRL's best-fit decreasing, padding-free): no padding, each row "
        "attends only to itself, labels (assistant-only) kept; per_device_train_batch_size then counts blocks",
    )
    chat_template: str | None = setting(
        None, path="text",
        help="chat template to train with instead of the model's: text, a .jinja file, or a format's name for a "
        "model without one (chatml, llama3: their special tokens are added and trained)",
    )


class SFT(BaseStage):
    """Supervised fine-tuning on chat data (assistant-only loss), merged and verified."""

    kind: ClassVar[str] = "sft"
    Config: ClassVar[type] = SFTStageConfig

    def _indexed_rows(self) -> tuple[list[dict[str, Any]], str, list[DataError], list[int]]:
        """Normalised rows, label, problems, and each kept row's number in the file (loaded once)."""

        def load() -> tuple[list[dict[str, Any]], str, list[DataError], list[int]]:
            rows, label = load_rows(as_spec(self.config.dataset))
            normalised, problems = normalize_sft_rows(rows, label)
            return normalised, label, problems, kept_indices(len(rows), problems)

        return self.cached("rows", load)

    def check(self, ctx: StageContext) -> list[str]:
        cfg: SFTStageConfig = self.config
        rows, label, problems, indices = self._indexed_rows()
        template = getattr(named_template(cfg.chat_template), "text", cfg.chat_template)  # `chatml` names one
        return [str(p) for p in problems] + preflight_rows(ctx, rows, indices, source=label, rule=self._length_rule(),
                                                           template=template)

    def _length_rule(self) -> LengthRule:
        cfg: SFTStageConfig = self.config
        return LengthRule(lengths_of=chat_lengths, limit=cfg.max_length, policy=cfg.overlength)

    def fingerprint_data(self) -> Any:
        return content_hash(self._indexed_rows()[0])

    def build_trainer(self, checkpoint: Checkpoint, ctx: StageContext) -> tuple[Any, dict[str, Any]]:
        """The configured ``trl.SFTTrainer`` (not yet trained) and facts :meth:`run` needs.

        Public so the exact data the trainer sees (tokens, labels) can be inspected.
        """
        from trl import SFTConfig, SFTTrainer

        from ladder.training.args import trainer_args_from
        from ladder.training.chat_format import eos_token_ids
        from ladder.training.templates.choice import completion_rows, sft_format
        from ladder.training.templates.tokens import add_special_tokens, fit_embeddings, tokens_to_train, \
            train_token_rows
        from ladder.training.lora import peft_config_for
        from ladder.training.models import load_tokenizer
        from ladder.training.modes import load_training_model

        cfg: SFTStageConfig = self.config
        rows, label, problems, indices = self._indexed_rows()
        if problems:  # validate() ran already; this guards direct callers
            raise problems[0]
        tokenizer = load_tokenizer(checkpoint, ctx.options)
        # The template and how the loss is masked (generation markers, or prompt/completion rows).
        fmt = sft_format(tokenizer, cfg.chat_template, assistant_only_loss=cfg.assistant_only_loss,
                         chats=[r["messages"] for r in rows])
        template = tokenizer.chat_template = fmt.template
        added = add_special_tokens(tokenizer, fmt.special_tokens)  # a named format on a base model
        # Measured with this checkpoint's tokenizer and template; over-length rows per `overlength`.
        rows, data_checks = enforce_rows(tokenizer, rows, indices, source=label, rule=self._length_rule(),
                                         template=template)
        eos_ids = eos_token_ids(tokenizer, template)  # before TRL may swap the tokenizer's eos
        model = load_training_model(checkpoint, ctx, cfg)
        fit_embeddings(model, tokenizer)
        peft_config = peft_config_for(cfg)  # under LoRA, new or untrained chat tokens still train
        train_token_rows(peft_config, model, tokens_to_train(model, tokenizer, template, added))
        # Packing: best-fit decreasing into max_length blocks, padding-free; the labels (assistant-only)
        # are built per row before packing, and each row attends to itself only (position_ids).
        packing = {"packing": True, "packing_strategy": "bfd"} if cfg.packing else {}
        args = SFTConfig(**trainer_args_from(ctx, cfg, dataset_num_proc=None, max_length=cfg.max_length,
                                             assistant_only_loss=fmt.loss == "assistant",
                                             completion_only_loss=fmt.loss == "completion", **packing))
        trainer = SFTTrainer(
            model=model,
            args=args,
            # Messages kept exactly (tool calls differ row to row); one row per assistant turn
            # under prompt/completion masking.
            train_dataset=sft_dataset(completion_rows(rows) if fmt.loss == "completion" else rows),
            processing_class=tokenizer,
            peft_config=peft_config,
        )
        chat_format = {"template": fmt.source, "loss": fmt.loss, "added_tokens": added}
        facts = {"rows": rows, "label": label, "tokenizer": tokenizer, "template": template, "eos_ids": eos_ids,
                 "data_checks": data_checks, "chat_format": chat_format}
        return trainer, facts

    def run(self, checkpoint: Checkpoint, ctx: StageContext) -> StageResult:
        from ladder.training.fit import fit
        from ladder.training.publish import publish

        cfg: SFTStageConfig = self.config
        trainer, facts = self.build_trainer(checkpoint, ctx)
        rows, tokenizer = facts["rows"], facts["tokenizer"]
        fitted = fit(trainer, ctx, checkpoint)  # every process of a launch calls it
        if fitted is None:  # not the main process: the main one publishes, this result is discarded
            return StageResult(checkpoint)
        tokens = fitted.trained_tokens
        if tokens is None:  # a TRL that does not count them: the rows' tokens, once per epoch
            tokens = sum(len(ids) for ids in trainer.train_dataset["input_ids"])
            tokens = int(tokens * max(cfg.num_train_epochs, 1.0)) if cfg.max_steps < 0 else tokens
        verify = [tokenizer.apply_chat_template(r["messages"], tokenize=False) for r in rows[:3]]
        out = publish(fitted.model, tokenizer, ctx, parent=checkpoint, config=cfg, chat_template=facts["template"],
                      eos_ids=facts["eos_ids"], verify_texts=verify)
        stage_metrics = {"rows": len(rows), "dataset": facts["label"], "data_checks": facts["data_checks"],
                         "chat_format": facts["chat_format"], **out.metrics}
        return StageResult(out.checkpoint, {"train": fitted.summary(tokens=tokens), "stage_metrics": stage_metrics})
