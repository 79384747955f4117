"""Training-mode settings and what they need of the machine, merge strategies, and chains of
adapters as checkpoint values (no training)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from ladder import DPO, GRPO, RLOO, SFT, ConfigError, Pipeline, ValidationError
from ladder.checkpoint import Checkpoint
from ladder.executors.spec import checkpoint_chain, checkpoint_from_chain
from ladder.recipe import pipeline_from_dict
from ladder.training.lora import peft_config_for
from ladder.training.modes import machine_problems

ROWS = [{"instruction": "Say hi", "input": "", "output": "Hi."}]


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"finetuning": "qlora"}, "finetuning: qlora needs a CUDA GPU"),
        ({"use_liger_kernel": True}, "use_liger_kernel: true needs a CUDA GPU (Liger's kernels are Triton kernels)"),
        ({"attn_implementation": "flash_attention_2"}, "attn_implementation: flash_attention_2 needs a CUDA GPU"),
    ],
)
def test_gpu_only_modes_fail_pre_flight_on_a_cpu(tiny_model: Path, settings: dict, expected: str) -> None:
    pipeline = Pipeline([SFT(dataset=ROWS, **settings)], model=tiny_model, probes=False)
    with pytest.raises(ValidationError) as info:
        pipeline.validate()
    (problem,) = [p for p in info.value.problems if expected in p]
    assert problem.startswith("stage 'sft': ") and "this machine has cpu" in problem


def test_a_stage_that_trains_on_modal_is_checked_there_not_here(tiny_model: Path) -> None:
    stage = SFT(dataset=ROWS, finetuning="qlora")
    stage.placement = {"executor": "modal", "gpu": "A100"}
    Pipeline([stage], model=tiny_model, probes=False).validate()  # no problem on this CPU machine


def test_machine_needs_on_a_gpu_name_the_missing_package(monkeypatch: pytest.MonkeyPatch) -> None:
    import ladder.training.modes as modes

    monkeypatch.setattr(modes, "_installed", lambda module: False)  # a GPU box without the optional packages
    from ladder.settings import TrainingSettings

    problems = machine_problems(TrainingSettings(finetuning="qlora", use_liger_kernel=True), device="cuda")
    assert "pip install 'ladder[quant]'" in problems[0] and "bitsandbytes" in problems[0]
    assert "pip install liger-kernel" in problems[1]
    with pytest.raises(ImportError, match=r"ladder\[quant\]"):
        modes.require_machine(TrainingSettings(finetuning="qlora"), device="cuda")
    assert machine_problems(TrainingSettings(), device="cuda") == []


@pytest.mark.parametrize(
    ("settings", "setting"),
    [
        ({"finetuning": "qlora4"}, "finetuning"),
        ({"attn_implementation": "flash"}, "attn_implementation"),
        ({"use_liger_kernel": "yes"}, "use_liger_kernel"),
        ({"lora": {"use_dora": 1}}, "use_dora"),
        ({"packing": "bfd"}, "packing"),
    ],
)
def test_bad_mode_settings_fail_when_the_stage_is_built(settings: dict, setting: str) -> None:
    with pytest.raises(ConfigError, match=setting):
        SFT(dataset=ROWS, **settings)


def test_attn_implementation_accepts_transformers_names_and_hub_kernels() -> None:
    for value in ("eager", "sdpa", "flex_attention", "flash_attention_3", "kernels-community/flash-attn2"):
        assert SFT(dataset=ROWS, attn_implementation=value).config.attn_implementation == value


def test_lora_variants_reach_the_peft_config() -> None:
    cfg = SFT(dataset=ROWS, finetuning="qlora", lora={"use_dora": True, "use_rslora": True, "r": 4}).config
    peft = peft_config_for(cfg)
    assert peft.use_dora and peft.use_rslora and peft.r == 4
    assert peft_config_for(SFT(dataset=ROWS, finetuning="full").config) is None


def test_grpo_loss_settings_are_trls_and_rloo_has_none() -> None:
    import trl

    from ladder.stages.grpo import GRPO_LOSS_TYPES, IMPORTANCE_SAMPLING_LEVELS

    fields = {f.name: f for f in dataclasses.fields(trl.GRPOConfig)}
    help_text = fields["loss_type"].metadata["help"] + fields["importance_sampling_level"].metadata["help"]
    assert fields["loss_type"].default == "dapo" and fields["importance_sampling_level"].default == "token"
    for value in (*GRPO_LOSS_TYPES, *IMPORTANCE_SAMPLING_LEVELS):
        assert f"'{value}'" in help_text, value  # every value ladder accepts is one TRL documents
    gspo = GRPO(dataset=[{"prompt": "p", "answer": "1"}], loss_type="grpo", importance_sampling_level="sequence")
    assert (gspo.config.loss_type, gspo.config.importance_sampling_level) == ("grpo", "sequence")
    with pytest.raises(ConfigError, match="loss_type"):
        GRPO(dataset=[{"prompt": "p", "answer": "1"}], loss_type="ppo")
    rloo_fields = {f.name for f in dataclasses.fields(trl.RLOOConfig)}
    assert "loss_type" not in rloo_fields  # TRL 1.16's RLOO has one loss
    with pytest.raises(ConfigError, match="loss_type"):
        RLOO(dataset=[{"prompt": "p", "answer": "1"}], loss_type="dapo")


def test_merge_strategy_is_checked_in_python_and_in_recipes(tiny_model: Path) -> None:
    with pytest.raises(ConfigError, match="merge must be one of every_stage, final"):
        Pipeline([SFT(dataset=ROWS)], model=tiny_model, merge="sometimes")
    with pytest.raises(ValidationError, match="`merge:` must be one of every_stage, final"):
        pipeline_from_dict({"model": str(tiny_model), "merge": "last", "stages": [{"stage": "sft", "dataset": ROWS}]})
    pipeline = pipeline_from_dict({"model": str(tiny_model), "merge": "final",
                                   "stages": [{"stage": "sft", "dataset": ROWS}]})
    assert pipeline.merge == "final"


def test_a_chain_of_adapters_survives_the_manifest_and_the_worker_spec(tmp_path: Path) -> None:
    base = Checkpoint.base(tmp_path / "base")
    sft = Checkpoint(path=base.path, stage="sft", parent=base, fingerprint="a1",
                     adapters=(str(tmp_path / "01-sft" / "adapter"),))
    dpo = Checkpoint(path=base.path, stage="dpo", parent=sft, fingerprint="b2",
                     adapters=(*sft.adapters, str(tmp_path / "02-dpo" / "adapter")))
    assert dpo.tokenizer_path == str(tmp_path / "02-dpo" / "adapter")
    assert Checkpoint.from_dict(dpo.to_dict()).adapters == dpo.adapters
    rebuilt = checkpoint_from_chain(checkpoint_chain(dpo))
    assert rebuilt.adapters == dpo.adapters and rebuilt.parent.adapters == sft.adapters
    assert "adapters" not in base.to_dict()  # a full model's record is what it was before chains existed


def test_every_stage_fingerprints_do_not_change_and_final_ones_differ(tiny_model: Path) -> None:
    stage = DPO(dataset=[{"prompt": "p", "chosen": "a", "rejected": "b"}])
    default = Pipeline([stage], model=tiny_model).fingerprint(stage, "in")
    assert Pipeline([stage], model=tiny_model, merge="every_stage").fingerprint(stage, "in") == default
    assert Pipeline([stage], model=tiny_model, merge="final").fingerprint(stage, "in") != default
