"""The pipeline's own pre-flight: the run's settings and the shape of the ladder, before any
stage checks its data.

The run: a base model written as a path names a folder; the run directory is not a file; the
seed is an integer; every ``options`` key is known and of its type. The ladder: every stage is
a Stage, names are unique and safe, every ``input=`` names an earlier stage whose checkpoint is
of the kind the stage needs, and every checkpoint reference a stage's settings make (fields
marked ``checkpoint_ref``, see :mod:`ladder.settings`) names an earlier stage of the right
kind, or a folder.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ladder.errors import ConfigError
from ladder.rundir import safe_name
from ladder.settings import checkpoint_references, is_path_reference

__all__ = ["RUN_OPTIONS", "input_of", "looks_like_path", "model_problem", "reference_problems", "run_problems",
           "structure_problems"]

#: The run-wide ``options:``: name -> (type, what it does).
RUN_OPTIONS: dict[str, tuple[type, str]] = {
    "trust_remote_code": (bool, "run the model repository's own Python code (off by default)"),
    "allow_pickle_weights": (bool, "accept .bin/.pt weights, which can run code when loaded (off by default)"),
    "revision": (str, "hub revision of every model loaded (the top-level `revision:` is the base model's)"),
    "hf_token": (str, "Hugging Face token for gated models (better: the HF_TOKEN environment variable)"),
}

_MEMBERS = ("name", "input", "config", "run", "validate")


def input_of(stages: Sequence[Any], index: int) -> str:
    """The name of the checkpoint stage ``index`` (1-based) starts from."""
    stage = stages[index - 1]
    return stage.input or (stages[index - 2].name if index > 1 else "base")


def looks_like_path(model: str) -> bool:
    """Whether a model is written as a local path rather than a hub id: it starts with ``.``,
    ``/`` or ``~``, or has more than one ``/`` (a hub id is ``name`` or ``org/name``)."""
    return model.startswith((".", "/", "~")) or model.count("/") > 1 or os.sep != "/" and os.sep in model


def model_problem(model: str, path: str | os.PathLike[str] | None = None) -> str | None:
    """What is wrong with a base model written as a path (:func:`looks_like_path`) that is no folder;
    ``path``: where it was looked for (default: ``model`` itself)."""
    where = Path(os.path.expanduser(os.fspath(path if path is not None else model)))
    if not looks_like_path(model) or where.is_dir():
        return None
    what = "is a file, not a model folder" if where.is_file() else "names no folder"
    return (f"`model:` {model!r} {what} (looked for {where.resolve()}); give an existing local model folder "
            "(in a recipe, relative to the recipe's folder), or a hub id like org/name")


def run_problems(*, model: str, run_dir: str | os.PathLike[str], seed: Any, options: Mapping[str, Any]) -> list[str]:
    """Problems with the run's own settings: the base model, the run directory, the seed, ``options``."""
    problems = [p for p in [model_problem(model)] if p]
    run = Path(run_dir)
    blocked = next((p for p in (run, *run.parents) if p.exists() and not p.is_dir()), None)
    if blocked is not None:
        where = "is" if blocked == run else f"is inside {blocked}, which is"
        problems.append(f"`run_dir:` {str(run)!r} {where} a file, not a folder; give a folder (new or a "
                        "previous run's)")
    if isinstance(seed, bool) or not isinstance(seed, int):
        problems.append(f"`seed:` must be an integer, got {type(seed).__name__} {seed!r}"
                        + (" (YAML reads yes/no/on/off as true/false)" if isinstance(seed, bool) else ""))
    for key, value in options.items():
        if key not in RUN_OPTIONS:
            known = ", ".join(f"{k} ({help})" for k, (_t, help) in RUN_OPTIONS.items())
            problems.append(f"options: unknown option {key!r}; known options: {known}")
            continue
        kind = RUN_OPTIONS[key][0]
        if value is not None and not isinstance(value, kind):
            want = "true or false" if kind is bool else "a string"
            problems.append(f"options: {key!r} must be {want}, got {type(value).__name__} {value!r}")
    return problems


def structure_problems(stages: Sequence[Any], *, run_name: str | None = None) -> list[str]:
    """Every problem with the pipeline's shape; ``run_name`` is checked when it names the run dir."""
    problems: list[str] = []
    seen: set[str] = set()
    produced: dict[str, str] = {"base": "policy"}
    if not stages:
        problems.append("the pipeline has no stages")
    if run_name is not None:
        try:
            safe_name(run_name, "run name")
        except ConfigError as exc:
            problems.append(f"{exc} (runs/<name>), or set run_dir")
    for i, stage in enumerate(stages, 1):
        label = f"stage {i} ({getattr(stage, 'name', '?')!r})"
        missing = [m for m in _MEMBERS if not hasattr(stage, m)]
        if missing:
            problems.append(f"{label}: not a Stage (missing {', '.join(missing)})")
            continue
        try:
            safe_name(stage.name)
        except ConfigError as exc:
            problems.append(f"{label}: {exc}")
        if stage.name in seen or stage.name == "base":
            problems.append(f"{label}: the name {stage.name!r} is used twice; give each stage a unique name=")
        source = input_of(stages, i)
        if stage.input is not None and stage.input not in produced:
            problems.append(
                f"{label}: input={stage.input!r} is not an earlier stage; choose one of: {', '.join(produced)}"
            )
        else:
            needs = getattr(stage, "input_kind", "policy")
            has = produced.get(source, "policy")
            if needs != has:
                fitting = [n for n, k in produced.items() if k == needs]
                hint = f" (earlier {needs} stages: {', '.join(fitting)})" if fitting else ""
                problems.append(
                    f"{label} ({stage.kind}) needs a {needs} checkpoint as input, but {source!r} "
                    f"produces a {has} checkpoint; set input= to a {needs} stage{hint}"
                )
        problems += reference_problems(stages, i, produced)
        seen.add(stage.name)
        produced[stage.name] = getattr(stage, "output_kind", "policy")
    return problems


def reference_problems(stages: Sequence[Any], index: int, produced: Mapping[str, str]) -> list[str]:
    """Checkpoints stage ``index``'s settings name must be earlier stages of the kind asked for.

    ``produced``: the kind of checkpoint each earlier stage (and ``base``) produces.
    """
    stage = stages[index - 1]
    label = f"stage {index} ({stage.name!r})"
    later = {s.name: j for j, s in enumerate(stages, 1) if j > index}
    problems = []
    for setting, ref, kind in checkpoint_references(stage.config):
        fitting = ", ".join(n for n, k in produced.items() if k == kind) or "none"
        what = "reward model" if kind == "reward" else "policy"
        if ref in produced and produced[ref] != kind:
            problems.append(
                f"{label}: {setting}={ref!r} names stage {ref!r}, which produces a {produced[ref]} checkpoint, "
                f"not a {what}; name a stage that produces one (earlier {kind} stages: {fitting})"
            )
        elif ref == stage.name:
            problems.append(f"{label}: {setting}={ref!r} names the stage itself; name an earlier {kind} stage")
        elif ref in later:
            problems.append(
                f"{label}: {setting}={ref!r} names stage {later[ref]} ({ref!r}), which runs after "
                f"{stage.name!r}; put the {ref!r} stage before {stage.name!r}"
            )
        elif ref not in produced and not is_path_reference(ref):
            problems.append(
                f"{label}: {setting}={ref!r} names no stage (earlier {kind} stages: {fitting}); name a stage "
                f"that runs before {stage.name!r}, or give a checkpoint folder as a path (./{ref})"
            )
    return problems
