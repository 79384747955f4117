"""Command-line overrides of a recipe: ``ladder run recipe.yaml stages.sft.learning_rate=1e-4``.

An override is ``KEY=VALUE``. ``KEY`` is a dotted path into the recipe:

- a top-level key: ``model=Qwen/Qwen2.5-1.5B``, ``seed=1``, ``generation.max_new_tokens=64``,
  ``report_to=tensorboard``, ``push.repo_id=org/name``;
- a stage's setting, the stage picked by its name or by its **0-based** position in ``stages:``
  (as in a YAML list): ``stages.sft.max_steps=10``, ``stages.1.beta=0.2``, nested settings
  ``stages.sft.lora.r=16``, ``stages.dpo.trainer_kwargs.warmup_ratio=0.1``.

``VALUE`` is read as YAML (``1e-4`` and ``2`` are numbers, ``true`` a boolean, ``null`` none,
``[a, b]`` a list, anything else text). A stage setting must be one the stage has, and its value
is checked as the recipe's own would be; every bad override is reported, named, at once.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from ladder.errors import ConfigError, LadderError, ValidationError

__all__ = ["apply_overrides", "parse_value"]

_FLOAT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")
#: What a stage entry holds besides its settings (see :mod:`ladder.recipe`).
STAGE_KEYS = ("stage", "name", "input", "gpu", "executor")


def parse_value(text: str) -> Any:
    """An override's value, read as YAML; exponent numbers without a dot (``1e-4``, which YAML
    1.1 reads as text) are numbers too.

    Example:
        >>> parse_value("1e-4"), parse_value("2"), parse_value("true"), parse_value("[q_proj, v_proj]")
        (0.0001, 2, True, ['q_proj', 'v_proj'])
        >>> parse_value("org/name"), parse_value("null")
        ('org/name', None)
    """
    import yaml

    if _FLOAT.match(text.strip()):
        return float(text)
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _split(override: str) -> tuple[list[str], Any]:
    key, sep, value = override.partition("=")
    parts = key.strip().split(".")
    if not sep or not key.strip() or any(not p for p in parts):
        raise ConfigError("write overrides as KEY=VALUE with a dotted KEY, e.g. stages.sft.learning_rate=1e-4")
    return parts, parse_value(value)


def _stage_index(stages: Sequence[Any], selector: str) -> int:
    names = [str(s.get("name") or s.get("stage")) if isinstance(s, Mapping) else "?" for s in stages]
    listing = f"stages: {', '.join(f'{i}={n}' for i, n in enumerate(names))}"
    if selector.isdigit():
        index = int(selector)
        if index >= len(stages):
            raise ConfigError(f"no stage at index {index} (indices are 0-based, 0 to {len(stages) - 1}); {listing}")
        return index
    found = [i for i, n in enumerate(names) if n == selector]
    if not found:
        raise ConfigError(f"no stage named {selector!r}; {listing}")
    if len(found) > 1:
        raise ConfigError(f"{len(found)} stages are named {selector!r}; pick one by its 0-based index ({listing})")
    return found[0]


def _set(target: dict[str, Any], path: Sequence[str], value: Any) -> None:
    node = target
    for part in path[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        elif not isinstance(child, dict):
            if not isinstance(child, Mapping):
                raise ConfigError(f"{'.'.join(path[:-1])} is {child!r}, not a mapping, so it has no {path[-1]!r}")
            child = node[part] = dict(child)
        node = child
    node[path[-1]] = value


def _check_setting(stage: Mapping[str, Any], path: Sequence[str]) -> None:
    """The stage has the setting ``path`` names, and its new value passes the setting's checks."""
    from ladder.configs import _setting_problem
    from ladder.listing import nested_settings
    from ladder.registry import stages as stage_registry

    if path[0] in STAGE_KEYS:
        return
    try:
        config_cls = stage_registry.get(str(stage.get("stage"))).Config
    except LadderError:  # an unknown stage kind: the recipe's own check reports it
        return
    fields = {f.alias or f.name: f for f in attrs.fields(config_cls)} if attrs.has(config_cls) else {}
    field = fields.get(path[0])
    if field is None:
        raise ConfigError(f"stage {stage.get('name') or stage.get('stage')!r} ({stage.get('stage')}) has no setting "
                          f"{path[0]!r}; its settings: {', '.join(sorted(fields))}")
    nested_cls = nested_settings(field)
    if len(path) > 1 and nested_cls is not None:
        nested = {f.alias or f.name for f in attrs.fields(nested_cls)}
        if path[1] not in nested:
            raise ConfigError(f"setting {path[0]!r} has no {path[1]!r}; it has: {', '.join(sorted(nested))}")
    problem = _setting_problem(config_cls, {path[0]: stage[path[0]]})
    if problem:
        raise ConfigError(problem)


def apply_overrides(data: Mapping[str, Any], overrides: Sequence[str], *, top_level: Sequence[str]) -> dict[str, Any]:
    """A copy of the recipe mapping ``data`` with ``overrides`` applied (see the module docs).

    Args:
        data: the recipe as read from YAML.
        overrides: ``KEY=VALUE`` strings, applied in order.
        top_level: the keys a recipe may have.

    Raises:
        ValidationError: one problem per bad override, each naming it.
    """
    out = copy.deepcopy(dict(data))
    problems = []
    for override in overrides:
        try:
            parts, value = _split(override)
            if parts[0] == "stages":
                stages = out.get("stages")
                if len(parts) < 3 or not isinstance(stages, list):
                    raise ConfigError("name a stage and one of its settings: stages.<name or 0-based index>.<setting>")
                index = _stage_index(stages, parts[1])
                stage = stages[index] = dict(stages[index])
                _set(stage, parts[2:], value)
                _check_setting(stage, parts[2:])
            elif parts[0] in top_level:
                _set(out, parts, value)
            else:
                raise ConfigError(f"unknown recipe key {parts[0]!r}; known keys: {', '.join(top_level)}")
        except ConfigError as exc:
            problems.append(f"override {override!r}: {exc}")
    if problems:
        raise ValidationError(problems)
    return out
