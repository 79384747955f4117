"""SFT end to end on the tiny model: artifacts, learning, masking, merge verification, bad data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ladder import SFT, DataError, MergeVerificationError, Pipeline, ValidationError
from ladder.atomic import is_complete
from ladder.recipe import load_recipe

ROWS = [
    {"instruction": f"What is {a} + {b}?", "input": "", "output": f"{a} + {b} = {a + b}. <answer>{a + b}</answer>"}
    for a in range(4)
    for b in range(4)
]


def _weights(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


@pytest.fixture(scope="module")
def sft_run(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory):
    run_dir = tmp_path_factory.mktemp("runs") / "api"
    pipeline = Pipeline(
        [SFT(dataset=ROWS, max_steps=6, learning_rate=5e-3, per_device_train_batch_size=4)],
        model=tiny_model,
        run_dir=run_dir,
        probes=False,
    )
    return pipeline.run()


def test_sft_writes_a_complete_merged_checkpoint(sft_run, tiny_model: Path) -> None:
    stage_dir = sft_run.run_dir / "01-sft"
    assert is_complete(stage_dir)
    model_dir = stage_dir / "model"
    for name in ("model.safetensors", "config.json", "tokenizer.json", "chat_template.jinja", "generation_config.json"):
        assert (model_dir / name).is_file(), name
    assert (stage_dir / "adapter" / "adapter_model.safetensors").is_file()
    card = (model_dir / "README.md").read_text()  # the model card lists the chain, and no local path
    checkpoint = sft_run.checkpoints["sft"]
    assert f"`{checkpoint.parent.fingerprint}`" in card and f"`{checkpoint.fingerprint}`" in card
    assert str(tiny_model) not in card and str(sft_run.run_dir) not in card
    # the chat's end-of-turn token is the EOS of the saved generation config
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    gen = json.loads((model_dir / "generation_config.json").read_text())
    eos = gen["eos_token_id"] if isinstance(gen["eos_token_id"], list) else [gen["eos_token_id"]]
    assert tok.convert_tokens_to_ids("<|im_end|>") == eos[0]
    assert "generation" in (model_dir / "chat_template.jinja").read_text()
    # metrics: losses, runtime, tokens
    metrics = json.loads((stage_dir / "metrics.json").read_text())
    train = metrics["train"]
    assert train["steps"] == 6 and train["train_tokens"] > 0 and train["runtime_s"] > 0
    # 6 steps of 4 rows are 1.5 passes over the 16 rows: the tokens of the steps taken, as TRL
    # counted them, not one pass over the rows
    log = [json.loads(line) for line in (stage_dir / "trainer_log.jsonl").read_text().splitlines()]
    counted = {r["step"]: r["num_tokens"] for r in log if "num_tokens" in r}
    assert train["train_tokens"] == counted[6] > counted[4]
    assert train["loss_last"] < train["loss_first"]  # it learned something
    # weights changed vs base
    base, merged = _weights(tiny_model), _weights(model_dir)
    changed = [k for k in base if "v_proj" in k and not (base[k] == merged[k]).all()]
    assert changed, "merged v_proj weights equal the base: the adapter was not merged"
    assert all((base[k] == merged[k]).all() for k in base if "mlp" in k)  # LoRA touched only q/v


def test_manifest_records_lineage(sft_run) -> None:
    manifest = json.loads((sft_run.run_dir / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    stage = manifest["stages"][0]
    assert stage["status"] == "complete" and stage["input"] == "base"
    assert stage["checkpoint"]["parent"]["stage"] == "base"
    assert stage["checkpoint"]["lineage"] == ["sft", "base"]
    assert sft_run.final.parent.stage == "base"
    assert sft_run.final.fingerprint == stage["fingerprint"]


def test_rerun_reuses_the_complete_stage(sft_run, tiny_model: Path) -> None:
    again = Pipeline(
        [SFT(dataset=ROWS, max_steps=6, learning_rate=5e-3, per_device_train_batch_size=4)],
        model=tiny_model,
        run_dir=sft_run.run_dir,
        probes=False,
    ).run()
    assert again.trained == ()
    assert again.final.fingerprint == sft_run.final.fingerprint


def test_yaml_recipe_gives_the_same_lineage(sft_run, tiny_model: Path, tmp_path: Path) -> None:
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        f"name: yaml-run\nmodel: {tiny_model}\nrun_dir: {tmp_path / 'run'}\nprobes: false\n"
        "stages:\n  - stage: sft\n    dataset: data.jsonl\n    max_steps: 6\n    learning_rate: 0.005\n"
        "    per_device_train_batch_size: 4\n"
    )
    result = load_recipe(recipe).run()
    assert [c.stage for c in result.final.lineage()] == [c.stage for c in sft_run.final.lineage()]
    # same data content, same config, same input -> same fingerprint
    assert result.final.fingerprint == sft_run.final.fingerprint


def test_labels_are_masked_exactly_outside_assistant_turns(tiny_model: Path, tmp_path: Path) -> None:
    from ladder.checkpoint import Checkpoint
    from ladder.stage import StageContext

    rows = [
        {"messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "What is 2 + 3?"},
            {"role": "assistant", "content": "5"},
            {"role": "user", "content": "And 7 + 8?"},
            {"role": "assistant", "content": "<answer>15</answer>"},
        ]},
        {"instruction": "Say hello", "input": "", "output": "Hello world"},
    ]
    stage = SFT(dataset=rows, max_steps=1)
    ctx = StageContext(run_dir=tmp_path, work_dir=tmp_path / "w", final_dir=tmp_path / "f",
                       trainer_dir=tmp_path / "t")
    trainer, facts = stage.build_trainer(Checkpoint.base(tiny_model), ctx)
    tok = facts["tokenizer"]
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(2)])
    expected = ["5<|im_end|><answer>15</answer><|im_end|>", "Hello world<|im_end|>"]
    for i, want in enumerate(expected):
        ids, labels = batch["input_ids"][i], batch["labels"][i]
        kept = ids[labels != -100]
        assert tok.decode(kept) == want
        # and every masked position is a prompt/system/user/padding token
        masked_text = tok.decode(ids[labels == -100])
        assert "What is 2 + 3?" in masked_text or "Say hello" in masked_text
        assert "Hello world" not in masked_text and "<answer>15" not in masked_text


def test_corrupted_merge_is_caught(tiny_model: Path) -> None:
    import torch
    from peft import get_peft_model

    from ladder.training.lora import LoraSettings, _verification_inputs, merge_adapter, peft_config, \
        reference_logits, verify_merge
    from ladder.training.models import load_model, load_tokenizer

    tok = load_tokenizer(tiny_model)
    model = get_peft_model(load_model(tiny_model), peft_config(LoraSettings(r=4)))
    with torch.no_grad():  # a trained-looking adapter: B != 0
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    inputs = _verification_inputs(model, tok, ["What is 2 + 3?", "hello world"])
    expected = reference_logits(model, inputs)
    merged = merge_adapter(model)
    assert verify_merge(merged, inputs, expected) < 1e-3  # a good merge passes
    with torch.no_grad():  # fault injection: corrupt one merged weight
        merged.model.layers[0].self_attn.v_proj.weight.add_(0.5)
    with pytest.raises(MergeVerificationError, match="does not reproduce"):
        verify_merge(merged, inputs, expected)


@pytest.mark.parametrize(
    ("row", "field"),
    [
        ({"instruction": "Say hi", "input": ""}, "output"),
        ({"instruction": "Say hi", "input": "", "output": 42}, "output"),
        ({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "  "}]},
         "messages[1].content"),
    ],
    ids=["missing-output", "non-string", "empty-assistant"],
)
def test_malformed_row_fails_before_training(tiny_model: Path, tmp_path: Path, row: dict, field: str) -> None:
    data = tmp_path / "bad.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in [*ROWS[:3], row]))
    run_dir = tmp_path / "run"
    with pytest.raises(ValidationError) as info:
        Pipeline([SFT(dataset=str(data), max_steps=1)], model=tiny_model, run_dir=run_dir, probes=False).run()
    message = str(info.value)
    assert str(data) in message and "row 3" in message and repr(field) in message
    # nothing that looks like a finished stage (nor any stage directory) was written
    assert not run_dir.exists() or not any(p.name.startswith("01-") for p in run_dir.iterdir())
    with pytest.raises(DataError):
        from ladder.data.sft import sft_row_to_messages

        sft_row_to_messages(row, str(data), 3)


def _bf16_sft(tiny_model: Path, tmp_path: Path):
    return Pipeline(
        [SFT(dataset=ROWS, max_steps=4, learning_rate=5e-3, per_device_train_batch_size=4, precision="bf16")],
        model=tiny_model, run_dir=tmp_path / "run", probes=False,
    ).run()


def test_a_bf16_lora_on_cpu_trains_a_bf16_base_and_publishes_fp32(
        tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the CPU has native bf16 (the hardware probe is the boundary, taken as on such a
    machine), a LoRA under ``precision: bf16`` trains on a bf16 copy of the base, and publication
    merges its float32 adapter into the float32 input weights, verified at fp32 tolerance."""
    import torch

    from ladder.training import models

    monkeypatch.setattr(models, "cpu_has_native_bf16", lambda: True)
    loaded: list[torch.dtype] = []
    original = models.load_model

    def watching(*args, **kwargs):  # records what the stage asked for, loads it for real
        model = original(*args, **kwargs)
        loaded.append(models.base_weights_dtype(model))
        return model

    monkeypatch.setattr(models, "load_model", watching)
    result = _bf16_sft(tiny_model, tmp_path)
    assert loaded[:2] == [torch.bfloat16, torch.float32]  # the training copy, then the merge's input
    metrics = json.loads((result.run_dir / "01-sft" / "metrics.json").read_text())
    assert metrics["train"]["loss_last"] < metrics["train"]["loss_first"]
    assert metrics["stage_metrics"]["merge_max_abs_diff"] < 1e-3
    assert metrics["stage_metrics"]["trained_on_dtype"] == "bfloat16"
    weights = _weights(result.run_dir / "01-sft" / "model")
    assert {t.dtype for t in weights.values()} == {torch.float32}


def test_bf16_on_cpu_trains_and_the_merge_verifies_in_fp32(tiny_model: Path, tmp_path: Path) -> None:
    """``precision: bf16`` on a CPU: the Trainer autocasts (where the CPU has native bf16), and
    the trained model's autocast wrapper is taken off before the merge is verified, so the
    fp32 merge reproduces the fp32 adapter-on-base logits at fp32 tolerance."""
    import torch

    result = _bf16_sft(tiny_model, tmp_path)
    metrics = json.loads((result.run_dir / "01-sft" / "metrics.json").read_text())
    assert metrics["train"]["loss_last"] < metrics["train"]["loss_first"]
    assert metrics["stage_metrics"]["merge_max_abs_diff"] < 1e-3  # the fp32 tolerance, not bf16's 5e-2
    weights = _weights(result.run_dir / "01-sft" / "model")
    assert {t.dtype for t in weights.values()} == {torch.float32}  # master weights stay fp32
