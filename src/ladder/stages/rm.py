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
from ladder.data.length import enforce_rows, kept_indices, pair_lengths, preflight_rows
from ladder.data.loading import as_spec, content_hash, load_rows
from ladder.errors import DataError, LadderError
from ladder.stage import BaseStage, StageContext, config_to_dict
from ladder.training.lora import LoraSettings

if TYPE_CHECKING:
    from ladder.checkpoint import Checkpoint

__all__ = ["RewardModel", "RewardModelStageConfig"]

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
    max_steps: int = attrs.field(
        default=-1,
        validator=attrs.validators.instance_of(int),
        metadata={"help": "stop after N steps (-1: use epochs)"},
    )
    per_device_train_batch_size: int = attrs.field(default=4, validator=_gt0, metadata={"help": "pairs per batch"})
    gradient_accumulation_steps: int = attrs.field(default=1, validator=_gt0, metadata={"help": "accumulation"})
    max_length: int = attrs.field(default=1024, validator=_gt0, metadata={"help": "max tokens per sequence"})
    overlength: str = attrs.field(
        default="error",
        validator=attrs.validators.in_(("error", "drop")),
        metadata={
            "help": "pairs with a sequence longer than max_length: error (stop before training) or drop (leave "
            "them out, logged and counted in metrics.json); not truncate: a cut answer is not the one judged"
        },
    )
    center_rewards_coefficient: float | None = attrs.field(
        default=0.01, metadata={"help": "keeps rewards centred on 0 (InstructGPT-style normalisation)"}
    )
    precision: str = attrs.field(
        default="auto", validator=attrs.validators.in_(("auto", "bf16", "fp16", "fp32")), metadata={"help": ""}
    )
    save_steps: int = attrs.field(default=50, validator=attrs.validators.ge(0), metadata={"help": "checkpoint every"})
    trainer_kwargs: dict[str, Any] = attrs.field(factory=dict, converter=dict, metadata={"help": "to trl.RewardConfig"})


