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
}
_STAGE_KEYS = ("stage", "name", "input", "gpu", "executor")
_PATH_KEYS = ("dataset", "eval_dataset", "heldout_pairs", "chat_template_file")


def _resolve_path(value: Any, base: Path | None) -> Any:
    if base is None:
        return value
    if isinstance(value, str) and not os.path.isabs(value):
        candidate = base / value
        if candidate.exists():
            return str(candidate.resolve())
    if isinstance(value, Mapping):
        out = dict(value)
        for key in ("source", "path"):
            if key in out:
                out[key] = _resolve_path(out[key], base)
        return out
    return value


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
    if problems:
        raise ValidationError(problems)
    evals = {k: _resolve_path(v, base_dir) for k, v in (data.get("evals") or {}).items()}
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
    for key in _PATH_KEYS:
        if key in settings:
            settings[key] = _resolve_path(settings[key], base_dir)
    # reward_model is a stage name, or a folder when it is written as a path (./my-rm)
    reward_model = settings.get("reward_model")
    if isinstance(reward_model, str) and ("/" in reward_model or os.sep in reward_model):
        settings["reward_model"] = _resolve_path(reward_model, base_dir)
    if base_dir is not None and isinstance(settings.get("chat_template"), str):
        candidate = base_dir / settings["chat_template"]
        if settings["chat_template"].endswith((".jinja", ".j2")) and candidate.is_file():
            settings["chat_template"] = candidate.read_text(encoding="utf-8")
    stage = cls(name=raw.get("name"), input=raw.get("input"), **settings)
    placement = {k: raw[k] for k in ("gpu", "executor") if k in raw}
    if placement:
        stage.placement = placement
    return stage
