"""Where a stage runs. ``local`` (in this process) is the default; see :func:`get_executor`.

Executors: ``local`` (this process), ``subprocess`` (a fresh local process running the stage
worker), ``accelerate`` (the worker under ``accelerate launch``: several GPUs, or CPU
processes), ``modal`` (a GPU container per stage on Modal). The stage code is the same in all.
"""

from __future__ import annotations

from typing import Any

from ladder.executors.base import Executor, LocalExecutor

__all__ = ["Executor", "LocalExecutor", "get_executor", "EXECUTORS"]

#: The executor names a recipe's ``executor:`` accepts.
EXECUTORS = ("local", "subprocess", "accelerate", "modal")


def get_executor(spec: Any) -> Executor:
    """An executor from a recipe's ``executor:`` value (a name, a mapping, or an instance)."""
    if spec is None or spec == "local":
        return LocalExecutor()
    if not isinstance(spec, (str, dict)):
        return spec  # an Executor instance
    from ladder.errors import ConfigError

    name = spec if isinstance(spec, str) else spec.get("name") or spec.get("type")
    options = {} if isinstance(spec, str) else {k: v for k, v in spec.items() if k not in ("name", "type")}
    if name == "local":
        cls: Any = LocalExecutor
    elif name == "subprocess":
        from ladder.executors.process import SubprocessExecutor as cls
    elif name == "accelerate":
        from ladder.executors.accelerate import AccelerateExecutor as cls
    elif name == "modal":
        from ladder.executors.modal import ModalExecutor as cls
    else:
        raise ConfigError(f"unknown executor {name!r}; use local, subprocess, accelerate or modal")
    try:
        return cls(**options)
    except TypeError as exc:  # an unknown or missing option
        raise ConfigError(f"executor {name!r}: {exc}; see docs/multi-gpu.md and docs/running-on-modal.md") from exc
