"""Shared fixtures: a tiny random Qwen2 model built in-process (no network)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TQDM_DISABLE", "1")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Qwen2 causal LM + locally trained ChatML tokenizer, built once."""
    from ladder.testing import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-qwen2")


@pytest.fixture(scope="module")
def tok(tiny_model: Path) -> Any:
    """The tiny model's tokenizer (one per test module)."""
    from ladder.training.models import load_tokenizer

    return load_tokenizer(tiny_model)


@pytest.fixture(scope="module")
def model(tiny_model: Path) -> Any:
    """The tiny model loaded on CPU, one per test module (a module may change its weights)."""
    from ladder.training.models import load_model

    return load_model(tiny_model, device="cpu")
