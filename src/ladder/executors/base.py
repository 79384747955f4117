"""The executor interface: runs one stage somewhere and returns what it produced."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

from ladder.library_warnings import quiet_library_warnings
from ladder.stage import StageResult, as_result

if TYPE_CHECKING:
    from ladder.checkpoint import Checkpoint
    from ladder.stage import Stage, StageContext

__all__ = ["Executor", "LocalExecutor", "run_here"]


@runtime_checkable
class Executor(Protocol):
    """Runs ``stage`` from ``checkpoint`` with ``ctx`` and returns its :class:`~ladder.stage.StageResult`.

    The contract is the stage's own: artifacts land in ``ctx.work_dir`` (the pipeline publishes
    them), resumable state in ``ctx.trainer_dir``. A remote executor ships the stage as its
    registry name + config dict (``stage.to_spec()``) and rebuilds it on the worker.
    """

    name: str

    def run_stage(self, stage: Stage, checkpoint: Checkpoint, ctx: StageContext) -> StageResult: ...


class LocalExecutor:
    """In this process (CPU or one GPU)."""

    name = "local"

    def run_stage(self, stage: Stage, checkpoint: Checkpoint, ctx: StageContext) -> StageResult:
        return run_here(stage, checkpoint, ctx)


def run_here(stage: Stage, checkpoint: Checkpoint, ctx: StageContext) -> StageResult:
    """``stage.run`` in this process, without the library warnings a user cannot act on."""
    with quiet_library_warnings():
        return as_result(stage.run(checkpoint, ctx))
