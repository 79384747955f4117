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
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ladder.errors import ConfigError, LadderError, RecipeError, ValidationError
from ladder.preflight import model_problem
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
    "report_to": "experiment trackers: tensorboard, wandb, trackio, mlflow, or a list (default: none)",
    "push": "push stages to the hub once published: {repo_id: org/name, stages: final|all|[names], private, ...}",
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


def _load_yaml(text: str) -> tuple[Any, list[str]]:
    """``yaml.safe_load``, plus every key a mapping holds twice (YAML itself keeps the last one,
    silently: ``max_steps: 100`` then ``max_steps: 5`` trains 5 steps)."""
    import yaml

    duplicates: list[str] = []

    class Loader(yaml.SafeLoader):
        pass

    def construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
        seen: dict[Any, int] = {}
        for key_node, _value in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *defaults` overrides on purpose
                continue
            key = loader.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                if key in seen:
                    duplicates.append(f"duplicate key {key!r} at line {line} (first at line {seen[key]})")
                else:
                    seen[key] = line
            except TypeError:  # an unhashable key; construct_mapping reports it
                continue
        return yaml.SafeLoader.construct_mapping(loader, node, deep)

    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    return yaml.load(text, Loader=Loader), duplicates  # a SafeLoader, with the check above


def load_recipe(path: str | os.PathLike[str], *, overrides: Sequence[str] = (), **values: Any) -> Any:
    """Read a YAML recipe and build its :class:`~ladder.pipeline.Pipeline`.

    Args:
        path: the recipe file.
        overrides: ``KEY=VALUE`` overrides (``stages.sft.learning_rate=1e-4``, see
            :mod:`ladder.overrides`), recorded in the manifest's recipe.
        values: top-level keys that replace the recipe's when not ``None`` (``run_dir=``...).

    Raises:
        RecipeError: the file is missing or not valid YAML.
        ValidationError: the recipe's content, or an override, has problems (all listed at once).
    """
    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RecipeError(f"cannot read the recipe: {exc.strerror}", path=str(path)) from exc
    except UnicodeDecodeError as exc:
        raise RecipeError(f"the recipe is not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start}); "
                          "save it as UTF-8", path=str(path)) from None
    try:
        data, duplicates = _load_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise RecipeError(f"invalid YAML{where}: {problem}", path=str(path)) from exc
    if duplicates:
        raise RecipeError(", ".join(duplicates) + ": YAML would silently keep only the last value of each; "
                          "remove the extra ones", path=str(path))
    if not isinstance(data, Mapping):
        raise RecipeError("a recipe must be a YAML mapping with `model:` and `stages:`", path=str(path))
    data = dict(data)
    data.setdefault("name", path.stem)
    data.update({k: v for k, v in values.items() if v is not None})
    try:
        if overrides:
            from ladder.overrides import apply_overrides

            data = apply_overrides(data, overrides, top_level=list(TOP_LEVEL_KEYS))
        return pipeline_from_dict(data, base_dir=path.parent.resolve(), source=str(path), overrides=overrides)
    except ValidationError as exc:
        raise ValidationError([f"{path}: {p}" for p in exc.problems]) from None


def pipeline_from_dict(data: Mapping[str, Any], *, base_dir: Path | None = None, source: str | None = None,
                       overrides: Sequence[str] = ()) -> Any:
    """Build a Pipeline from a recipe mapping; every problem is collected, then raised at once."""
    from ladder.hub import push_settings
    from ladder.pipeline import Pipeline
    from ladder.tracking import parse_report_to

    problems: list[str] = []
    unknown = sorted(set(data) - set(TOP_LEVEL_KEYS))
    if unknown:
        problems.append(f"unknown key(s) {', '.join(map(repr, unknown))}; known keys: {', '.join(TOP_LEVEL_KEYS)}")
    model = data.get("model")
    if isinstance(model, str) and model.startswith(EMBEDDED_PREFIX):
        model = _embedded_model(model)
    if not isinstance(model, str) or not model:
        problems.append("`model:` is required: a hub id (e.g. Qwen/Qwen2.5-0.5B) or a local model folder")
    elif base_dir is not None and not os.path.isabs(os.path.expanduser(model)):
        if (base_dir / model).is_dir():
            model = str((base_dir / model).resolve())
        elif (problem := model_problem(model, base_dir / model)) is not None:
            problems.append(problem)  # a path that names nothing is not a hub id
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
    # (`seed:` and the `options:` keys are checked by the pipeline's pre-flight.)
    for key in ("options", "generation", "evals"):
        if key in data and data[key] is not None and not isinstance(data[key], Mapping):
            problems.append(f"`{key}:` must be a mapping, got {type(data[key]).__name__}")
    if data.get("run_dir") is not None and not isinstance(data["run_dir"], (str, os.PathLike)):
        problems.append(f"`run_dir:` must be a folder path, got {type(data['run_dir']).__name__}")
    from ladder.executors import EXECUTORS

    if data.get("executor") not in (None, *EXECUTORS) and not isinstance(data.get("executor"), Mapping):
        problems.append(f"`executor:` must be one of {', '.join(EXECUTORS)}, got {data.get('executor')!r}")
    for key, parse in (("report_to", parse_report_to), ("push", push_settings)):
        try:
            parse(data.get(key))
        except ConfigError as exc:
            problems.append(str(exc))
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
        seed=0 if data.get("seed") is None else data["seed"],
        probes=data.get("probes"),
        evals=evals,
        generation=data.get("generation"),
        options=data.get("options"),
        recipe={**dict(data), **({"source": source} if source else {}),
                **({"overrides": list(overrides)} if overrides else {})},
        executor=data.get("executor"),
        report_to=data.get("report_to"),
        push=data.get("push"),
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
