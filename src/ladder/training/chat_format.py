"""The chat format: which template a stage renders with, and which tokens end a turn.

Which template SFT trains with, and how it masks the loss, is
:mod:`ladder.training.templates.choice` (re-exported here: :func:`training_chat_template`).
After training, a policy checkpoint stops on the chat's end-of-turn token, not only on the
tokenizer's document EOS (base Qwen2.5 stops on ``<|endoftext|>`` and would run on past
``<|im_end|>``; Llama 3 ends a turn with ``<|eot_id|>``, Gemma with ``<end_of_turn>``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ladder.errors import ConfigError
from ladder.training.templates import has_generation_markers, named_template
from ladder.training.templates.choice import training_chat_template

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = [
    "END_OF_TURN_TOKENS",
    "chat_template_for",
    "has_generation_markers",
    "training_chat_template",
    "end_of_turn_token",
    "eos_token_ids",
    "looks_untrained",
    "input_eos_ids",
    "stop_token_ids",
]

logger = logging.getLogger(__name__)

#: Tokens that end an assistant turn in the chat formats ladder knows (ChatML, Llama 3, Gemma, Phi).
END_OF_TURN_TOKENS = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>")

def end_of_turn_token(tokenizer: PreTrainedTokenizerBase, template: str | None = None) -> str | None:
    """The token that ends an assistant turn in this chat format (e.g. ``<|im_end|>``)."""
    template = template or tokenizer.chat_template or ""
    if isinstance(template, dict):
        template = template.get("default", "")
    for candidate in (*END_OF_TURN_TOKENS, "<|endoftext|>"):
        if candidate in template and candidate in tokenizer.get_vocab():
            return candidate
    return tokenizer.eos_token


def eos_token_ids(tokenizer: PreTrainedTokenizerBase, template: str | None = None) -> list[int]:
    """End-of-turn first, then the tokenizer's EOS (deduplicated)."""
    ids: list[int] = []
    for tok in (end_of_turn_token(tokenizer, template), tokenizer.eos_token):
        if tok is None:
            continue
        tid = tokenizer.convert_tokens_to_ids(tok)
        if isinstance(tid, int) and tid not in ids and tid != tokenizer.unk_token_id:
            ids.append(tid)
    return ids


def looks_untrained(model: PreTrainedModel, token_id: int) -> bool:
    """Whether the output row of ``token_id`` is far smaller than the typical row (< 0.2x the
    median norm): a token the model never learned to emit (a base model's end-of-turn token, or
    one just added). LoRA alone could learn to emit it only slowly; SFT trains its rows
    (:mod:`ladder.training.templates.tokens`)."""
    import torch

    head = model.get_output_embeddings()
    if head is None or not isinstance(token_id, int) or token_id >= head.weight.shape[0]:
        return False
    with torch.no_grad():
        norms = head.weight.float().norm(dim=-1)
        ratio = norms[token_id].item() / max(norms.median().item(), 1e-12)
    return ratio < 0.2


def input_eos_ids(checkpoint: Any, model: Any, tokenizer: PreTrainedTokenizerBase, template: str | None) -> list[int]:
    """A stage's input checkpoint's end-of-turn ids, kept; the template's end-of-turn added if missing."""
    ids = [int(t) for t in checkpoint.eos_token_ids]
    if not ids:
        value = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
        ids = [int(v) for v in value] if isinstance(value, (list, tuple)) else [int(value)] if value is not None else []
    for tid in eos_token_ids(tokenizer, template):
        if tid not in ids:
            ids.append(tid)
    return ids


def chat_template_for(
    tokenizer: PreTrainedTokenizerBase,
    checkpoint: Any = None,
    override: str | None = None,
    *,
    where: str,
    fix: str,
) -> str:
    """The chat template a stage renders conversations with, set on ``tokenizer``.

    The recipe's ``override`` wins; else the checkpoint's own template (the one its tokenizer
    carries). A tokenizer with several named templates uses its ``default`` one.

    Args:
        tokenizer: the checkpoint's tokenizer (its ``chat_template`` is set to the result).
        checkpoint: the checkpoint (its ``chat_template``, when known, and path for messages).
        override: a template the stage's settings give, or a format's name (``chatml``).
        where: who needs it, for the message (``"stage 'dpo'"``).
        fix: what the user can do, for the message.

    Raises:
        ConfigError: there is no template, or a named format's special tokens are not in the
            tokenizer (SFT adds them; other stages cannot train new tokens).
    """
    named = named_template(override)
    if named is not None:
        missing = [t for t in named.special_tokens if t not in tokenizer.get_vocab()]
        if missing:
            raise ConfigError(
                f"{where}: chat_template {named.name!r} is written in tokens this tokenizer lacks "
                f"({', '.join(missing)}); set `chat_template: {named.name}` on an SFT stage before it, which "
                "adds them and trains them"
            )
        override = named.text
    template = override or getattr(checkpoint, "chat_template", None) or tokenizer.chat_template
    if isinstance(template, dict):
        template = template.get("default")
    if not template:
        path = getattr(checkpoint, "path", None) or getattr(tokenizer, "name_or_path", "the model")
        raise ConfigError(f"{where}: {path!r} has no chat template, so conversations cannot be rendered; {fix}")
    tokenizer.chat_template = template
    return template


def _token_id(tokenizer: PreTrainedTokenizerBase, token: str) -> int | None:
    tid = tokenizer.convert_tokens_to_ids(token)
    if not isinstance(tid, int) or tid < 0 or tid == tokenizer.unk_token_id:
        return None
    # convert_tokens_to_ids can map an unknown token to some fallback id: check the way back.
    return tid if tokenizer.convert_ids_to_tokens(tid) == token else None


def stop_token_ids(model: Any, tokenizer: PreTrainedTokenizerBase) -> tuple[int, ...]:
    """Token ids that end an answer in generation.

    The model's ``generation_config.eos_token_id`` (an int or a list), the tokenizer's EOS, and
    the chat format's end-of-turn token (:data:`END_OF_TURN_TOKENS`) when it is in the
    vocabulary and used by the chat template. ``model`` may be ``None`` (tokenizer only).
    """
    ids: list[int] = []

    def add(value: Any) -> None:
        if value is None:
            return
        for v in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(v, int) and v >= 0 and v not in ids:
                ids.append(v)

    config = getattr(model, "generation_config", None) if model is not None else None
    add(getattr(config, "eos_token_id", None))
    add(tokenizer.eos_token_id)
    template = tokenizer.chat_template if isinstance(tokenizer.chat_template, str) else None
    for token in END_OF_TURN_TOKENS:
        if template is not None and token not in template:
            continue
        add(_token_id(tokenizer, token))
    return tuple(ids)
