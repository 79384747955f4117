"""Rollouts generated with the LoRA merged (ladder.training.rl.rollouts), on the tiny model with
TRL's real GRPOTrainer: the same samples as the adapter-on model, the base weights given back
after each generation, training unchanged in kind, and the cases where it must stay off."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ladder import GRPO, Pipeline
from ladder.training.rl import rollouts

FAST = {}


def _peft_model(tiny_model: Path, *, dropout: float = 0.0, dtype: str = "float32"):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=getattr(torch, dtype))
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", lora_dropout=dropout))
    with torch.no_grad():  # a trained adapter: B starts at zero, which would merge to nothing
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    return model


def _base_weights(model) -> dict[str, object]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" not in n}


def test_merged_generation_samples_what_the_adapter_on_model_samples(tiny_model: Path) -> None:
    import torch
    from transformers import AutoTokenizer

    model = _peft_model(tiny_model)
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    ids = tokenizer(["hello there", "two plus two"], return_tensors="pt", padding=True)
    before = _base_weights(model)

    def sample():
        torch.manual_seed(1)
        with torch.no_grad():
            return model.generate(**ids, max_new_tokens=8, do_sample=True, temperature=1.0,
                                  pad_token_id=tokenizer.pad_token_id)

    unmerged = sample()
    assert rollouts.mergeable(model) is None
    with rollouts.adapter_merged(model):
        assert rollouts.mergeable(model) == "the adapter is already merged"
        merged = sample()
    assert torch.equal(unmerged, merged)
    assert rollouts.mergeable(model) is None  # unmerged again
    for name, weight in _base_weights(model).items():
        assert torch.allclose(weight, before[name], rtol=0, atol=1e-6), name


def test_a_bf16_base_comes_back_bit_for_bit(tiny_model: Path) -> None:
    # bf16 weights (a GPU's, or a CPU LoRA's under precision bf16) do not survive merge + unmerge:
    # W + BA - BA rounds twice to an 8-bit mantissa. adapter_merged copies them back exactly.
    import torch

    lossy = _peft_model(tiny_model, dtype="bfloat16")
    before = _base_weights(lossy)
    with torch.no_grad():  # PEFT's own round trip, what adapter_merged must not leave behind
        lossy.merge_adapter()
        lossy.unmerge_adapter()
    assert any(not torch.equal(w, before[n]) for n, w in _base_weights(lossy).items())

    model = _peft_model(tiny_model, dtype="bfloat16")
    assert all(torch.equal(w, before[n]) for n, w in _base_weights(model).items())
    for _ in range(3):
        with rollouts.adapter_merged(model):
            assert any(not torch.equal(w, before[n]) for n, w in _base_weights(model).items())  # merged
    for name, w in _base_weights(model).items():
        assert torch.equal(w, before[name]), name
    assert rollouts.mergeable(model) is None


def test_what_cannot_be_merged_is_named(tiny_model: Path) -> None:
    from transformers import AutoModelForCausalLM

    plain = AutoModelForCausalLM.from_pretrained(tiny_model)
    assert rollouts.mergeable(plain) == "not a PEFT model"
    model = _peft_model(tiny_model)
    model.merge_adapter()
    assert rollouts.mergeable(model) == "the adapter is already merged"


@pytest.fixture(scope="module")
def grpo_trainer(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory):
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    def length_reward(completions, **kwargs):
        return [float(len(c)) / 10 for c in completions]

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    args = GRPOConfig(output_dir=str(tmp_path_factory.mktemp("grpo")), per_device_train_batch_size=4,
                      num_generations=2, max_completion_length=6, max_steps=2, learning_rate=1e-2,
                      report_to=[], save_strategy="no", logging_steps=1, use_cpu=True, beta=0.0)
    trainer = GRPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(tiny_model), reward_funcs=[length_reward], args=args,
        train_dataset=Dataset.from_list([{"prompt": f"count {i}"} for i in range(8)]),
        processing_class=tokenizer,
        peft_config=LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", lora_dropout=0.05),
    )
    return trainer


def test_trl_generates_with_the_adapter_merged_and_gets_the_weights_back(grpo_trainer) -> None:
    import torch

    trainer = grpo_trainer
    before = _base_weights(trainer.model)
    merged_during: list[str | None] = []
    generate = trainer.model.generate

    def watching(*args, **kwargs):  # observes the real generate, changes nothing
        merged_during.append(rollouts.mergeable(trainer.model))
        return generate(*args, **kwargs)

    trainer.model.generate = watching
    try:
        assert rollouts.install(trainer) is True
        trainer.train()
    finally:
        del trainer.model.generate
    assert merged_during and all(m == "the adapter is already merged" for m in merged_during)
    assert rollouts.mergeable(trainer.model) is None
    lora_b = [p for n, p in trainer.model.named_parameters() if "lora_B" in n]
    assert any(p.abs().max() > 0 for p in lora_b), "the adapter trained"
    for name, weight in _base_weights(trainer.model).items():
        assert torch.allclose(weight, before[name], rtol=0, atol=1e-5), name


def test_install_refuses_a_trainer_that_generates_with_vllm(grpo_trainer) -> None:
    grpo_trainer.use_vllm = True
    try:
        assert rollouts.install(grpo_trainer) is False
    finally:
        grpo_trainer.use_vllm = False


def _stage_metrics(result) -> dict:
    return json.loads((result.run_dir / "01-grpo" / "metrics.json").read_text())["stage_metrics"]


def test_the_grpo_stage_reports_merged_rollouts(tiny_model: Path, tmp_path: Path) -> None:
    problems = [{"prompt": f"What is {i} + 1?", "answer": str(i + 1)} for i in range(8)]
    stage = GRPO(dataset=problems, num_generations=2, max_completion_length=6, per_device_train_batch_size=4,
                 gradient_accumulation_steps=1, max_steps=1, save_steps=0, trainer_kwargs=FAST)
    result = Pipeline([stage], model=tiny_model, run_dir=tmp_path / "run", probes=False).run()
    assert _stage_metrics(result)["merged_rollouts"] is True
    off = GRPO(dataset=problems, num_generations=2, max_completion_length=6, per_device_train_batch_size=4,
               gradient_accumulation_steps=1, max_steps=1, save_steps=0, merged_rollouts=False, trainer_kwargs=FAST)
    result = Pipeline([off], model=tiny_model, run_dir=tmp_path / "off", probes=False).run()
    assert _stage_metrics(result)["merged_rollouts"] is False
