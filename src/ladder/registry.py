"""Registries of stages and rewards, discovered through Python entry points.

Discover first, import later: :meth:`Registry.entries` lists names with their package and
version straight from the installed distributions' metadata, without importing anything, so
``ladder stages`` never imports torch. :meth:`Registry.get` imports a component on first use.

ladder's own stages and rewards are declared under the same entry-point groups in its own
``pyproject.toml``; a third-party package does the same and shows up with no change to ladder.
Set ``LADDER_DISABLE_PLUGIN_AUTOLOAD=1`` to ignore entry points entirely (only components
registered in-process with :meth:`Registry.register` are then visible).
"""

from __future__ import annotations

import importlib.metadata as md
import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Generic, TypeVar

import attrs

from ladder.errors import DuplicateComponentError, PluginLoadError, UnknownComponentError

__all__ = ["Entry", "Registry", "stages", "rewards", "everyday_calls", "STAGES_GROUP", "REWARDS_GROUP"]

logger = logging.getLogger(__name__)

STAGES_GROUP = "ladder.stages"
REWARDS_GROUP = "ladder.rewards"
DISABLE_AUTOLOAD_ENV = "LADDER_DISABLE_PLUGIN_AUTOLOAD"

T = TypeVar("T")


@attrs.frozen
class Entry:
    """One registered component, described without importing it."""

    name: str
    value: str  # "module:attr", or "<registered in-process>"
    package: str
    version: str
    entry_point: md.EntryPoint | None = attrs.field(default=None, eq=False, repr=False)
    obj: Any = attrs.field(default=None, eq=False, repr=False)

    @property
    def module(self) -> str:
        return self.value.split(":", 1)[0]


def _dist_of(ep: md.EntryPoint) -> tuple[str, str]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return ("unknown", "unknown")
    return (dist.metadata.get("Name", "unknown") or "unknown", dist.version or "unknown")


class Registry(Generic[T]):
    """A name -> component mapping over one entry-point group.

    Args:
        group: the entry-point group, e.g. ``"ladder.stages"``.
        kind: the word used in messages, e.g. ``"stage"``.
        entry_points: a callable returning the entry points to consider; defaults to the
            installed distributions' (tests pass real ``EntryPoint`` objects here).
    """

    def __init__(
        self,
        group: str,
        kind: str,
        entry_points: Callable[[], Iterable[md.EntryPoint]] | None = None,
    ) -> None:
        self.group = group
        self.kind = kind
        self._entry_points = entry_points or (lambda: md.entry_points(group=group))
        self._registered: dict[str, Entry] = {}
        self._loaded: dict[str, T] = {}
        self._discovered: dict[str, list[Entry]] | None = None
        self._lock = threading.Lock()

    # discovery -----------------------------------------------------------------------------
    def _discover(self) -> dict[str, list[Entry]]:
        if self._discovered is None:
            found: dict[str, list[Entry]] = {}
            if os.environ.get(DISABLE_AUTOLOAD_ENV, "") not in ("1", "true", "yes"):
                seen: set[tuple[str, str, str]] = set()
                for ep in self._entry_points():
                    package, version = _dist_of(ep)
                    key = (ep.name, ep.value, package)
                    if key in seen:  # the same distribution seen twice on sys.path
                        continue
                    seen.add(key)
                    found.setdefault(ep.name, []).append(
                        Entry(ep.name, ep.value, package, version, entry_point=ep)
                    )
            self._discovered = found
        return self._discovered

    def refresh(self) -> None:
        """Forget what was discovered and loaded (after installing a plugin in-process)."""
        with self._lock:
            self._discovered = None
            self._loaded.clear()

    def _candidates(self, name: str) -> list[Entry]:
        if name in self._registered:
            return [self._registered[name]]
        return self._discover().get(name, [])

    def names(self) -> list[str]:
        """Sorted names of every visible component (imports nothing)."""
        return sorted(set(self._discover()) | set(self._registered))

    def entries(self) -> list[Entry]:
        """One :class:`Entry` per name, sorted (imports nothing).

        Raises:
            DuplicateComponentError: two packages claim one name.
        """
        return [self.entry(name) for name in self.names()]

    def entry(self, name: str) -> Entry:
        """The entry for ``name`` (imports nothing)."""
        candidates = self._candidates(name)
        if not candidates:
            raise UnknownComponentError(self.kind, name, self.names())
        if len(candidates) > 1:
            providers = [f"{c.package} ({c.value})" for c in candidates]
            raise DuplicateComponentError(self.kind, name, providers)
        return candidates[0]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and bool(self._candidates(name))

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    # loading -------------------------------------------------------------------------------
    def get(self, name: str) -> T:
        """Import (once) and return the component registered as ``name``.

        Raises:
            UnknownComponentError: no such name (the message lists the known ones).
            DuplicateComponentError: two packages claim it.
            PluginLoadError: its module failed to import.
        """
        with self._lock:
            if name in self._loaded:
                return self._loaded[name]
        entry = self.entry(name)
        if entry.obj is not None:
            obj = entry.obj
        else:
            assert entry.entry_point is not None
            try:
                obj = entry.entry_point.load()
            except Exception as exc:  # any failure inside a plugin's import
                raise PluginLoadError(
                    f"{self.kind} {name!r} from package {entry.package} {entry.version} "
                    f"({entry.value}) failed to import: {type(exc).__name__}: {exc}. "
                    f"Fix or reinstall that package, or uninstall it."
                ) from exc
        with self._lock:
            self._loaded[name] = obj
        return obj

    def register(self, name: str, obj: T, *, replace: bool = False) -> T:
        """Register ``obj`` in-process (tests, notebooks). Wins over entry points."""
        if not replace and name in self._registered:
            raise DuplicateComponentError(self.kind, name, ["<registered in-process>"] * 2)
        self._registered[name] = Entry(name, "<registered in-process>", "__main__", "", obj=obj)
        self._loaded.pop(name, None)
        return obj

    def unregister(self, name: str) -> None:
        self._registered.pop(name, None)
        self._loaded.pop(name, None)

    def view(self) -> Mapping[str, Entry]:
        """A read-only name -> entry mapping (imports nothing)."""
        return {name: self.entry(name) for name in self.names()}

    def __repr__(self) -> str:
        return f"Registry({self.group!r}, {len(self.names())} {self.kind}s)"


