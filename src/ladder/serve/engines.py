"""Choosing what serves a checkpoint: names, the engine, vLLM's command line, bind-address checks."""

from __future__ import annotations

import importlib.util
import ipaddress
import json
import logging
import os
import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from ladder.errors import ConfigError, MissingDependencyError

__all__ = [
    "bind_warning",
    "default_model_name",
    "is_loopback",
    "resolve_engine",
    "vllm_command",
    "vllm_environment",
]

logger = logging.getLogger(__name__)

# LoRA ranks vLLM accepts for --max-lora-rank.
_VLLM_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)


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
    max_model_len: int | None = None,
    extra_args: Sequence[str] = (),
) -> list[str]:
    """The ``vllm serve`` command line for a checkpoint (and optionally a LoRA adapter).

    The API key is not on it: :func:`vllm_environment` hands it to vLLM, whose own server
    enforces it (streaming, concurrency and batching are vLLM's too).
    """
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
    if max_model_len is not None:
        cmd += ["--max-model-len", str(max_model_len)]
    if trust_remote_code:
        cmd.append("--trust-remote-code")
    return [*cmd, *extra_args]


def vllm_environment(api_key: str | None, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for ``vllm serve``: ``environ`` (default: this process's) plus the API key.

    vLLM reads ``VLLM_API_KEY`` as it reads ``--api-key``; the environment keeps the key out
    of the command line, which any user of the machine can read (``ps``, ``/proc/PID/cmdline``).
    """
    env = dict(os.environ if environ is None else environ)
    if api_key:
        env["VLLM_API_KEY"] = api_key
    return env


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine (``127.0.0.0/8``, ``::1``, ``localhost``)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to any interface
        return False


def bind_warning(host: str, api_key: str | None) -> str | None:
    """What to warn about when listening on ``host``, or ``None`` on a loopback address."""
    if is_loopback(host):
        return None
    if not api_key:
        return (f"listening on {host} with no API key: anyone who can reach this port can use the model. "
                f"Set --api-key (or LADDER_API_KEY), or listen on 127.0.0.1")
    return (f"listening on {host}: requests (and the API key) travel as plain HTTP; "
            f"put a TLS proxy in front before exposing it beyond a trusted network")
