"""Continued pre-training (CPT): next-token loss on raw text, merged and verified.

CPT teaches knowledge and style (a domain's vocabulary, a language, a code base), not the chat
format: the loss is on every token of every document, and the chat template is left as the input
checkpoint had it. Run it before SFT (``cpt -> sft -> dpo``). This is ladder's example of a
third-party stage: it imports only :mod:`ladder.sdk` (docs/writing-a-stage.md walks through it).
Importing it is cheap: TRL is imported inside ``run``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import attrs

from ladder import sdk
from ladder_cpt.data import load_texts

__all__ = ["CPT", "CPTStageConfig"]

# Documents can be book-length; the merge check only needs a few hundred tokens of each.
_VERIFY_CHARS = 2000


@attrs.frozen(kw_only=True)
class CPTStageConfig(sdk.TrainingSettings):
    """Settings of the CPT stage: the shared training settings, plus these (keys under ``- stage: cpt``)."""

    trl_config: ClassVar[str] = "SFTConfig"  # what trainer_kwargs are checked against in pre-flight

    dataset: Any = sdk.setting(
        help="raw text: rows with a `text` field (.jsonl/.json/.parquet/.csv, hub id, list, Dataset) or a .txt "
        "file whose documents are separated by blank lines",
        data=True,  # fingerprinted by content (fingerprint_data), resolved against a recipe's folder
    )
    learning_rate: float = sdk.training_default("learning_rate", 1e-4)
    max_length: int = sdk.setting(
        1024, validator=attrs.validators.gt(0), help="tokens per training sequence (the packing block size)"
    )
    packing: bool = sdk.setting(
        True,
        validator=attrs.validators.instance_of(bool),
        help="pack documents into max_length blocks (long ones are split, none cross-attend); false: one "
        "document per sequence, truncated at max_length",
    )


class CPT(sdk.BaseStage):
    """Continued pre-training on raw text. ``CPT(dataset="corpus.txt")``; see :class:`CPTStageConfig`."""

    kind: ClassVar[str] = "cpt"
    Config: ClassVar[type] = CPTStageConfig

    def _texts(self) -> tuple[list[str], str, list[sdk.DataError]]:
        return self.cached("texts", lambda: load_texts(self.config.dataset))  # read once per run

    def check(self, ctx: sdk.StageContext) -> list[str]:
        """Every bad row (BaseStage.validate adds the shared settings' checks and the stage's name)."""
        return [str(p) for p in self._texts()[2]]

    def fingerprint_data(self) -> Any:
        """Hash of the documents' content: editing the corpus re-runs the stage, renaming it does not."""
        return sdk.content_hash([{"text": t} for t in self._texts()[0]])

    def run(self, checkpoint: sdk.Checkpoint, ctx: sdk.StageContext) -> sdk.StageResult:
        """Train on the text, then merge, verify and publish it into ``ctx.work_dir``."""
        from datasets import Dataset
        from trl import SFTConfig, SFTTrainer

        cfg: CPTStageConfig = self.config
        texts, label, problems = self._texts()
        if problems:  # validate() reported these already; this guards direct callers
            raise problems[0]
        tokenizer = sdk.load_tokenizer(checkpoint, ctx.options)
        # A `text` column makes this language modelling for TRL: loss on every token, EOS after each
        # document. bfd_split packing splits a long document across blocks instead of truncating it.
        args = SFTConfig(**sdk.trainer_args_from(
            ctx, cfg, dataset_text_field="text", completion_only_loss=False, max_length=cfg.max_length,
            packing=cfg.packing, packing_strategy="bfd_split", dataset_num_proc=None))
        trainer = SFTTrainer(model=sdk.load_model(checkpoint, ctx.options), args=args,
                             train_dataset=Dataset.from_list([{"text": t} for t in texts]),
                             processing_class=tokenizer, peft_config=sdk.peft_config_for(cfg))
        # Resumes an interrupted attempt, trains, and gathers the weights on the main process.
        fitted = sdk.fit(trainer, ctx, checkpoint)
        if fitted is None:  # another process of a multi-GPU launch: the main one publishes
            return sdk.StageResult(checkpoint)
        tokens = sum(len(ids) for ids in trainer.train_dataset["input_ids"])  # one epoch of the corpus
        # CPT does not touch the chat format: keep the input's template and stop tokens.
        out = sdk.publish(fitted.model, tokenizer, ctx, parent=checkpoint, config=cfg,
                          chat_template=tokenizer.chat_template, eos_ids=checkpoint.eos_token_ids,
                          verify_texts=[t[:_VERIFY_CHARS] for t in texts[:3]])
        metrics = {"train": fitted.summary(tokens=tokens),
                   "stage_metrics": {"documents": len(texts), "dataset": label, **out.metrics}}
        return sdk.StageResult(out.checkpoint, metrics)
