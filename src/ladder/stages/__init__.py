"""ladder's own stages, one module per algorithm, and the stage registry's everyday calls.

``ladder.stages`` is this package; its functions delegate to :data:`ladder.registry.stages`,
so ``ladder.stages.get("sft")`` and ``ladder.stages.names()`` work without importing any stage.
"""

from __future__ import annotations

from typing import Any

from ladder import registry as _registry
from ladder.registry import Entry

__all__ = ["names", "entries", "get", "register", "unregister"]


def names() -> list[str]:
    """Sorted names of every registered stage (imports none of them)."""
    return _registry.stages.names()


def entries() -> list[Entry]:
    """One registry entry (name, ``module:attr``, package, version) per stage, sorted."""
    return _registry.stages.entries()


def get(name: str) -> Any:
    """The stage class registered as ``name`` (imported on first use)."""
    return _registry.stages.get(name)


def register(name: str, cls: Any, *, replace: bool = False) -> Any:
    """Register a stage class in-process (tests, notebooks); it wins over entry points."""
    return _registry.stages.register(name, cls, replace=replace)


def unregister(name: str) -> None:
    """Remove an in-process registration."""
    _registry.stages.unregister(name)
