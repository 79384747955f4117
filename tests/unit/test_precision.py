"""Precision flags per device: what the Trainer is told, and the CPU bf16 fallback."""

from __future__ import annotations

import logging

import pytest

from ladder.errors import ConfigError
from ladder.training import models
from ladder.training.models import default_dtype, precision


def test_auto_on_cpu_is_fp32_and_tells_the_trainer_it_is_on_cpu() -> None:
    assert precision("auto", "cpu") == {"bf16": False, "fp16": False, "use_cpu": True}
    assert precision(None, "cpu") == precision("fp32", "cpu")


def test_bf16_on_a_cpu_with_native_bf16_autocasts(monkeypatch: pytest.MonkeyPatch) -> None:
    # The hardware probe is the boundary: each branch is taken as on such a machine.
    monkeypatch.setattr(models, "cpu_has_native_bf16", lambda: True)
    assert precision("bf16", "cpu") == {"bf16": True, "fp16": False, "use_cpu": True}


def test_bf16_on_a_cpu_without_native_bf16_falls_back_to_fp32_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(models, "cpu_has_native_bf16", lambda: False)
    with caplog.at_level(logging.WARNING, logger="ladder.training.models"):
        assert precision("BF16", "cpu") == {"bf16": False, "fp16": False, "use_cpu": True}
    assert "no native bf16" in caplog.text


def test_fp16_needs_a_gpu_and_unknown_names_are_refused() -> None:
    with pytest.raises(ConfigError, match="fp16 needs a GPU"):
        precision("fp16", "cpu")
    with pytest.raises(ConfigError, match="auto, bf16, fp16 or fp32"):
        precision("int8", "cpu")


def test_cpu_inference_is_fp32_whatever_the_cpu() -> None:
    import torch

    assert default_dtype("cpu") == torch.float32
    assert isinstance(models.cpu_has_native_bf16(), bool)
