"""The model side of ladder's server: one loaded checkpoint answering chat completions.

:class:`ChatServer` knows nothing of HTTP: it checks requests, generates with
:func:`ladder.generation.generate` (the probes' decoding) and builds OpenAI response objects,
whole or as ``chat.completion.chunk`` events while text is produced.

Concurrency: one generation at a time. A lock serializes requests (they queue in arrival
order) rather than batching them together, because the model and its LoRA switch
(``disable_adapter`` for the base name) are shared state, and because an answer that shares a
batch with another request's prompt is equal to a lone answer only up to float rounding: a
served greedy answer stays exactly the probes' one. The web server stays responsive meanwhile
(generation runs on worker threads); use the vLLM engine for throughput.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from ladder.errors import ConfigError
from ladder.generation import GenerationSettings, encode_text, generate, render_prompt, stop_token_ids
from ladder.serve.engines import default_model_name
from ladder.serve.schema import ChatRequest, RequestError, parse_chat_request
from ladder.serve.streaming import ChoiceStreamer, StopStreaming

if TYPE_CHECKING:
    from ladder.generation import Generator

__all__ = ["ChatServer", "context_length", "load_chat_server"]

# Config fields that carry a model's context length, most common first.
_CONTEXT_FIELDS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length", "n_ctx")
# tokenizer.model_max_length is a huge sentinel when the tokenizer does not know.
_UNKNOWN_LENGTH = 10**7


def context_length(model: Any, tokenizer: Any) -> int | None:
    """The most tokens (prompt + answer) ``model`` handles, from its config or tokenizer; ``None`` if neither says."""
    config = getattr(model, "config", None)
    for field in _CONTEXT_FIELDS:
        value = getattr(config, field, None)
        if isinstance(value, int) and value > 0:
            return value
    value = getattr(tokenizer, "model_max_length", None)
    return value if isinstance(value, int) and 0 < value < _UNKNOWN_LENGTH else None


class ChatServer:
    """Answers OpenAI chat-completion requests with a loaded transformers model.

    Args:
        generator: the loaded model (:class:`~ladder.generation.TransformersGenerator`: its
            ``model`` and ``tokenizer`` are used).
        model_name: the name clients pass as ``model``.
        settings: default decoding settings (a request's ``temperature``, ``top_p``,
            ``max_tokens``, ``seed`` override them).
        adapter_name: when the generator's model is a PEFT model, the name that selects the
            adapter; ``model_name`` then selects the model with the adapter switched off.
        max_model_len: the context length in tokens; default: the model config's.

    Raises:
        ConfigError: the context length is neither given nor in the model's config.
    """

    def __init__(
        self,
        generator: Generator,
        model_name: str,
        settings: GenerationSettings | None = None,
        *,
        adapter_name: str | None = None,
        max_model_len: int | None = None,
    ) -> None:
        self.generator = generator
        self.model_name = model_name
        self.adapter_name = adapter_name
        self.settings = settings or GenerationSettings(backend="transformers")
        self.model: Any = getattr(generator, "model", None)
        self.tokenizer: Any = generator.tokenizer
        found = max_model_len or context_length(self.model, self.tokenizer)
        if found is None:
            raise ConfigError(f"{model_name}: the model's config gives no context length "
                              f"(max_position_embeddings); pass --max-model-len")
        self.context_length = found
        self.created = int(time.time())
        self._lock = threading.Lock()

    @property
    def names(self) -> list[str]:
        """The served model names: the checkpoint's, then the adapter's."""
        return [self.model_name] + ([self.adapter_name] if self.adapter_name else [])

    def models(self) -> dict[str, Any]:
        """The ``GET /v1/models`` response."""
        return {"object": "list", "data": [
            {"id": name, "object": "model", "created": self.created, "owned_by": "ladder",
             "max_model_len": self.context_length} for name in self.names
        ]}

    def parse(self, body: Any) -> ChatRequest:
        """Check a request body (no model needed; see :func:`~ladder.serve.schema.parse_chat_request`)."""
        return parse_chat_request(body, names=self.names, defaults=self.settings, context_length=self.context_length)

    @contextlib.contextmanager
    def _turn(self, request: ChatRequest) -> Iterator[tuple[int, GenerationSettings]]:
        """Wait for the model, select the served name's weights; yields (prompt tokens, settings)."""
        with self._lock:
            if self.adapter_name and request.model == self.model_name and hasattr(self.model, "disable_adapter"):
                switch: contextlib.AbstractContextManager[Any] = self.model.disable_adapter()
            else:
                switch = contextlib.nullcontext()
            with switch:
                yield self._budget(request)

    def _budget(self, request: ChatRequest) -> tuple[int, GenerationSettings]:
        """The prompt's length and the settings with ``max_new_tokens`` fitted into the context."""
        try:
            prompt_tokens = len(encode_text(self.tokenizer, render_prompt(self.tokenizer, request.messages)))
        except ConfigError as exc:  # e.g. the checkpoint has no chat template
            raise RequestError(str(exc)) from exc
        room = self.context_length - prompt_tokens
        if room < 1:
            raise RequestError(f"the messages are {prompt_tokens} tokens, which leaves no room in this model's "
                               f"context of {self.context_length} tokens; send a shorter conversation",
                               param="messages", code="context_length_exceeded")
        settings = request.settings
        if request.max_tokens_set and settings.max_new_tokens > room:
            raise RequestError(f"`max_tokens` is {settings.max_new_tokens}, but the messages take {prompt_tokens} of "
                               f"this model's context of {self.context_length} tokens: ask for at most {room}",
                               param="max_tokens", code="context_length_exceeded")
        return prompt_tokens, attrs.evolve(settings, max_new_tokens=min(settings.max_new_tokens, room))

    def _generate(
        self,
        request: ChatRequest,
        cancelled: threading.Event,
        on_start: Callable[[], None] = lambda: None,
        on_text: Callable[[int, str], None] = lambda i, text: None,
    ) -> tuple[int, ChoiceStreamer] | None:
        """Wait for the model and generate every choice; ``None`` if ``cancelled`` was set meanwhile.

        Whole and streamed answers both come through a :class:`ChoiceStreamer`, so they are
        the same text, and generation stops early once every choice has completed a stop
        string or the client has gone.
        """
        with self._turn(request) as (prompt_tokens, settings):
            if cancelled.is_set():
                return None
            on_start()
            streamer = ChoiceStreamer(self.tokenizer, request.n, stop_ids=stop_token_ids(self.model, self.tokenizer),
                                      stops=request.stops, on_text=on_text, cancelled=cancelled)
            with contextlib.suppress(StopStreaming):
                generate(self.model, self.tokenizer, [request.messages] * request.n, settings, streamer=streamer)
            if cancelled.is_set():
                return None
            streamer.finish()
        return prompt_tokens, streamer

    def complete(self, request: ChatRequest, cancelled: threading.Event | None = None) -> dict[str, Any] | None:
        """The ``chat.completion`` response (blocks while earlier requests generate).

        Returns ``None`` when ``cancelled`` is set (the client went away) before the answer is done.
        """
        done = self._generate(request, cancelled or threading.Event())
        if done is None:
            return None
        prompt_tokens, streamer = done
        choices = [{"index": i, "message": {"role": "assistant", "content": c.text},
                    "finish_reason": c.finish_reason, "logprobs": None} for i, c in enumerate(streamer.choices)]
        completion_tokens = sum(len(c.tokens) for c in streamer.choices)
        return {**self._header(request, "chat.completion"), "choices": choices,
                "usage": _usage(prompt_tokens, completion_tokens)}

    def stream(self, request: ChatRequest, emit: Callable[[dict[str, Any]], None],
               cancelled: threading.Event | None = None) -> None:
        """Generate ``request``, calling ``emit`` with each ``chat.completion.chunk`` as text is produced.

        Blocks (run it on a worker thread). The first chunks (the assistant role of each
        choice) come once the request has the model and its prompt fits the context, so a
        :class:`RequestError` raised before them can still be answered as a plain error.
        Setting ``cancelled`` (the client went away) ends generation at the next token.
        """
        header = self._header(request, "chat.completion.chunk")

        def chunk(i: int, delta: Mapping[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
            return {**header, "choices": [{"index": i, "delta": dict(delta), "logprobs": None,
                                           "finish_reason": finish_reason}]}

        def start() -> None:
            for i in range(request.n):
                emit(chunk(i, {"role": "assistant", "content": ""}))

        done = self._generate(request, cancelled or threading.Event(), on_start=start,
                              on_text=lambda i, text: emit(chunk(i, {"content": text})))
        if done is None:
            return
        prompt_tokens, streamer = done
        for i, c in enumerate(streamer.choices):
            emit(chunk(i, {}, c.finish_reason))
        if request.include_usage:
            completion_tokens = sum(len(c.tokens) for c in streamer.choices)
            emit({**header, "choices": [], "usage": _usage(prompt_tokens, completion_tokens)})

    def _header(self, request: ChatRequest, kind: str) -> dict[str, Any]:
        return {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": kind, "created": int(time.time()),
                "model": request.model}


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def load_chat_server(
    checkpoint: str | os.PathLike[str],
    *,
    adapter: str | os.PathLike[str] | None = None,
    model_name: str | None = None,
    adapter_name: str | None = None,
    settings: GenerationSettings | None = None,
    options: Mapping[str, Any] | None = None,
    max_model_len: int | None = None,
) -> ChatServer:
    """Load a checkpoint (plus an optional LoRA adapter on top) into a :class:`ChatServer`."""
    from ladder.generation import TransformersGenerator
    from ladder.training.models import load_model, load_tokenizer

    settings = attrs.evolve(settings or GenerationSettings(), backend="transformers")
    if adapter is None:
        generator = TransformersGenerator.from_pretrained(str(checkpoint), options, settings)
        return ChatServer(generator, model_name or default_model_name(checkpoint), settings,
                          max_model_len=max_model_len)
    from peft import PeftModel

    adapter = Path(adapter)
    if not (adapter / "adapter_config.json").is_file():
        raise ConfigError(f"--adapter {adapter}: not a PEFT adapter folder (no adapter_config.json)")
    # An adapter folder that carries a tokenizer (its training chat template) wins.
    tokenizer_source = adapter if (adapter / "tokenizer_config.json").is_file() else checkpoint
    model = PeftModel.from_pretrained(load_model(str(checkpoint), options), str(adapter))
    generator = TransformersGenerator(model, load_tokenizer(str(tokenizer_source), options), settings)
    return ChatServer(generator, model_name or default_model_name(checkpoint), settings,
                      adapter_name=adapter_name or default_model_name(adapter), max_model_len=max_model_len)
