"""The OpenAI chat-completions request, checked: what a body may ask for, and the errors it gets.

Nothing here touches the network or the model, so every check runs before a request waits for
the model, and each failure names the field (``param``) as OpenAI's API does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from ladder.errors import LadderError
from ladder.generation import GenerationSettings

__all__ = [
    "DEFAULT_REQUEST_TIMEOUT",
    "MAX_BODY_BYTES",
    "MAX_CHOICES",
    "MAX_STOPS",
    "ChatRequest",
    "RequestError",
    "find_stop",
    "holdback",
    "parse_chat_request",
]

#: The largest request body accepted (a chat request is a few KB; this leaves room for long contexts).
MAX_BODY_BYTES = 8 << 20
#: Seconds a client has to send a request's headers, and then its body.
DEFAULT_REQUEST_TIMEOUT = 30.0
MAX_CHOICES = 8
MAX_STOPS = 4
# Seeds go to torch.manual_seed, which takes a 64-bit value.
_MAX_SEED = 2**63 - 1


class RequestError(LadderError, ValueError):
    """A request the server refuses: answered with ``status`` and an OpenAI-style error body.

    Args:
        message: what is wrong and what to send instead.
        status: the HTTP status (4xx for the client's mistakes, 5xx for the server's).
        param: the request field at fault, as OpenAI's ``error.param``.
        code: a machine-readable reason, as OpenAI's ``error.code``.
        headers: extra response headers (``WWW-Authenticate`` on a 401).
    """

    def __init__(
        self,
        message: str,
        *,
        status: int = 400,
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.param = param
        self.code = code
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        """``{"error": {"message", "type", "param", "code"}}``, which OpenAI clients turn into their exceptions."""
        kind = ("authentication_error" if self.status == 401 else
                "invalid_request_error" if self.status < 500 else "server_error")
        return {"error": {"message": str(self), "type": kind, "param": self.param, "code": self.code}}


@attrs.frozen(kw_only=True)
class ChatRequest:
    """A checked chat-completion request.

    Attributes:
        model: the served name it asked for.
        messages: ``[{"role", "content"}]`` with text content.
        settings: decoding settings (the server's defaults, overridden by the request's).
        max_tokens_set: whether the request chose ``max_tokens`` (else the server's default
            applies, shortened to the room the prompt leaves in the context).
        n: how many choices.
        stops: stop strings; an answer ends before the first one it completes.
        stream: answer with server-sent events as text is produced.
        include_usage: ``stream_options.include_usage``: a last chunk with token counts.
    """

    model: str
    messages: list[dict[str, str]]
    settings: GenerationSettings
    max_tokens_set: bool
    n: int = 1
    stops: tuple[str, ...] = ()
    stream: bool = False
    include_usage: bool = False


def _text(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # [{"type": "text", "text": "..."}]
        parts = []
        for part in content:
            if not isinstance(part, Mapping) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise RequestError(f"{where}: only text content parts are supported", param=where)
            parts.append(part["text"])
        return "".join(parts)
    raise RequestError(f"{where} must be a string or a list of text parts", param=where)


def _messages(body: Mapping[str, Any]) -> list[dict[str, str]]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError("`messages` must be a non-empty list of {role, content}", param="messages")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, Mapping) or not isinstance(m.get("role"), str):
            raise RequestError(f"messages[{i}] must be an object with a `role`", param=f"messages[{i}]")
        out.append({"role": m["role"], "content": _text(m.get("content", ""), f"messages[{i}].content")})
    return out


def _number(body: Mapping[str, Any], key: str, kind: type, low: float, high: float | None = None) -> Any:
    value = body.get(key)
    if value is None:
        return None
    # An int is checked as an int: float() of a huge one overflows.
    integral = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not integral):
        raise RequestError(f"`{key}` must be a{'n integer' if kind is int else ' number'}", param=key)
    if value < low or (high is not None and value > high):
        raise RequestError(f"`{key}` must be between {low} and {high}, got {value}" if high is not None
                           else f"`{key}` must be at least {low}, got {value}", param=key)
    return kind(value)


def parse_chat_request(
    body: Any,
    *,
    names: Sequence[str],
    defaults: GenerationSettings,
    context_length: int,
) -> ChatRequest:
    """Check a ``POST /v1/chat/completions`` body.

    Args:
        body: the decoded JSON body.
        names: the served model names; the first is used when the body names none.
        defaults: decoding settings for what the body leaves out.
        context_length: the model's context in tokens; ``max_tokens`` may not exceed it.

    Raises:
        RequestError: 400 naming the bad field; 404 for a model this server does not serve.
    """
    if not isinstance(body, Mapping):
        raise RequestError("the body must be a JSON object")
    name = body.get("model") or names[0]
    if name not in names:
        raise RequestError(f"the model {name!r} does not exist; this server serves {', '.join(names)}",
                           status=404, param="model", code="model_not_found")
    messages = _messages(body)
    changes: dict[str, Any] = {}
    temperature = _number(body, "temperature", float, 0.0, 2.0)
    if temperature is not None:
        changes["temperature"] = temperature
    top_p = _number(body, "top_p", float, 0.0, 1.0)
    if top_p is not None:
        if top_p == 0:
            raise RequestError("`top_p` must be above 0", param="top_p")
        changes["top_p"] = top_p
    key = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    max_tokens = _number(body, key, int, 1)
    if max_tokens is not None:
        if max_tokens > context_length:
            raise RequestError(f"`{key}` is {max_tokens}, more than this model's context of {context_length} "
                               f"tokens; ask for at most {context_length} (less the prompt's tokens)",
                               param=key, code="context_length_exceeded")
        changes["max_new_tokens"] = max_tokens
    seed = _number(body, "seed", int, 0, _MAX_SEED)
    if seed is not None:
        changes["seed"] = seed
    n = _number(body, "n", int, 1, MAX_CHOICES) or 1
    # Every choice is one row of a single batch (see ladder.generation.generate).
    changes["batch_size"] = max(defaults.batch_size, n)
    stop = body.get("stop")
    stops = [] if stop is None else [stop] if isinstance(stop, str) else stop
    if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops) or len(stops) > MAX_STOPS:
        raise RequestError(f"`stop` must be a string or a list of up to {MAX_STOPS} non-empty strings", param="stop")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise RequestError("`stream` must be true or false", param="stream")
    options = body.get("stream_options") or {}
    if not isinstance(options, Mapping):
        raise RequestError("`stream_options` must be an object", param="stream_options")
    return ChatRequest(
        model=name,
        messages=messages,
        settings=attrs.evolve(defaults, **changes),
        max_tokens_set=max_tokens is not None,
        n=n,
        stops=tuple(stops),
        stream=stream,
        include_usage=bool(options.get("include_usage")),
    )


def find_stop(text: str, stops: Sequence[str], start: int = 0) -> int | None:
    """Where ``text`` is cut for its stop strings, or ``None``.

    The stop string that is complete first (the smallest end) wins, as it would in a stream,
    so a streamed answer and a whole one are cut at the same place. Only occurrences starting
    at ``start`` or later are considered.
    """
    best: tuple[int, int] | None = None
    for s in stops:
        at = text.find(s, start)
        if at >= 0 and (best is None or (at + len(s), at) < best):
            best = (at + len(s), at)
    return None if best is None else best[1]


def holdback(text: str, stops: Sequence[str]) -> int:
    """How many characters at the end of ``text`` could begin a stop string (not safe to send yet)."""
    longest = 0
    for s in stops:
        for k in range(min(len(s) - 1, len(text)), longest, -1):
            if text.endswith(s[:k]):
                longest = k
                break
    return longest
