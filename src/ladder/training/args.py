"""The arguments every TRL trainer ladder builds shares, and how its logs reach ladder."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ladder.tracking import training_arguments
from ladder.training.models import device_name, precision

if TYPE_CHECKING:
    from transformers import TrainerCallback

    from ladder.stage import StageContext

__all__ = ["checkpointing_setting", "trainer_args", "trainer_args_from", "log_callback", "quiet_trainer"]


def trainer_args(
    ctx: StageContext,
    *,
    learning_rate: float,
    num_train_epochs: float,
    max_steps: int,
    per_device_train_batch_size: int,
    gradient_accumulation_steps: int,
    save_steps: int,
    precision_name: str = "auto",
    trainer_kwargs: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Keyword arguments shared by every TRL config ladder builds.

    The run's trackers (``report_to``) get the stage's tracked run: ``report_to``, ``run_name``
    ``<run>/<stage>`` and the environment TRL's integrations read (:func:`ladder.tracking.training_arguments`).
    ``trainer_kwargs`` from the recipe win over ladder's choices (pass-through to TRL).
    """
    args: dict[str, Any] = {
        "output_dir": str(ctx.trainer_dir),
        "learning_rate": learning_rate,
        "num_train_epochs": num_train_epochs,
        "max_steps": max_steps,
        "per_device_train_batch_size": per_device_train_batch_size,
        "gradient_accumulation_steps": gradient_accumulation_steps,
        "logging_steps": 1,
        "save_strategy": "steps" if save_steps > 0 else "no",
        "save_steps": save_steps if save_steps > 0 else 500,
        "save_total_limit": 2,
        **training_arguments(ctx),
        "seed": ctx.seed,
        "data_seed": ctx.seed,
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
        "dataloader_pin_memory": device_name() == "cuda",
        # TRL turns activation checkpointing on by default; it saves GPU memory but makes small
        # CPU runs ~2.5x slower, so it stays on only where memory is the constraint.
        checkpointing_setting(): device_name() == "cuda",
        **precision(precision_name),
    }
    args.update(dict(trainer_kwargs or {}))
    return args


def checkpointing_setting() -> str:
    """The ``TrainingArguments`` name of activation checkpointing in the installed transformers:
    ``activation_checkpointing`` from 5.18, ``gradient_checkpointing`` before (both exist in 5.18+,
    where the old name is deprecated)."""
    import dataclasses

    from transformers import TrainingArguments

    names = {f.name for f in dataclasses.fields(TrainingArguments)}
    return "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"


def trainer_args_from(ctx: StageContext, cfg: Any, **stage_args: Any) -> dict[str, Any]:
    """:func:`trainer_args` from a stage config extending :class:`~ladder.settings.TrainingSettings`,
    plus the stage's own TRL settings (``beta=cfg.beta``, ``max_length=cfg.max_length``, ...).

    The recipe's ``trainer_kwargs`` win over both. ``use_liger_kernel: true`` becomes the
    Trainer's own flag (transformers patches the model's layers with Liger's kernels; TRL 1.16
    keeps its own fused LM head, so Liger's fused cross-entropy is not used).
    """
    if getattr(cfg, "use_liger_kernel", False):
        stage_args = {"use_liger_kernel": True, **stage_args}
    return trainer_args(
        ctx,
        learning_rate=cfg.learning_rate,
        num_train_epochs=cfg.num_train_epochs,
        max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.per_device_train_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        save_steps=cfg.save_steps,
        precision_name=cfg.precision,
        trainer_kwargs={**stage_args, **dict(cfg.trainer_kwargs or {})},
    )


def log_callback(ctx: StageContext) -> TrainerCallback:
    """A TrainerCallback that sends every log record to ``ctx.log`` (curves, progress)."""
    from transformers import TrainerCallback

    class _Forward(TrainerCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any) -> None:
            if logs:
                record = {"step": state.global_step, "max_steps": state.max_steps, "epoch": state.epoch}
                for k, v in logs.items():
                    if isinstance(v, (int, float)) and not (isinstance(v, float) and math.isnan(v)):
                        record[k] = v
                ctx.log(record)

    return _Forward()


def quiet_trainer(trainer: Any) -> Any:
    """Drop the Trainer's stdout printer: ladder forwards logs to its own progress display."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    return trainer
