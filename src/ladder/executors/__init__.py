"""Where a stage runs. ``local`` (in this process) is the default; see :func:`get_executor`."""

from __future__ import annotations

from typing import Any

from ladder.executors.base import Executor, LocalExecutor

__all__ = ["Executor", "LocalExecutor", "get_executor"]


def get_executor(spec: Any) -> Executor:
    """An executor from a recipe's ``executor:`` value (a name, a mapping, or an instance)."""
    if spec is None or spec == "local":
        return LocalExecutor()
    if not isinstance(spec, (str, dict)):
        return spec  # an Executor instance
    from ladder.errors import ConfigError

    name = spec if isinstance(spec, str) else spec.get("name") or spec.get("type")
    options = {} if isinstance(spec, str) else {k: v for k, v in spec.items() if k not in ("name", "type")}
    if name == "accelerate":
        from ladder.executors.accelerate import AccelerateExecutor

        return AccelerateExecutor(**options)
    if name == "modal":
        from ladder.executors.modal import ModalExecutor

        return ModalExecutor(**options)
    raise ConfigError(f"unknown executor {name!r}; use local, accelerate or modal")
