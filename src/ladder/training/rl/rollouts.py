"""Rollouts generated with the LoRA merged into the weights, for the transformers backend.

TRL generates an RL step's completions with the PEFT model as it trains: every targeted linear
layer runs its base matmul, then the adapter's ``A`` and ``B`` matmuls, its dropout (the model is
in training mode) and an add, for every new token. On a CPU, where decoding a small batch is
bound by the number of operations rather than by arithmetic, that costs about half again the
time of the same model with the adapter merged (``python bench/levers.py merged``: 10.3 s
against 7.0 s for 16 completions of 32 tokens of SmolLM2-135M with an all-linear r=16 LoRA, the
same samples). So around each generation the adapter is merged into the base weights (PEFT's
``merge_adapter``) and unmerged after (``unmerge_adapter``), the way TRL itself merges before it
syncs weights into vLLM. The policy sampled from is the same function without the adapter's
dropout, which has no business in sampling anyway. Unmerging subtracts the same delta it added,
so a float32 base weight comes back equal up to one float rounding per merge (relative 1e-7);
a 16-bit one is copied before the merge and restored exactly (:func:`adapter_merged`).

It is skipped where a merge would be wrong or lossy: vLLM generation (its own weights), DeepSpeed
or FSDP (sharded parameters), a quantized base layer, a model that is not a PEFT model, or one
whose adapter is already merged.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Iterator
from typing import Any

__all__ = ["adapter_merged", "install", "mergeable"]

logger = logging.getLogger(__name__)


def _lora_layers(model: Any) -> list[Any]:
    return [m for m in model.modules() if hasattr(m, "lora_A") and hasattr(m, "base_layer")]


def mergeable(model: Any) -> str | None:
    """Why ``model``'s adapter cannot be merged for generation, or ``None`` when it can."""
    if not (hasattr(model, "merge_adapter") and hasattr(model, "unmerge_adapter")):
        return "not a PEFT model"
    layers = _lora_layers(model)
    if not layers:
        return "no LoRA layers"
    for layer in layers:
        if getattr(layer, "merged", False):
            return "the adapter is already merged"
        weight = getattr(layer.base_layer, "weight", None)
        if weight is None or not weight.dtype.is_floating_point or weight.dtype.itemsize < 2:
            return "a base layer is quantized"
    return None


@contextlib.contextmanager
def adapter_merged(model: Any) -> Iterator[Any]:
    """``model`` (a PEFT model) with its active adapters merged for the duration, without gradients."""
    import torch

    # Unmerging a 16-bit weight (a GPU's bf16 base, or a CPU's under `precision: bf16`) does not
    # restore it: each merge and unmerge rounds W + BA and W to bf16's 8-bit mantissa, and over a
    # run's thousands of rollouts the base would drift. Such weights are copied before the merge and
    # copied back after, exactly (a copy of the targeted weights, in their 16-bit dtype, for the
    # duration). float32 weights unmerge to within one float32 rounding and need no copy.
    with torch.no_grad():
        kept = [(layer.base_layer.weight, layer.base_layer.weight.detach().clone())
                for layer in _lora_layers(model) if layer.base_layer.weight.dtype.itemsize < 4]
        model.merge_adapter()
    try:
        yield model
    finally:
        with torch.no_grad():
            model.unmerge_adapter()
            for weight, original in kept:
                weight.copy_(original)


def install(trainer: Any) -> bool:
    """Make ``trainer`` (TRL's GRPOTrainer or RLOOTrainer) generate with its adapter merged.

    Wraps the trainer's ``_generate_single_turn``. Returns whether it was installed; the reason
    it was not is logged at debug level.
    """
    reason = _why_not(trainer)
    if reason is not None:
        logger.debug("rollouts generate with the adapter unmerged: %s", reason)
        return False
    original = trainer._generate_single_turn
    model = trainer.model

    @functools.wraps(original)
    def generate_merged(*args: Any, **kwargs: Any) -> Any:
        if mergeable(model) is not None:  # merged elsewhere meanwhile: leave it as it is
            return original(*args, **kwargs)
        with adapter_merged(model):
            return original(*args, **kwargs)

    trainer._generate_single_turn = generate_merged
    logger.debug("rollouts generate with the adapter merged into the weights")
    return True


def _why_not(trainer: Any) -> str | None:
    if getattr(trainer, "use_vllm", False):
        return "vLLM generates them"
    if not hasattr(trainer, "_generate_single_turn"):
        return "this TRL trainer has no _generate_single_turn"
    if getattr(trainer, "is_deepspeed_enabled", False) or getattr(trainer, "is_fsdp_enabled", False):
        return "parameters are sharded (DeepSpeed/FSDP)"
    args = getattr(trainer, "args", None)
    if getattr(args, "use_transformers_continuous_batching", False) or getattr(args, "use_transformers_paged", False):
        return "continuous batching casts the model for generation"
    return mergeable(trainer.model)
