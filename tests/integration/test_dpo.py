"""DPO end to end on the tiny model: held-out preference accuracy rises, the merged checkpoint
is verified and keeps the input's chat template and EOS ids, SFT -> DPO chains, bad data and
bad settings are caught before training."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from ladder import DPO, SFT, Pipeline, ValidationError
from ladder.atomic import is_complete

TOPICS = ["apples", "bread", "France", "plants", "numbers", "Rome", "water", "yeast", "salt", "sugar"]
# Learnable: one answer style always preferred; answers of similar length, so the random tiny
# model has no length bias to lean on.
CHOSEN, REJECTED = "Yes. Good answer.", "No. Bad answer."
# Activation (gradient) checkpointing, TRL's default, only slows a tiny model on a CPU down.
FAST = {}


def pairs(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    return [
        {"prompt": f"Question {i}: tell me about {rng.choice(TOPICS)}.", "chosen": CHOSEN, "rejected": REJECTED}
        for i in range(n)
    ]


def _weights(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


@pytest.fixture(scope="module")
def dpo_run(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory):
    stage = DPO(
        dataset=pairs(60),
        heldout_fraction=0.2,
        learning_rate=5e-3,
        max_steps=8,
        per_device_train_batch_size=8,
        gradient_accumulation_steps=1,
        save_steps=0,
        trainer_kwargs=FAST,
    )
    run_dir = tmp_path_factory.mktemp("runs") / "dpo"
    return Pipeline([stage], model=tiny_model, run_dir=run_dir, probes=False).run()


def test_heldout_preference_accuracy_rises(dpo_run) -> None:
    metrics = json.loads((dpo_run.run_dir / "01-dpo" / "metrics.json").read_text())
    sm = metrics["stage_metrics"]
    assert sm["rows"] == 48 and sm["heldout_rows"] == 12
    before, after = sm["heldout_before"], sm["heldout_after"]
    assert before["n"] == after["n"] == 12
    # policy == reference before training: the implicit reward is 0 for every answer
    assert before["accuracy"] == 0.5 and before["margin"] == 0.0
    assert after["accuracy"] > before["accuracy"]
    assert after["accuracy"] >= 0.8
    assert after["margin"] > 0
    # the reference-free log-prob margin moved towards the chosen answers
    assert after["logp_margin"] > before["logp_margin"]
    train = metrics["train"]
    assert train["steps"] == 8 and train["train_tokens"] > 0
    assert train["loss_last"] < train["loss_first"]


def test_output_is_a_verified_merged_checkpoint_of_the_input(dpo_run, tiny_model: Path) -> None:
    stage_dir = dpo_run.run_dir / "01-dpo"
    assert is_complete(stage_dir)
    final = dpo_run.final
    assert final.stage == "dpo" and final.kind == "policy"
    assert final.parent is not None and final.parent.stage == "base" and final.parent.path == str(tiny_model)
    model_dir = Path(final.path)
    assert model_dir == stage_dir / "model"
    assert (stage_dir / "adapter" / "adapter_model.safetensors").is_file()
    assert not (model_dir / "adapter_config.json").exists()  # merged: a plain model
    metrics = json.loads((stage_dir / "metrics.json").read_text())
    assert metrics["stage_metrics"]["merge_max_abs_diff"] < 1e-3
    base, merged = _weights(tiny_model), _weights(model_dir)
    assert set(base) == set(merged)
    changed = [k for k in base if not (base[k] == merged[k]).all()]
    assert changed and all("q_proj" in k or "v_proj" in k for k in changed)  # the new LoRA, merged
    # the input's chat template is kept unchanged; EOS: the input's, plus the chat's end of turn
    from transformers import AutoTokenizer

    assert AutoTokenizer.from_pretrained(model_dir).chat_template == AutoTokenizer.from_pretrained(
        tiny_model
    ).chat_template
    gen = json.loads((model_dir / "generation_config.json").read_text())
    eos = gen["eos_token_id"] if isinstance(gen["eos_token_id"], list) else [gen["eos_token_id"]]
    base_eos = json.loads((tiny_model / "generation_config.json").read_text())["eos_token_id"]
    tok = AutoTokenizer.from_pretrained(model_dir)
    assert eos[0] == base_eos and tok.convert_tokens_to_ids("<|im_end|>") in eos
    assert list(final.eos_token_ids) == eos


def test_sft_then_dpo_in_one_pipeline(tiny_model: Path, tmp_path: Path) -> None:
    sft_rows = [
        {"instruction": f"Tell me about {t}.", "input": "", "output": f"{t.capitalize()} are interesting."}
        for t in TOPICS
    ]
    eval_pairs = pairs(6, seed=1)
    result = Pipeline(
        [
            SFT(dataset=sft_rows, max_steps=2, learning_rate=5e-3, per_device_train_batch_size=4, save_steps=0,
                trainer_kwargs=FAST),
            DPO(dataset=pairs(16), eval_dataset=eval_pairs, max_steps=2, learning_rate=5e-3,
                per_device_train_batch_size=4, gradient_accumulation_steps=1, save_steps=0, trainer_kwargs=FAST),
        ],
        model=tiny_model,
        run_dir=tmp_path / "run",
        probes=False,
    ).run()
    assert result.trained == ("sft", "dpo")
    sft, dpo = result.checkpoints["sft"], result.checkpoints["dpo"]
    assert dpo.parent is not None and dpo.parent.stage == "sft" and dpo.parent.fingerprint == sft.fingerprint
    assert [c.stage for c in dpo.lineage()] == ["dpo", "sft", "base"]
    # DPO starts from the SFT checkpoint: it keeps SFT's training chat template and EOS ids
    sft_dir, dpo_dir = Path(sft.path), Path(dpo.path)
    assert (dpo_dir / "chat_template.jinja").read_text() == (sft_dir / "chat_template.jinja").read_text()
    assert dpo.eos_token_ids == sft.eos_token_ids
    sm = json.loads((result.run_dir / "02-dpo" / "metrics.json").read_text())["stage_metrics"]
    # an explicit eval_dataset: every dataset row trains, the eval rows are measured
    assert sm["rows"] == 16 and sm["heldout_rows"] == 6 and sm["heldout_after"]["n"] == 6
    manifest = json.loads((result.run_dir / "manifest.json").read_text())
    assert [s["status"] for s in manifest["stages"]] == ["complete", "complete"]
    assert manifest["stages"][1]["input"] == "sft"


def test_bad_pairs_and_settings_are_reported_before_training(tiny_model: Path, tmp_path: Path) -> None:
    bad = [
        *pairs(3),
        {"prompt": "Hi", "chosen": "Same.", "rejected": "Same."},
        {"conversations": [{"from": "gpt", "value": "Hi"}], "chosen": "A", "rejected": "B"},
    ]
    pipeline = Pipeline(
        [DPO(dataset=bad, trainer_kwargs={"betta": 0.2})], model=tiny_model, run_dir=tmp_path / "r", probes=False
    )
    with pytest.raises(ValidationError) as info:
        pipeline.run()
    problems = info.value.problems
    assert len(problems) == 3
    assert "row 3" in problems[0] and "identical chosen and rejected" in problems[0]
    assert "row 4" in problems[1] and "conversations" in problems[1] and "no user turn" in problems[1]
    assert "'betta'" in problems[2] and "DPOConfig" in problems[2]
    assert not (tmp_path / "r" / "01-dpo").exists()  # nothing trained


def test_config_defaults_are_the_reference_recipe() -> None:
    cfg = DPO(dataset=pairs(2)).config
    assert cfg.beta == 0.1 and cfg.learning_rate == 5e-6 and cfg.num_train_epochs == 1.0
    assert cfg.lora.r == 8 and list(cfg.lora.target_modules) == ["q_proj", "v_proj"]
    assert cfg.heldout_fraction == 0.05
