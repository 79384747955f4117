"""ladder: take a language model up the post-training ladder and watch it change.

``Pipeline([SFT(...), DPO(...), GRPO(...)]).run()``. Importing ladder is cheap: torch,
transformers and TRL are imported only when a stage runs.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from ladder.atomic import atomic_dir, atomic_write_json, atomic_write_text, is_complete
from ladder.checkpoint import Checkpoint
from ladder.errors import (
    ConfigError,
    DataError,
    DuplicateComponentError,
    LadderError,
    MergeVerificationError,
    MissingDependencyError,
    PluginLoadError,
    RecipeError,
    RewardError,
    StageError,
    UnknownComponentError,
    ValidationError,
)
from ladder.stage import BaseStage, Stage, StageContext

__version__ = "0.1.0"

# Names resolved lazily so `import ladder` stays light (see __getattr__).
_LAZY = {
    "Pipeline": "ladder.pipeline",
    "load_recipe": "ladder.recipe",
    "SFT": "ladder.stages.sft",
    "SFTStageConfig": "ladder.stages.sft",
    "DPO": "ladder.stages.dpo",
    "DPOStageConfig": "ladder.stages.dpo",
    "GRPO": "ladder.stages.grpo",
    "GRPOStageConfig": "ladder.stages.grpo",
    "RewardModel": "ladder.stages.rm",
    "RewardModelStageConfig": "ladder.stages.rm",
    "RLOO": "ladder.stages.rloo",
    "RLOOStageConfig": "ladder.stages.rloo",
}

__all__ = [
    "__version__",
    "Pipeline",
    "load_recipe",
    "Checkpoint",
    "Stage",
    "StageContext",
    "BaseStage",
    "SFT",
    "SFTStageConfig",
    "DPO",
    "DPOStageConfig",
    "GRPO",
    "GRPOStageConfig",
    "RewardModel",
    "RewardModelStageConfig",
    "RLOO",
    "RLOOStageConfig",
    "stages",
    "rewards",
    "atomic_dir",
    "atomic_write_json",
    "atomic_write_text",
    "is_complete",
    "LadderError",
    "ConfigError",
    "RecipeError",
    "DataError",
    "ValidationError",
    "StageError",
    "MergeVerificationError",
    "RewardError",
    "UnknownComponentError",
    "DuplicateComponentError",
    "PluginLoadError",
    "MissingDependencyError",
]


def __getattr__(name: str) -> Any:
    if name in ("stages", "rewards"):  # packages whose functions delegate to the registries
        return import_module(f"ladder.{name}")
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ladder' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:
    from ladder.pipeline import Pipeline
    from ladder.recipe import load_recipe
    from ladder.stages.dpo import DPO, DPOStageConfig
    from ladder.stages.grpo import GRPO, GRPOStageConfig
    from ladder.stages.rloo import RLOO, RLOOStageConfig
    from ladder.stages.rm import RewardModel, RewardModelStageConfig
    from ladder.stages.sft import SFT, SFTStageConfig
