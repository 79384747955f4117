"""ladder's decode loop: batched generation that stops computing a row once it has finished.

``model.generate()`` in transformers keeps every row of a batch in the forward pass until the
last row has finished; a finished row only receives padding. On the demo's probes and
evaluations (batches of 32, answers of 5-40 tokens) that is about a third of the decode
row-steps; dropping them made one observation's answers 0.86x as long on a 2-core CPU
(``bench/levers.py decode``: a decode step costs mostly per step, less per row).
:func:`decode` runs the same computation (one prefill with the prompts left-padded and masked,
then one token per step with the KV cache), and after each step drops the rows that emitted a
stop token, from the inputs and from the cache alike (``Cache.batch_select_indices``).

The tokens are those ``generate()`` chooses: greedy takes the arg-max of the float32 logits;
sampling applies temperature, then transformers' own ``TopPLogitsWarper``, then draws from the
softmax. Greedy answers match ``generate()``'s up to float rounding (a smaller batch rounds
differently, as a different batch does in ``generate()``); sampled answers are
reproducible for the same prompts, seed and batch size, but are not the draws ``generate()``
would make, because fewer rows draw once a row has finished.

:func:`supports` says which models the loop handles: decoder-only models whose forward takes
``logits_to_keep`` and whose cache is transformers' dynamic (full or sliding-window) attention
cache. Anything else (encoder-decoders, linear-attention or quantized caches) goes through
``generate()``; so does a call with a streamer, and every call when the environment sets
``LADDER_DECODE_LOOP=0`` (to compare the two, or to rule the loop out).
"""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ladder.training.models import unwrapped

if TYPE_CHECKING:
    import torch

__all__ = ["decode", "supports"]

logger = logging.getLogger(__name__)


def _new_cache(model: Any) -> Any:
    from transformers import DynamicCache

    return DynamicCache(config=unwrapped(model).config)


def _cache_keyword(model: Any) -> str:
    """``cache`` where the forward takes it (transformers 5.24 renamed ``past_key_values``)."""
    return "cache" if "cache" in inspect.signature(unwrapped(model).forward).parameters else "past_key_values"


def supports(model: Any) -> bool:
    """Whether :func:`decode` can generate with ``model`` (else use ``model.generate()``)."""
    if os.environ.get("LADDER_DECODE_LOOP", "1").strip() == "0":
        return False
    inner = unwrapped(model)
    config = getattr(inner, "config", None)
    if config is None or getattr(config, "is_encoder_decoder", False):
        return False
    try:
        from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer

        if "logits_to_keep" not in inspect.signature(inner.forward).parameters:
            return False
        layers = getattr(_new_cache(model), "layers", None)
    except Exception:  # noqa: BLE001 - a model we cannot inspect is left to generate()
        logger.debug("ladder's decode loop skips %s", type(inner).__name__, exc_info=True)
        return False
    return bool(layers) and all(type(layer) in (DynamicLayer, DynamicSlidingWindowLayer) for layer in layers)


def _choose(logits: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
    import torch
    from transformers.generation.logits_process import TopPLogitsWarper

    logits = logits.float()
    if temperature == 0.0:
        return logits.argmax(dim=-1)
    logits = logits / temperature
    if top_p < 1.0:
        logits = TopPLogitsWarper(top_p)(None, logits)  # type: ignore[arg-type]  # it reads the scores only
    return torch.multinomial(logits.softmax(dim=-1), num_samples=1).squeeze(1)


def decode(
    model: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    *,
    max_new_tokens: int,
    stop_ids: Sequence[int],
    temperature: float = 0.0,
    top_p: float = 1.0,
) -> list[list[int]]:
    """Generate up to ``max_new_tokens`` tokens for each row of a left-padded batch.

    Call it in inference mode with the model in eval mode (``generation._inference_state``
    does both, and seeds sampling).

    Args:
        model: a causal LM :func:`supports` accepts.
        input_ids: ``[batch, width]`` prompt ids, left-padded.
        attention_mask: ``[batch, width]``, 0 on the padding.
        max_new_tokens: most tokens per row, the stop token included.
        stop_ids: end-of-turn/EOS ids; a row ends with the first of them it emits.
        temperature: 0 for greedy, else the sampling temperature.
        top_p: nucleus threshold when sampling.

    Returns:
        Each row's new tokens, ending with its stop token where it emitted one.
    """
    import torch

    device = input_ids.device
    stops = torch.tensor(list(stop_ids), device=device, dtype=input_ids.dtype)
    cache = _new_cache(model)
    cache_arg = _cache_keyword(model)
    # Positions count from each prompt's first real token, as generate() derives them.
    positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
    out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions,
                use_cache=True, logits_to_keep=1, **{cache_arg: cache})
    tokens: list[list[int]] = [[] for _ in range(input_ids.shape[0])]
    alive = torch.arange(input_ids.shape[0], device=device)
    mask = attention_mask
    last = positions[:, -1]
    for step in range(max_new_tokens):
        chosen = _choose(out.logits[:, -1, :], temperature, top_p)
        for row, token in zip(alive.tolist(), chosen.tolist(), strict=True):
            tokens[row].append(token)
        if step == max_new_tokens - 1:
            break
        finished = torch.isin(chosen, stops) if len(stops) else torch.zeros_like(chosen, dtype=torch.bool)
        if bool(finished.any()):
            keep = (~finished).nonzero().squeeze(-1)
            if keep.numel() == 0:
                break
            alive, chosen, mask, last = alive[keep], chosen[keep], mask[keep], last[keep]
            cache.batch_select_indices(keep)
        mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=-1)
        last = last + 1
        out = model(input_ids=chosen[:, None], attention_mask=mask, position_ids=last[:, None],
                    use_cache=True, **{cache_arg: cache})
    return tokens
