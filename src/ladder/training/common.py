"""Plumbing every TRL-based stage shares: trainer arguments, logging, resuming, saving."""

from __future__ import annotations

import json
import logging
import math
import re
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ladder.training.lora import drop_autocast_wrapper
from ladder.training.models import device_name, precision

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase, TrainerCallback

    from ladder.checkpoint import Checkpoint
    from ladder.stage import StageContext

__all__ = [
    "trainer_args",
    "trainer_args_from",
    "log_callback",
    "quiet_trainer",
    "last_complete_trainer_checkpoint",
    "save_model_dir",
    "write_model_card",
    "train_summary",
    "publish_policy",
    "main_process_model",
]

logger = logging.getLogger(__name__)

# Files a Trainer checkpoint needs to resume exactly (model weights are checked separately).
_STATE_FILES = ("trainer_state.json", "optimizer.pt", "scheduler.pt")


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
        "report_to": "none",
        "seed": ctx.seed,
        "data_seed": ctx.seed,
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
        "dataloader_pin_memory": device_name() == "cuda",
        # TRL turns activation checkpointing on by default; it saves GPU memory but makes small
        # CPU runs ~2.5x slower, so it stays on only where memory is the constraint.
        "activation_checkpointing": device_name() == "cuda",
        **precision(precision_name),
    }
    args.update(dict(trainer_kwargs or {}))
    return args


def trainer_args_from(ctx: StageContext, cfg: Any, **stage_args: Any) -> dict[str, Any]:
    """:func:`trainer_args` from a stage config with the usual fields, plus the stage's own.

    ``cfg`` has ``learning_rate``, ``num_train_epochs``, ``max_steps``,
    ``per_device_train_batch_size``, ``gradient_accumulation_steps``, ``save_steps``,
    ``precision`` and ``trainer_kwargs`` (as ladder's stage configs do); ``stage_args`` are the
    stage's TRL settings (``beta=cfg.beta``, ``max_length=cfg.max_length``, ...). The recipe's
    ``trainer_kwargs`` win over both.
    """
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


def save_model_dir(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    out_dir: Path,
    *,
    chat_template: str | None,
    eos_ids: list[int] | None,
) -> None:
    """Save a full model in safetensors + tokenizer + chat template + generation config."""
    out_dir.mkdir(parents=True, exist_ok=True)
    if chat_template:
        tokenizer.chat_template = chat_template
    if eos_ids and getattr(model, "generation_config", None) is not None:
        model.generation_config.eos_token_id = eos_ids if len(eos_ids) > 1 else eos_ids[0]
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(str(out_dir), safe_serialization=True)
    tokenizer.save_pretrained(str(out_dir))


def write_model_card(out_dir: Path, checkpoint: Checkpoint, config: Mapping[str, Any]) -> None:
    """A README.md model card listing the full chain the model came from."""
    chain = list(checkpoint.lineage())[::-1]
    lines = [
        "---",
        "library_name: transformers",
        "tags: [ladder, trl, peft]",
        "---",
        f"# {checkpoint.stage} checkpoint (made by ladder)",
        "",
        "## Lineage",
        "",
    ]
    for i, node in enumerate(chain):
        lines.append(f"{i}. `{node.stage}` — fingerprint `{node.fingerprint}` — `{node.path}`")
    from ladder.rundir import redact

    settings = json.dumps(redact(dict(config)), indent=2, default=str)  # no credentials in a shareable card
    lines += ["", "## Stage settings", "", "```json", settings, "```", ""]
    (out_dir / "README.md").write_text("\n".join(lines), encoding="utf-8")


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


def publish_policy(
    model: Any,
    tokenizer: PreTrainedTokenizerBase,
    ctx: StageContext,
    *,
    stage_name: str,
    stage_kind: str,
    parent: Checkpoint,
    config: Mapping[str, Any],
    chat_template: str | None,
    eos_ids: Sequence[int],
    verify_texts: Sequence[str],
    train: Mapping[str, Any],
    stage_metrics: dict[str, Any],
) -> Checkpoint:
    """The tail every policy stage shares: publish the trained model as a new checkpoint.

    With a PEFT model: saves the adapter to ``work_dir/adapter``, merges it and verifies the
    merge on ``verify_texts`` (the merged model must reproduce the adapter-on-base logits).
    Then saves the full model to ``work_dir/model`` with ``chat_template`` and ``eos_ids``,
    writes ``metrics.json`` (``train`` and ``stage_metrics``, which gains
    ``merge_max_abs_diff``) and the model card.

    Args:
        model: the trained model: a ``PeftModel`` (merged here) or a plain model (full
            fine-tuning, saved as is).
        tokenizer: the tokenizer to save beside the model.
        ctx: the stage's context (``work_dir``, ``index``, ``fingerprint``).
        stage_name, stage_kind: the stage's pipeline name and registry kind.
        parent: the stage's input checkpoint (the new checkpoint's parent).
        config: the stage config as a dict, for the model card.
        chat_template: the template the checkpoint carries.
        eos_ids: token ids that end a turn (written to ``generation_config.json``).
        verify_texts: a few rendered training texts to verify the merge on.
        train: the training summary (:func:`train_summary`).
        stage_metrics: stage-specific metrics.

    Returns:
        The new policy :class:`~ladder.checkpoint.Checkpoint`, paths inside ``ctx.work_dir``.

    Raises:
        MergeVerificationError: the merge does not reproduce the adapter; nothing is published.
    """
    from ladder.atomic import atomic_write_json
    from ladder.checkpoint import Checkpoint
    from ladder.training.lora import merge_and_verify, save_adapter

    model_dir = ctx.work_dir / "model"
    adapter_dir = None
    if hasattr(model, "merge_and_unload"):  # a PeftModel
        adapter_dir = ctx.work_dir / "adapter"
        save_adapter(model, adapter_dir)
        merged, diff = merge_and_verify(model, tokenizer, list(verify_texts))
        stage_metrics["merge_max_abs_diff"] = diff
    else:
        merged = model
    save_model_dir(merged, tokenizer, model_dir, chat_template=chat_template, eos_ids=list(eos_ids))
    metrics = {
        "stage": stage_name,
        "kind": stage_kind,
        "index": ctx.index,
        "train": dict(train),
        "stage_metrics": stage_metrics,
    }
    atomic_write_json(ctx.work_dir / "metrics.json", metrics)
    out = Checkpoint(
        path=str(model_dir),
        stage=stage_name,
        kind="policy",
        parent=parent,
        fingerprint=ctx.fingerprint,
        chat_template=chat_template,
        eos_token_ids=tuple(eos_ids),
        adapter_path=str(adapter_dir) if adapter_dir else None,
    )
    write_model_card(model_dir, out, config)
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
