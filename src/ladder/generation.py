"""Generating answers from a checkpoint: one small interface, two backends.

:func:`generate` answers chat conversations with a loaded transformers model: it applies the
checkpoint's chat template (with the generation prompt), left-pads prompts into batches and
decodes until an end-of-turn/EOS token or the token limit, with :func:`ladder.decode.decode`
(which stops computing a row once it has finished) where the model allows, else with
``model.generate()``. Probes, evaluations and
``ladder chat`` all go through it, so every rung of the ladder is decoded the same way.

Decoding uses only :class:`GenerationSettings`: the checkpoint's own ``generation_config``
(Qwen's ships ``repetition_penalty=1.05``, ``top_k=20``, sampling on) is ignored apart from its
EOS ids, so a difference between two stages' answers comes from the weights, not from
different decoding defaults.

Greedy decoding (``temperature=0``, the default) is deterministic, and a prompt's answer does
not depend on which other prompts share its batch: left padding is masked and ``generate()``
counts position ids from the first real token. The logits are equal only up to float rounding
(about 1e-7 in fp32 on CPU: matrix and attention kernels round differently for other shapes),
which can flip a greedy choice only where the two best tokens are that close. Sampling is
reproducible for the same prompts, seed and batch size.

Backends: :class:`TransformersGenerator` (always available) and
:class:`ladder.vllm_generation.VLLMGenerator` (``pip install 'ladder[vllm]'``; a CUDA GPU, or
vLLM's CPU build). :func:`ladder.generators.load_generator` picks one.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, Protocol, cast, runtime_checkable

import attrs

from ladder.decode import decode, supports
from ladder.errors import ConfigError
from ladder.training.chat_format import END_OF_TURN_TOKENS, stop_token_ids
from ladder.training.models import unwrapped

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from ladder.checkpoint import Checkpoint

__all__ = [
    "END_OF_TURN_TOKENS",
    "Conversation",
    "Generation",
    "GenerationSettings",
    "Generator",
    "TransformersGenerator",
    "answer",
    "as_messages",
    "chat_text",
    "encode_text",
    "generate",
    "render_prompt",
    "stop_token_ids",
]

logger = logging.getLogger(__name__)

Backend = Literal["auto", "transformers", "vllm"]
Precision = Literal["auto", "fp32", "bf16"]
#: A chat conversation (``[{"role": ..., "content": ...}, ...]``) or a bare user prompt.
Conversation = str | Sequence[Mapping[str, Any]]


@attrs.frozen(kw_only=True)
class GenerationSettings:
    """How answers are decoded. The same settings are used for every checkpoint of a run."""

    max_new_tokens: int = attrs.field(
        default=128,
        validator=[attrs.validators.instance_of(int), attrs.validators.ge(1)],
        metadata={"help": "Most tokens generated per answer (the end-of-turn token not counted)."},
    )
    temperature: float = attrs.field(
        default=0.0,
        converter=float,
        validator=attrs.validators.ge(0.0),
        metadata={"help": "0 decodes greedily (deterministic); > 0 samples at this temperature."},
    )
    top_p: float = attrs.field(
        default=1.0,
        converter=float,
        validator=[attrs.validators.gt(0.0), attrs.validators.le(1.0)],
        metadata={"help": "Nucleus sampling threshold (only used when temperature > 0)."},
    )
    seed: int = attrs.field(
        default=0,
        validator=attrs.validators.instance_of(int),
        metadata={"help": "Seed for sampling (greedy decoding does not use it)."},
    )
    batch_size: int = attrs.field(
        default=8,
        validator=[attrs.validators.instance_of(int), attrs.validators.ge(1)],
        metadata={"help": "Prompts generated together (transformers backend)."},
    )
    backend: Backend = attrs.field(
        default="auto",
        validator=attrs.validators.in_(("auto", "transformers", "vllm")),
        metadata={"help": "auto: vLLM when installed and a CUDA GPU is present, else transformers."},
    )
    precision: Precision = attrs.field(
        default="auto",
        validator=attrs.validators.in_(("auto", "fp32", "bf16")),
        metadata={
            "help": "weights probes and evaluations load in: auto (fp32 on CPU, bf16/fp16 on GPU), fp32, or "
            "bf16 (where the CPU or GPU has native bf16, else as auto; on CPU ~2x faster, but a greedy "
            "answer can then depend on which prompts share its batch)"
        },
    )

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


@attrs.frozen
class Generation:
    """One generated answer.

    Attributes:
        text: the decoded answer, special tokens stripped (the end-of-turn token is not in it).
        num_tokens: generated tokens, not counting the end-of-turn/EOS token.
        stopped: whether the model ended the answer itself (emitted an end-of-turn/EOS token)
            rather than running into ``max_new_tokens``.
        finish_reason: ``"stop"`` or ``"length"`` (as the OpenAI API says it).
    """

    text: str
    num_tokens: int
    stopped: bool
    finish_reason: Literal["stop", "length"]


@runtime_checkable
class Generator(Protocol):
    """A loaded checkpoint that answers conversations.

    Attributes:
        backend: ``"transformers"`` or ``"vllm"``.
        tokenizer: the checkpoint's tokenizer (its chat template renders the prompts).
    """

    backend: str
    tokenizer: PreTrainedTokenizerBase

    def generate(
        self, conversations: Sequence[Conversation], settings: GenerationSettings | None = None
    ) -> list[Generation]:
        """Answer each conversation, in order. ``settings`` default to the generator's own."""
        ...

    def close(self) -> None:
        """Release the model (GPU memory)."""
        ...


