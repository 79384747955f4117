"""Which template SFT trains with, and how its loss is masked: :func:`sft_format`.

For assistant-only loss, in this order:

1. a template with ``{% generation %}`` markers (the recipe's, a named one, or the model's own);
2. a *verified* training variant of the template: ladder's for Qwen2.5 and Llama 3.1/3.2/3.3
   (:data:`~ladder.training.templates.LADDER_TRAINING_TEMPLATES`), TRL's for the families it
   recognises (Llama 3.0, Gemma 3, Phi-3/3.5, …), or ladder's ChatML template for any other
   ChatML model (SmolLM2, older Qwen2.5 revisions, …). *Verified* means
   it renders byte-identically to the template on sample chats (system prompt, multi-turn, the
   generation prompt), so training sees exactly what inference will;
3. prompt/completion masking with the template itself: each assistant turn becomes a row whose
   prompt (the chat before it, rendered with the generation prompt) is masked, which needs only
   that the prompt renders as a prefix of the chat (Mistral's ``[INST]``, Phi-4, …), checked on
   one chat of each shape the dataset has;
4. otherwise a :class:`~ladder.errors.ConfigError` that says what to do.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from ladder.errors import ConfigError
from ladder.training.templates import (
    LADDER_TRAINING_TEMPLATES,
    chatml_training_template,
    has_generation_markers,
    named_template,
    read_template,
)

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

__all__ = [
    "SAMPLE_CHATS",
    "SFTFormat",
    "completion_rows",
    "prompt_prefix_problem",
    "renders_like",
    "sft_format",
    "training_chat_template",
]

logger = logging.getLogger(__name__)

#: Chats a training variant must render exactly like the original (and, for prompt/completion
#: masking, whose prompts must render as prefixes): no system prompt, a system prompt and
#: several turns, text that templates trim or keep, a tool's answer.
SAMPLE_CHATS = [
    [{"role": role, "content": content} for role, content in turns]
    for turns in (
        (("user", "Hi"), ("assistant", "Hello!")),
        (("system", "Be brief."), ("user", "2+2?"), ("assistant", "4"), ("user", "And 3+3?"), ("assistant", "6")),
        (("user", "  Two lines:\nfirst  "), ("assistant", " Line one.\nLine two. "), ("user", "Thanks"),
         ("assistant", "You're welcome.")),
        (("user", "Weather in Paris?"), ("assistant", "Let me check."), ("tool", "22 C, sunny"),
         ("assistant", "It is 22 C and sunny.")),
    )
]

_NO_TEMPLATE = (
    "the tokenizer has no chat template; set `chat_template:` in the stage config to a format name "
    "(chatml or llama3: ladder adds their special tokens) or to a template, or start from an instruct model"
)


@attrs.frozen
class SFTFormat:
    """How SFT renders and masks its chats.

    Attributes:
        template: the template rows are rendered with, and the checkpoint carries.
        loss: ``"assistant"`` (``{% generation %}`` masks), ``"completion"`` (prompt/completion
            rows, the prompt masked) or ``"all"`` (every token of the chat).
        source: where the template came from, for logs and ``metrics.json`` (``model``, ``recipe``,
            ``trl``, ``ladder:llama3_1_training``, ``ladder:chatml``, ``named:chatml``).
        special_tokens: tokens the template is written in that the tokenizer may lack (a named
            template); see :mod:`ladder.training.templates.tokens`.
    """

    template: str
    loss: str
    source: str
    special_tokens: tuple[str, ...] = ()


def _render(tokenizer: PreTrainedTokenizerBase, chat: Sequence[Mapping[str, str]], template: str, gen: bool) -> str:
    return tokenizer.apply_chat_template(
        list(chat), tokenize=False, add_generation_prompt=gen, chat_template=template
    )


def _try_render(tokenizer: PreTrainedTokenizerBase, chat: Sequence[Mapping[str, str]], template: str,
                gen: bool) -> str | None:
    try:
        return _render(tokenizer, chat, template, gen)
    except Exception:  # noqa: BLE001 - a template may refuse a chat (raise_exception), or fail on it
        return None


def renders_like(tokenizer: PreTrainedTokenizerBase, original: str, candidate: str) -> bool:
    """Whether ``candidate`` renders every sample chat (whole, and its prompts with the generation
    prompt) exactly as ``original`` does. A chat the original refuses must be refused too."""
    rendered_any = False
    for chat in SAMPLE_CHATS:
        for cut, gen in ((len(chat), False), *((k, True) for k, m in enumerate(chat) if m["role"] == "assistant")):
            want = _try_render(tokenizer, chat[:cut], original, gen)
            got = _try_render(tokenizer, chat[:cut], candidate, gen)
            if want != got:
                return False
            rendered_any = rendered_any or want is not None
    return rendered_any


def prompt_prefix_problem(tokenizer: PreTrainedTokenizerBase, template: str,
                          chats: Sequence[Sequence[Mapping[str, str]]] | None = None) -> str | None:
    """Why prompt/completion masking cannot train these chats with ``template``, or ``None``.

    It needs, before each assistant turn, the chat so far rendered with the generation prompt to
    be a prefix of the chat up to the end of that turn, with the turn's text after it. Checked on
    one chat of each shape (sequence of roles) of ``chats`` (default :data:`SAMPLE_CHATS`, where a
    chat the template refuses is skipped: rows like it fail with the template's own error).
    """
    given = chats is not None
    seen: set[tuple[str, ...]] = set()
    checked = 0
    for chat in SAMPLE_CHATS if chats is None else chats:
        roles = tuple(m["role"] for m in chat)
        if roles in seen:
            continue
        seen.add(roles)
        if not given and _try_render(tokenizer, chat, template, False) is None:
            continue
        for k, message in enumerate(chat):
            if message["role"] != "assistant" or k == 0:
                continue
            prompt = _try_render(tokenizer, chat[:k], template, True)
            full = _try_render(tokenizer, chat[: k + 1], template, False)
            if prompt is None or full is None:
                return f"the template cannot render a chat with roles {', '.join(roles)}"
            if not full.startswith(prompt) or message["content"].strip() not in full[len(prompt):]:
                return (f"in a chat with roles {', '.join(roles)}, the prompt before assistant turn {k} renders "
                        "differently alone than in the chat (the template moves or drops a message, e.g. a "
                        "system prompt, depending on what follows)")
            checked += 1
    return None if checked else "no chat with an assistant turn after a prompt to check"


def _default_system(tokenizer: PreTrainedTokenizerBase, template: str) -> str | None:
    """The system prompt a ChatML template adds to a chat that has none (SmolLM2, Qwen2.5)."""
    rendered = _try_render(tokenizer, [{"role": "user", "content": "Hi"}], template, False) or ""
    m = re.match(r"<\|im_start\|>system\n(.*?)<\|im_end\|>\n", rendered, re.S)
    return m.group(1) if m else None


def _candidates(tokenizer: PreTrainedTokenizerBase, original: str) -> list[tuple[str, str]]:
    """Training variants of ``original`` to verify, best first, as ``(source, template)``."""
    out: list[tuple[str, str]] = [
        (f"ladder:{name}", read_template(name)) for name, marker in LADDER_TRAINING_TEMPLATES.items()
        if marker in original
    ]
    try:
        from trl.chat_template_utils import get_training_chat_template

        saved = tokenizer.chat_template
        tokenizer.chat_template = original
        try:
            patched = get_training_chat_template(tokenizer)
        finally:
            tokenizer.chat_template = saved
        if patched:
            out.append(("trl", patched))
    except ValueError:
        pass  # not a template TRL recognises
    if "<|im_start|>" in original and "<|im_end|>" in original:
        out.append(("ladder:chatml", chatml_training_template(_default_system(tokenizer, original))))
    return out


def _model_template(tokenizer: PreTrainedTokenizerBase) -> str | None:
    template = tokenizer.chat_template
    if isinstance(template, dict):
        template = template.get("default")
    return template or None


def _verified_variant(tokenizer: PreTrainedTokenizerBase, original: str) -> tuple[str, str] | None:
    for source, candidate in _candidates(tokenizer, original):
        if renders_like(tokenizer, original, candidate):
            logger.info("training with %s's variant of the chat template (verified to render like it)", source)
            return source, candidate
        logger.debug("%s's training variant does not render like this template; not used", source)
    return None


def sft_format(tokenizer: PreTrainedTokenizerBase, override: str | None = None, *,
               assistant_only_loss: bool = True,
               chats: Sequence[Sequence[Mapping[str, str]]] | None = None) -> SFTFormat:
    """How SFT renders and masks its chats (see the module docs for the order of choices).

    Args:
        tokenizer: the input checkpoint's tokenizer (not changed).
        override: the stage's ``chat_template`` setting: template text or a name
            (:data:`~ladder.training.templates.NAMED_TEMPLATES`).
        assistant_only_loss: loss on the assistant's tokens only (else on every token).
        chats: the chats to train on (``messages`` lists), to check prompt/completion masking
            on; default the sample chats.

    Raises:
        ConfigError: no template, or none that can mask the assistant's turns; says what to do.
    """
    named = named_template(override)
    if named is not None:
        loss = "assistant" if assistant_only_loss else "all"
        return SFTFormat(named.text, loss, f"named:{named.name}", named.special_tokens)
    original = override or _model_template(tokenizer)
    source = "recipe" if override else "model"
    if not original:
        raise ConfigError(_NO_TEMPLATE)
    if not assistant_only_loss:
        return SFTFormat(original, "all", source)
    if has_generation_markers(original):
        return SFTFormat(original, "assistant", source)
    variant = _verified_variant(tokenizer, original)
    if variant is not None:
        return SFTFormat(variant[1], "assistant", variant[0])
    problem = prompt_prefix_problem(tokenizer, original, chats)
    if problem is None:
        logger.info("no verified training variant of this chat template: masking each assistant turn's "
                    "prompt instead (one prompt/completion row per assistant turn)")
        return SFTFormat(original, "completion", f"{source}:prompt-completion")
    raise ConfigError(
        f"the {source}'s chat template has no {{% generation %}} markers, ladder has no verified training "
        f"variant of it, and prompt/completion masking cannot be used: {problem}. Set `chat_template:` in "
        "the stage config to a copy of the template with {% generation %}…{% endgeneration %} around the "
        "assistant's text, or set `assistant_only_loss: false` to train on whole conversations"
    )


def training_chat_template(tokenizer: PreTrainedTokenizerBase, override: str | None = None) -> str:
    """The chat template to train with, with ``{% generation %}`` markers (assistant-only loss).

    Args:
        tokenizer: the input checkpoint's tokenizer.
        override: the recipe's template (text or a name such as ``chatml``).

    Raises:
        ConfigError: no template with markers can be found (a template that only supports
            prompt/completion masking included; :func:`sft_format` handles that case).
    """
    fmt = sft_format(tokenizer, override)
    if fmt.loss != "assistant":
        raise ConfigError(
            "the chat template has no {% generation %} markers and ladder has no verified training variant "
            "of it; set `chat_template:` to a copy with {% generation %}…{% endgeneration %} around the "
            "assistant's text"
        )
    return fmt.template


def completion_rows(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Chat rows (``{"messages": [...]}``) as prompt/completion rows: one per assistant turn, its
    prompt the chat before it. Every assistant turn is trained once, each in the context
    inference gives it (a template that moves the system prompt to the last user turn, like
    Mistral's, renders each row as it would at that turn)."""
    out: list[dict[str, Any]] = []
    for row in rows:
        messages = list(row["messages"])
        for k, message in enumerate(messages):
            if message["role"] == "assistant" and k > 0:
                out.append({"prompt": messages[:k], "completion": [message],
                            **({"tools": row["tools"]} if "tools" in row else {})})
    return out
