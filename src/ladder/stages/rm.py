"""Reward modelling (``rm``): TRL's ``RewardTrainer`` on preference pairs, LoRA, merged.

The output is a *reward* checkpoint — a sequence classifier with a scalar head — not a policy.
Later stages use it as a learned reward (``GRPO(reward_model="rm")``); the pipeline refuses it
where a policy is expected.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, ClassVar

import attrs

from ladder.atomic import atomic_write_json
from ladder.data.loading import as_spec, content_hash, load_rows
from ladder.errors import DataError, LadderError
from ladder.stage import BaseStage, StageContext, config_to_dict
from ladder.training.lora import LoraSettings

if TYPE_CHECKING:
    from ladder.checkpoint import Checkpoint

__all__ = ["RewardModel", "RewardModelStageConfig", "pairwise_accuracy"]

logger = logging.getLogger(__name__)

_gt0 = attrs.validators.gt(0)


def _lora(value: Any) -> LoraSettings:
    return value if isinstance(value, LoraSettings) else LoraSettings(**dict(value or {}))


@attrs.frozen(kw_only=True)
class RewardModelStageConfig:
    """Settings of the reward-model stage."""

    dataset: Any = attrs.field(metadata={"help": "preference pairs (same formats as DPO)", "data": True})
    eval_dataset: Any = attrs.field(default=None, metadata={"help": "held-out pairs (default: split)", "data": True})
    heldout_fraction: float = attrs.field(
        default=0.05,
        validator=[attrs.validators.ge(0.0), attrs.validators.lt(1.0)],
        metadata={"help": "share of pairs held out for pairwise accuracy"},
    )
    lora: LoraSettings = attrs.field(factory=LoraSettings, converter=_lora, metadata={"help": "LoRA settings"})
    learning_rate: float = attrs.field(default=1e-4, validator=_gt0, metadata={"help": "peak learning rate"})
    num_train_epochs: float = attrs.field(default=1.0, validator=_gt0, metadata={"help": "epochs"})
    max_steps: int = attrs.field(default=-1, metadata={"help": "stop after N steps (-1: use epochs)"})
    per_device_train_batch_size: int = attrs.field(default=4, validator=_gt0, metadata={"help": "pairs per batch"})
    gradient_accumulation_steps: int = attrs.field(default=1, validator=_gt0, metadata={"help": "accumulation"})
    max_length: int = attrs.field(default=1024, validator=_gt0, metadata={"help": "max tokens per sequence"})
    center_rewards_coefficient: float | None = attrs.field(
        default=0.01, metadata={"help": "keeps rewards centred on 0 (InstructGPT-style normalisation)"}
    )
    precision: str = attrs.field(
        default="auto", validator=attrs.validators.in_(("auto", "bf16", "fp16", "fp32")), metadata={"help": ""}
    )
    save_steps: int = attrs.field(default=50, validator=attrs.validators.ge(0), metadata={"help": "checkpoint every"})
    trainer_kwargs: dict[str, Any] = attrs.field(factory=dict, converter=dict, metadata={"help": "to trl.RewardConfig"})


def pairwise_accuracy(model: Any, tokenizer: Any, pairs: list[dict[str, Any]], batch_size: int = 8) -> dict[str, float]:
    """Share of pairs whose chosen answer scores higher than the rejected one (ties count 0.5)."""
    import torch

    def texts(key: str) -> list[str]:
        return [
            tokenizer.apply_chat_template(p["prompt"] + [{"role": "assistant", "content": p[key]}], tokenize=False)
            for p in pairs
        ]

    def scores(batch: list[str]) -> list[float]:
        out: list[float] = []
        device = next(model.parameters()).device
        model.eval()
        for i in range(0, len(batch), batch_size):
            enc = tokenizer(batch[i : i + batch_size], return_tensors="pt", padding=True, add_special_tokens=False)
            with torch.no_grad():
                logits = model(**{k: v.to(device) for k, v in enc.items() if k != "token_type_ids"}).logits
            out.extend(logits[:, 0].float().cpu().tolist())
        return out

    if not pairs:
        return {"accuracy": float("nan"), "margin": float("nan"), "n": 0}
    chosen, rejected = scores(texts("chosen")), scores(texts("rejected"))
    wins = [1.0 if c > r else 0.5 if c == r else 0.0 for c, r in zip(chosen, rejected, strict=True)]
    margins = [c - r for c, r in zip(chosen, rejected, strict=True)]
    return {"accuracy": sum(wins) / len(wins), "margin": sum(margins) / len(margins), "n": len(pairs)}


class RewardModel(BaseStage):
    """Reward model on preference pairs: a scalar-head classifier for RL against a learned reward."""

    kind: ClassVar[str] = "rm"
    Config: ClassVar[type] = RewardModelStageConfig
    input_kind: ClassVar[str] = "policy"
    output_kind: ClassVar[str] = "reward"

    def _pairs(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[DataError]]:
        from ladder.data.preference import normalize_preference_rows, split_heldout

        cfg: RewardModelStageConfig = self.config
        rows, label = load_rows(as_spec(cfg.dataset))
        pairs, problems = normalize_preference_rows(rows, label)
        if cfg.eval_dataset is not None:
            erows, elabel = load_rows(as_spec(cfg.eval_dataset))
            heldout, more = normalize_preference_rows(erows, elabel)
            return pairs, heldout, problems + more
        train, heldout = split_heldout(pairs, cfg.heldout_fraction, seed=0)
        return train, heldout, problems

    def validate(self, ctx: StageContext) -> list[str]:
        try:
            _train, _heldout, problems = self._pairs()
        except LadderError as exc:
            return [f"stage {self.name!r}: {exc}"]
        return [f"stage {self.name!r}: {p}" for p in problems]

    def fingerprint_data(self) -> Any:
        train, heldout, _ = self._pairs()
        return [content_hash(train), content_hash(heldout)]

    def run(self, checkpoint: Checkpoint, ctx: StageContext) -> Checkpoint:
        from datasets import Dataset
        from trl import RewardConfig, RewardTrainer

        from ladder.checkpoint import Checkpoint
        from ladder.training.common import (
            last_complete_trainer_checkpoint,
            log_callback,
            quiet_trainer,
            train_summary,
            trainer_args,
            write_model_card,
        )
        from ladder.training.lora import merge_and_verify, peft_config, save_adapter
        from ladder.training.models import load_model, load_tokenizer

        cfg: RewardModelStageConfig = self.config
        train, heldout, problems = self._pairs()
        if problems:
            raise problems[0]
        tokenizer = load_tokenizer(checkpoint, ctx.options)
        model = load_model(checkpoint, ctx.options, kind="reward")
        model.config.pad_token_id = tokenizer.pad_token_id
        before = pairwise_accuracy(model, tokenizer, heldout)
        data = Dataset.from_list(
            [
                {
                    "prompt": p["prompt"],
                    "chosen": [{"role": "assistant", "content": p["chosen"]}],
                    "rejected": [{"role": "assistant", "content": p["rejected"]}],
                }
                for p in train
            ]
        )
        args = RewardConfig(
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
                    "max_length": cfg.max_length,
                    "center_rewards_coefficient": cfg.center_rewards_coefficient,
                    **cfg.trainer_kwargs,
                },
            )
        )
        trainer = RewardTrainer(
            model=model,
            args=args,
            train_dataset=data,
            processing_class=tokenizer,
            peft_config=peft_config(cfg.lora, task_type="SEQ_CLS"),
            callbacks=[log_callback(ctx)],
        )
        quiet_trainer(trainer)
        resume = last_complete_trainer_checkpoint(ctx.trainer_dir)
        start = time.perf_counter()
        trainer.train(resume_from_checkpoint=str(resume) if resume else None)
        runtime = time.perf_counter() - start

        adapter_dir = ctx.work_dir / "adapter"
        save_adapter(trainer.model, adapter_dir)
        sample = [
            tokenizer.apply_chat_template(p["prompt"] + [{"role": "assistant", "content": p["chosen"]}], tokenize=False)
            for p in train[:3]
        ]
        merged, diff = merge_and_verify(trainer.model, tokenizer, sample)
        after = pairwise_accuracy(merged, tokenizer, heldout)
        model_dir = ctx.work_dir / "model"
        merged.save_pretrained(str(model_dir), safe_serialization=True)
        tokenizer.save_pretrained(str(model_dir))
        metrics = {
            "stage": self.name,
            "kind": self.kind,
            "index": ctx.index,
            "train": train_summary(trainer.state.log_history, runtime_s=runtime),
            "eval": {"rm_accuracy": after["accuracy"]},
            "stage_metrics": {
                "heldout_before": before,
                "heldout_after": after,
                "rows": len(train),
                "heldout_rows": len(heldout),
                "merge_max_abs_diff": diff,
            },
        }
        atomic_write_json(ctx.work_dir / "metrics.json", metrics)
        logger.info("reward model held-out pairwise accuracy %.3f -> %.3f", before["accuracy"], after["accuracy"])
        out = Checkpoint(
            path=str(model_dir),
            stage=self.name,
            kind="reward",
            parent=checkpoint,
            fingerprint=ctx.fingerprint,
            chat_template=tokenizer.chat_template if isinstance(tokenizer.chat_template, str) else None,
            adapter_path=str(adapter_dir),
        )
        write_model_card(model_dir, out, config_to_dict(cfg))
        return out
