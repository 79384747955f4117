"""Choosing a generation backend and loading a checkpoint with it."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ladder.errors import ConfigError
from ladder.generation import Generator, GenerationSettings, TransformersGenerator

if TYPE_CHECKING:
    from ladder.checkpoint import Checkpoint

__all__ = ["load_generator", "resolve_backend"]

logger = logging.getLogger(__name__)


def resolve_backend(requested: str = "auto") -> str:
    """The backend that will run: ``"vllm"`` or ``"transformers"``.

    ``"auto"`` and ``"vllm"`` give vLLM where it can run (:mod:`ladder.vllm_support`); otherwise
    they fall back to transformers with one log line (a warning when vLLM was asked for).
    """
    if requested not in ("auto", "transformers", "vllm"):
        raise ConfigError(f"generation backend must be auto, transformers or vllm, got {requested!r}")
    if requested == "transformers":
        return "transformers"
    from ladder.vllm_support import vllm_unusable_reason

    reason = vllm_unusable_reason()
    if reason is None:
        return "vllm"
    log = logger.warning if requested == "vllm" else logger.info
    log("generating with transformers: %s", reason)
    return "transformers"


def load_generator(
    checkpoint_path: Checkpoint | str | os.PathLike[str],
    options: Mapping[str, Any] | None = None,
    settings: GenerationSettings | None = None,
) -> Generator:
    """Load a checkpoint for generation with the backend ``settings.backend`` resolves to."""
    settings = settings or GenerationSettings()
    if getattr(checkpoint_path, "adapters", ()) and settings.backend != "transformers":
        # vLLM loads the weights at a path; a chain of adapters (merge: final) is merged in memory.
        logger.info("generating with transformers: %s is a chain of adapters", getattr(checkpoint_path, "stage", ""))
        return TransformersGenerator.from_pretrained(checkpoint_path, options, settings)
    if resolve_backend(settings.backend) == "vllm":
        from ladder.vllm_generation import VLLMGenerator

        return VLLMGenerator(checkpoint_path, options, settings)
    return TransformersGenerator.from_pretrained(checkpoint_path, options, settings)
