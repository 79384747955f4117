"""The pipeline's own pre-flight: the shape of the ladder, before any stage checks its data.

Every stage is a Stage, names are unique and safe, every ``input=`` names an earlier stage whose
checkpoint is of the kind the stage needs, and every checkpoint reference a stage's settings
make (fields marked ``checkpoint_ref``, see :mod:`ladder.settings`) names an earlier stage of
the right kind, or a folder.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ladder.errors import ConfigError
from ladder.rundir import safe_name
from ladder.settings import checkpoint_references, is_path_reference

__all__ = ["input_of", "reference_problems", "structure_problems"]

_MEMBERS = ("name", "input", "config", "run", "validate")


def input_of(stages: Sequence[Any], index: int) -> str:
    """The name of the checkpoint stage ``index`` (1-based) starts from."""
    stage = stages[index - 1]
    return stage.input or (stages[index - 2].name if index > 1 else "base")


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
