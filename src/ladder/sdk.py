"""The one module a stage plugin imports: everything ladder promises to third-party stages.

A training stage is its config (extends :class:`TrainingSettings`), a pre-flight
(:meth:`BaseStage.check`), the identity of its data (``fingerprint_data``), and a ``run`` that
builds its TRL trainer and calls :func:`fit` and :func:`publish`::

    from ladder import sdk

    @attrs.frozen(kw_only=True)
    class CPTStageConfig(sdk.TrainingSettings):
        trl_config: ClassVar[str] = "SFTConfig"          # trainer_kwargs are checked against it
        dataset: Any = sdk.setting(help="raw text rows", data=True)
        learning_rate: float = sdk.training_default("learning_rate", 1e-4)

    class CPT(sdk.BaseStage):
        kind = "cpt"
        Config = CPTStageConfig

        def run(self, checkpoint, ctx):
            tokenizer = sdk.load_tokenizer(checkpoint, ctx.options)
            trainer = SFTTrainer(model=sdk.load_model(checkpoint, ctx.options),
                                 args=SFTConfig(**sdk.trainer_args_from(ctx, self.config)), ...,
                                 peft_config=sdk.peft_config_for(self.config))
            fitted = sdk.fit(trainer, ctx, checkpoint)
            if fitted is None:                      # another process of a multi-GPU launch
                return sdk.StageResult(checkpoint)
            out = sdk.publish(fitted.model, tokenizer, ctx, parent=checkpoint, config=self.config,
                              chat_template=tokenizer.chat_template, eos_ids=checkpoint.eos_token_ids,
                              verify_texts=texts[:3])
            return sdk.StageResult(out.checkpoint, {"train": fitted.summary(), "stage_metrics": out.metrics})

Nothing outside this module (and ``ladder`` itself) is promised to plugins; docs/writing-a-stage.md
walks through the example plugin ``plugins/ladder-cpt``. Importing it imports no torch.
"""

from __future__ import annotations

from ladder.checkpoint import Checkpoint
from ladder.data.loading import DatasetSpec, as_spec, content_hash, load_rows
from ladder.errors import ConfigError, DataError, LadderError, MergeVerificationError, StageError
from ladder.configs import config_to_dict
from ladder.settings import LoraSettings, TrainingSettings, setting, training_default
from ladder.stage import BaseStage, Stage, StageContext, StageResult
from ladder.training.args import trainer_args, trainer_args_from
from ladder.training.chat_format import chat_template_for, eos_token_ids, input_eos_ids, training_chat_template
from ladder.training.fit import Fitted, fit
from ladder.training.lora import peft_config, peft_config_for
from ladder.training.models import load_model, load_tokenizer
from ladder.training.modes import load_training_model
from ladder.training.publish import Published, publish

__all__ = [
    # the core
    "Checkpoint",
    "Stage",
    "StageContext",
    "StageResult",
    "BaseStage",
    # settings
    "TrainingSettings",
    "LoraSettings",
    "setting",
    "training_default",
    "config_to_dict",
    # data
    "DatasetSpec",
    "as_spec",
    "load_rows",
    "content_hash",
    # models and chat format
    "load_model",
    "load_training_model",
    "load_tokenizer",
    "chat_template_for",
    "training_chat_template",
    "eos_token_ids",
    "input_eos_ids",
    # training
    "trainer_args",
    "trainer_args_from",
    "peft_config",
    "peft_config_for",
    "fit",
    "Fitted",
    "publish",
    "Published",
    # errors
    "LadderError",
    "ConfigError",
    "DataError",
    "StageError",
    "MergeVerificationError",
]
