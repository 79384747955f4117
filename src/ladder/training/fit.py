"""Training a stage's TRL trainer the way every stage does: :func:`fit`.

``fit`` resumes from the last complete trainer checkpoint of an earlier attempt, trains, times
the training, and hands back the trained model with all its weights on the main process (under
``accelerate launch`` with DeepSpeed ZeRO-3 or FSDP it gathers them), its mixed-precision
autocast wrapper removed, so that :func:`ladder.training.publish.publish` merges and verifies the
weights themselves.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from ladder.training.args import log_callback, quiet_trainer
from ladder.training.lora import drop_autocast_wrapper

if TYPE_CHECKING:
    from ladder.checkpoint import Checkpoint
    from ladder.stage import StageContext

__all__ = ["Fitted", "fit", "last_complete_trainer_checkpoint", "main_process_model", "train_summary"]

logger = logging.getLogger(__name__)

# Files a Trainer checkpoint needs to resume exactly (model weights are checked separately).
_STATE_FILES = ("trainer_state.json", "optimizer.pt", "scheduler.pt")


@attrs.frozen
class Fitted:
    """What :func:`fit` hands back on the main process.

    Attributes:
        model: the trained model, whole on this process: a ``PeftModel`` for LoRA (publish
            merges it), the plain model for full fine-tuning.
        trainer: the trainer (its ``state.log_history`` holds every logged step).
        runtime_s: seconds ``trainer.train()`` took.
    """

    model: Any
    trainer: Any
    runtime_s: float

    @property
    def history(self) -> list[dict[str, Any]]:
        return list(self.trainer.state.log_history)

    @property
    def trained_tokens(self) -> int | None:
        """Tokens trained on, as TRL counted them (its last logged ``num_tokens``), if it did."""
        logged = [r["num_tokens"] for r in self.trainer.state.log_history
                  if isinstance(r.get("num_tokens"), (int, float))]
        return int(logged[-1]) if logged else None

    def summary(self, *, tokens: int | None = None) -> dict[str, Any]:
        """The ``train`` section of ``metrics.json`` (see :func:`train_summary`)."""
        return train_summary(self.trainer.state.log_history, runtime_s=self.runtime_s, tokens=tokens)


def fit(trainer: Any, ctx: StageContext, checkpoint: Checkpoint, *, kind: str = "policy") -> Fitted | None:
    """Train ``trainer`` for the stage and return the trained model (``None`` on other processes).

    Its logs go to ``ctx.log`` (``trainer_log.jsonl``, the progress display, the report's
    curves) and the Trainer's own printing is turned off. Call it on *every* process of a
    multi-process launch: it waits for all of them and gathers sharded weights.

    Args:
        trainer: a configured TRL trainer, not yet trained, with ``output_dir`` =
            ``ctx.trainer_dir`` (:func:`ladder.training.args.trainer_args` sets it).
        ctx: the stage's context.
        checkpoint: the stage's input (the base to reload when gathered weights are an adapter).
        kind: ``"policy"`` or ``"reward"``: what gathered weights are reloaded as.

    Returns:
        :class:`Fitted` on the main process (and in a single process); ``None`` on the others,
        which then return at once (their result is discarded).
    """
    from ladder.training.models import float32_trainable

    trainer.add_callback(log_callback(ctx))
    quiet_trainer(trainer)
    if cast := float32_trainable(trainer.model):  # before the Trainer builds its optimizer
        logger.info("%d trainable parameters of the bf16 base cast to float32 for training", cast)
    resume = last_complete_trainer_checkpoint(ctx.trainer_dir)
    if resume is not None:
        logger.info("resuming %s from %s", ctx.stage_name or "the stage", resume)
    start = time.perf_counter()
    trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    runtime = time.perf_counter() - start
    model = main_process_model(trainer, checkpoint, ctx, kind=kind)
    return None if model is None else Fitted(model, trainer, runtime)


def last_complete_trainer_checkpoint(trainer_dir: Path) -> Path | None:
    """The newest ``checkpoint-N`` under ``trainer_dir`` that has all its state files.

    Incomplete checkpoints (a crash while saving) are removed, never resumed from. So is the
    checkpoint of a *finished* training (``global_step >= max_steps``, a crash after training
    but before publication): resumed from, the Trainer would run one step past ``max_steps``
    whenever the last step ends mid-epoch, so the run resumes from the checkpoint before it and
    trains that last stretch again, which gives the same weights.
    """
    if not trainer_dir.is_dir():
        return None
    found = []
    for child in trainer_dir.iterdir():
        m = re.fullmatch(r"checkpoint-(\d+)", child.name)
        if m and child.is_dir():
            found.append((int(m.group(1)), child))
    for _step, path in sorted(found, reverse=True):
        has_weights = any(path.glob("*.safetensors"))
        state = _valid_state(path) if has_weights and all((path / f).is_file() for f in _STATE_FILES) else None
        if state is None:
            logger.warning("removing incomplete trainer checkpoint %s (missing state files)", path)
        elif _finished(state):
            logger.info("removing trainer checkpoint %s: it marks the end of training and cannot be resumed "
                        "exactly; resuming from the one before it", path)
        else:
            return path
        shutil.rmtree(path, ignore_errors=True)
    return None


def _valid_state(path: Path) -> dict[str, Any] | None:
    """The checkpoint's ``trainer_state.json`` (written last by the Trainer), or ``None``."""
    try:
        state = json.loads((path / "trainer_state.json").read_text())
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def _finished(state: Mapping[str, Any]) -> bool:
    step, max_steps = state.get("global_step"), state.get("max_steps")
    return isinstance(step, int) and isinstance(max_steps, int) and 0 < max_steps <= step


