"""GRPO end to end on the tiny model: the reward rises, per-step reward logs, a verified merged
checkpoint of the input, and the reference chain SFT -> DPO -> GRPO(input="sft")."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ladder import DPO, GRPO, SFT, Pipeline
from ladder.atomic import is_complete
from ladder.registry import rewards
from ladder.rewards import completion_text

# Activation (gradient) checkpointing, TRL's default, only slows a tiny model on a CPU down.
FAST = {}
# GSM8K-shaped rows: the gold answer follows "####".
PROBLEMS = [
    {"question": f"What is {a} + {b}?", "answer": f"{a} + {b} = {a + b}\n#### {a + b}"}
    for a in range(4)
    for b in range(4)
]


def digit_share(completions, **kwargs):
    """Share of the completion's characters that are digits: a dense reward with spread on a random model
    (exact match on a random model is always 0, which carries no signal)."""
    texts = [completion_text(c) for c in completions]
    return [sum(ch.isdigit() for ch in t) / max(1, len(t)) for t in texts]


def _weights(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


@pytest.fixture(scope="module")
def grpo_run(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory):
    rewards.register("digit_share", digit_share, replace=True)
    try:
        # The random tiny model's logits are nearly flat; a low temperature amplifies the
        # logit changes a LoRA can make in a few steps (TRL scores log-probs at the same
        # temperature, so training stays consistent with sampling).
        stage = GRPO(
            dataset=PROBLEMS,
            rewards={"digit_share": 1.0},
            num_generations=4,
            max_completion_length=8,
            temperature=0.1,
            learning_rate=2e-2,
            per_device_train_batch_size=8,
            gradient_accumulation_steps=1,
            max_steps=10,
            save_steps=0,
            # TRL's own rollouts (adapter unmerged, in training mode): at temperature 0.1 the
            # random model's groups get their spread from LoRA dropout's noise in sampling. With
            # merged rollouts (no dropout) the same 10 steps raise the reward 0.04 -> 0.29, short
            # of this test's +0.3 (tests/integration/test_merged_rollouts.py covers that path).
            merged_rollouts=False,
            trainer_kwargs=FAST,
        )
        run_dir = tmp_path_factory.mktemp("runs") / "grpo"
        yield Pipeline([stage], model=tiny_model, run_dir=run_dir, probes=False).run()
    finally:
        rewards.unregister("digit_share")


def test_grpo_raises_the_reward(grpo_run) -> None:
    metrics = json.loads((grpo_run.run_dir / "01-grpo" / "metrics.json").read_text())
    train, sm = metrics["train"], metrics["stage_metrics"]
    assert train["steps"] == 10
    assert train["reward_last"] > train["reward_first"] + 0.3, train
    assert sm["rewards"]["digit_share"]["last"] > sm["rewards"]["digit_share"]["first"] + 0.3
    assert sm["reward_weights"] == {"digit_share": 1.0}
    assert sm["num_generations"] == 4 and sm["generation_batch_size"] == 8 and sm["rows"] == 16
    assert sm["generation_backend"] == "transformers"
    assert 0.0 <= sm["zero_spread_share"] <= 1.0
    assert sm["kl_last"] > 0  # beta defaults to 0.04: the KL to the input model is measured
    # one log record per step with TRL's reward keys
    records = [json.loads(line) for line in (grpo_run.run_dir / "01-grpo" / "trainer_log.jsonl").open()]
    steps = [r for r in records if "reward" in r]
    assert [r["step"] for r in steps] == list(range(1, 11))
    for key in ("reward_std", "rewards/digit_share/mean", "frac_reward_zero_std", "completions/mean_length", "kl"):
        assert all(key in r for r in steps), key


def test_output_is_a_verified_merged_checkpoint_of_the_input(grpo_run, tiny_model: Path) -> None:
    stage_dir = grpo_run.run_dir / "01-grpo"
    assert is_complete(stage_dir)
    final = grpo_run.final
    assert final.stage == "grpo" and final.kind == "policy"
    assert final.parent is not None and final.parent.stage == "base" and final.parent.path == str(tiny_model)
    model_dir = Path(final.path)
    assert model_dir == stage_dir / "model"
    assert (stage_dir / "adapter" / "adapter_model.safetensors").is_file()
    metrics = json.loads((stage_dir / "metrics.json").read_text())
    assert metrics["stage_metrics"]["merge_max_abs_diff"] < 1e-3
    base, merged = _weights(tiny_model), _weights(model_dir)
    assert any(not (base[k] == merged[k]).all() for k in base if "v_proj" in k)
    assert all((base[k] == merged[k]).all() for k in base if "mlp" in k)  # LoRA touched only q/v
    # rollouts and the saved model stop at the end of the assistant's turn
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    gen = json.loads((model_dir / "generation_config.json").read_text())
    eos = gen["eos_token_id"] if isinstance(gen["eos_token_id"], list) else [gen["eos_token_id"]]
    assert tok.convert_tokens_to_ids("<|im_end|>") in eos


def test_merged_model_carries_the_learned_behaviour(grpo_run, tiny_model: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(grpo_run.final.path)
    chat = [{"role": "user", "content": "What is 9 + 9?\n\nPut the final answer in <answer></answer> tags."}]
    ids = tok.apply_chat_template(chat, add_generation_prompt=True, return_tensors="pt", return_dict=True)

    def share(path: str) -> float:
        model = AutoModelForCausalLM.from_pretrained(path)
        torch.manual_seed(0)
        out = model.generate(**ids, max_new_tokens=8, do_sample=True, temperature=0.1, num_return_sequences=8)
        texts = tok.batch_decode(out[:, ids["input_ids"].shape[1] :], skip_special_tokens=True)
        return sum(digit_share(texts)) / len(texts)

    assert share(grpo_run.final.path) > share(str(tiny_model)) + 0.3


def test_reference_chain_sft_dpo_then_grpo_from_sft(tiny_model: Path, tmp_path: Path) -> None:
    sft_rows = [
        {"instruction": p["question"], "output": f"<answer>{p['answer'].rsplit('#### ', 1)[1]}</answer>"}
        for p in PROBLEMS
    ]
    pairs = [
        {"prompt": p["question"], "chosen": f"<answer>{p['answer'].rsplit('#### ', 1)[1]}</answer>", "rejected": "No."}
        for p in PROBLEMS
    ]
    pipeline = Pipeline(
        [
            SFT(dataset=sft_rows, max_steps=2, learning_rate=5e-3, trainer_kwargs=FAST),
            DPO(dataset=pairs, heldout_fraction=0.0, max_steps=2, learning_rate=5e-3, trainer_kwargs=FAST),
            GRPO(dataset=PROBLEMS, input="sft", max_steps=2, max_completion_length=8, trainer_kwargs=FAST),
        ],
        model=tiny_model,
        run_dir=tmp_path / "chain",
        probes=False,
    )
    result = pipeline.run()
    assert result.trained == ("sft", "dpo", "grpo")
    sft, dpo, grpo = (result.checkpoints[n] for n in ("sft", "dpo", "grpo"))
    assert dpo.parent is not None and dpo.parent.path == sft.path
    assert grpo.parent is not None and grpo.parent.stage == "sft" and grpo.parent.path == sft.path
    assert [c.stage for c in grpo.lineage()] == ["grpo", "sft", "base"]
    manifest = json.loads((tmp_path / "chain" / "manifest.json").read_text())
    assert [s["input"] for s in manifest["stages"]] == ["base", "sft", "sft"]
    assert all(s["status"] == "complete" for s in manifest["stages"])
    metrics = json.loads((tmp_path / "chain" / "03-grpo" / "metrics.json").read_text())
    sm = metrics["stage_metrics"]
    assert set(sm["rewards"]) == {"exact_match", "tag_format"}
    assert sm["reward_weights"] == {"exact_match": 1.0, "tag_format": 0.1}
    assert metrics["train"]["steps"] == 2 and "reward_first" in metrics["train"]