# --------------------------------------------------------------------------- prompts


def as_messages(conversation: Conversation) -> list[dict[str, Any]]:
    """A conversation as a list of message dicts; a bare string is one user message."""
    if isinstance(conversation, str):
        return [{"role": "user", "content": conversation}]
    messages = [dict(m) for m in conversation]
    if not messages or any("role" not in m or "content" not in m for m in messages):
        raise ConfigError(
            f"a conversation must be a non-empty list of {{'role': ..., 'content': ...}} "
            f"messages or a string, got {conversation!r}"
        )
    return messages


def render_prompt(tokenizer: PreTrainedTokenizerBase, conversation: Conversation) -> str:
    """The prompt text the model continues: the chat template with the generation prompt."""
    if not getattr(tokenizer, "chat_template", None):
        raise ConfigError(
            f"the tokenizer of {getattr(tokenizer, 'name_or_path', '?')!r} has no chat template, so "
            f"ladder cannot build chat prompts for it. Use a model that ships one, or set the "
            f"tokenizer's chat_template (e.g. ladder's ChatML template) before probing."
        )
    return chat_text(tokenizer, as_messages(conversation), add_generation_prompt=True)


def chat_text(
    tokenizer: PreTrainedTokenizerBase, messages: Sequence[Mapping[str, Any]], *, add_generation_prompt: bool
) -> str:
    """``messages`` rendered by the tokenizer's chat template, as text."""
    text = tokenizer.apply_chat_template(
        [dict(m) for m in messages], add_generation_prompt=add_generation_prompt, tokenize=False
    )
    return cast(str, text)


