"""Building configs from recipe values, and turning them back into plain data.

:func:`bind_config` builds a stage's config from a mapping or keyword arguments with errors that
name the setting; :func:`config_to_dict` is the JSON-able form (manifest, model card, worker
spec); :func:`fingerprint_config` is what a stage's fingerprint covers; :func:`describe_settings`
lists a config's settings (``ladder stages show``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import attrs

from ladder.errors import ConfigError

__all__ = ["bind_config", "config_to_dict", "describe_settings", "fingerprint_config"]

_NOTHING = attrs.NOTHING


def bind_config(config_cls: type, config: Any = None, /, **kwargs: Any) -> Any:
    """Build a ``config_cls`` from an instance, a mapping, or keyword arguments.

    Unknown keys and invalid values raise :class:`ConfigError` naming the config and the key.
    """
    if isinstance(config, config_cls):
        return attrs.evolve(config, **kwargs) if kwargs else config
    values: dict[str, Any] = {}
    if config is not None:
        if not isinstance(config, Mapping):
            raise ConfigError(
                f"{config_cls.__name__}: expected a {config_cls.__name__} or a mapping, got {type(config).__name__}"
            )
        values.update(config)
    values.update(kwargs)
    known = {f.alias if f.alias else f.name for f in attrs.fields(config_cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(
            f"{config_cls.__name__}: unknown setting{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(map(repr, unknown))}; known settings: {', '.join(sorted(known))}"
        )
    try:
        return config_cls(**values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{config_cls.__name__}: {_setting_problem(config_cls, values) or exc}") from exc


def _setting_problem(config_cls: type, values: Mapping[str, Any]) -> str | None:
    """Which given setting makes the config fail, and why, in words (attrs' own messages often
    name no setting: "'>' not supported between instances of 'str' and 'int'")."""
    for f in attrs.fields(config_cls):
        key = f.alias or f.name
        if key not in values:
            continue
        value = values[key]
        try:
            if callable(f.converter):
                value = f.converter(value)
            if f.validator is not None:
                f.validator(None, f, value)
        except (TypeError, ValueError) as exc:
            given = values[key]
            args = exc.args
            got = f"; got {given!r} ({type(given).__name__})"
            if len(args) == 4 and isinstance(args[2], type):  # attrs.validators.instance_of
                return f"setting {key!r} must be {args[2].__name__}{got}"
            if isinstance(exc, ValueError):  # attrs' in_/gt/ge name the setting and the value
                message = args[0] if args and isinstance(args[0], str) else str(exc)
                return message if message.startswith(f"'{key}'") else f"setting {key!r}: {message}"
            return f"setting {key!r} has the wrong type{got}"
    return None


def config_to_dict(config: Any) -> dict[str, Any]:
    """A JSON-able dict of an attrs config (callables and datasets become descriptions)."""

    def convert(value: Any) -> Any:
        if attrs.has(type(value)):
            return {k: convert(v) for k, v in attrs.asdict(value, recurse=False).items()}
        if isinstance(value, Mapping):
            return {str(k): convert(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            if len(value) > 50:  # in-memory datasets: their hash is fingerprinted instead
                return f"<{len(value)} items>"
            return [convert(v) for v in value]
        if isinstance(value, (str, int, float, bool)) or value is None:
            return value
        if isinstance(value, os.PathLike):
            return os.fspath(value)
        if callable(value):
            mod = getattr(value, "__module__", "?")
            return f"<callable {mod}.{getattr(value, '__qualname__', repr(value))}>"
        return f"<{type(value).__name__}>"

    return convert(config)


def fingerprint_config(config: Any) -> dict[str, Any]:
    """The config as fingerprinted: ``data`` fields are left out (the stage's
    :meth:`~ladder.stage.Stage.fingerprint_data` covers their *content*, so the same rows from a
    list or from a file give the same fingerprint)."""
    data = config_to_dict(config)
    if attrs.has(type(config)):
        for f in attrs.fields(type(config)):
            if f.metadata.get("data"):
                data.pop(f.name, None)
    return data


def describe_settings(config_cls: type) -> list[dict[str, Any]]:
    """Every setting of a config class: name, type, default and help (``ladder stages show``)."""
    rows = []
    for f in attrs.fields(config_cls) if attrs.has(config_cls) else ():
        if f.default is _NOTHING:
            default: Any = "(required)"
        elif isinstance(f.default, attrs.Factory):  # type: ignore[arg-type]
            default = config_to_dict(f.default.factory())  # type: ignore[union-attr]
        else:
            default = config_to_dict(f.default)
        type_name = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        rows.append({"name": f.alias or f.name, "type": str(type_name), "default": default,
                     "help": str(f.metadata.get("help", ""))})
    return rows
