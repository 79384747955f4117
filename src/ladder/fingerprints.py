"""What a stage's fingerprint is made of, and the base model's.

A stage is reused only when its fingerprint is unchanged, so everything that changes what the
stage would train must be in it: the input checkpoint's fingerprint; the stage's kind, name and
config (datasets excluded); the content of its data; the ladder version and the version of the
package providing the stage; the versions of the packages providing the rewards its settings
name (a reward plugin's new version may score differently); the seed; and the identities of the
checkpoints and files its settings reference.

The base model is fingerprinted by its content when it is a local folder (its weights' headers
and sizes, config and tokenizer files: :func:`ladder.identity.path_identity`), so replacing a
folder's weights re-trains every stage, and moving the folder does not; a hub id by its name
and revision.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from ladder.checkpoint import Checkpoint, fingerprint_of
from ladder.configs import fingerprint_config
from ladder.errors import LadderError
from ladder.registry import rewards as reward_registry
from ladder.registry import stages as stage_registry
from ladder.rundir import versions
from ladder.settings import checkpoint_references, path_settings

__all__ = ["base_checkpoint", "component_versions", "references", "stage_fingerprint", "stage_package"]


def stage_package(kind: str) -> str:
    """``package==version`` of the package providing stage ``kind`` (``unregistered`` if none)."""
    try:
        entry = stage_registry.entry(kind)
        return f"{entry.package}=={entry.version}"
    except LadderError:
        return "unregistered"


def base_checkpoint(model: str | os.PathLike[str], revision: str | None = None) -> Checkpoint:
    """The base checkpoint: fingerprinted by content for a local folder, by name for a hub id."""
    path = str(model)
    if Path(path).expanduser().is_dir():
        from ladder.identity import path_identity

        return Checkpoint(path=path, stage="base", revision=revision,
                          fingerprint=fingerprint_of("base", "local", path_identity(path), revision))
    return Checkpoint.base(path, revision=revision)


def _strings(value: Any) -> set[str]:
    """Every string in a config value: mapping keys (``{exact_match: 1.0}``) and values, list items."""
    if isinstance(value, Mapping):
        return {str(k) for k in value} | {s for v in value.values() for s in _strings(v)}
    if isinstance(value, (list, tuple)):
        return {s for v in value for s in _strings(v)}
    return {value} if isinstance(value, str) else set()


def _callables(value: Any) -> list[Any]:
    if isinstance(value, Mapping):
        return [c for v in [*value.keys(), *value.values()] for c in _callables(v)]
    if isinstance(value, (list, tuple)):
        return [c for v in value for c in _callables(v)]
    return [value] if callable(value) and not isinstance(value, type) else []


@functools.lru_cache(maxsize=1)
def _packages() -> Mapping[str, list[str]]:
    return metadata.packages_distributions()


def _distribution_of(module: str) -> str | None:
    top = module.split(".", 1)[0]
    if not top or top in sys.stdlib_module_names or top == "__main__":
        return None
    names = _packages().get(top) or []
    for name in names:
        try:
            return f"{name}=={metadata.version(name)}"
        except metadata.PackageNotFoundError:
            continue
    return None


def component_versions(stage: Any) -> dict[str, str]:
    """``{"reward:NAME": "package==version"}`` of every registered reward the stage's settings
    name, and ``{"function:MODULE.NAME": "package==version"}`` of every function they hold that
    an installed package provides.

    The settings are read without knowing their names: any string in them that names a
    registered reward counts (a ``rewards: {exact_match: 1.0}`` key as much as a list item).
    """
    config = getattr(stage, "config", None)
    if config is None:
        return {}
    import attrs

    if not attrs.has(type(config)):
        return {}
    # Datasets are left out: their rows name no component, and they can be large.
    values = [getattr(config, f.name) for f in attrs.fields(type(config)) if not f.metadata.get("data")]
    found: dict[str, str] = {}
    known = set(reward_registry.names())
    for name in sorted(_strings(values) & known):
        try:
            entry = reward_registry.entry(name)
        except LadderError:
            continue
        found[f"reward:{name}"] = f"{entry.package}=={entry.version}"
    for fn in _callables(values):
        module = getattr(fn, "__module__", None) or ""
        dist = _distribution_of(module)
        if dist is not None:
            found[f"function:{module}.{getattr(fn, '__qualname__', '?')}"] = dist
    return found


def references(stage: Any, outputs: Mapping[str, Checkpoint]) -> dict[str, str]:
    """Identities of the checkpoints and files the stage's settings name, by setting: a referenced
    stage's fingerprint, a folder's or a file's content identity."""
    from ladder.identity import path_identity

    found: dict[str, str] = {}
    for setting, ref, _kind in checkpoint_references(stage.config):
        found[setting] = outputs[ref].fingerprint if ref in outputs else path_identity(ref)
    for setting, kind in path_settings(type(stage.config)):
        value = getattr(stage.config, setting, None)
        if kind in ("file", "dir", "any") and isinstance(value, (str, os.PathLike)) and value:
            found[setting] = path_identity(value)
    return found


def stage_fingerprint(stage: Any, input_fp: str, seed: int, refs: Mapping[str, str] | None = None, *,
                      merge: str = "every_stage") -> str:
    """The fingerprint of ``stage`` trained from a checkpoint whose fingerprint is ``input_fp``
    (see the module docs); ``refs``: :func:`references`; ``merge``: the run's merge strategy
    (a ``final`` run's stages publish adapters only, so they are other checkpoints)."""
    parts: list[Any] = [
        input_fp,
        stage.kind,
        stage.name,
        fingerprint_config(stage.config),
        stage.fingerprint_data(),
        versions().get("ladder"),
        stage_package(stage.kind),
        seed,
    ]
    if refs:
        parts.append(dict(sorted(refs.items())))
    components = component_versions(stage)
    if components:
        parts.append({"components": components})
    if merge != "every_stage":  # every_stage fingerprints stay as they were
        parts.append({"merge": merge})
    return fingerprint_of(*parts)
