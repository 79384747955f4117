"""One redaction for every file and log: credential keys by their words, secrets by their shape,
and the stage spec sealed (its secrets travel in the worker's environment, not on disk)."""

from __future__ import annotations

import io
import json
import logging

import pytest

from ladder.errors import ConfigError
from ladder.executors.spec import seal_spec, unseal_spec
from ladder.redaction import MASK, RedactingFilter, is_secret_key, redact, redact_text

HF = "hf_" + "a1B2c3D4" * 4
OPENAI = "sk-proj-" + "Zy9" * 8
GITHUB = "ghp_" + "Q" * 36
WANDB = "0123456789abcdef" * 2 + "01234567"
MODAL_ID = "ak-" + "x7" * 10


@pytest.mark.parametrize("key", [
    "token", "hf_token", "HF_TOKEN", "hub_token", "wandb_key", "WANDB_API_KEY", "modal_token_id",
    "MODAL_TOKEN_SECRET", "openai_key", "gh_token", "github_token", "bearer", "api_key", "apiKey", "accessToken",
    "db_password", "client_secret", "credentials", "aws_secret_access_key", "key", "private_key",
])
def test_credential_keys_are_recognised(key: str) -> None:
    assert is_secret_key(key)


@pytest.mark.parametrize("key", [
    "max_new_tokens", "pad_token", "pad_token_id", "eos_token", "eos_token_ids", "bos_token_id", "num_tokens",
    "tokenizer", "tokenizer_source", "end_of_turn_token", "stop_token_ids", "prompt_tokens", "mean_answer_tokens",
    "num_key_value_heads", "prompt_key", "sort_keys", "keywords", "max_completion_tokens", "learning_rate",
])
def test_settings_that_only_mention_tokens_are_not_secrets(key: str) -> None:
    assert not is_secret_key(key)


def test_secret_shapes_are_masked_inside_longer_strings() -> None:
    text = (f"https://user:{HF}@host/data.jsonl; key={OPENAI}; {GITHUB} in a log; wandb {WANDB}; "
            f"Authorization: Bearer abc.def-ghi; modal {MODAL_ID}; db postgres://admin:hunter2@db:5432/x")
    clean = redact_text(text)
    for secret in (HF, OPENAI, GITHUB, WANDB, "abc.def-ghi", MODAL_ID, "hunter2"):
        assert secret not in clean
    assert clean.startswith("https://user:***@host/data.jsonl; key=***;")
    assert "Bearer ***" in clean and "postgres://admin:***@db:5432/x" in clean
    assert redact_text("no secrets, only https://host/path and 16-hex 0123456789abcdef") == (
        "no secrets, only https://host/path and 16-hex 0123456789abcdef")


def test_redact_masks_by_key_and_by_shape_but_keeps_settings_and_commits() -> None:
    value = {
        "options": {"hf_token": "anything at all", "trust_remote_code": False},
        "trainer_kwargs": {"run_name": f"https://u:{HF}@h/x", "max_new_tokens": 64, "token_healing": True},
        "credentials": {"user": "me", "password": "pw"},
        "revision": WANDB,  # a commit, not a W&B key
        "path": f"/cache/snapshots/{WANDB}/model",
        "note": f"key {WANDB}",
        "pad_token": "<|im_end|>",
        "stages": [{"api_key": ""}, {"api_key": None}],
    }
    out = redact(value)
    assert out["options"] == {"hf_token": MASK, "trust_remote_code": False}
    assert out["trainer_kwargs"] == {"run_name": "https://u:***@h/x", "max_new_tokens": 64, "token_healing": True}
    assert out["credentials"] == MASK
    assert out["revision"] == WANDB and WANDB in out["path"] and out["note"] == "key ***"
    assert out["pad_token"] == "<|im_end|>" and out["stages"] == [{"api_key": ""}, {"api_key": None}]
    assert value["options"]["hf_token"] == "anything at all"  # a copy; the input is unchanged


def test_the_spec_is_sealed_and_unsealed_through_the_environment() -> None:
    spec = {
        "config": {"dataset": {"source": f"https://user:{HF}@host/data.jsonl"}, "trainer_kwargs": {"hub_token": "t0k"}},
        "context": {"options": {"hf_token": HF, "trust_remote_code": False}, "run_dir": "/runs/x"},
    }
    sealed, env = seal_spec(spec)
    text = json.dumps(sealed)
    for secret in (HF, "t0k"):
        assert secret not in text
    assert env["HF_TOKEN"] == HF and sorted(v for k, v in env.items() if k.startswith("LADDER_SECRET_")) == sorted([HF, "t0k"])
    assert sealed["context"]["run_dir"] == "/runs/x"
    assert unseal_spec(sealed, env) == spec
    with pytest.raises(ConfigError, match="LADDER_SECRET_0, which this worker's environment lacks"):
        unseal_spec(sealed, {})


def test_log_records_are_redacted_by_the_filter() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter())
    log = logging.getLogger("ladder.test_redaction")
    log.addHandler(handler)
    try:
        log.warning("loading %s with token %s", f"https://u:{HF}@host/x", HF)
        try:
            raise ValueError(f"bad url https://u:{HF}@host/x")
        except ValueError:
            log.exception("failed")
    finally:
        log.removeHandler(handler)
    assert HF not in stream.getvalue()
    assert "loading https://u:***@host/x with token ***" in stream.getvalue()
    assert "ValueError: bad url https://u:***@host/x" in stream.getvalue()
