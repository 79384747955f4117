"""LoRA settings, merging an adapter into its base, and verifying the merge."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ladder.errors import MergeVerificationError
from ladder.settings import LoraSettings

if TYPE_CHECKING:
    import torch
    from peft import LoraConfig
    from transformers import PreTrainedModel

__all__ = [
    "LoraSettings",
    "adapter_off",
    "apply_adapters",
    "input_policy",
    "drop_autocast_wrapper",
    "peft_config",
    "peft_config_for",
    "reference_logits",
    "merge_adapter",
    "verify_merge",
    "merge_and_verify",
    "lora_delta_max_abs",
    "max_logit_diff",
]

logger = logging.getLogger(__name__)


def peft_config(settings: LoraSettings, task_type: str = "CAUSAL_LM") -> LoraConfig:
    from peft import LoraConfig

    return LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=settings.target_modules,
        modules_to_save=list(settings.modules_to_save) or None,
        use_dora=bool(getattr(settings, "use_dora", False)),
        use_rslora=bool(getattr(settings, "use_rslora", False)),
        task_type=task_type,
    )


def peft_config_for(settings: Any, task_type: str = "CAUSAL_LM") -> LoraConfig | None:
    """The PEFT config for a stage's settings (:class:`~ladder.settings.TrainingSettings`):
    its ``lora`` under ``finetuning: lora`` and ``qlora`` (the adapter trains on the 4-bit
    weights), ``None`` (train every weight) under ``full``."""
    return peft_config(settings.lora, task_type) if settings.finetuning in ("lora", "qlora") else None


def apply_adapters(model: Any, adapters: Sequence[str], *, verify_texts: Sequence[str] = (),
                   tokenizer: Any = None) -> tuple[Any, list[float]]:
    """Apply each adapter of ``adapters`` to ``model`` and merge it, in order; return the plain model.

    Each adapter was trained on the model the ones before it make, so each is applied to the
    merge of the earlier ones: for LoRA the order does not change the sum of the weight changes,
    but DoRA's magnitudes and ``modules_to_save`` copies are relative to the weights they were
    trained on. With ``verify_texts`` (and ``tokenizer``) every merge is checked against the
    adapter-on-model outputs (:func:`verify_merge`) and the max differences are returned.

    Raises:
        StageError: an adapter folder cannot be read.
        MergeVerificationError: a merge does not reproduce its adapter's outputs.
    """
    from peft import PeftConfig, PeftModel

    from ladder.errors import StageError

    diffs: list[float] = []
    for adapter in adapters:
        try:
            config = PeftConfig.from_pretrained(str(adapter))
            if config.task_type == "CAUSAL_LM" and not hasattr(model, "prepare_inputs_for_generation"):
                # A policy's adapter under a reward model's classifier head (an rm stage after adapter
                # stages): the generic PeftModel applies it to the shared backbone.
                config.task_type = None
            peft_model = PeftModel.from_pretrained(model, str(adapter), config=config)
        except (OSError, ValueError) as exc:
            raise StageError(f"could not apply the adapter {str(adapter)!r}: {exc}. The checkpoint is a chain of "
                             "adapters (merge: final); re-run the stage that wrote it") from exc
        if verify_texts and tokenizer is not None:
            model, diff = merge_and_verify(peft_model, tokenizer, list(verify_texts))
            diffs.append(diff)
        else:
            model = merge_adapter(peft_model)
    return model, diffs


def _verification_inputs(model: PreTrainedModel, tokenizer: Any, texts: Sequence[str]) -> dict[str, torch.Tensor]:
    enc = tokenizer(list(texts), return_tensors="pt", padding=True)
    device = next(model.parameters()).device
    return {k: v.to(device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}


def _logits(model: Any, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """``[batch, positions, values]`` outputs to compare: a causal LM's logits at every position.

    A sequence classifier (a reward model) outputs one pooled score per text, a handful of
    numbers that a merge could get wrong and still match; its comparison also covers the last
    hidden state at every position (where the LoRA acts), with the pooled score appended.
    """
    import torch

    was_training = model.training
    model.eval()
    with torch.no_grad():
        out = model(**inputs)
        logits = out.logits.float()
        if logits.dim() == 2:  # sequence classification: [batch, labels]
            hidden = model(**inputs, output_hidden_states=True).hidden_states[-1].float()
            pooled = logits[:, None, :].expand(-1, hidden.shape[1], -1)
            logits = torch.cat([hidden, pooled], dim=-1)
    if was_training:
        model.train()
    return logits.cpu()


def reference_logits(peft_model: Any, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """Logits of the adapter-on-base model (the truth the merge must reproduce)."""
    return _logits(peft_model, inputs)


def merge_adapter(peft_model: Any) -> PreTrainedModel:
    """``merge_and_unload`` the adapter into the base weights; returns the plain model."""
    merged = peft_model.merge_and_unload()
    return merged


def _tolerance(dtype: torch.dtype) -> float:
    import torch

    return 1e-3 if dtype == torch.float32 else 5e-2 if dtype in (torch.bfloat16, torch.float16) else 1e-2


def verify_merge(
    merged: Any, inputs: dict[str, torch.Tensor], expected: torch.Tensor, *, atol: float | None = None
) -> float:
    """Check the merged model's logits against ``expected``; return the max abs difference.

    The tolerance is dtype-aware and relative to the logits' scale.

    Raises:
        MergeVerificationError: the merged model does not reproduce the adapter's logits.
    """
    got = _logits(merged, inputs)
    if expected.dim() == 3:  # compare real (unpadded) positions only
        mask = inputs["attention_mask"].bool().cpu()
        got, expected = got[mask], expected[mask]
    diff = (got - expected).abs().max().item()
    scale = max(expected.abs().max().item(), 1.0)
    dtype = next(merged.parameters()).dtype
    limit = (atol if atol is not None else _tolerance(dtype)) * scale
    if not diff <= limit:  # also catches NaN
        raise MergeVerificationError(
            f"merged model does not reproduce the adapter-on-base logits: max |diff| = {diff:.3g} "
            f"> tolerance {limit:.3g} ({dtype}). The merge is corrupt; nothing was published. "
            f"Re-run the stage; if it persists, report it with the base model and PEFT version."
        )
    return diff


def max_logit_diff(a: Any, b: Any, tokenizer: Any, texts: Sequence[str]) -> float:
    """The largest difference between two models' outputs on ``texts`` (real positions only)."""
    got_a = _logits(a, _verification_inputs(a, tokenizer, texts))
    inputs = _verification_inputs(b, tokenizer, texts)
    got_b = _logits(b, inputs)
    if got_b.dim() == 3:
        mask = inputs["attention_mask"].bool().cpu()
        got_a, got_b = got_a[mask], got_b[mask]
    return float((got_a - got_b).abs().max())