stages: Registry[Any] = Registry(STAGES_GROUP, "stage")
rewards: Registry[Callable[..., list[float]]] = Registry(REWARDS_GROUP, "reward")

EverydayCalls = tuple[
    Callable[[], list[str]],
    Callable[[], list[Entry]],
    Callable[[str], Any],
    Callable[..., Any],
    Callable[[str], None],
]


def everyday_calls(attribute: str) -> EverydayCalls:
    """``names, entries, get, register, unregister`` of the registry ``ladder.registry.<attribute>``,
    for the package of the same name (``ladder.stages.get("sft")``, ``ladder.rewards.register(...)``).

    Each call looks the registry up anew, so a registry a test swaps in
    (``monkeypatch.setattr(ladder.registry, "rewards", ...)``) is the one used.

    Example:
        >>> names, entries, get, register, unregister = everyday_calls("stages")
        >>> register("noop_stage", object) is object, "noop_stage" in names()
        (True, True)
        >>> unregister("noop_stage"); "noop_stage" in names()
        False
    """
    if attribute not in ("stages", "rewards"):
        raise ValueError(f"ladder.registry has no registry {attribute!r}; use 'stages' or 'rewards'")

    def current() -> Registry[Any]:
        return globals()[attribute]

    def names() -> list[str]:
        """Sorted names of every registered component (imports none of them)."""
        return current().names()

    def entries() -> list[Entry]:
        """One registry entry (name, ``module:attr``, package, version) per component, sorted."""
        return current().entries()

    def get(name: str) -> Any:
        """The component registered as ``name`` (imported on first use); see :meth:`Registry.get`."""
        return current().get(name)

    def register(name: str, obj: Any, *, replace: bool = False) -> Any:
        """Register a component in-process (tests, notebooks); it wins over entry points."""
        return current().register(name, obj, replace=replace)

    def unregister(name: str) -> None:
        """Remove an in-process registration."""
        current().unregister(name)

    return names, entries, get, register, unregister
