"""Continued pre-training (CPT): next-token loss on raw text, with a LoRA merged and verified.

CPT teaches knowledge and style (a domain's vocabulary, a language, a code base), not the
chat format: the loss is on every token of every document, and the chat template is left as
the input checkpoint had it. Run it before SFT (``cpt -> sft -> dpo``).

This module is ladder's example of a third-party stage; ``docs/writing-a-stage.md`` walks
through it. Importing it is cheap: torch, transformers and TRL are imported inside ``run``.
"""

from __future__ import annotations

import logging
import os
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import attrs

from ladder.data.loading import as_spec, content_hash, load_rows
from ladder.errors import DataError, LadderError
from ladder.stage import BaseStage, StageContext, config_to_dict
from ladder.training.lora import LoraSettings

if TYPE_CHECKING:
    from ladder.checkpoint import Checkpoint

__all__ = ["CPT", "CPTStageConfig", "load_texts"]

logger = logging.getLogger(__name__)

_gt0 = attrs.validators.gt(0)

# Documents can be book-length; the merge check only needs a few hundred tokens of each.
_VERIFY_CHARS = 2000


def _lora(value: Any) -> LoraSettings:
    # YAML gives a mapping; Python callers may pass LoraSettings.
    return value if isinstance(value, LoraSettings) else LoraSettings(**dict(value or {}))


@attrs.frozen(kw_only=True)
class CPTStageConfig:
    """Settings of the CPT stage; every field is a key under ``- stage: cpt`` in a recipe."""

    dataset: Any = attrs.field(
        metadata={
            "help": "raw text: rows with a `text` field (.jsonl/.json/.parquet/.csv, hub id, list, "
            "Dataset) or a .txt file whose documents are separated by blank lines",
            # Fingerprinted by content (fingerprint_data), not by where it was read from.
            "data": True,
        }
    )
    lora: LoraSettings = attrs.field(factory=LoraSettings, converter=_lora, metadata={"help": "LoRA settings"})
    learning_rate: float = attrs.field(default=1e-4, validator=_gt0, metadata={"help": "peak learning rate"})
    num_train_epochs: float = attrs.field(default=1.0, validator=_gt0, metadata={"help": "epochs over the text"})
    max_steps: int = attrs.field(
        default=-1, validator=attrs.validators.ge(-1), metadata={"help": "stop after N optimizer steps (-1: epochs)"}
    )
    per_device_train_batch_size: int = attrs.field(default=4, validator=_gt0, metadata={"help": "batch size"})
    gradient_accumulation_steps: int = attrs.field(default=1, validator=_gt0, metadata={"help": "accumulation"})
    max_length: int = attrs.field(
        default=1024, validator=_gt0, metadata={"help": "tokens per training sequence (the packing block size)"}
    )
    packing: bool = attrs.field(
        default=True,
        validator=attrs.validators.instance_of(bool),
        metadata={
            "help": "pack documents into max_length blocks (long ones are split, none cross-attend); "
            "false: one document per sequence, truncated at max_length"
        },
    )
    precision: str = attrs.field(
        default="auto",
        validator=attrs.validators.in_(("auto", "bf16", "fp16", "fp32")),
        metadata={"help": "auto: bf16 on GPUs that support it, fp32 on CPU"},
    )
    save_steps: int = attrs.field(
        default=50, validator=attrs.validators.ge(0), metadata={"help": "resumable checkpoint every N steps (0: none)"}
    )
    trainer_kwargs: dict[str, Any] = attrs.field(
        factory=dict, converter=dict, metadata={"help": "passed through to trl.SFTConfig"}
    )


