"""``ladder.hub.push`` against a loopback stand-in for the hub's HTTP API, on a run directory laid
out as the pipeline writes it (no training): what is uploaded, the model card's metadata, and that
neither the token nor a local path is in any uploaded byte. Also the pre-flight of ``push:``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from ladder import DPO, SFT
from ladder.card import CardStage, render_card
from ladder.errors import ConfigError
from ladder.hub import PushSettings, push, push_problems, push_settings
from tests.hub_stand_in import HubStandIn

TOKEN = "hf_" + "Zq7" * 12
BASE = "Qwen/Qwen2.5-0.5B"
MODEL_FILES = {"config.json": b'{"model_type": "qwen2"}', "model.safetensors": b"\x00\x01weights\x00" * 40,
               "tokenizer.json": b'{"version": "1.0"}', "tokenizer_config.json": b"{}",
               "chat_template.jinja": b"{{ messages }}", "generation_config.json": b'{"eos_token_id": 2}'}
ADAPTER_FILES = {"adapter_model.safetensors": b"\x00lora\x00" * 30}


def _write(folder: Path, files: dict[str, bytes]) -> None:
    folder.mkdir(parents=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    run = tmp_path / "runs" / "exp"
    entries = []
    for i, (name, kind, source, inp, metrics) in enumerate([
        ("sft", "sft", "alpaca_en", "base", {"eval": {"verifiable": {"exact_match": 0.25, "n": 8}},
                                              "train": {"loss_last": 1.5}}),
        ("dpo", "dpo", {"source": "org/prefs"}, "sft", {"eval": {"verifiable": {"exact_match": 0.5, "n": 8},
                                                                 "preference": {"accuracy": 0.75}},
                                                        "behaviour": {"stop_rate": 1.0}}),
    ], 1):
        stage_dir = run / f"{i:02d}-{name}"
        _write(stage_dir / "model", {**MODEL_FILES, "README.md": f"local card {tmp_path}".encode()})
        _write(stage_dir / "adapter", {**ADAPTER_FILES, "README.md": f"peft card {tmp_path}".encode()})
        (stage_dir / "adapter" / "adapter_config.json").write_text(json.dumps(
            {"base_model_name_or_path": str(tmp_path / "models" / "qwen"), "r": 8}))
        (stage_dir / "COMPLETE").write_text(json.dumps({"fingerprint": f"fp-{name}", "checkpoint": {"kind": "policy"}}))
        entries.append({"name": name, "kind": kind, "index": i, "dir": stage_dir.name, "input": inp,
                        "status": "complete", "fingerprint": f"fp-{name}", "metrics": metrics,
                        "config": {"dataset": source, "learning_rate": 1e-4,
                                   "trainer_kwargs": {"hub_token": TOKEN, "logging_dir": str(tmp_path / "logs")}}})
    manifest = {"run_name": "exp", "recipe": {"model": BASE, "evals": {"verifiable": "openai/gsm8k"}},
                "base": {"path": BASE, "fingerprint": "fp-base",
                         "metrics": {"eval": {"verifiable": {"exact_match": 0.0}}}},
                "stages": entries}
    (run / "manifest.json").write_text(json.dumps(manifest))
    return run


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> Any:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # the suite runs offline; this hub is loopback
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)  # the stand-in speaks LFS, not Xet
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    with HubStandIn() as stand_in:
        yield stand_in


def _header(card: bytes) -> dict[str, Any]:
    text = card.decode()
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n", 2)[1])


def test_push_uploads_the_model_folder_and_a_card_with_hub_metadata(run_dir: Path, hub: Any, tmp_path: Path) -> None:
    result = push(run_dir, repo_id="org/exp-dpo", private=True, license="apache-2.0", endpoint=hub.url)
    repo = hub.repos["org/exp-dpo"]
    assert repo.private is True and len(repo.commits) == 1 and result.commit_url.startswith(hub.url)
    assert set(repo.files) == set(MODEL_FILES) | {"README.md"} == set(result.files)
    assert all(repo.files[name] == data for name, data in MODEL_FILES.items())
    assert any(r.path.startswith("/lfs/") for r in hub.requests)  # the weights went through LFS
    meta = _header(repo.files["README.md"])
    assert meta["base_model"] == BASE and meta["license"] == "apache-2.0"
    assert sorted(meta["datasets"]) == ["org/prefs", "tatsu-lab/alpaca"]
    assert meta["pipeline_tag"] == "text-generation" and {"ladder", "sft", "dpo"} <= set(meta["tags"])
    results = meta["model-index"][0]["results"]
    scores = {(r["dataset"]["type"], m["type"]): m["value"] for r in results for m in r["metrics"]}
    assert scores[("openai/gsm8k", "exact_match")] == 0.5 and scores[("custom", "accuracy")] == 0.75
    card = repo.files["README.md"].decode()
    assert "| 1 | sft | sft | tatsu-lab/alpaca (preset alpaca_en) | `fp-sft` | exact match 25.0%" in card
    assert "| 2 | dpo | dpo | org/prefs | `fp-dpo` | exact match 50.0%, preference accuracy 75.0%" in card
    uploaded = hub.uploaded_bytes()
    assert TOKEN.encode() not in uploaded and str(tmp_path).encode() not in uploaded
    api_calls = [r for r in hub.requests if r.path.startswith("/api/")]
    assert api_calls and all(r.headers.get("authorization") == f"Bearer {TOKEN}" for r in api_calls)


def test_adapter_only_uploads_the_adapter_pointing_at_the_hub_base(run_dir: Path, hub: Any, tmp_path: Path) -> None:
    result = push(run_dir, "sft", repo_id="org/exp-sft-lora", adapter_only=True, endpoint=hub.url)
    repo = hub.repos["org/exp-sft-lora"]
    tokenizer = {"tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "generation_config.json"}
    assert set(repo.files) == {"adapter_model.safetensors", "adapter_config.json", "README.md", *tokenizer}
    assert set(result.files) == set(repo.files) and repo.private is None
    assert json.loads(repo.files["adapter_config.json"]) == {"base_model_name_or_path": BASE, "r": 8}
    meta = _header(repo.files["README.md"])
    assert meta["library_name"] == "peft" and meta["base_model"] == BASE and meta["datasets"] == ["tatsu-lab/alpaca"]
    # the DPO adapter applies to the SFT model, which is no hub model: no base, and the card says so
    push(run_dir, "dpo", repo_id="org/exp-dpo-lora", adapter_only=True, endpoint=hub.url)
    repo = hub.repos["org/exp-dpo-lora"]
    assert json.loads(repo.files["adapter_config.json"])["base_model_name_or_path"] is None
    assert "base_model" not in _header(repo.files["README.md"])
    assert "applies to the merged output of stage `sft`" in repo.files["README.md"].decode()
    assert TOKEN.encode() not in hub.uploaded_bytes() and str(tmp_path).encode() not in hub.uploaded_bytes()


def test_push_needs_a_token_and_a_complete_stage(run_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                                tmp_path: Path) -> None:
    from huggingface_hub import constants

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    with pytest.raises(ConfigError, match="no Hugging Face token: set HF_TOKEN"):
        push(run_dir, repo_id="org/x")
    (run_dir / "02-dpo" / "COMPLETE").unlink()
    with pytest.raises(ConfigError, match="stage 'dpo' is not complete"):
        push(run_dir, repo_id="org/x", token=TOKEN)
    with pytest.raises(ConfigError, match="no stage 'rm'; stages: sft, dpo"):
        push(run_dir, "rm", repo_id="org/x", token=TOKEN)
    with pytest.raises(ConfigError, match="not a ladder run directory"):
        push(tmp_path, repo_id="org/x", token=TOKEN)


def test_push_settings_and_their_preflight(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from huggingface_hub import constants

    assert push_settings("org/x") == PushSettings(repo_id="org/x")
    assert push_settings({"repo_id": "org/x-{stage}", "stages": ["sft"]}).stages == ("sft",)
    assert PushSettings(repo_id="org/{run}-{stage}").repo_for("dpo", "exp") == "org/exp-dpo"
    for bad, message in [({"repo": "org/x"}, "unknown key"), ({}, "`repo_id` is required"),
                         ({"repo_id": "org/x y"}, "give a hub repository id"),
                         ({"repo_id": "org/{name}"}, "unknown placeholder"),
                         ({"repo_id": "org/x", "private": "yes"}, "private")]:
        with pytest.raises(ConfigError, match=message):
            push_settings(bad)
    stages = [SFT(dataset=[{"instruction": "a", "output": "b"}]),
              DPO(dataset=[{"prompt": "a", "chosen": "b", "rejected": "c"}], finetuning="full")]
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    assert push_problems(PushSettings(repo_id="org/x"), stages) == []
    problems = push_problems(PushSettings(repo_id="org/x", stages="all", adapter_only=True), stages)
    assert "add {stage} to repo_id (e.g. org/x-{stage})" in problems[0] and "dpo train every weight" in problems[1]
    assert push_problems(PushSettings(repo_id="org/x", stages=("sft", "rm")), stages) == [
        "push.stages: no stage 'rm'; stages: sft, dpo"]
    pushing_trainer = SFT(dataset=[{"instruction": "a", "output": "b"}], trainer_kwargs={"push_to_hub": True})
    assert "trainer_kwargs.push_to_hub would upload the trainer's intermediate checkpoints" in push_problems(
        None, [pushing_trainer])[0]
    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    assert push_problems(PushSettings(repo_id="org/x"), stages) == [
        "push: no Hugging Face token: set HF_TOKEN, or log in once with `hf auth login`"]


def test_a_card_names_no_local_path(tmp_path: Path) -> None:
    local = tmp_path / "data" / "train.jsonl"
    local.parent.mkdir()
    local.write_text("")
    stage = CardStage.of_stage("sft", "sft", "f1", SFT.Config, {"dataset": str(local), "chat_template": "{{ x }}",
                                                                "trainer_kwargs": {"output_dir": str(tmp_path)}})
    card = render_card([CardStage(name="base", kind="base", source="local folder qwen"), stage], title="t")
    assert str(tmp_path) not in card and "local file train.jsonl" in card and "<local " in card
    assert "datasets" not in _header(card.encode())
