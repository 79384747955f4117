"""``ladder serve``: a checkpoint behind an OpenAI-compatible chat API.

Two engines, chosen by ``--engine`` (default ``auto``):

* ``vllm``: ``vllm serve CHECKPOINT`` (vLLM's own OpenAI-compatible server, with its own
  streaming, batching and API key), used when vLLM is installed (``pip install 'ladder[vllm]'``)
  and a CUDA GPU is visible. A LoRA adapter is served with ``--enable-lora --lora-modules
  NAME=DIR``. Decoding defaults that a checkpoint's ``generation_config.json`` carries (Qwen's
  ``repetition_penalty``, ``top_k``...) are switched off with ``--override-generation-config``,
  as ladder's probes switch them off.
* ``ladder``: a Starlette app on uvicorn (``pip install 'ladder[serve]'``) that answers with
  :func:`ladder.generation.generate` (transformers, any device): the same prompts, stop tokens
  and decoding as ``ladder chat``, probes and evaluations, so a greedy answer from the API is
  exactly the one the run's report shows. ``stream: true`` sends each piece of text as it is
  generated; requests take turns on the model (:mod:`ladder.serve.chat_server`); hostile
  requests are refused (:mod:`ladder.serve.app`).

``transformers serve`` (transformers' own server) was considered for the CPU path and is not
used: it cannot load a LoRA adapter on a base model, and decodes with the checkpoint's
generation-config defaults, so its greedy answers differ from the probes'.

Clients use any OpenAI client::

    from openai import OpenAI
    client = OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="KEY")  # any string without --api-key
    client.chat.completions.create(model="01-sft", messages=[{"role": "user", "content": "Hi"}],
                                   temperature=0)

The model name is the checkpoint folder's name (``runs/x/01-sft/model`` serves ``01-sft``;
``--model-name`` overrides it); with ``--adapter DIR`` the adapter is served under its own name
(``01-sft-adapter``) beside the base model.

This package imports neither torch nor the server packages until a server starts, so
``ladder --help`` stays fast.
"""

from __future__ import annotations

from ladder.serve.chat_server import ChatServer, context_length, load_chat_server
from ladder.serve.command import API_KEY_VARIABLE, add_serve_arguments, main, resolve_api_key, serve, serve_command
from ladder.serve.engines import (
    bind_warning,
    default_model_name,
    is_loopback,
    resolve_engine,
    vllm_command,
    vllm_environment,
)
from ladder.serve.schema import ChatRequest, RequestError, parse_chat_request

__all__ = [
    "API_KEY_VARIABLE",
    "ChatRequest",
    "ChatServer",
    "RequestError",
    "add_serve_arguments",
    "bind_warning",
    "context_length",
    "default_model_name",
    "is_loopback",
    "load_chat_server",
    "main",
    "parse_chat_request",
    "resolve_api_key",
    "resolve_engine",
    "serve",
    "serve_command",
    "vllm_command",
    "vllm_environment",
]
