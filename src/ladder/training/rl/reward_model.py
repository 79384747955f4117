"""A learned reward for the RL stages: an earlier ``rm`` stage's checkpoint, or a reward folder."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ladder.errors import ConfigError
from ladder.identity import path_identity
from ladder.settings import is_path_reference

if TYPE_CHECKING:
    from ladder.checkpoint import Checkpoint
    from ladder.stage import StageContext

__all__ = [
    "REWARD_MODEL_PATH_NAME",
    "is_path_reference",
    "load_reward_model",
    "resolve_reward_checkpoint",
    "reward_folder_problems",
    "reward_model_name",
]

#: The name a reward model given as a folder (not a stage) is logged under: ``rewards/reward_model/mean``.
REWARD_MODEL_PATH_NAME = "reward_model"


def reward_model_name(ref: str) -> str:
    """The name TRL logs the reward model's score under (``rewards/<name>/mean``).

    Example:
        >>> reward_model_name("rm"), reward_model_name("./checkpoints/my-rm")
        ('rm', 'reward_model')
    """
    return REWARD_MODEL_PATH_NAME if is_path_reference(ref) else ref


def reward_folder_problems(path: str | os.PathLike[str]) -> list[str]:
    """Why a folder is not a usable reward checkpoint (empty when it is one).

    A reward checkpoint is a sequence classifier with one output (``num_labels=1``), saved with
    its tokenizer and a chat template, as ladder's ``rm`` stage writes ``NN-rm/model``.
    """
    folder = Path(path).expanduser()
    if not folder.is_dir():
        return [f"reward_model {str(path)!r}: no such folder; give an earlier rm stage's name or a reward "
                "checkpoint folder (e.g. runs/<run>/02-rm/model)"]
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return [f"reward_model {str(path)!r}: no readable config.json, so it is not a saved model"]
    problems = []
    architectures = config.get("architectures") or []
    labels = len(config.get("id2label") or {}) or config.get("num_labels", 2)
    if not any(str(a).endswith("ForSequenceClassification") for a in architectures) or labels != 1:
        problems.append(
            f"reward_model {str(path)!r} is not a reward model (architectures {architectures}, {labels} labels); "
            "a reward model is a sequence classifier with one output, as an rm stage writes"
        )
    has_template = (folder / "chat_template.jinja").is_file() or "chat_template" in _json(
        folder / "tokenizer_config.json"
    )
    if not has_template:
        problems.append(
            f"reward_model {str(path)!r} has no chat template, so prompts and answers cannot be rendered as the "
            "conversations it scores"
        )
    return problems


def _json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def resolve_reward_checkpoint(ref: str, ctx: StageContext, stage_name: str) -> Checkpoint:
    """The reward checkpoint ``reward_model`` names: an earlier stage's output, or a folder.

    Raises:
        ConfigError: naming both stages when the named stage produced a policy, or when the
            reference names no earlier stage and no reward checkpoint folder.
    """
    from ladder.checkpoint import Checkpoint

    if ref in ctx.checkpoints:
        found = ctx.checkpoints[ref]
        if found.kind != "reward":
            raise ConfigError(
                f"stage {stage_name!r}: reward_model={ref!r} names stage {ref!r}, which produces a {found.kind} "
                "checkpoint, not a reward model; name an rm stage"
            )
        return found
    if not is_path_reference(ref):
        earlier = ", ".join(name for name in ctx.checkpoints if name != "base") or "none"
        raise ConfigError(
            f"stage {stage_name!r}: reward_model={ref!r} names no earlier stage (earlier stages: {earlier}); name "
            "an rm stage that runs before it, or give a reward checkpoint folder as a path (./folder)"
        )
    problems = reward_folder_problems(ref)
    if problems:
        raise ConfigError(f"stage {stage_name!r}: {problems[0]}")
    path = str(Path(ref).expanduser().resolve())
    return Checkpoint(path=path, stage=REWARD_MODEL_PATH_NAME, kind="reward", fingerprint=path_identity(ref))


def load_reward_model(checkpoint: Checkpoint, name: str, options: Mapping[str, Any] | None = None) -> tuple[Any, Any]:
    """The reward model, ready for ``reward_funcs``, and its tokenizer (``reward_processing_classes``).

    The model is frozen and in eval mode; ``config._name_or_path`` is set to ``name`` because
    TRL logs a model's score as ``rewards/<last part of _name_or_path>/mean``. The tokenizer
    carries the reward model's chat template: TRL renders each prompt + completion with it,
    the text the reward model was trained on (:func:`ladder.evaluate.reward_text`).
    """
    from ladder.training.chat_format import chat_template_for
    from ladder.training.models import load_model, load_tokenizer

    tokenizer = load_tokenizer(checkpoint, options)
    chat_template_for(tokenizer, checkpoint, where="the reward model",
                      fix="train it with ladder's rm stage from a chat model")
    model = load_model(checkpoint, options, kind="reward")
    model.eval()
    model.requires_grad_(False)
    model.config._name_or_path = name
    # The classifier scores the last token that is not the pad token (TRL sets the same).
    model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer
