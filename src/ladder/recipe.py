"""YAML recipes: one-to-one with the Python API.

```yaml
name: reference
model: Qwen/Qwen2.5-0.5B
stages:
  - stage: sft            # registry name
    dataset: alpaca_en    # the stage's config keys
  - stage: dpo
    dataset: dpo_en_zh_20k
  - stage: grpo
    input: sft            # start from a named earlier stage
    dataset: gsm8k
    rewards: {exact_match: 1.0, tag_format: 0.1}
```
Relative file paths (datasets, chat templates) resolve against the recipe's folder.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ladder.errors import ConfigError, LadderError, RecipeError, ValidationError
from ladder.registry import stages as stage_registry
from ladder.settings import is_path_reference, looks_like_text_file, path_settings

__all__ = ["load_recipe", "pipeline_from_dict", "TOP_LEVEL_KEYS"]

TOP_LEVEL_KEYS = {
    "name": "the run's name (default: the recipe file's stem)",
    "model": "base model: hub id, local folder, or ladder:smollm2-135m-instruct (required)",
    "revision": "hub revision of the base model",
    "run_dir": "where the run is written (default: runs/<name>)",
    "seed": "seed for every stage (default 0)",
    "stages": "the list of stages (required)",
    "probes": "probe prompts: omitted = defaults, false = none, a list = added, {replace: true, items: [...]}",
    "evals": "held-out evaluations on every checkpoint: {preference: dataset, verifiable: dataset}",
    "generation": "decoding for probes/evaluations: {max_new_tokens, temperature, ...}",
    "options": "run-wide: trust_remote_code, allow_pickle_weights",
    "executor": "where stages run: local (default), accelerate, modal",
    "merge": "every_stage (default: each stage publishes a merged model) or final (adapters only; one merge at the end)",
}
_STAGE_KEYS = ("stage", "name", "input", "gpu", "executor")


def _resolve_path(value: Any, base: Path | None) -> Any:
    """A relative path that exists below the recipe's folder, made absolute; anything else as it is."""
    if base is None:
        return value
    if isinstance(value, str) and value and not os.path.isabs(value):
        candidate = base / os.path.expanduser(value)
        if candidate.exists():
            return str(candidate.resolve())
    return value


def _resolve_data(value: Any, base: Path | None) -> Any:
    """A dataset setting with its file paths resolved: a path, a ``{source: ...}`` mapping, or a
    ``{mix: [...]}`` of such parts."""
    if isinstance(value, Mapping):
        out = dict(value)
        for key in ("source", "path"):
            if key in out:
                out[key] = _resolve_path(out[key], base)
        if isinstance(out.get("mix"), list):
            out["mix"] = [_resolve_data(part, base) for part in out["mix"]]
        return out
    return _resolve_path(value, base)


def _resolve_text(key: str, value: Any, base: Path | None) -> Any:
    """A text setting given as a file (``chat_template: templates/chatml.jinja``) read into text."""
    if not looks_like_text_file(value):
        return value
    path = Path(os.path.expanduser(value))
    if not path.is_absolute() and base is not None:
        path = base / path
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"setting {key!r}: {value!r} names no file (looked for {path}); give the text itself, or the path "
            "of an existing file relative to the recipe's folder"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"setting {key!r}: cannot read {path}: {exc}") from None


def resolve_settings(config_cls: type, settings: dict[str, Any], base: Path | None) -> dict[str, Any]:
    """``settings`` with every path a field's metadata declares resolved against ``base``
    (see :mod:`ladder.settings`): datasets, files, folders, checkpoint folders, text files."""
    out = dict(settings)
    for key, kind in path_settings(config_cls):
        if key not in out:
            continue
        value = out[key]
        if kind == "data":
            out[key] = _resolve_data(value, base)
        elif kind == "text":
            out[key] = _resolve_text(key, value, base)
        elif kind == "checkpoint_ref":
            if isinstance(value, str) and is_path_reference(value):
                out[key] = _resolve_path(value, base)
        else:
            out[key] = _resolve_path(value, base)
    return out


def load_recipe(path: str | os.PathLike[str], **overrides: Any) -> Any:
    """Read a YAML recipe and build its :class:`~ladder.pipeline.Pipeline`.

    Raises:
        RecipeError: the file is missing or not valid YAML.
        ValidationError: the recipe's content has problems (all listed at once).
    """
    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RecipeError(f"cannot read the recipe: {exc.strerror}", path=str(path)) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise RecipeError(f"invalid YAML{where}: {problem}", path=str(path)) from exc
    if not isinstance(data, Mapping):
        raise RecipeError("a recipe must be a YAML mapping with `model:` and `stages:`", path=str(path))
    data = dict(data)
    data.setdefault("name", path.stem)
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return pipeline_from_dict(data, base_dir=path.parent.resolve(), source=str(path))
    except ValidationError as exc:
        raise ValidationError([f"{path}: {p}" for p in exc.problems]) from None


def pipeline_from_dict(data: Mapping[str, Any], *, base_dir: Path | None = None, source: str | None = None) -> Any:
    """Build a Pipeline from a recipe mapping; every problem is collected, then raised at once."""
    from ladder.pipeline import Pipeline

    problems: list[str] = []
    unknown = sorted(set(data) - set(TOP_LEVEL_KEYS))
    if unknown:
        problems.append(f"unknown key(s) {', '.join(map(repr, unknown))}; known keys: {', '.join(TOP_LEVEL_KEYS)}")
    model = data.get("model")
    if isinstance(model, str) and model.startswith(EMBEDDED_PREFIX):
        model = _embedded_model(model)
    if not isinstance(model, str) or not model:
        problems.append("`model:` is required: a hub id (e.g. Qwen/Qwen2.5-0.5B) or a local model folder")
    elif base_dir is not None and (base_dir / model).is_dir() and not os.path.isabs(model):
        model = str((base_dir / model).resolve())
    raw_stages = data.get("stages")
    built = []
    if not isinstance(raw_stages, list) or not raw_stages:
        problems.append("`stages:` must be a non-empty list, e.g. [{stage: sft, dataset: alpaca_en}]")
        raw_stages = []
    for i, raw in enumerate(raw_stages, 1):
        try:
            built.append(_build_stage(raw, i, base_dir))
        except LadderError as exc:
            problems.append(f"stages[{i}]: {exc}")
    for key, kind in (("seed", int), ("options", Mapping), ("generation", Mapping), ("evals", Mapping)):
        if key in data and data[key] is not None and not isinstance(data[key], kind):
            problems.append(f"`{key}:` must be {'an integer' if kind is int else 'a mapping'}, "
                            f"got {type(data[key]).__name__}")
    from ladder.executors import EXECUTORS

    if data.get("executor") not in (None, *EXECUTORS) and not isinstance(data.get("executor"), Mapping):
        problems.append(f"`executor:` must be one of {', '.join(EXECUTORS)}, got {data.get('executor')!r}")
    from ladder.pipeline import MERGE_STRATEGIES

    if data.get("merge") not in (None, *MERGE_STRATEGIES):
        problems.append(f"`merge:` must be one of {', '.join(MERGE_STRATEGIES)}, got {data.get('merge')!r}")
    if problems:
        raise ValidationError(problems)
    evals = {k: _resolve_data(v, base_dir) for k, v in (data.get("evals") or {}).items()}
    return Pipeline(
        built,
        model=model,
        revision=data.get("revision"),
        run_dir=data.get("run_dir"),
        name=str(data["name"]) if data.get("name") else None,
        seed=int(data.get("seed", 0) or 0),
        probes=data.get("probes"),
        evals=evals,
        generation=data.get("generation"),
        options=data.get("options"),
        recipe={**dict(data), "source": source} if source else dict(data),
        executor=data.get("executor"),
        merge=data.get("merge"),
    )


EMBEDDED_PREFIX = "ladder:"
EMBEDDED_MODELS = ("smollm2-135m-instruct",)


def _embedded_model(model: str) -> str:
    """``ladder:smollm2-135m-instruct``: the embedded demo model (fetched once, then cached)."""
    name = model[len(EMBEDDED_PREFIX):]
    if name not in EMBEDDED_MODELS:
        raise ConfigError(f"unknown embedded model {model!r}; embedded models: "
                          + ", ".join(EMBEDDED_PREFIX + m for m in EMBEDDED_MODELS))
    from ladder.demo.model import demo_model_path

    return str(demo_model_path())


def _build_stage(raw: Any, index: int, base_dir: Path | None) -> Any:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"each stage must be a mapping with `stage:`, got {type(raw).__name__}")
    kind = raw.get("stage")
    if not isinstance(kind, str):
        raise ConfigError(f"`stage:` is required (one of: {', '.join(stage_registry.names())})")
    cls = stage_registry.get(kind)
    settings = {k: v for k, v in raw.items() if k not in _STAGE_KEYS}
    settings = resolve_settings(cls.Config, settings, base_dir)
    stage = cls(name=raw.get("name"), input=raw.get("input"), **settings)
    placement = {k: raw[k] for k in ("gpu", "executor") if k in raw}
    if placement:
        stage.placement = placement
    return stage