def drop_autocast_wrapper(model: Any) -> Any:
    """Undo, in place, the autocast wrapper mixed-precision training put on ``model.forward``.

    ``accelerate`` (under every TRL trainer) wraps the forward of a model trained with
    ``bf16``/``fp16`` flags in autocast, and the wrapper stays after training. Merge
    verification and measurements after training must run the weights in their own precision:
    the merged model has no wrapper, so an autocast reference would differ from it by bf16
    rounding. A model without the wrapper is returned unchanged.
    """
    if "_original_forward" not in getattr(model, "__dict__", {}):
        return model
    from accelerate.utils import extract_model_from_parallel

    extract_model_from_parallel(model, keep_fp32_wrapper=False)
    return model


def merge_and_verify(peft_model: Any, tokenizer: Any, texts: Sequence[str]) -> tuple[PreTrainedModel, float]:
    """Merge the adapter and verify the merge on ``texts``. Returns ``(model, max_abs_diff)``."""
    drop_autocast_wrapper(peft_model)
    inputs = _verification_inputs(peft_model, tokenizer, texts)
    expected = reference_logits(peft_model, inputs)
    merged = merge_adapter(peft_model)
    diff = verify_merge(merged, inputs, expected)
    logger.info("merge verified on %d inputs: max |logit diff| = %.2e", len(texts), diff)
    return merged, diff


def lora_delta_max_abs(peft_model: Any) -> float:
    """The largest absolute change the LoRA makes to any weight it targets (``B @ A * scale``).

    ``0.0`` means the adapter is still at its initialisation (``B = 0``): it did not train, and
    a merge of it changes nothing, so a merge check would pass trivially.
    """
    import torch

    largest = 0.0
    with torch.no_grad():
        for module in peft_model.modules():
            get_delta = getattr(module, "get_delta_weight", None)
            adapters = getattr(module, "active_adapters", None)
            if get_delta is None or not adapters or not hasattr(module, "lora_A"):
                continue
            for name in adapters:
                if name in module.lora_A:
                    largest = max(largest, float(get_delta(name).abs().max()))
    return largest


def save_adapter(peft_model: Any, out_dir: Path) -> None:
    peft_model.save_pretrained(str(out_dir), safe_serialization=True)


def adapter_off(peft_model: Any) -> Any:
    """The PEFT model with its adapter disabled, as a module of its own.

    It shares every weight with ``peft_model`` (nothing is copied), so it serves as the reference
    policy wherever evaluation code takes a model.
    """
    import torch

    class _AdapterOff(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        @property
        def generation_config(self) -> Any:
            return getattr(self.inner, "generation_config", None)

        def forward(self, *args: Any, **kwargs: Any) -> Any:
            with self.inner.disable_adapter():
                return self.inner(*args, **kwargs)

    return _AdapterOff(peft_model)


def input_policy(model: Any) -> Any:
    """The model as it was before training, sharing its weights: the adapter disabled for a
    PEFT model (:func:`adapter_off`); a fully fine-tuned model is itself until it trains."""
    return adapter_off(model) if hasattr(model, "disable_adapter") else model
