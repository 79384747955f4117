"""Errors raised by ladder.

Every error subclasses :class:`LadderError` *and* the closest builtin, so callers can catch
either. Every message says what to do next.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

__all__ = [
    "LadderError",
    "ConfigError",
    "RecipeError",
    "UnknownComponentError",
    "DuplicateComponentError",
    "PluginLoadError",
    "MissingDependencyError",
    "DataError",
    "ValidationError",
    "StageError",
    "MergeVerificationError",
    "RewardError",
    "ModelFetchError",
    "RunInUseError",
]


class LadderError(Exception):
    """Base class of every error ladder raises on purpose."""


class ConfigError(LadderError, ValueError):
    """A stage or pipeline setting is invalid."""


class RecipeError(ConfigError):
    """A recipe file cannot be read or does not describe a valid pipeline."""

    def __init__(self, message: str, *, path: str | None = None) -> None:
        self.path = path
        super().__init__(f"{path}: {message}" if path else message)


class UnknownComponentError(LadderError, LookupError):
    """A stage or reward name is not registered."""

    def __init__(self, kind: str, name: str, known: Iterable[str]) -> None:
        self.kind = kind
        self.name = name
        self.known = sorted(known)
        listing = ", ".join(self.known) or "(none installed)"
        super().__init__(
            f"unknown {kind} {name!r}; known {kind}s: {listing}. "
            f"Check the spelling, or install the package that provides it."
        )

    def __str__(self) -> str:  # LookupError would repr() the message
        return str(self.args[0])


class DuplicateComponentError(LadderError, LookupError):
    """Two installed packages claim the same stage or reward name."""

    def __init__(self, kind: str, name: str, providers: Sequence[str]) -> None:
        self.kind = kind
        self.name = name
        self.providers = list(providers)
        super().__init__(
            f"{kind} name {name!r} is claimed by several packages: {', '.join(self.providers)}. "
            f"Uninstall one of them, or register one under another name."
        )

    def __str__(self) -> str:
        return str(self.args[0])


class PluginLoadError(LadderError, ImportError):
    """A plugin's entry point could not be imported."""


class MissingDependencyError(LadderError, ImportError):
    """An optional dependency is needed; the message holds the pip command."""

    def __init__(self, what: str, extra: str | None = None, package: str | None = None) -> None:
        cmd = f"pip install 'ladder[{extra}]'" if extra else f"pip install {package or what}"
        super().__init__(f"{what} is not installed. Install it with: {cmd}")


class DataError(LadderError, ValueError):
    """A dataset row is malformed. Names the source, row index and field."""

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        row: int | None = None,
        field: str | None = None,
    ) -> None:
        self.source = source
        self.row = row
        self.field = field
        self.reason = message
        where = []
        if source is not None:
            where.append(str(source))
        if row is not None:
            where.append(f"row {row}")
        if field is not None:
            where.append(f"field {field!r}")
        prefix = ", ".join(where)
        super().__init__(f"{prefix}: {message}" if prefix else message)


class ValidationError(ConfigError):
    """Pre-flight found one or more problems. ``problems`` lists them all."""

    def __init__(self, problems: Sequence[str | Exception]) -> None:
        self.problems = [str(p) for p in problems]
        lines = "\n".join(f"  - {p}" for p in self.problems)
        n = len(self.problems)
        super().__init__(
            f"pre-flight found {n} problem{'s' if n != 1 else ''}; nothing was trained:\n{lines}"
        )


class StageError(LadderError, RuntimeError):
    """A stage failed while running."""


class MergeVerificationError(StageError):
    """The merged model does not reproduce the adapter-on-base logits."""


class RewardError(LadderError, RuntimeError):
    """A reward function misbehaved (raised, wrong length, NaN, None, timeout)."""


class ModelFetchError(LadderError, RuntimeError):
    """The embedded demo model could not be fetched or converted."""


class RunInUseError(LadderError, RuntimeError):
    """Another ``ladder run`` holds the run directory's lock; the message names its pid."""
