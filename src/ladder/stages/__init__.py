"""ladder's own stages, one module per algorithm, and the stage registry's everyday calls.

``ladder.stages`` is this package; its functions delegate to :data:`ladder.registry.stages`,
so ``ladder.stages.get("sft")`` and ``ladder.stages.names()`` work without importing any stage.
"""

from __future__ import annotations

from ladder import registry as _registry

__all__ = ["names", "entries", "get", "register", "unregister"]

names, entries, get, register, unregister = _registry.everyday_calls("stages")
