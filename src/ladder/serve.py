"""``ladder serve``: a checkpoint behind an OpenAI-compatible chat API.

Two engines, chosen by ``--engine`` (default ``auto``):

* ``vllm``: ``vllm serve CHECKPOINT`` (vLLM's own OpenAI-compatible server), used when vLLM is
  installed (``pip install 'ladder[vllm]'``) and a CUDA GPU is visible. A LoRA adapter is served
  with ``--enable-lora --lora-modules NAME=DIR``. Decoding defaults that a checkpoint's
  ``generation_config.json`` carries (Qwen's ``repetition_penalty``, ``top_k``...) are switched
  off with ``--override-generation-config``, as ladder's probes switch them off.
* ``ladder``: a small server on the standard library's ``http.server`` that answers with
  :mod:`ladder.generation` (transformers, any device, no extra packages): the same prompts,
  stop tokens and decoding as ``ladder chat``, probes and evaluations, so a greedy answer from
  the API is exactly the one the run's report shows. Endpoints: ``POST /v1/chat/completions``
  (``stream: true`` is answered as one chunk), ``GET /v1/models``, ``GET /health``.

``transformers serve`` (transformers' own server) was considered for the CPU path and is not
used: it needs FastAPI and Uvicorn, cannot load a LoRA adapter on a base model, and decodes with
the checkpoint's generation-config defaults, so its greedy answers differ from the probes'.

Clients use any OpenAI client::

    from openai import OpenAI
    client = OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="unused")
    client.chat.completions.create(model="01-sft", messages=[{"role": "user", "content": "Hi"}],
                                   temperature=0)

The model name is the checkpoint folder's name (``runs/x/01-sft/model`` serves ``01-sft``;
``--model-name`` overrides it); with ``--adapter DIR`` the adapter is served under its own name
(``01-sft-adapter``) beside the base model.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from ladder.errors import ConfigError, MissingDependencyError

if TYPE_CHECKING:
    from ladder.generation import Generation, GenerationSettings, Generator

__all__ = [
    "serve_command",
    "add_serve_arguments",
    "serve",
    "make_server",
    "ChatServer",
    "resolve_engine",
    "vllm_command",
    "default_model_name",
    "main",
]

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 8 << 20
MAX_CHOICES = 8
# LoRA ranks vLLM accepts for --max-lora-rank.
_VLLM_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)


# ------------------------------------------------------------------------------------------------
# names and engines


def default_model_name(path: str | os.PathLike[str]) -> str:
    """``runs/x/01-sft/model`` -> ``01-sft``; ``runs/x/01-sft/adapter`` -> ``01-sft-adapter``; else the folder name."""
    p = Path(path)
    if p.name == "model" and p.parent.name:
        return p.parent.name
    if p.name == "adapter" and p.parent.name:
        return f"{p.parent.name}-adapter"
    return p.name or str(path)


def _cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def resolve_engine(requested: str = "auto") -> str:
    """``"vllm"`` or ``"ladder"``: ``auto`` picks vLLM when it is installed and a CUDA GPU is visible.

    Raises:
        ConfigError: an unknown engine.
        MissingDependencyError: ``vllm`` was asked for and is not installed.
    """
    if requested not in ("auto", "vllm", "ladder"):
        raise ConfigError(f"--engine must be auto, vllm or ladder, got {requested!r}")
    has_vllm = importlib.util.find_spec("vllm") is not None
    if requested == "vllm":
        if not has_vllm:
            raise MissingDependencyError("vllm (for --engine vllm)", extra="vllm")
        return "vllm"
    if requested == "auto" and has_vllm and _cuda_available():
        return "vllm"
    if requested == "auto":
        logger.info("serving with ladder's server on transformers (%s)",
                    "no CUDA GPU" if has_vllm else "vLLM is not installed: pip install 'ladder[vllm]'")
    return "ladder"


def _lora_rank(adapter: Path) -> int:
    try:
        config = json.loads((adapter / "adapter_config.json").read_text(encoding="utf-8"))
        return int(config.get("r") or 8)
    except (OSError, ValueError, TypeError):
        return 8


def vllm_command(
    checkpoint: str | os.PathLike[str],
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    model_name: str | None = None,
    adapter: str | os.PathLike[str] | None = None,
    adapter_name: str | None = None,
    trust_remote_code: bool = False,
    extra_args: Sequence[str] = (),
) -> list[str]:
    """The ``vllm serve`` command line for a checkpoint (and optionally a LoRA adapter)."""
    exe = shutil.which("vllm")
    cmd = [exe, "serve"] if exe else [sys.executable, "-m", "vllm.entrypoints.cli.main", "serve"]
    path = Path(checkpoint)
    cmd += [str(checkpoint), "--host", host, "--port", str(port),
            "--served-model-name", model_name or default_model_name(checkpoint)]
    template = path / "chat_template.jinja"
    if template.is_file():
        cmd += ["--chat-template", str(template)]
    # Keep the checkpoint's EOS ids but none of its decoding defaults: a request's temperature,
    # top_p and max_tokens alone decide, as in ladder's own generation.
    cmd += ["--override-generation-config", json.dumps({"repetition_penalty": 1.0, "top_k": 0, "top_p": 1.0,
                                                        "temperature": 1.0, "min_p": 0.0})]
    if adapter is not None:
        rank = _lora_rank(Path(adapter))
        max_rank = next((r for r in _VLLM_LORA_RANKS if r >= rank), rank)
        cmd += ["--enable-lora", "--lora-modules", f"{adapter_name or default_model_name(adapter)}={adapter}",
                "--max-lora-rank", str(max_rank)]
    if trust_remote_code:
        cmd.append("--trust-remote-code")
    return [*cmd, *extra_args]


# ------------------------------------------------------------------------------------------------
# ladder's own server


class RequestError(Exception):
    """A bad request: answered with ``status`` and an OpenAI-style error body."""

    def __init__(self, message: str, *, status: int = 400, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status = status
        self.param = param
        self.code = code

    def body(self) -> dict[str, Any]:
        kind = "invalid_request_error" if self.status < 500 else "server_error"
        return {"error": {"message": str(self), "type": kind, "param": self.param, "code": self.code}}


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
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not float(value).is_integer()):
        raise RequestError(f"`{key}` must be a{'n integer' if kind is int else ' number'}", param=key)
    if value < low or (high is not None and value > high):
        raise RequestError(f"`{key}` must be between {low} and {high}" if high is not None
                           else f"`{key}` must be at least {low}", param=key)
    return kind(value)


def _settings_for(body: Mapping[str, Any], defaults: GenerationSettings) -> tuple[GenerationSettings, int, list[str]]:
    """Decoding settings, number of choices and stop strings of a request."""
    changes: dict[str, Any] = {}
    temperature = _number(body, "temperature", float, 0.0, 2.0)
    if temperature is not None:
        changes["temperature"] = temperature
    top_p = _number(body, "top_p", float, 0.0, 1.0)
    if top_p is not None:
        if top_p == 0:
            raise RequestError("`top_p` must be above 0", param="top_p")
        changes["top_p"] = top_p
    max_tokens = _number(body, "max_completion_tokens", int, 1) or _number(body, "max_tokens", int, 1)
    if max_tokens is not None:
        changes["max_new_tokens"] = max_tokens
    seed = _number(body, "seed", int, 0)
    if seed is not None:
        changes["seed"] = seed
    n = _number(body, "n", int, 1, MAX_CHOICES) or 1
    stop = body.get("stop")
    stops = [stop] if isinstance(stop, str) else list(stop or [])
    if not all(isinstance(s, str) and s for s in stops) or len(stops) > 4:
        raise RequestError("`stop` must be a string or a list of up to 4 non-empty strings", param="stop")
    return attrs.evolve(defaults, **changes), n, stops


def _apply_stops(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    cuts = [text.find(s) for s in stops if s in text]
    return (text[: min(cuts)], True) if cuts else (text, False)


class ChatServer:
    """Answers OpenAI chat-completion requests with a loaded :class:`~ladder.generation.Generator`.

    Args:
        generator: the loaded model (one request generates at a time).
        model_name: the name clients pass as ``model``.
        settings: default decoding settings (a request's ``temperature``, ``top_p``,
            ``max_tokens``, ``seed`` override them).
        adapter_name: when the generator's model is a PEFT model, the name that selects the
            adapter; ``model_name`` then selects the model with the adapter switched off.
    """

    def __init__(
        self,
        generator: Generator,
        model_name: str,
        settings: GenerationSettings | None = None,
        *,
        adapter_name: str | None = None,
    ) -> None:
        from ladder.generation import GenerationSettings

        self.generator = generator
        self.model_name = model_name
        self.adapter_name = adapter_name
        self.settings = settings or GenerationSettings(backend="transformers")
        self.created = int(time.time())
        self._lock = threading.Lock()

    @property
    def names(self) -> list[str]:
        return [self.model_name] + ([self.adapter_name] if self.adapter_name else [])

    def models(self) -> dict[str, Any]:
        return {"object": "list", "data": [
            {"id": name, "object": "model", "created": self.created, "owned_by": "ladder"} for name in self.names
        ]}

    @contextlib.contextmanager
    def _model_for(self, name: str) -> Iterator[None]:
        model = getattr(self.generator, "model", None)
        if self.adapter_name and name == self.model_name and hasattr(model, "disable_adapter"):
            with model.disable_adapter():
                yield
        else:
            yield

    def _prompt_tokens(self, messages: list[dict[str, str]]) -> int:
        from ladder.generation import encode_text, render_prompt

        return len(encode_text(self.generator.tokenizer, render_prompt(self.generator.tokenizer, messages)))

    def complete(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """The ``chat.completion`` response for a request body."""
        name = body.get("model") or self.model_name
        if name not in self.names:
            raise RequestError(f"the model {name!r} does not exist; this server serves {', '.join(self.names)}",
                               status=404, param="model", code="model_not_found")
        messages = _messages(body)
        settings, n, stops = _settings_for(body, self.settings)
        try:
            with self._lock, self._model_for(name):
                results: list[Generation] = self.generator.generate([messages] * n, settings)
                prompt_tokens = self._prompt_tokens(messages)
        except ConfigError as exc:  # e.g. the checkpoint has no chat template
            raise RequestError(str(exc), status=400) from exc
        choices = []
        for i, result in enumerate(results):
            text, cut = _apply_stops(result.text, stops)
            choices.append({
                "index": i,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop" if cut else result.finish_reason,
                "logprobs": None,
            })
        completion_tokens = sum(r.num_tokens for r in results)
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": name,
            "choices": choices,
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        }


def _chunks(response: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """A completed response as ``chat.completion.chunk`` events (role, content, finish)."""
    base = {"id": response["id"], "object": "chat.completion.chunk", "created": response["created"],
            "model": response["model"]}
    for choice in response["choices"]:
        i = choice["index"]
        yield {**base, "choices": [{"index": i, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}
        yield {**base, "choices": [{"index": i, "delta": {"content": choice["message"]["content"]},
                                    "finish_reason": None}]}
        yield {**base, "choices": [{"index": i, "delta": {}, "finish_reason": choice["finish_reason"]}]}


def _handler(server: ChatServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "ladder-serve"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
            logger.info("%s %s", self.address_string(), format % args)

        def _send_json(self, status: int, payload: Mapping[str, Any]) -> None:
            data = json.dumps(payload).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            path = self.path.split("?", 1)[0].rstrip("/")
            if path in ("/health", "/v1/health"):
                self._send_json(200, {"status": "ok"})
            elif path == "/v1/models":
                self._send_json(200, server.models())
            else:
                self._send_json(404, RequestError(f"no route {self.path}", status=404).body())

        def do_POST(self) -> None:  # noqa: N802
            path = self.path.split("?", 1)[0].rstrip("/")
            try:
                if path != "/v1/chat/completions":
                    raise RequestError(f"no route {self.path}; ladder serves POST /v1/chat/completions", status=404)
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY_BYTES:
                    raise RequestError("request body too large", status=413)
                try:
                    body = json.loads(self.rfile.read(length) or b"null")
                except ValueError as exc:
                    raise RequestError(f"the body is not valid JSON: {exc}") from exc
                if not isinstance(body, Mapping):
                    raise RequestError("the body must be a JSON object")
                response = server.complete(body)
            except RequestError as exc:
                self._send_json(exc.status, exc.body())
                return
            except Exception as exc:  # a failure while generating: answer, log, keep serving
                logger.exception("generation failed")
                self._send_json(500, RequestError(f"{type(exc).__name__}: {exc}", status=500).body())
                return
            if body.get("stream"):
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True
                for chunk in _chunks(response):
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()
            else:
                self._send_json(200, response)

    return Handler


def make_server(chat: ChatServer, host: str = "127.0.0.1", port: int = 8000) -> ThreadingHTTPServer:
    """An HTTP server (bound, not yet serving) for ``chat``; ``port=0`` picks a free port."""
    httpd = ThreadingHTTPServer((host, port), _handler(chat))
    httpd.daemon_threads = True
    return httpd


def load_chat_server(
    checkpoint: str | os.PathLike[str],
    *,
    adapter: str | os.PathLike[str] | None = None,
    model_name: str | None = None,
    adapter_name: str | None = None,
    settings: GenerationSettings | None = None,
    options: Mapping[str, Any] | None = None,
) -> ChatServer:
    """Load a checkpoint (plus an optional LoRA adapter on top) into a :class:`ChatServer`."""
    from ladder.generation import GenerationSettings, TransformersGenerator
    from ladder.training.models import load_model, load_tokenizer

    settings = attrs.evolve(settings or GenerationSettings(), backend="transformers")
    if adapter is None:
        generator = TransformersGenerator.from_pretrained(str(checkpoint), options, settings)
        return ChatServer(generator, model_name or default_model_name(checkpoint), settings)
    from peft import PeftModel

    adapter = Path(adapter)
    if not (adapter / "adapter_config.json").is_file():
        raise ConfigError(f"--adapter {adapter}: not a PEFT adapter folder (no adapter_config.json)")
    # An adapter folder that carries a tokenizer (its training chat template) wins.
    tokenizer_source = adapter if (adapter / "tokenizer_config.json").is_file() else checkpoint
    model = PeftModel.from_pretrained(load_model(str(checkpoint), options), str(adapter))
    generator = TransformersGenerator(model, load_tokenizer(str(tokenizer_source), options), settings)
    return ChatServer(generator, model_name or default_model_name(checkpoint), settings,
                      adapter_name=adapter_name or default_model_name(adapter))


# ------------------------------------------------------------------------------------------------
# entry points


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def serve(
    checkpoint: str | os.PathLike[str],
    *,
    adapter: str | os.PathLike[str] | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    engine: str = "auto",
    model_name: str | None = None,
    settings: GenerationSettings | None = None,
    options: Mapping[str, Any] | None = None,
    ready: Callable[[str, str], None] | None = None,
) -> int:
    """Serve ``checkpoint`` until interrupted; returns an exit status.

    Args:
        ready: called with ``(base_url, engine)`` once the server accepts requests (for vLLM:
            when it has been started; it loads the model before answering).
    """
    if not Path(checkpoint).is_dir():
        logger.info("%s is not a local folder: treating it as a hub id", checkpoint)
    if adapter is not None and not Path(adapter).is_dir():
        raise ConfigError(f"--adapter {adapter}: no such folder")
    chosen = resolve_engine(engine)
    if chosen == "vllm":  # pragma: no cover - needs vLLM and a GPU
        port = port or _free_port(host)
        cmd = vllm_command(checkpoint, host=host, port=port, model_name=model_name, adapter=adapter,
                           trust_remote_code=bool((options or {}).get("trust_remote_code")))
        logger.info("starting: %s", " ".join(cmd))
        proc = subprocess.Popen(cmd)
        if ready is not None:
            ready(f"http://{host}:{port}/v1", "vllm")
        try:
            return proc.wait()
        except KeyboardInterrupt:
            proc.terminate()
            return proc.wait()
    chat = load_chat_server(checkpoint, adapter=adapter, model_name=model_name, settings=settings, options=options)
    httpd = make_server(chat, host, port)
    url = f"http://{host}:{httpd.server_address[1]}/v1"
    logger.info("serving %s at %s", ", ".join(chat.names), url)
    if ready is not None:
        ready(url, "ladder")
    try:
        httpd.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()
    return 0


def add_serve_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The ``ladder serve`` arguments (shared by the CLI and ``python -m ladder.serve``)."""
    parser.add_argument("checkpoint", help="a model folder (e.g. runs/x/01-sft/model) or hub id")
    parser.add_argument("--adapter", metavar="DIR", help="a LoRA adapter folder to serve on top of CHECKPOINT")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default: 8000; 0 picks a free one)")
    parser.add_argument("--engine", choices=("auto", "vllm", "ladder"), default="auto",
                        help="auto: vLLM when installed and a GPU is present, else ladder's server")
    parser.add_argument("--model-name", help="the name clients pass as `model` (default: the checkpoint folder's)")
    parser.add_argument("--max-new-tokens", type=int, default=512,
                        help="default answer length when a request sets no max_tokens (ladder engine)")
    parser.add_argument("--temperature", type=float, default=0.0,
                        help="default temperature when a request sets none (ladder engine; 0 = greedy)")
    parser.add_argument("--trust-remote-code", action="store_true")
    return parser


def serve_command(args: argparse.Namespace) -> int:
    """The ``ladder serve`` command: serve until Ctrl-C; prints the base URL once ready."""
    from ladder.generation import GenerationSettings

    settings = GenerationSettings(max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                                  backend="transformers")

    def ready(url: str, engine: str) -> None:
        # The command's own output: scripts and tests read the URL from this line.
        print(f"ladder serve: {engine} engine at {url} (Ctrl-C to stop)", flush=True)

    return serve(args.checkpoint, adapter=args.adapter, host=args.host, port=args.port, engine=args.engine,
                 model_name=args.model_name, settings=settings,
                 options={"trust_remote_code": args.trust_remote_code}, ready=ready)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m ladder.serve``: the same as ``ladder serve``."""
    parser = add_serve_arguments(argparse.ArgumentParser(prog="ladder serve", description=__doc__.splitlines()[0]))
    args = parser.parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        logging.getLogger("ladder").setLevel(logging.INFO)
    try:
        return serve_command(args)
    except (ConfigError, MissingDependencyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
