"""An RL stage's prompts and reward functions, and their pre-flight checks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ladder.data.length import kept_indices
from ladder.data.loading import as_spec, load_rows
from ladder.data.verifiable import normalize_verifiable_rows
from ladder.errors import DataError, LadderError
from ladder.training.rl.reward_model import reward_model_name

if TYPE_CHECKING:
    from ladder.training.rl.config import RLStageConfig

__all__ = [
    "RESERVED_COLUMNS",
    "heldout_pair_rows",
    "indexed_prompt_rows",
    "program_rewards",
    "prompt_rows",
    "reward_call_problems",
    "reward_problems",
]

#: Keyword arguments TRL passes to reward functions under its own names; a dataset column with
#: one of these names would collide with them ("got multiple values for keyword argument").
RESERVED_COLUMNS = ("prompts", "completions", "completion_ids", "trainer_state", "log_extra", "log_metric")


def prompt_rows(cfg: RLStageConfig) -> tuple[list[dict[str, Any]], str, list[DataError]]:
    """The stage's prompts as ``{"prompt": [messages], "answer"?: str, ...}`` rows.

    With a reward model a row needs no reference answer (only the reward functions that read
    one need it, which pre-flight checks per reward).
    """
    rows, label, problems, _indices = indexed_prompt_rows(cfg)
    return rows, label, problems


def indexed_prompt_rows(cfg: RLStageConfig) -> tuple[list[dict[str, Any]], str, list[DataError], list[int]]:
    """:func:`prompt_rows` and each kept row's number in the file (for messages)."""
    rows, label = load_rows(as_spec(cfg.dataset))
    normalised, problems = normalize_verifiable_rows(
        rows,
        label,
        system_prompt=cfg.system_prompt,
        instruction=cfg.instruction,
        prompt_template=cfg.prompt_template,
        require_answer=cfg.reward_model is None,
    )
    indices = kept_indices(len(rows), problems)
    if cfg.limit is not None:
        normalised, indices = normalised[: cfg.limit], indices[: cfg.limit]
    return normalised, label, problems, indices


def heldout_pair_rows(cfg: RLStageConfig) -> tuple[list[dict[str, Any]], str, list[DataError]]:
    """``heldout_pairs`` as normalised preference pairs (empty without them)."""
    if cfg.heldout_pairs is None:
        return [], "", []
    from ladder.data.preference import normalize_preference_rows

    rows, label = load_rows(as_spec(cfg.heldout_pairs))
    pairs, problems = normalize_preference_rows(rows, label)
    return pairs, label, problems


def _has_program_rewards(cfg: RLStageConfig) -> bool:
    return not (isinstance(cfg.rewards, (Mapping, list)) and not cfg.rewards)


def program_rewards(cfg: RLStageConfig) -> tuple[list[Any], list[float]]:
    """The checked reward functions (with the stage's timeout) and their weights; none for ``{}``."""
    from ladder.rewards import resolve_rewards

    if not _has_program_rewards(cfg):
        return [], []
    funcs, weights = resolve_rewards(cfg.rewards, timeout_s=cfg.reward_timeout_s)
    return list(funcs), list(weights)


def _reward_items(spec: Any) -> list[Any]:
    """The entries of a rewards spec, each resolvable on its own (to report every bad name)."""
    if isinstance(spec, Mapping):
        return [{key: weight} for key, weight in spec.items()]
    if isinstance(spec, list):
        return [[entry] for entry in spec]
    return [spec]


def reward_problems(cfg: RLStageConfig) -> tuple[list[Any], list[str]]:
    """Resolve every reward; return the functions and *every* problem (not just the first)."""
    from ladder.rewards import resolve_rewards, reward_name

    if not _has_program_rewards(cfg):
        if cfg.reward_model is None:
            return [], ["rewards: none given and no reward_model, so nothing would be learned; name rewards "
                        "(e.g. {exact_match: 1.0}) or set reward_model to an earlier rm stage"]
        if cfg.reward_model_weight == 0:
            return [], ["reward_model_weight is 0 and there are no rewards, so nothing would be learned"]
        return [], []
    problems: list[str] = []
    for item in _reward_items(cfg.rewards):
        try:
            resolve_rewards(item, check=False)
        except LadderError as exc:
            problems.append(f"rewards: {exc}")
    if problems:
        return [], problems
    try:
        funcs, weights = program_rewards(cfg)
    except LadderError as exc:  # e.g. two rewards with one name
        return [], [f"rewards: {exc}"]
    if cfg.reward_model is not None:
        learned = reward_model_name(cfg.reward_model)
        if learned in [reward_name(f) for f in funcs]:
            problems.append(
                f"reward_model {cfg.reward_model!r} is logged as {learned!r}, the name of one of the rewards too; "
                "TRL logs rewards by name, so rename the rm stage"
            )
        weights = [*weights, cfg.reward_model_weight]
    if not any(w != 0 for w in weights):
        problems.append("rewards: every weight is 0, so nothing would be learned; give one a non-zero weight")
    return funcs, problems


def reward_call_problems(cfg: RLStageConfig, funcs: Sequence[Any], rows: Sequence[Mapping[str, Any]], label: str,
                         generation_batch: int | None) -> list[str]:
    """What stops the rewards working on these rows: TRL's own keyword names used as columns,
    too few problems for one generation batch, columns a reward needs, and a sample call of each
    reward on the first rows (which must return a number per row in time)."""
    from ladder.rewards import check_reward_on_sample, required_columns, reward_name

    problems: list[str] = []
    columns = set().union(*(r.keys() for r in rows))
    clashes = sorted(columns & set(RESERVED_COLUMNS))
    if clashes:
        problems.append(
            f"{label}: column{'s' if len(clashes) > 1 else ''} {', '.join(map(repr, clashes))} "
            f"clash{'' if len(clashes) > 1 else 'es'} with the arguments TRL passes to reward functions; "
            f"rename {'them' if len(clashes) > 1 else 'it'}"
        )
    generations = int(cfg.trainer_kwargs.get("num_generations", cfg.num_generations))
    groups = generation_batch // generations if generation_batch else 0
    if len(rows) < groups:
        problems.append(
            f"{label}: {len(rows)} usable problem{'s' if len(rows) != 1 else ''}, but one generation batch "
            f"needs {groups} ({generation_batch} completions / num_generations {generations}); add "
            f"problems, or lower per_device_train_batch_size or gradient_accumulation_steps"
        )
    for fn in [] if clashes else funcs:  # a clashing column breaks every reward call
        name = reward_name(fn)
        needed = required_columns(fn)
        absent = [c for c in needed if c not in columns]
        partial = [c for c in needed if c in columns and any(r.get(c) is None for r in rows)]
        if absent or partial:
            missing = absent + partial
            problems.append(
                f"reward {name!r} needs the column{'s' if len(missing) > 1 else ''} "
                f"{', '.join(map(repr, missing))} in every row, which {label} "
                f"{'lacks' if absent else 'leaves empty in some rows'} (its columns: "
                f"{', '.join(sorted(columns))}); add {'them' if len(missing) > 1 else 'it'} or choose "
                f"another reward"
            )
            continue
        try:
            check_reward_on_sample(fn, name, rows[:4], timeout_s=cfg.reward_timeout_s)
        except LadderError as exc:
            problems.append(str(exc))
    return problems
