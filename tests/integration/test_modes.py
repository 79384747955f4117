"""Training modes and merge strategies on the tiny model: full fine-tuning of every stage kind,
`merge: final` (adapters only per stage, one merge that equals applying them in order with PEFT),
and SFT packing that keeps assistant-only labels and per-row attention."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ladder import DPO, GRPO, RLOO, SFT, Pipeline, RewardModel
from ladder.checkpoint import Checkpoint
from ladder.fingerprints import base_checkpoint
from ladder.registry import rewards
from ladder.rewards import completion_text
from ladder.stage import StageContext
from tests.integration.crash_pipeline import SFT_ROWS

FAST = {}
PAIRS = [
    {"prompt": f"Question {i}: tell me about apples.", "chosen": "Yes. Good answer.", "rejected": "No. Bad answer."}
    for i in range(24)
]
PROBLEMS = [{"question": f"What is {a} + {b}?", "answer": f"#### {a + b}"} for a in range(3) for b in range(3)]


def digit_share(completions, **kwargs):
    """A dense reward with spread on a random model (exact match there is always 0)."""
    texts = [completion_text(c) for c in completions]
    return [sum(ch.isdigit() for ch in t) / max(1, len(t)) for t in texts]


@pytest.fixture(scope="module", autouse=True)
def _reward():
    rewards.register("digit_share", digit_share, replace=True)
    yield
    rewards.unregister("digit_share")


def _rl(cls, **settings):
    return cls(dataset=PROBLEMS, rewards={"digit_share": 1.0}, num_generations=2, max_completion_length=6,
               per_device_train_batch_size=4, gradient_accumulation_steps=1, max_steps=2, save_steps=0,
               learning_rate=1e-2, trainer_kwargs=FAST, **settings)


def _weights(path: str | Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(Path(path) / "model.safetensors"))


def _ctx(tmp_path: Path, **fields) -> StageContext:
    return StageContext(run_dir=tmp_path, work_dir=tmp_path / "w", final_dir=tmp_path / "f",
                        trainer_dir=tmp_path / "t", **fields)


# ---------------------------------------------------------------------------------------------
# finetuning: full, for every stage kind


@pytest.fixture(scope="module")
def full_run(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory):
    stages = [
        DPO(dataset=PAIRS, finetuning="full", heldout_fraction=0.2, max_steps=2, learning_rate=1e-3,
            per_device_train_batch_size=4, gradient_accumulation_steps=1, save_steps=0, trainer_kwargs=FAST),
        _rl(GRPO, name="grpo", input="base", finetuning="full", beta=0.04),
        RewardModel(dataset=PAIRS, input="base", finetuning="full", max_steps=2, learning_rate=1e-3,
                    per_device_train_batch_size=4, save_steps=0, trainer_kwargs=FAST),
        _rl(RLOO, name="rloo", input="base", finetuning="full", beta=0.05),
    ]
    run_dir = tmp_path_factory.mktemp("runs") / "full"
    return Pipeline(stages, model=tiny_model, run_dir=run_dir, probes=False).run()


@pytest.mark.parametrize("stage_dir", ["01-dpo", "02-grpo", "03-rm", "04-rloo"])
def test_full_finetuning_trains_every_weight_and_keeps_no_adapter(full_run, tiny_model: Path, stage_dir: str) -> None:
    out = full_run.run_dir / stage_dir
    assert not (out / "adapter").exists() and (out / "model" / "model.safetensors").is_file()
    before, after = _weights(tiny_model), _weights(out / "model")
    changed = {k for k in before if k in after and not (before[k] == after[k]).all()}
    # Every weight kind moved, not just LoRA targets: MLPs and norms too.
    assert any("mlp" in k for k in changed) and any("k_proj" in k for k in changed), sorted(changed)[:5]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train"]["steps"] == 2 and "merge_max_abs_diff" not in metrics["stage_metrics"]
    assert metrics["stage_metrics"]["disk_bytes"] > 0


def test_full_rl_measures_the_kl_to_a_frozen_reference(full_run) -> None:
    for stage_dir in ("02-grpo", "04-rloo"):
        history = [json.loads(line) for line in (full_run.run_dir / stage_dir / "trainer_log.jsonl").open()]
        kls = [r["kl"] for r in history if "kl" in r]
        # TRL loaded a frozen copy of the input as the reference; the policy moves away from it.
        assert kls and kls[-1] > 0, (stage_dir, kls)


# ---------------------------------------------------------------------------------------------
# merge: final


@pytest.fixture(scope="module")
def final_run(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory):
    def stages():
        return [
            SFT(dataset=SFT_ROWS, max_steps=3, learning_rate=5e-3, save_steps=0, trainer_kwargs=FAST),
            DPO(dataset=PAIRS, heldout_fraction=0.2, max_steps=2, learning_rate=5e-3, per_device_train_batch_size=4,
                gradient_accumulation_steps=1, save_steps=0, lora={"use_dora": True}, trainer_kwargs=FAST),
            _rl(GRPO, name="grpo", lora={"use_rslora": True, "r": 4}, loss_type="dr_grpo"),
        ]

    run_dir = tmp_path_factory.mktemp("runs") / "final"
    probes = {"replace": True, "items": [{"prompt": "What is 2 + 3?"}]}

    def pipeline():
        return Pipeline(stages(), model=tiny_model, run_dir=run_dir, merge="final", probes=probes,
                        generation={"max_new_tokens": 4})

    first = pipeline().run()
    return first, pipeline


def test_merge_final_keeps_only_adapters_per_stage(final_run) -> None:
    result, _ = final_run
    for name in ("01-sft", "02-dpo", "03-grpo"):
        out = result.run_dir / name
        assert (out / "adapter" / "adapter_model.safetensors").is_file()
        assert not (out / "model").exists()
        assert not list(out.rglob("model.safetensors"))
        metrics = json.loads((out / "metrics.json").read_text())
        adapter_bytes = sum(p.stat().st_size for p in (out / "adapter").rglob("*") if p.is_file())
        assert metrics["stage_metrics"]["disk_bytes"] == adapter_bytes
        assert metrics["behaviour"], name  # probes ran on base + adapters so far
    chain = result.checkpoints["grpo"].adapters
    assert [Path(a).parent.name for a in chain] == ["01-sft", "02-dpo", "03-grpo"]
    assert json.loads((result.run_dir / "02-dpo" / "adapter" / "adapter_config.json").read_text())["use_dora"]
    assert json.loads((result.run_dir / "03-grpo" / "adapter" / "adapter_config.json").read_text())["use_rslora"]


def test_final_model_equals_applying_the_adapters_in_order(final_run, tiny_model: Path) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    result, _ = final_run
    final = Path(result.final.path)
    assert final == result.run_dir / "final" / "model" and not result.final.adapters
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    for name in ("01-sft", "02-dpo", "03-grpo"):  # what a user would do with PEFT
        model = PeftModel.from_pretrained(model, str(result.run_dir / name / "adapter")).merge_and_unload()
    merged = AutoModelForCausalLM.from_pretrained(final, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(final)
    ids = tok(["What is 2 + 3? The answer is 5.", "<|im_start|>user\nhello<|im_end|>"], return_tensors="pt",
              padding=True)
    with torch.no_grad():
        want, got = model(**ids).logits, merged(**ids).logits
    mask = ids["attention_mask"].bool()
    assert (want[mask] - got[mask]).abs().max().item() <= 1e-4
    # the last stage's chat template and stop tokens, as a merged stage would carry them
    assert tok.chat_template == result.checkpoints["grpo"].chat_template
    assert json.loads((final / "generation_config.json").read_text())["eos_token_id"]
    metrics = json.loads((result.run_dir / "final" / "metrics.json").read_text())
    assert len(metrics["merge_max_abs_diff"]) == 3 and metrics["disk_bytes"] > 0


def test_merge_final_reruns_reuse_every_stage_and_the_final_model(final_run) -> None:
    result, pipeline = final_run
    again = pipeline().run()
    assert again.trained == ()
    assert (again.final.path, again.final.fingerprint, again.final.adapters) == (result.final.path,
                                                                              result.final.fingerprint, ())
    assert again.checkpoints["grpo"].adapters == result.checkpoints["grpo"].adapters
    manifest = json.loads((result.run_dir / "manifest.json").read_text())
    assert manifest["final"]["checkpoint"]["path"] == result.final.path


def test_merge_strategy_is_part_of_the_fingerprint(final_run, tiny_model: Path) -> None:
    result, _ = final_run
    sft = SFT(dataset=SFT_ROWS, max_steps=3, learning_rate=5e-3, save_steps=0, trainer_kwargs=FAST)
    base = base_checkpoint(tiny_model)  # local folders are fingerprinted by content, as the run does
    every = Pipeline([sft], model=tiny_model).fingerprint(sft, base.fingerprint)
    final = Pipeline([sft], model=tiny_model, merge="final").fingerprint(sft, base.fingerprint)
    assert final == result.checkpoints["sft"].fingerprint != every


def test_full_finetuning_after_adapters_gets_the_merged_input_as_its_reference(final_run, tmp_path: Path) -> None:
    """TRL loads a full fine-tune's frozen reference from the model's config._name_or_path: for a
    chain of adapters that must be the merged chain, not the base the adapters apply to."""
    from ladder.training.models import load_model

    result, _ = final_run
    chain = result.checkpoints["sft"]
    stage = DPO(dataset=PAIRS, finetuning="full", max_steps=1, trainer_kwargs=FAST)
    trainer, _facts = stage.build_trainer(chain, _ctx(tmp_path, merge="final"))
    expected = load_model(chain).state_dict()
    for model in (trainer.model, trainer.ref_model):
        state = model.state_dict()
        assert all((state[k] == v).all() for k, v in expected.items() if k in state)
    assert Path(trainer.ref_model.config._name_or_path).is_relative_to(tmp_path / "t")


# ---------------------------------------------------------------------------------------------
# SFT packing


def test_packing_keeps_assistant_only_labels_and_per_row_attention(tiny_model: Path, tmp_path: Path) -> None:
    """Packed rows: the labels of each row are the unpacked row's (assistant tokens only, the first
    token of each row masked), and the loss equals the unpacked loss: no row attends to another."""
    import torch

    rows = SFT_ROWS[:6]
    plain, _ = SFT(dataset=rows, max_steps=1, max_length=256, trainer_kwargs=FAST).build_trainer(
        Checkpoint.base(tiny_model), _ctx(tmp_path / "plain"))
    packed, _ = SFT(dataset=rows, max_steps=1, max_length=256, packing=True, attn_implementation="sdpa",
                    trainer_kwargs=FAST).build_trainer(Checkpoint.base(tiny_model), _ctx(tmp_path / "packed"))
    assert packed.model.config._attn_implementation == "sdpa"
    assert len(packed.train_dataset) < len(rows)  # several rows per block
    batch = packed.data_collator([packed.train_dataset[i] for i in range(len(packed.train_dataset))])
    assert "attention_mask" not in batch and batch["input_ids"].shape[0] == 1  # padding-free
    starts = (batch["position_ids"][0] == 0).nonzero().flatten().tolist() + [batch["input_ids"].shape[1]]
    segments = {tuple(batch["input_ids"][0, a:b].tolist()): batch["labels"][0, a:b].tolist()
                for a, b in zip(starts, starts[1:], strict=False)}
    unpacked = {tuple(r["input_ids"]): r["labels"] for r in plain.train_dataset}
    assert set(segments) == set(unpacked)
    for ids, labels in segments.items():
        assert labels == [-100, *unpacked[ids][1:]]
    model = plain.model.eval()
    with torch.no_grad():
        packed_loss = model(**{k: batch[k] for k in ("input_ids", "labels", "position_ids")}).loss
        sums, count = 0.0, 0
        for ids, labels in segments.items():
            out = model(input_ids=torch.tensor([ids]), labels=torch.tensor([labels]))
            n = sum(1 for x in labels[1:] if x != -100)
            sums, count = sums + out.loss.item() * n, count + n
    assert abs(packed_loss.item() - sums / count) < 1e-4


def test_a_reward_model_loads_a_policy_chain_under_its_classifier_head(final_run) -> None:
    """An rm stage after adapter stages (merge: final) starts from the policy chain loaded as a
    sequence classifier: the same backbone the merged policy has, with the new scalar head."""
    import attrs
    import torch

    from ladder.training.models import load_model, load_tokenizer

    result, _ = final_run
    chain = result.checkpoints["dpo"]
    policy = load_model(chain)
    classifier = load_model(attrs.evolve(chain, kind="reward"), kind="reward")
    assert classifier.config.pad_token_id == load_tokenizer(chain).pad_token_id
    ids = load_tokenizer(chain)(["What is 2 + 3?"], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        want = policy.model(input_ids=ids).last_hidden_state
        got = classifier.model(input_ids=ids).last_hidden_state
    assert (want - got).abs().max().item() <= 1e-5


def test_merge_final_publishes_a_reward_model_trained_on_a_policy_chain(tiny_model: Path, tmp_path: Path) -> None:
    from ladder.evaluate import reward_model_accuracy
    from ladder.training.models import load_model, load_tokenizer

    stages = [
        SFT(dataset=SFT_ROWS, max_steps=2, learning_rate=5e-3, save_steps=0, trainer_kwargs=FAST),
        RewardModel(dataset=PAIRS, heldout_fraction=0.25, max_steps=3, learning_rate=5e-3,
                    per_device_train_batch_size=4, save_steps=0, trainer_kwargs=FAST),
    ]
    result = Pipeline(stages, model=tiny_model, run_dir=tmp_path / "run", merge="final", probes=False).run()
    assert not list((tmp_path / "run").glob("0*/model"))
    assert result.final.kind == "reward" and json.loads(
        (Path(result.final.path) / "config.json").read_text())["architectures"] == ["Qwen2ForSequenceClassification"]
    # The chain (base + SFT adapter + RM adapter and head) scores the stage's held-out pairs as the
    # trained model did, and the merged classifier as the chain does.
    from ladder.data.preference import normalize_preference_rows, split_heldout

    sm = json.loads((tmp_path / "run" / "02-rm" / "metrics.json").read_text())["stage_metrics"]
    _, heldout = split_heldout(normalize_preference_rows(PAIRS, "pairs")[0], 0.25, seed=0)
    tokenizer = load_tokenizer(result.final)
    chained = reward_model_accuracy(load_model(result.checkpoints["rm"], kind="reward"), tokenizer, heldout)
    merged = reward_model_accuracy(load_model(result.final, kind="reward"), tokenizer, heldout)
    assert chained == pytest.approx(sm["heldout_after"], abs=1e-4) and merged == pytest.approx(chained, abs=1e-4)
    assert sm["heldout_after"]["n"] == len(heldout) > 0 and sm["disk_bytes"] > 0
