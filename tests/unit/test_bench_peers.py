"""bench/peers_setup.py: the three tools of the peers bench get the same rows and settings."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def setup():
    spec = importlib.util.spec_from_file_location("peers_setup", ROOT / "bench" / "peers_setup.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["peers_setup"] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("peers_setup", None)


SFT_ROWS = [{"messages": [{"role": "user", "content": "What is 2 + 3?"},
                          {"role": "assistant", "content": "2 + 3 = 5. <answer>5</answer>"}]}]
DPO_ROWS = [{"prompt": "Name a colour.", "chosen": "Blue.", "rejected": "Well, there are many colours..."}]
SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"


def test_llamafactory_files_are_sharegpt_rows_its_dataset_info_names(setup, tmp_path):
    cfg_path = setup.write_llamafactory_inputs("sft", SFT_ROWS, tmp_path / "sft", model="/m", default_system=SYSTEM)
    cfg = json.loads(cfg_path.read_text())
    info = json.loads((tmp_path / "sft" / "data" / "dataset_info.json").read_text())
    assert info == {"peers_sft": {
        "file_name": "sft.jsonl", "formatting": "sharegpt", "columns": {"messages": "messages"},
        "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant",
                 "system_tag": "system"}}}
    written = [json.loads(line) for line in (tmp_path / "sft" / "data" / "sft.jsonl").read_text().splitlines()]
    assert written == SFT_ROWS
    assert cfg["dataset"] == "peers_sft" and cfg["dataset_dir"] == str(tmp_path / "sft" / "data")
    assert cfg["template"] == "smollm2" and cfg["default_system"] == SYSTEM  # the model's, without LF's full stop

    setup.write_llamafactory_inputs("dpo", DPO_ROWS, tmp_path / "dpo", model="/m", default_system=SYSTEM)
    info = json.loads((tmp_path / "dpo" / "data" / "dataset_info.json").read_text())["peers_dpo"]
    assert info["ranking"] is True
    assert info["columns"] == {"messages": "conversations", "chosen": "chosen", "rejected": "rejected"}
    (row,) = [json.loads(line) for line in (tmp_path / "dpo" / "data" / "dpo.jsonl").read_text().splitlines()]
    assert row == {"conversations": [{"role": "user", "content": "Name a colour."}],
                   "chosen": {"role": "assistant", "content": "Blue."},
                   "rejected": {"role": "assistant", "content": "Well, there are many colours..."}}


@pytest.mark.parametrize("stage", ["sft", "dpo"])
def test_every_tool_gets_the_same_settings(setup, stage, tmp_path):
    s, lora, trainer = setup.SETTINGS[stage], setup.SETTINGS["lora"], setup.SETTINGS["trainer"]
    recipe = setup.ladder_recipe(stage, model="/m", data_dir=tmp_path, run_dir=tmp_path / "run")
    (entry,) = recipe["stages"]
    trl = setup.trl_spec(stage, model="/m", data_dir=tmp_path, out_dir=tmp_path / "trl")
    lf = setup.llamafactory_config(stage, model="/m", dataset_dir=tmp_path, out_dir=tmp_path / "lf",
                                   default_system=None)
    # the same data file, model and seed
    assert entry["dataset"] == trl["data"] == str(tmp_path / s["data"])
    assert recipe["model"] == trl["model"] == lf["model_name_or_path"] == "/m"
    assert recipe["seed"] == trl["args"]["seed"] == lf["seed"] == lf["data_seed"] == setup.SETTINGS["seed"]
    # the same LoRA
    assert entry["lora"] == {"r": lora["r"], "alpha": lora["alpha"], "dropout": lora["dropout"],
                             "target_modules": lora["target_modules"]}
    assert trl["lora"] == lora
    assert (lf["lora_rank"], lf["lora_alpha"], lf["lora_dropout"], lf["lora_target"]) == (
        lora["r"], lora["alpha"], lora["dropout"], "all")
    # the same optimisation
    for key, lf_key in (("learning_rate", "learning_rate"), ("max_steps", "max_steps"),
                        ("batch_size", "per_device_train_batch_size"), ("max_length", "cutoff_len")):
        assert lf[lf_key] == s[key]
    assert (entry["learning_rate"], entry["max_steps"], entry["per_device_train_batch_size"], entry["max_length"]) \
        == (trl["args"]["learning_rate"], trl["args"]["max_steps"], trl["args"]["per_device_train_batch_size"],
            trl["args"]["max_length"]) == (s["learning_rate"], s["max_steps"], s["batch_size"], s["max_length"])
    for key, value in trainer.items():
        assert trl["args"][key] == lf[key] == value
        assert entry.get(key, entry["trainer_kwargs"].get(key)) == value
    # fp32 everywhere, no activation checkpointing in LLaMA-Factory (on by default there)
    assert entry["precision"] == "fp32" and lf["bf16"] is False and lf["fp16"] is False and lf["use_cpu"] is True
    assert lf["disable_gradient_checkpointing"] is True
    if stage == "dpo":
        assert entry["beta"] == trl["args"]["beta"] == lf["pref_beta"] == s["beta"]
        assert lf["pref_loss"] == "sigmoid" and entry["heldout_fraction"] == 0.0  # every row trains everywhere


def test_ladder_recipe_builds_a_pipeline(setup, tmp_path):
    """The recipe is one ladder accepts: the stage binds its settings (trainer_kwargs included)."""
    from ladder.recipe import pipeline_from_dict

    data = tmp_path / "sft_train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in SFT_ROWS))
    pipeline = pipeline_from_dict(setup.ladder_recipe("sft", model=str(tmp_path), data_dir=tmp_path,
                                                      run_dir=tmp_path / "run"))
    (stage,) = pipeline.stages
    assert stage.config.max_steps == setup.SETTINGS["sft"]["max_steps"]
    assert stage.config.trainer_kwargs["optim"] == setup.SETTINGS["trainer"]["optim"]
    assert stage.config.precision == "fp32"
