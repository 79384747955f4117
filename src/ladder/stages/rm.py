"""Reward modelling (``rm``): TRL's ``RewardTrainer`` on preference pairs (LoRA, QLoRA or full), merged.

The output is a *reward* checkpoint — a sequence classifier with a scalar head — not a policy.
Later stages use it as a learned reward (``GRPO(reward_model="rm")``); the pipeline refuses it
where a policy is expected.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, ClassVar

import attrs

from ladder.data.length import LengthRule, enforce_rows, kept_indices, pair_lengths, preflight_rows
from ladder.data.loading import as_spec, content_hash, load_rows
from ladder.errors import DataError
from ladder.settings import TrainingSettings, setting, training_default
from ladder.stage import BaseStage, StageContext, StageResult

if TYPE_CHECKING:
    from ladder.checkpoint import Checkpoint

__all__ = ["RewardModel", "RewardModelStageConfig"]

logger = logging.getLogger(__name__)


@attrs.frozen(kw_only=True)
class RewardModelStageConfig(TrainingSettings):
    """Settings of the reward-model stage."""

    trl_config: ClassVar[str] = "RewardConfig"

    dataset: Any = setting(help="preference pairs (same formats as DPO)", data=True)
    eval_dataset: Any = setting(None, help="held-out pairs (default: a split of dataset)", data=True)
    heldout_fraction: float = setting(
        0.05,
        validator=[attrs.validators.ge(0.0), attrs.validators.lt(1.0)],
        help="share of pairs held out for pairwise accuracy",
    )
    learning_rate: float = training_default("learning_rate", 1e-4)
    per_device_train_batch_size: int = training_default("per_device_train_batch_size", 4, help="pairs per batch")
    max_length: int = setting(1024, validator=attrs.validators.gt(0), help="max tokens per sequence")
    overlength: str = setting(
        "error", choices=("error", "drop"),
        help="pairs with a sequence longer than max_length: error (stop before training) or drop (leave them out, "
        "logged and counted in metrics.json); not truncate: a cut answer is not the one judged",
    )
    center_rewards_coefficient: float | None = setting(
        0.01, help="keeps rewards centred on 0 (InstructGPT-style normalisation)"
    )


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

    def _split(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[DataError], str, list[int]]:
        """``(train, heldout, problems, label, each training pair's row number in the file)``, loaded once."""
        return self.cached("pairs", self._load_split)

    def _load_split(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[DataError], str, list[int]]:
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

    def check(self, ctx: StageContext) -> list[str]:
        train, _heldout, problems, label, indices = self._split()
        found = [str(p) for p in problems]
        found += preflight_rows(ctx, train, indices, source=label, rule=self._length_rule())
        if not problems and not train:
            found.append("no preference pairs are left to train on; add pairs or lower heldout_fraction")
        return found

    def _length_rule(self) -> LengthRule:
        cfg: RewardModelStageConfig = self.config
        return LengthRule(lengths_of=pair_lengths, limit=cfg.max_length, policy=cfg.overlength, what="pair",
                          can_truncate=False)

    def fingerprint_data(self) -> Any:
        train, heldout, *_ = self._split()
        return [content_hash(train), content_hash(heldout)]

    def run(self, checkpoint: Checkpoint, ctx: StageContext) -> StageResult:
        from datasets import Dataset
        from transformers import set_seed
        from trl import RewardConfig, RewardTrainer

        from ladder.errors import ConfigError, StageError
        from ladder.evaluate import reward_model_accuracy, reward_text
        from ladder.training.args import trainer_args_from
        from ladder.training.chat_format import chat_template_for
        from ladder.training.fit import fit
        from ladder.training.lora import lora_delta_max_abs, peft_config_for
        from ladder.training.models import load_tokenizer
        from ladder.training.modes import load_training_model, uses_adapter
        from ladder.training.publish import publish

        cfg: RewardModelStageConfig = self.config
        train, heldout, problems, label, train_indices = self._split()
        if problems:
            raise problems[0]
        tokenizer = load_tokenizer(checkpoint, ctx.options)
        template = chat_template_for(
            tokenizer, checkpoint, where=f"stage {self.name!r}",
            fix="run SFT before the reward model (input=...), or start from an instruct model")
        # Measured with this checkpoint's tokenizer and template. TRL's RewardTrainer would drop
        # longer pairs silently; here they stop the stage, or are dropped and counted.
        train, data_checks = enforce_rows(tokenizer, train, train_indices, source=label, rule=self._length_rule(),
                                          template=template)
        # The scalar head is new and randomly initialised: seed it, so a re-run is the same model.
        set_seed(ctx.seed)
        model = load_training_model(checkpoint, ctx, cfg, kind="reward")
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
        args = RewardConfig(**trainer_args_from(ctx, cfg, dataset_num_proc=None, max_length=cfg.max_length,
                                                center_rewards_coefficient=cfg.center_rewards_coefficient))
        # task_type SEQ_CLS: PEFT trains the new head fully (modules_to_save) beside the LoRA.
        trainer = RewardTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer,
                                peft_config=peft_config_for(cfg, task_type="SEQ_CLS"))
        if len(trainer.train_dataset) == 0:
            raise ConfigError(
                f"stage {self.name!r}: every pair is longer than max_length={cfg.max_length} tokens, so TRL dropped "
                "them all; raise max_length"
            )
        fitted = fit(trainer, ctx, checkpoint, kind="reward")  # every process calls it
        if fitted is None:  # not the main process: the main one verifies and publishes
            return StageResult(checkpoint)
        stage_metrics: dict[str, Any] = {}
        if uses_adapter(cfg):
            # A LoRA still at its initialisation (B = 0) merges to the input weights: every merge
            # check would pass and the "reward model" would be the input plus a head. Refuse it.
            delta = lora_delta_max_abs(fitted.model)
            if delta == 0.0:
                raise StageError(
                    f"stage {self.name!r}: the LoRA did not change (its largest weight change is 0 after "
                    f"{trainer.state.global_step} steps); raise learning_rate or max_steps and check that the "
                    "loss is finite"
                )
            stage_metrics["lora_delta_max_abs"] = delta
        sample = [reward_text(tokenizer, p["prompt"], p["chosen"]) for p in train[:3]]
        out = publish(fitted.model, tokenizer, ctx, parent=checkpoint, config=cfg, chat_template=template,
                      verify_texts=sample, kind="reward")
        after = reward_model_accuracy(out.model, tokenizer, heldout) if heldout else None
        if before is not None and after is not None:
            logger.info("%s held-out pairwise accuracy %.3f -> %.3f (%d pairs)", self.name, before["accuracy"],
                        after["accuracy"], after["n"])
        stage_metrics = {"heldout_before": before, "heldout_after": after, "rows": len(train),
                         "heldout_rows": len(heldout), **stage_metrics, **out.metrics, "data_checks": data_checks}
        metrics = {
            "train": fitted.summary(),
            "eval": {"rm_accuracy": after["accuracy"]} if after is not None else {},
            "stage_metrics": stage_metrics,
        }
        return StageResult(out.checkpoint, metrics)