def train_summary(log_history: list[dict[str, Any]], *, runtime_s: float, tokens: int | None = None) -> dict[str, Any]:
    """First/last loss, steps and runtime from a Trainer's ``state.log_history``."""
    losses = [r["loss"] for r in log_history if isinstance(r.get("loss"), (int, float))]
    steps = max((int(r.get("step", 0)) for r in log_history), default=0)
    out: dict[str, Any] = {"steps": steps, "runtime_s": round(runtime_s, 3)}
    if losses:
        out["loss_first"] = losses[0]
        out["loss_last"] = losses[-1]
    if tokens is not None:
        out["train_tokens"] = tokens
    return out


def main_process_model(
    trainer: Any, checkpoint: Checkpoint, ctx: StageContext, *, kind: str = "policy"
) -> Any | None:
    """The trained model with all its weights on the main process; ``None`` on the others.

    Call it on *every* process after ``trainer.train()`` and before saving or merging: under a
    multi-process launch (``accelerate launch``: DDP, DeepSpeed, FSDP) it waits for all of them,
    and when the weights are sharded (ZeRO-3, FSDP) it gathers them, which takes every process.
    A stage then saves, merges and verifies on the main process only, and returns early on the
    others (their result is discarded), so two processes never write the same files.

    Args:
        trainer: a ``transformers.Trainer`` (any TRL trainer) that has trained.
        checkpoint: the stage's input checkpoint (the base to reload when weights were sharded).
        ctx: the stage's context (``trainer_dir`` holds the gathered weights, ``options`` the
            loading options).
        kind: what to reload gathered weights as: ``"policy"`` (a causal LM) or ``"reward"``
            (a sequence classifier, the reward-model stage).

    Returns:
        In a single process: ``trainer.model`` (a ``PeftModel`` for LoRA). Under DDP or ZeRO-1/2,
        on the main process: ``trainer.model``. Under ZeRO-3/FSDP, on the main process: the
        gathered weights reloaded (the adapter on a freshly loaded input model, or the full
        model). On every other process: ``None``.
    """
    accelerator = getattr(trainer, "accelerator", None)
    if accelerator is None:
        return trainer.model
    # Mixed precision wraps the model's forward in autocast; merge verification and the
    # measurements after training must see the weights' own precision, so take the wrapper off.
    drop_autocast_wrapper(trainer.model)
    if accelerator.num_processes <= 1:
        return trainer.model
    if not _weights_sharded(trainer):
        accelerator.wait_for_everyone()
        return trainer.model if accelerator.is_main_process else None
    gathered = ctx.trainer_dir / "gathered-model"
    trainer.save_model(str(gathered))  # collective: gathers the shards, writes on the main process
    accelerator.wait_for_everyone()
    if not accelerator.is_main_process:
        return None
    from ladder.training.models import load_model

    if hasattr(trainer.model, "peft_config"):  # a LoRA: the adapter was saved, not the base
        from peft import PeftModel

        base = load_model(checkpoint, ctx.options, kind=kind)
        return PeftModel.from_pretrained(base, str(gathered))
    return load_model(str(gathered), ctx.options, kind=kind)


def _weights_sharded(trainer: Any) -> bool:
    """Whether no single process holds the full weights (DeepSpeed ZeRO-3, or FSDP)."""
    if getattr(trainer, "is_fsdp_enabled", False):
        return True
    if getattr(trainer, "is_deepspeed_enabled", False):
        plugin = getattr(trainer.accelerator.state, "deepspeed_plugin", None)
        return getattr(plugin, "zero_stage", 0) == 3
    return False