def encode_text(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    """Token ids of ``text`` without added special tokens."""
    # The chat template already writes any BOS token the model expects.
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _finish(
    new_tokens: Sequence[int], stops: Sequence[int], tokenizer: PreTrainedTokenizerBase
) -> Generation:
    """Cut generated ids at the first stop token and decode them."""
    stop_set = set(stops)
    tokens = list(new_tokens)
    stopped = False
    for k, tid in enumerate(tokens):
        if tid in stop_set:
            # Anything after the stop token is padding of a finished row in the batch.
            tokens, stopped = tokens[:k], True
            break
    text = cast(str, tokenizer.decode(tokens, skip_special_tokens=True))
    return Generation(
        text=text,
        num_tokens=len(tokens),
        stopped=stopped,
        finish_reason="stop" if stopped else "length",
    )


# --------------------------------------------------------------------------- transformers


@contextlib.contextmanager
def _inference_state(model: Any, seed: int | None) -> Iterator[None]:
    """eval() mode, a neutral generation_config and a private RNG for the duration."""
    import torch
    from transformers import GenerationConfig

    inner = unwrapped(model)
    was_training = model.training
    saved_config = inner.generation_config
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    model.eval()
    # generate() fills every setting we leave unset from model.generation_config; a blank one
    # makes decoding depend on GenerationSettings only (see the module docstring).
    inner.generation_config = GenerationConfig()
    try:
        with torch.random.fork_rng(devices=devices, enabled=seed is not None), torch.inference_mode():
            if seed is not None:
                torch.manual_seed(seed)
            yield
    finally:
        inner.generation_config = saved_config
        model.train(was_training)


def answer(
    model: PreTrainedModel | Generator,
    tokenizer: PreTrainedTokenizerBase,
    conversations: Sequence[Conversation],
    settings: GenerationSettings | None = None,
) -> list[Generation]:
    """Answer each conversation with a loaded transformers model (:func:`generate`), or with a
    :class:`Generator` such as ladder's vLLM backend (which renders prompts with its own tokenizer,
    the same checkpoint's). What probes, behaviour suites and verifiable problems call."""
    if isinstance(model, Generator):
        return model.generate(conversations, settings)
    return generate(model, tokenizer, conversations, settings)


def _generation_config(settings: GenerationSettings, stops: Sequence[int], pad_id: int) -> Any:
    """transformers' GenerationConfig for ``settings``, for decoding with ``model.generate()``."""
    from transformers import GenerationConfig

    sampling: dict[str, Any] = (
        {"do_sample": False}
        # top_k=0 turns off transformers' default top-k of 50; vLLM applies no top-k either.
        if settings.greedy
        else {"do_sample": True, "temperature": settings.temperature, "top_p": settings.top_p, "top_k": 0}
    )
    return GenerationConfig(max_new_tokens=settings.max_new_tokens, eos_token_id=list(stops) or None,
                            pad_token_id=pad_id, **sampling)


def generate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    conversations: Sequence[Conversation],
    settings: GenerationSettings | None = None,
    *,
    streamer: Any = None,
) -> list[Generation]:
    """Answer each conversation with a loaded transformers model.

    Args:
        model: a causal LM (any device; inputs follow it).
        tokenizer: its tokenizer; its chat template renders each conversation with
            ``add_generation_prompt=True``.
        conversations: chat conversations (lists of ``{"role", "content"}`` messages); a bare
            string is taken as one user message.
        settings: decoding settings (``backend`` is ignored here).
        streamer: handed to ``model.generate`` (transformers' streamer protocol: ``put()`` with
            the prompt ids, then with each step's new token per row; ``end()``), so a caller
            sees tokens as they are produced. All conversations must fit one batch; its rows
            are the conversations longest prompt first, equal lengths in the given order.

    Returns:
        One :class:`Generation` per conversation, in order.
    """
    import torch

    settings = settings or GenerationSettings()
    prompts = [encode_text(tokenizer, render_prompt(tokenizer, c)) for c in conversations]
    if not prompts:
        return []
    stops = stop_token_ids(model, tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (stops or (0,))[0]
    device = next(model.parameters()).device
    # Longest prompts first: batches hold prompts of similar length (little padding) and a
    # batch that does not fit in memory fails at once rather than at the end.
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    if streamer is not None and len(prompts) > settings.batch_size:
        raise ConfigError(f"a streamer follows one batch: {len(prompts)} conversations exceed "
                          f"batch_size={settings.batch_size}; raise batch_size or stream fewer")
    results: list[Generation | None] = [None] * len(prompts)
    # ladder's loop drops finished rows from the batch (ladder.decode); a streamer needs generate().
    own_loop = streamer is None and supports(model)
    config = None if own_loop else _generation_config(settings, stops, pad_id)
    with _inference_state(model, None if settings.greedy else settings.seed):
        for start in range(0, len(order), settings.batch_size):
            batch = order[start : start + settings.batch_size]
            width = max(len(prompts[i]) for i in batch)
            input_ids = torch.tensor(
                [[pad_id] * (width - len(prompts[i])) + prompts[i] for i in batch], device=device
            )
            # Left padding, masked: generate() derives position ids from this mask, so a
            # prompt's positions are the same with or without padding in front of it.
            attention_mask = torch.tensor(
                [[0] * (width - len(prompts[i])) + [1] * len(prompts[i]) for i in batch],
                device=device,
            )
            if own_loop:
                rows = decode(model, input_ids, attention_mask, max_new_tokens=settings.max_new_tokens,
                              stop_ids=stops, temperature=settings.temperature, top_p=settings.top_p)
            else:
                out = model.generate(  # type: ignore[operator]
                    input_ids=input_ids, attention_mask=attention_mask, generation_config=config, streamer=streamer
                )
                rows = out[:, width:].tolist()
            for row, i in zip(rows, batch, strict=True):
                results[i] = _finish(row, stops, tokenizer)
    return [r for r in results if r is not None]


class TransformersGenerator:
    """Generation with a transformers model (any device; always available).

    Args:
        model: a loaded causal LM.
        tokenizer: its tokenizer.
        settings: default decoding settings for :meth:`generate`.
    """

    backend = "transformers"

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        settings: GenerationSettings | None = None,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.settings = settings or GenerationSettings()

    @classmethod
    def from_pretrained(
        cls,
        checkpoint: Checkpoint | str | os.PathLike[str],
        options: Mapping[str, Any] | None = None,
        settings: GenerationSettings | None = None,
    ) -> TransformersGenerator:
        """Load a checkpoint's model and tokenizer (see :func:`ladder.training.models.load_model`)."""
        from ladder.training.models import load_model, load_tokenizer

        return cls(load_model(checkpoint, options), load_tokenizer(checkpoint, options), settings)

    def generate(
        self, conversations: Sequence[Conversation], settings: GenerationSettings | None = None
    ) -> list[Generation]:
        return generate(self.model, self.tokenizer, conversations, settings or self.settings)

    def close(self) -> None:
        self.model = None  # type: ignore[assignment]
