"""The chat format: which template a stage renders with, and which tokens end a turn.

Assistant-only loss needs ``{% generation %}`` markers in the chat template. Most model
templates lack them. ladder (1) keeps a template that has them, (2) uses TRL's training
variant for the families TRL knows (Qwen, Llama 3, Gemma, Phi, …), (3) builds a ChatML
training template for any other ChatML model (SmolLM2, the tiny test model), *verified* to
render exactly like the original on sample chats, or (4) fails with an error that says what
to do. After training, a policy checkpoint stops on the chat's end-of-turn token, not only on
the tokenizer's document EOS (base Qwen2.5 stops on ``<|endoftext|>`` and would run on past
``<|im_end|>``).
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any

from ladder.errors import ConfigError

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = [
    "END_OF_TURN_TOKENS",
    "chat_template_for",
    "has_generation_markers",
    "training_chat_template",
    "end_of_turn_token",
    "eos_token_ids",
    "warn_if_end_of_turn_untrained",
    "input_eos_ids",
    "stop_token_ids",
]

logger = logging.getLogger(__name__)

#: Tokens that end an assistant turn in the chat formats ladder knows (ChatML, Llama 3, Gemma, Phi).
END_OF_TURN_TOKENS = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>")

_SAMPLE_CHATS = [
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}],
    [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": "And 3+3?"},
        {"role": "assistant", "content": "6"},
    ],
]


def has_generation_markers(template: str | None) -> bool:
    return bool(template) and re.search(r"\{%-?\s*generation\s*-?%\}", template or "") is not None


def _chatml_training_template(default_system: str | None) -> str:
    """A ChatML template with generation markers; optional default system prompt."""
    head = (
        "{%- if messages[0]['role'] != 'system' %}"
        "{{- '<|im_start|>system\\n" + _jinja_escape(default_system) + "<|im_end|>\\n' }}"
        "{%- endif %}"
        if default_system is not None
        else ""
    )
    return (
        head + "{%- for message in messages %}"
        "{%- if message['role'] == 'assistant' %}"
        "{{- '<|im_start|>assistant\\n' }}"
        "{%- generation %}{{- message['content'] + '<|im_end|>' }}{%- endgeneration %}"
        "{{- '\\n' }}"
        "{%- else %}"
        "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
        "{%- endif %}"
        "{%- endfor %}"
        "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
    )


def _jinja_escape(text: str | None) -> str:
    return (text or "").replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n")


def _render(tokenizer: PreTrainedTokenizerBase, chat: list[dict[str, str]], template: str, gen: bool) -> str:
    return tokenizer.apply_chat_template(
        chat, tokenize=False, add_generation_prompt=gen, chat_template=template
    )


def _renders_like(tokenizer: PreTrainedTokenizerBase, original: str, candidate: str) -> bool:
    try:
        for chat in _SAMPLE_CHATS:
            if _render(tokenizer, chat, original, False) != _render(tokenizer, chat, candidate, False):
                return False
            prompt = chat[:-1]
            if _render(tokenizer, prompt, original, True) != _render(tokenizer, prompt, candidate, True):
                return False
    except Exception:  # a template that cannot render a sample chat is not equivalent
        return False
    return True


def training_chat_template(tokenizer: PreTrainedTokenizerBase, override: str | None = None) -> str:
    """The chat template to train with (it has ``{% generation %}`` markers).

    Args:
        tokenizer: the input checkpoint's tokenizer.
        override: a template given by the recipe (text); it must have the markers.

    Raises:
        ConfigError: no training-compatible template can be found; says what to do.
    """
    if override:
        if not has_generation_markers(override):
            raise ConfigError(
                "the recipe's chat_template has no {% generation %}…{% endgeneration %} markers around "
                "the assistant's text; add them (see TRL's chat_templates/*_training.jinja for examples)"
            )
        return override
    original = tokenizer.chat_template
    if isinstance(original, dict):
        original = original.get("default")
    if not original:
        raise ConfigError(
            "the tokenizer has no chat template; set `chat_template:` in the stage config to a template "
            "with {% generation %} markers (e.g. ChatML), or start from an instruct model"
        )
    if has_generation_markers(original):
        return original
    try:
        from trl.chat_template_utils import get_training_chat_template

        patched = get_training_chat_template(tokenizer)
        if patched:
            logger.info("using TRL's training variant of the model's chat template")
            return patched
    except ValueError:
        pass  # not a family TRL knows; try ChatML below
    if "<|im_start|>" in original and "<|im_end|>" in original:
        default_system = None
        rendered = _render(tokenizer, [{"role": "user", "content": "Hi"}], original, False)
        m = re.match(r"<\|im_start\|>system\n(.*?)<\|im_end\|>\n", rendered, re.S)
        if m:
            default_system = m.group(1)
        candidate = _chatml_training_template(default_system)
        if _renders_like(tokenizer, original, candidate):
            logger.info("using ladder's ChatML training template (verified to render like the original)")
            return candidate
    raise ConfigError(
        "the model's chat template has no {% generation %} markers and ladder has no verified training "
        "variant for it. Set `chat_template:` in the stage config to a copy of the template with "
        "{% generation %}…{% endgeneration %} around the assistant's text, or set "
        "`assistant_only_loss: false` to train on whole conversations"
    )


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


def warn_if_end_of_turn_untrained(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, *, trains_embeddings: bool
) -> bool:
    """Warn when the end-of-turn token's output row looks untrained and LoRA cannot fix it.

    A base model that never saw its chat format can have an (almost) untouched row for the
    end-of-turn token in ``lm_head``; LoRA on attention only can still learn to emit it, but
    slowly. Returns whether the warning fired.
    """
    import torch

    token = end_of_turn_token(tokenizer)
    if token is None or trains_embeddings:
        return False
    tid = tokenizer.convert_tokens_to_ids(token)
    head = model.get_output_embeddings()
    if head is None or not isinstance(tid, int) or tid >= head.weight.shape[0]:
        return False
    with torch.no_grad():
        norms = head.weight.float().norm(dim=-1)
        median = norms.median().item()
        ratio = norms[tid].item() / max(median, 1e-12)
    if ratio < 0.2:
        logger.warning(
            "the end-of-turn token %s looks untrained in this base model (output-row norm %.2fx the "
            "median) and LoRA leaves embeddings and lm_head frozen: the model may not learn to stop. "
            "Consider lora.modules_to_save: [embed_tokens, lm_head], or more SFT steps.",
            token,
            ratio,
        )
        return True
    return False


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
        override: a template the stage's settings give.
        where: who needs it, for the message (``"stage 'dpo'"``).
        fix: what the user can do, for the message.

    Raises:
        ConfigError: there is no template.
    """
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
