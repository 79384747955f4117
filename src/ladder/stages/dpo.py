"""Direct preference optimisation (DPO) on TRL's ``DPOTrainer`` (LoRA, QLoRA or full), merged and verified.

Teaches preference: between two answers to the same prompt, make the chosen one more likely
relative to the input checkpoint (the reference policy). A new LoRA is trained on the merged
input model; the reference is that same model with the adapter disabled, so no second copy of
the weights is loaded (under ``finetuning: full`` TRL keeps a frozen copy as the reference). The chat template is the input checkpoint's, unchanged.

Held-out pairs (a seeded ``heldout_fraction`` of the data, or ``eval_dataset``) are scored
before and after training: DPO's implicit-reward accuracy and margin, and the reference-free
log-prob accuracy (see :mod:`ladder.evaluate`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, ClassVar

import attrs

from ladder.data.length import OVERLENGTH_POLICIES, LengthRule, enforce_rows, kept_indices, pair_lengths, preflight_rows
from ladder.data.loading import as_spec, content_hash, load_rows
from ladder.data.preference import normalize_preference_rows, split_heldout
from ladder.errors import DataError
from ladder.settings import TrainingSettings, setting, training_default
from ladder.stage import BaseStage, StageContext, StageResult

if TYPE_CHECKING:
    from ladder.checkpoint import Checkpoint

__all__ = ["DPO", "DPOStageConfig"]

logger = logging.getLogger(__name__)

_gt0 = attrs.validators.gt(0)


@attrs.frozen(kw_only=True)
class DPOStageConfig(TrainingSettings):
    """Settings of the DPO stage (defaults: the reference recipe)."""

    trl_config: ClassVar[str] = "DPOConfig"

    dataset: Any = setting(
        help="preference pairs (prompt/chosen/rejected, chosen/rejected conversations, or LLaMA-Factory's "
        "conversations/chosen/rejected): file, preset, hub id, list or Dataset",
        data=True,
    )
    eval_dataset: Any = setting(
        None,
        help="held-out pairs to measure preference accuracy on; when set, every dataset row trains and "
        "heldout_fraction is not used",
        data=True,
    )
    heldout_fraction: float = setting(
        0.05,
        validator=[attrs.validators.ge(0.0), attrs.validators.le(0.5)],
        help="share of the dataset held out (seeded) to measure preference accuracy on; at least one pair "
        "when the set has 20 rows or more; 0 to train on everything",
    )
    beta: float = setting(0.1, validator=_gt0, help="DPO beta: higher keeps the policy closer to the reference")
    learning_rate: float = training_default("learning_rate", 5e-6)
    per_device_train_batch_size: int = training_default("per_device_train_batch_size", 4, help="pairs per batch")
    gradient_accumulation_steps: int = training_default("gradient_accumulation_steps", 2)
    max_length: int = setting(
        1024,
        validator=_gt0,
        help="max tokens of prompt + answer; what happens to longer pairs is `overlength`'s choice (under "
        "truncate they keep their start, TRL's keep_start)",
    )
    overlength: str = setting(
        "error", choices=OVERLENGTH_POLICIES,
        help="pairs whose prompt + answer is longer than max_length: error (stop before training), drop "
        "(leave them out) or truncate (TRL cuts them, keeping the start); dropped and truncated pairs are "
        "logged and counted in metrics.json",
    )
    eval_batch_size: int = setting(8, validator=_gt0, help="sequences scored together when measuring held-out pairs")
    group_by_length: bool = setting(
        False, validator=attrs.validators.instance_of(bool),
        help="each step draws pairs of similar length (transformers' LengthGroupedSampler on prompt + longer "
        "answer, in a seeded random order): less padding, faster steps; which pairs share a step changes",
    )
    chat_template: str | None = setting(
        None, help="chat template (text, or a .jinja file) to use instead of the input checkpoint's; the output "
        "keeps it", path="text",
    )


def _trl_pairs(pairs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Pairs in TRL's conversational format: answers as one-message lists, rendered with the template."""
    return [
        {"prompt": r["prompt"], "chosen": [{"role": "assistant", "content": r["chosen"]}],
         "rejected": [{"role": "assistant", "content": r["rejected"]}]}
        for r in pairs
    ]


