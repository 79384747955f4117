"""Converting the demo model's GGUF file into a plain float32 safetensors model folder."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any

from ladder.errors import ModelFetchError

__all__ = ["convert_gguf"]

logger = logging.getLogger(__name__)


def convert_gguf(gguf: Path, out_dir: Path) -> dict[str, Any]:
    """Convert a SmolLM2 GGUF file into a plain float32 safetensors model folder.

    transformers dequantizes the GGUF weights on load; the quantizer's markers are then
    removed, because TRL refuses to train a model that looks quantized and
    ``save_pretrained`` refuses to save one. The saved folder is reloaded and its logits
    compared with the in-memory model's, so a bad save fails here and not in a stage.

    Args:
        gguf: the ``.gguf`` file.
        out_dir: an existing, empty directory to write into.

    Returns:
        Facts about the result (parameter count, eos token) for the provenance file.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    load_kwargs: dict[str, Any] = {"gguf_file": gguf.name}
    with contextlib.suppress(ImportError):
        # Recent transformers keeps GGUF weights packed when the `kernels` package is present;
        # ask for a plain dense model explicitly. Older releases always dequantize.
        from transformers import GgufConfig

        load_kwargs["quantization_config"] = GgufConfig(dequantize=True)

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, dtype=torch.float32, **load_kwargs)
    _strip_quantization(model)
    # The GGUF's internal run name ("Smollm2 135M 8k Lc100K Mix1 Ep2") would be saved as if
    # it were where the model came from.
    if "_model_name_or_path" in vars(model.config):
        delattr(model.config, "_model_name_or_path")

    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    if not isinstance(im_end, int) or im_end == tokenizer.unk_token_id:
        raise ModelFetchError(
            "the GGUF tokenizer has no <|im_end|> token, so this is not the expected "
            "SmolLM2-135M-Instruct file. Pass your own model with --model PATH_OR_HUB_ID."
        )
    # Chat turns end with <|im_end|>: generation must stop there.
    model.config.eos_token_id = im_end
    model.generation_config.eos_token_id = im_end
    if tokenizer.pad_token is None:
        tokenizer.pad_token = "<|im_end|>"
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    # The GGUF tokenizer carries no length limit; the model's context is the true one.
    tokenizer.model_max_length = int(model.config.max_position_embeddings)

    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    _verify_saved(model, tokenizer, out_dir)

    n_params = sum(p.numel() for p in model.parameters())
    return {
        "parameters": n_params,
        "dtype": "float32",
        "eos_token": "<|im_end|>",
        "eos_token_id": im_end,
        "max_length": tokenizer.model_max_length,
    }


def _strip_quantization(model: Any) -> None:
    """Remove every marker that makes a GGUF-loaded model look quantized.

    transformers' ``HfQuantizer.remove_quantization_config`` does this when it dequantizes
    on load; repeat it so an older or newer transformers that leaves one behind still
    gives a plain model.
    """
    for owner, name in (
        (model, "hf_quantizer"),
        (model, "quantization_method"),
        (model.config, "quantization_config"),
    ):
        if name in vars(owner):
            delattr(owner, name)
    with contextlib.suppress(AttributeError):
        model.is_quantized = False
    if getattr(model, "hf_quantizer", None) is not None:  # a class-level default
        model.hf_quantizer = None


def _verify_saved(model: Any, tokenizer: Any, out_dir: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    config_text = (out_dir / "config.json").read_text(encoding="utf-8")
    if "quantization_config" in config_text:
        raise ModelFetchError(
            f"the converted model at {out_dir} still names a quantization config, so TRL would "
            f"refuse to train it. This transformers version is not supported for the demo "
            f"model; pass your own model with --model PATH_OR_HUB_ID."
        )
    reloaded = AutoModelForCausalLM.from_pretrained(out_dir, dtype=torch.float32)
    ids = tokenizer("<|im_start|>user\nWhat is 2 + 3?<|im_end|>\n", return_tensors="pt")
    with torch.no_grad():
        want = model(**ids).logits
        got = reloaded(**ids).logits
    if not torch.allclose(want, got, atol=1e-4, rtol=1e-4):
        diff = (want - got).abs().max().item()
        raise ModelFetchError(
            f"the saved demo model does not reproduce the converted one (max logit difference "
            f"{diff:.3g}). Nothing was cached; report this with your transformers version, or "
            f"pass your own model with --model PATH_OR_HUB_ID."
        )