def _read_txt(path: Path) -> list[dict[str, Any]]:
    """Documents of a text file, separated by one or more blank lines."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise DataError("no such file; give an existing .txt file", source=str(path)) from exc
    except UnicodeDecodeError as exc:
        raise DataError(f"not UTF-8 text ({exc.reason}); re-encode it as UTF-8", source=str(path)) from exc
    except OSError as exc:
        raise DataError(f"cannot read it: {exc.strerror}", source=str(path)) from exc
    docs = [d.strip("\n") for d in re.split(r"\n[ \t]*\n", text)]
    rows = [{"text": d} for d in docs if d.strip()]
    if not rows:
        raise DataError("no text in the file; put documents in it, separated by blank lines", source=str(path))
    return rows


def load_texts(dataset: Any) -> tuple[list[str], str, list[DataError]]:
    """Load the documents and check every row. Returns ``(texts, label, problems)``.

    Args:
        dataset: anything :func:`ladder.data.loading.load_rows` accepts (with ``limit`` and
            ``seed`` honoured), or a ``.txt`` file.

    Raises:
        DataError: the dataset cannot be read at all (row problems are returned instead).
    """
    spec = as_spec(dataset)
    if isinstance(spec.source, (str, os.PathLike)) and Path(spec.source).suffix.lower() == ".txt":
        path = Path(spec.source).expanduser()
        # Reuse load_rows on the parsed documents so `limit`/`seed` mean the same for every source.
        rows, _ = load_rows(attrs.evolve(spec, source=_read_txt(path)))
        label = str(spec.source)
    else:
        rows, label = load_rows(spec)
    texts: list[str] = []
    problems: list[DataError] = []
    for i, row in enumerate(rows):
        value = row.get("text")
        if value is None:
            problems.append(DataError("missing field; CPT rows need their raw text in `text`", source=label, row=i,
                                      field="text"))
        elif not isinstance(value, str):
            problems.append(DataError(f"expected a string, got {type(value).__name__}", source=label, row=i,
                                      field="text"))
        elif not value.strip():
            problems.append(DataError("empty text; remove the row", source=label, row=i, field="text"))
        else:
            texts.append(value)
    return texts, label, problems


class CPT(BaseStage):
    """Continued pre-training on raw text. ``CPT(dataset="corpus.txt")``; see :class:`CPTStageConfig`."""

    kind: ClassVar[str] = "cpt"
    Config: ClassVar[type] = CPTStageConfig

    def validate(self, ctx: StageContext) -> list[str]:
        """Load the data and report every bad row; never raises for a user error."""
        try:
            _texts, _label, problems = load_texts(self.config.dataset)
        except LadderError as exc:
            return [f"stage {self.name!r}: {exc}"]
        return [f"stage {self.name!r}: {p}" for p in problems]

    def fingerprint_data(self) -> Any:
        """Hash of the documents' content: editing the corpus re-runs the stage, renaming it does not."""
        texts, _label, _problems = load_texts(self.config.dataset)
        return content_hash([{"text": t} for t in texts])

    def run(self, checkpoint: Checkpoint, ctx: StageContext) -> Checkpoint:
        """Train a LoRA on the text, then merge, verify and publish it into ``ctx.work_dir``."""
        from datasets import Dataset
        from trl import SFTConfig, SFTTrainer

        from ladder.training.common import (
            last_complete_trainer_checkpoint,
            log_callback,
            publish_policy,
            quiet_trainer,
            train_summary,
            trainer_args_from,
        )
        from ladder.training.lora import peft_config
        from ladder.training.models import load_model, load_tokenizer

        cfg: CPTStageConfig = self.config
        texts, label, problems = load_texts(cfg.dataset)
        if problems:  # validate() reported these already; this guards direct callers
            raise problems[0]
        tokenizer = load_tokenizer(checkpoint, ctx.options)
        model = load_model(checkpoint, ctx.options)
        args = SFTConfig(
            **trainer_args_from(
                ctx,
                cfg,
                # A `text` column makes this a language-modelling dataset for TRL: loss on
                # every token, EOS appended to each document.
                dataset_text_field="text",
                completion_only_loss=False,
                max_length=cfg.max_length,
                packing=cfg.packing,
                # bfd_split keeps every token: a document longer than a block is split,
                # not truncated; documents packed together do not attend to each other.
                packing_strategy="bfd_split",
                dataset_num_proc=None,
            )
        )
        trainer = SFTTrainer(
            model=model,
            args=args,
            train_dataset=Dataset.from_list([{"text": t} for t in texts]),
            processing_class=tokenizer,
            peft_config=peft_config(cfg.lora),
            callbacks=[log_callback(ctx)],  # -> ctx.log -> trainer_log.jsonl and the progress display
        )
        quiet_trainer(trainer)  # the library never prints; logs reach the user through ctx.log
        resume = last_complete_trainer_checkpoint(ctx.trainer_dir)
        if resume is not None:
            logger.info("resuming %s from %s", self.name, resume)
        start = time.perf_counter()
        trainer.train(resume_from_checkpoint=str(resume) if resume else None)
        runtime = time.perf_counter() - start
        tokens = sum(len(ids) for ids in trainer.train_dataset["input_ids"])  # one epoch of the corpus
        # Saves adapter/, merges it and verifies the merge, saves model/, writes metrics.json and
        # the model card, and returns the new Checkpoint (parent=checkpoint; the input is untouched).
        return publish_policy(
            trainer.model,
            tokenizer,
            ctx,
            stage_name=self.name,
            stage_kind=self.kind,
            parent=checkpoint,
            config=config_to_dict(cfg),
            # CPT does not touch the chat format: keep the input's template and stop tokens.
            chat_template=tokenizer.chat_template,
            eos_ids=checkpoint.eos_token_ids,
            verify_texts=[t[:_VERIFY_CHARS] for t in texts[:3]],
            train=train_summary(trainer.state.log_history, runtime_s=runtime, tokens=tokens),
            stage_metrics={"documents": len(texts), "dataset": label},
        )
