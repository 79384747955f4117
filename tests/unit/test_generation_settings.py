"""Generation settings and backend choice (no model needed)."""

from __future__ import annotations

import importlib.util
import logging

import attrs
import pytest

from ladder.errors import ConfigError
from ladder.generation import GenerationSettings, as_messages
from ladder.generators import resolve_backend


def test_defaults_are_greedy_and_bounded() -> None:
    s = GenerationSettings()
    assert (s.max_new_tokens, s.temperature, s.top_p, s.seed, s.batch_size, s.backend) == (
        128,
        0.0,
        1.0,
        0,
        8,
        "auto",
    )
    assert s.greedy
    assert not GenerationSettings(temperature=0.7).greedy


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_new_tokens": 0},
        {"temperature": -0.1},
        {"top_p": 0.0},
        {"top_p": 1.5},
        {"batch_size": 0},
        {"backend": "llama.cpp"},
        {"seed": "zero"},
        {"precision": "fp16"},
    ],
)
def test_invalid_settings_are_rejected(kwargs: dict) -> None:
    with pytest.raises((ValueError, TypeError)):
        GenerationSettings(**kwargs)


def test_settings_are_frozen_and_keyword_only() -> None:
    s = GenerationSettings(max_new_tokens=16)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        s.max_new_tokens = 3  # type: ignore[misc]
    with pytest.raises(TypeError):
        GenerationSettings(16)  # type: ignore[misc]


def test_as_messages() -> None:
    assert as_messages("hi") == [{"role": "user", "content": "hi"}]
    conv = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]
    assert as_messages(conv) == conv
    with pytest.raises(ConfigError, match="non-empty list"):
        as_messages([])
    with pytest.raises(ConfigError, match="non-empty list"):
        as_messages([{"content": "no role"}])


def test_transformers_backend_is_taken_as_asked(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="ladder.generators"):
        assert resolve_backend("transformers") == "transformers"
    assert caplog.records == []


def test_unknown_backend() -> None:
    with pytest.raises(ConfigError, match="auto, transformers or vllm"):
        resolve_backend("tgi")


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed here")
@pytest.mark.parametrize(("requested", "level"), [("auto", logging.INFO), ("vllm", logging.WARNING)])
def test_without_vllm_falls_back_with_one_log_line(
    requested: str, level: int, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="ladder.generators"):
        assert resolve_backend(requested) == "transformers"
    assert [(r.levelno, "vLLM is not installed" in r.getMessage()) for r in caplog.records] == [(level, True)]