class RewardModel(BaseStage):
    """Reward model on preference pairs: a scalar-head classifier for RL against a learned reward.

    The input policy gets a new scalar head (``score``, seeded with the run's seed) and a LoRA;
    both train on ``-log sigmoid(r(chosen) - r(rejected))`` (TRL's ``RewardTrainer``), and the
    merged classifier is published as a ``kind="reward"`` checkpoint with the input's tokenizer
    and chat template. Held-out pairs are scored before and after training with
    :func:`ladder.evaluate.reward_model_accuracy`: the same rendering the trainer used and the
    RL stages score completions with.
    """

    kind: ClassVar[str] = "rm"
    Config: ClassVar[type] = RewardModelStageConfig
    input_kind: ClassVar[str] = "policy"
    output_kind: ClassVar[str] = "reward"

    def _pairs(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[DataError]]:
        train, heldout, problems, _label, _indices = self._split()
        return train, heldout, problems

    def _split(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[DataError], str, list[int]]:
        """``(train, heldout, problems, label, each training pair's row number in the file)``."""
        from ladder.data.preference import normalize_preference_rows, split_heldout

        cfg: RewardModelStageConfig = self.config
        rows, label = load_rows(as_spec(cfg.dataset))
        pairs, problems = normalize_preference_rows(rows, label)
        indices = kept_indices(len(rows), problems)
        if cfg.eval_dataset is not None:
            erows, elabel = load_rows(as_spec(cfg.eval_dataset))
            heldout, more = normalize_preference_rows(erows, elabel)
            return pairs, heldout, problems + more, label, indices
        train, heldout = split_heldout(pairs, cfg.heldout_fraction, seed=0)
        train_indices, _ = split_heldout(indices, cfg.heldout_fraction, seed=0)  # the same split, by position
        return train, heldout, problems, label, train_indices

    def validate(self, ctx: StageContext) -> list[str]:
        cfg: RewardModelStageConfig = self.config
        try:
            train, _heldout, problems, label, indices = self._split()
            found = [str(p) for p in problems]
            found += preflight_rows(ctx, train, indices, source=label, lengths_of=pair_lengths, limit=cfg.max_length,
                                    policy=cfg.overlength, what="pair", can_truncate=False)
        except LadderError as exc:
            return [f"stage {self.name!r}: {exc}"]
        if not problems and not train:
            found.append("no preference pairs are left to train on; add pairs or lower heldout_fraction")
        found += self._trainer_kwargs_problems()
        return [f"stage {self.name!r}: {p}" for p in found]

    def _trainer_kwargs_problems(self) -> list[str]:
        import dataclasses

        from trl import RewardConfig

        known = {f.name for f in dataclasses.fields(RewardConfig)}
        unknown = sorted(set(self.config.trainer_kwargs) - known)
        if not unknown:
            return []
        names = ", ".join(map(repr, unknown))
        return [f"trainer_kwargs: unknown trl.RewardConfig setting{'s' if len(unknown) > 1 else ''} {names}; "
                "check the spelling against TRL's RewardConfig documentation"]

    def fingerprint_data(self) -> Any:
        train, heldout, _ = self._pairs()
        return [content_hash(train), content_hash(heldout)]

    def run(self, checkpoint: Checkpoint, ctx: StageContext) -> Checkpoint:
        from datasets import Dataset
        from transformers import set_seed
        from trl import RewardConfig, RewardTrainer

        from ladder.checkpoint import Checkpoint
        from ladder.errors import ConfigError, StageError
        from ladder.evaluate import reward_model_accuracy, reward_text
        from ladder.training.common import (
            last_complete_trainer_checkpoint,
            log_callback,
            main_process_model,
            quiet_trainer,
            train_summary,
            trainer_args_from,
            write_model_card,
        )
        from ladder.training.lora import lora_delta_max_abs, merge_and_verify, peft_config, save_adapter
        from ladder.training.models import load_model, load_tokenizer

        cfg: RewardModelStageConfig = self.config
        train, heldout, problems, label, train_indices = self._split()
        if problems:
            raise problems[0]
        tokenizer = load_tokenizer(checkpoint, ctx.options)
        template = checkpoint.chat_template or tokenizer.chat_template
        if isinstance(template, dict):
            template = template.get("default")
        if not template:
            raise ConfigError(
                f"stage {self.name!r}: the input checkpoint {checkpoint.path!r} has no chat template, so the pairs "
                "cannot be rendered as conversations; run SFT before the reward model (input=...), or start from "
                "an instruct model"
            )
        tokenizer.chat_template = template
        # Measured with this checkpoint's tokenizer and template. TRL's RewardTrainer would drop
        # longer pairs silently; here they stop the stage, or are dropped and counted.
        train, data_checks = enforce_rows(tokenizer, train, train_indices, source=label, lengths_of=pair_lengths,
                                          limit=cfg.max_length, policy=cfg.overlength, template=template,
                                          what="pair", can_truncate=False)
        # The scalar head is new and randomly initialised: seed it, so a re-run is the same model.
        set_seed(ctx.seed)
        model = load_model(checkpoint, ctx.options, kind="reward")
        # The classifier pools at the last token that is not the pad token.
        model.config.pad_token_id = tokenizer.pad_token_id
        before = reward_model_accuracy(model, tokenizer, heldout) if heldout else None
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
            **trainer_args_from(
                ctx,
                cfg,
                dataset_num_proc=None,
                max_length=cfg.max_length,
                center_rewards_coefficient=cfg.center_rewards_coefficient,
            )
        )
        # task_type SEQ_CLS: PEFT trains the new head fully (modules_to_save) beside the LoRA.
        trainer = RewardTrainer(
            model=model,
            args=args,
            train_dataset=data,
            processing_class=tokenizer,
            peft_config=peft_config(cfg.lora, task_type="SEQ_CLS"),
            callbacks=[log_callback(ctx)],
        )
        quiet_trainer(trainer)
        if len(trainer.train_dataset) == 0:
            raise ConfigError(
                f"stage {self.name!r}: every pair is longer than max_length={cfg.max_length} tokens, so TRL dropped "
                "them all; raise max_length"
            )
        resume = last_complete_trainer_checkpoint(ctx.trainer_dir)
        if resume is not None:
            logger.info("resuming %s from %s", self.name, resume)
        start = time.perf_counter()
        trainer.train(resume_from_checkpoint=str(resume) if resume else None)
        runtime = time.perf_counter() - start
        trained = main_process_model(trainer, checkpoint, ctx, kind="reward")  # every process calls it
        if trained is None:  # not the main process: the main one verifies and publishes
            return checkpoint

        # A LoRA still at its initialisation (B = 0) merges to the input weights: every merge
        # check would pass and the "reward model" would be the input plus a head. Refuse it.
        delta = lora_delta_max_abs(trained)
        if delta == 0.0:
            raise StageError(
                f"stage {self.name!r}: the LoRA did not change (its largest weight change is 0 after "
                f"{trainer.state.global_step} steps); raise learning_rate or max_steps and check that the "
                "loss is finite"
            )
        adapter_dir = ctx.work_dir / "adapter"
        save_adapter(trained, adapter_dir)
        sample = [reward_text(tokenizer, p["prompt"], p["chosen"]) for p in train[:3]]
        merged, diff = merge_and_verify(trained, tokenizer, sample)
        merged.config.pad_token_id = tokenizer.pad_token_id
        after = reward_model_accuracy(merged, tokenizer, heldout) if heldout else None
        model_dir = ctx.work_dir / "model"
        merged.save_pretrained(str(model_dir), safe_serialization=True)
        tokenizer.save_pretrained(str(model_dir))
        metrics: dict[str, Any] = {
            "stage": self.name,
            "kind": self.kind,
            "index": ctx.index,
            "train": train_summary(trainer.state.log_history, runtime_s=runtime),
            "eval": {"rm_accuracy": after["accuracy"]} if after is not None else {},
            "stage_metrics": {
                "heldout_before": before,
                "heldout_after": after,
                "rows": len(train),
                "heldout_rows": len(heldout),
                "lora_delta_max_abs": delta,
                "merge_max_abs_diff": diff,
                "data_checks": data_checks,
            },
        }
        atomic_write_json(ctx.work_dir / "metrics.json", metrics)
        if before is not None and after is not None:
            logger.info("%s held-out pairwise accuracy %.3f -> %.3f (%d pairs)", self.name, before["accuracy"],
                        after["accuracy"], after["n"])
        out = Checkpoint(
            path=str(model_dir),
            stage=self.name,
            kind="reward",
            parent=checkpoint,
            fingerprint=ctx.fingerprint,
            chat_template=template,
            adapter_path=str(adapter_dir),
        )
        write_model_card(model_dir, out, config_to_dict(cfg))
        return out