def _trained_tokens(fitted: Any, cfg: DPOStageConfig) -> int:
    """Tokens the policy trained on: TRL's own count (``num_tokens``), else an estimate."""
    if fitted.trained_tokens is not None:
        return fitted.trained_tokens
    data = fitted.trainer.train_dataset
    # Each pair is two sequences: prompt + chosen and prompt + rejected.
    tokens = sum(
        2 * len(p) + len(c) + len(r)
        for p, c, r in zip(data["prompt_ids"], data["chosen_ids"], data["rejected_ids"], strict=True)
    )
    return int(tokens * max(cfg.num_train_epochs, 1.0)) if cfg.max_steps < 0 else tokens


class DPO(BaseStage):
    """Direct preference optimisation with a LoRA on the input checkpoint, merged and verified."""

    kind: ClassVar[str] = "dpo"
    Config: ClassVar[type] = DPOStageConfig

    def _indexed_pairs(self, key: str) -> tuple[list[dict[str, Any]], str, list[DataError], list[int]]:
        """Normalised pairs, label, problems, and each kept pair's row number in the file (loaded once)."""

        def load() -> tuple[list[dict[str, Any]], str, list[DataError], list[int]]:
            rows, label = load_rows(as_spec(getattr(self.config, key)))
            normalised, problems = normalize_preference_rows(rows, label)
            return normalised, label, problems, kept_indices(len(rows), problems)

        return self.cached(key, load)

    def _data(self, seed: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]], str, list[int]]:
        """``(train, heldout, label, train row numbers)``; raises the first data problem."""
        cfg: DPOStageConfig = self.config
        rows, label, problems, indices = self._indexed_pairs("dataset")
        if problems:  # validate() ran already; this guards direct callers
            raise problems[0]
        if cfg.eval_dataset is not None:
            heldout, _eval_label, eval_problems, _ = self._indexed_pairs("eval_dataset")
            if eval_problems:
                raise eval_problems[0]
            return rows, heldout, label, indices
        train, heldout = split_heldout(rows, cfg.heldout_fraction, seed)
        train_indices, _ = split_heldout(indices, cfg.heldout_fraction, seed)  # the same split, by position
        return train, heldout, label, train_indices

    def check(self, ctx: StageContext) -> list[str]:
        cfg: DPOStageConfig = self.config
        problems: list[str] = []
        rows, label, found, indices = self._indexed_pairs("dataset")
        problems += [str(p) for p in found]
        problems += preflight_rows(ctx, rows, indices, source=label, rule=self._length_rule(),
                                   template=cfg.chat_template)
        if cfg.eval_dataset is not None:  # held-out pairs are only scored, never trained on
            problems += [str(p) for p in self._indexed_pairs("eval_dataset")[2]]
        strategy = (cfg.trainer_kwargs or {}).get("train_sampling_strategy")
        if strategy in ("group_by_length", "batch_rebalance"):
            # transformers reads lengths from an input_ids column, which TRL's pairs have not: it raises.
            problems.append(
                f"trainer_kwargs: train_sampling_strategy {strategy!r} does not work with TRL's preference "
                "data (it has no input_ids column to measure); set group_by_length: true on the stage instead"
            )
        return problems

    def _length_rule(self) -> LengthRule:
        cfg: DPOStageConfig = self.config
        return LengthRule(lengths_of=pair_lengths, limit=cfg.max_length, policy=cfg.overlength, what="pair")

    def fingerprint_data(self) -> Any:
        cfg: DPOStageConfig = self.config
        rows = self._indexed_pairs("dataset")[0]
        held = self._indexed_pairs("eval_dataset")[0] if cfg.eval_dataset is not None else None
        return {"dataset": content_hash(rows), "eval_dataset": content_hash(held) if held is not None else None}

    def build_trainer(self, checkpoint: Checkpoint, ctx: StageContext) -> tuple[Any, dict[str, Any]]:
        """The configured ``trl.DPOTrainer`` (not yet trained) and the facts :meth:`run` needs.

        Public so the exact data the trainer sees (prompt/chosen/rejected ids) can be inspected.
        """
        from datasets import Dataset
        from trl import DPOConfig, DPOTrainer

        from ladder.training.args import trainer_args_from
        from ladder.training.chat_format import chat_template_for, input_eos_ids
        from ladder.training.lora import peft_config_for
        from ladder.training.models import load_tokenizer
        from ladder.training.modes import load_training_model
        from ladder.training.sampling import length_grouped

        cfg: DPOStageConfig = self.config
        train, heldout, label, train_indices = self._data(ctx.seed)
        tokenizer = load_tokenizer(checkpoint, ctx.options)
        template = chat_template_for(tokenizer, checkpoint, cfg.chat_template, where=f"stage {self.name!r}",
                                     fix="run SFT before DPO, or set chat_template in the DPO stage")
        # Measured with this checkpoint's tokenizer and template; over-length pairs per `overlength`.
        train, data_checks = enforce_rows(tokenizer, train, train_indices, source=label, rule=self._length_rule(),
                                          template=template)
        model = load_training_model(checkpoint, ctx, cfg)
        eos_ids = input_eos_ids(checkpoint, model, tokenizer, template)  # before TRL touches the configs

        args = DPOConfig(**trainer_args_from(ctx, cfg, dataset_num_proc=None, beta=cfg.beta, max_length=cfg.max_length))
        # ref_model=None + peft_config: TRL computes the reference by disabling the adapter
        # (dpo_trainer.py keeps `self.ref_model = None` for PEFT models); no second copy. Under
        # full fine-tuning TRL loads a frozen copy of the input model from its config._name_or_path
        # (a chain of adapters was merged to disk for it by load_training_model).
        trainer_cls = length_grouped(DPOTrainer) if cfg.group_by_length else DPOTrainer
        trainer = trainer_cls(model=model, ref_model=None, args=args, train_dataset=Dataset.from_list(_trl_pairs(train)),
                              processing_class=tokenizer, peft_config=peft_config_for(cfg))
        facts = {
            "train": train,
            "heldout": heldout,
            "label": label,
            "tokenizer": tokenizer,
            "template": template,
            "eos_ids": eos_ids,
            "beta": args.beta,
            "data_checks": data_checks,
        }
        return trainer, facts

    def run(self, checkpoint: Checkpoint, ctx: StageContext) -> StageResult:
        from ladder.evaluate import heldout_preference
        from ladder.training.fit import fit
        from ladder.training.lora import input_policy
        from ladder.training.publish import publish

        cfg: DPOStageConfig = self.config
        trainer, facts = self.build_trainer(checkpoint, ctx)
        tokenizer, heldout, beta = facts["tokenizer"], facts["heldout"], facts["beta"]
        # Before train(): the model is not yet wrapped for distribution, every process holds it whole.
        before, reference_scores = heldout_preference(input_policy(trainer.model), tokenizer, heldout, beta=beta,
                                                      batch_size=cfg.eval_batch_size)
        fitted = fit(trainer, ctx, checkpoint)  # every process of a launch calls it
        if fitted is None:  # not the main process: the main one measures and publishes
            return StageResult(checkpoint)
        tokens = _trained_tokens(fitted, cfg)
        after, _ = heldout_preference(fitted.model, tokenizer, heldout, reference_scores=reference_scores, beta=beta,
                                      batch_size=cfg.eval_batch_size)
        if before is not None and after is not None:
            logger.info(
                "%s held-out preference accuracy %.3f -> %.3f (log-prob accuracy %.3f -> %.3f, %d pairs)",
                self.name, before["accuracy"], after["accuracy"], before["logp_accuracy"],
                after["logp_accuracy"], after["n"],
            )
        train = facts["train"]
        verify = [
            tokenizer.apply_chat_template([*r["prompt"], {"role": "assistant", "content": r["chosen"]}],
                                          tokenize=False)
            for r in train[:3]
        ]
        out = publish(fitted.model, tokenizer, ctx, parent=checkpoint, config=cfg, chat_template=facts["template"],
                      eos_ids=facts["eos_ids"], verify_texts=verify)
        stage_metrics: dict[str, Any] = {
            "rows": len(train),
            "heldout_rows": len(heldout),
            "dataset": facts["label"],
            "beta": beta,
            "heldout_before": before,
            "heldout_after": after,
            "data_checks": facts["data_checks"],
            **out.metrics,
        }
        return StageResult(out.checkpoint, {"train": fitted.summary(tokens=tokens), "stage_metrics": stage_metrics})
