"""The stage worker: rebuilds one stage from plain data and runs it, in any process or machine.

``python -m ladder.executors.worker SPEC.json [--result RESULT.json]``

``SPEC.json`` (written by :func:`stage_spec`) holds the stage as its registry kind, name, input
and config dict, the input checkpoint (with its lineage) and the stage context. Nothing is
pickled: the worker imports the stage class from the ``ladder.stages`` registry and calls
``Class(name=..., input=..., **config)``, exactly as a recipe does, so a worker only needs the
same packages installed (ladder and any stage/reward plugins), not the caller's objects.

On success the worker writes ``RESULT.json`` (the produced checkpoint and the stage's metrics)
atomically; on failure it writes ``ERROR.json`` (error type, message, traceback) and exits with status 1. Under a
multi-process launch (``accelerate launch``, ``torchrun``) every process runs the stage (the
trainer needs them all), only the main process (``RANK`` 0) writes results, and the other
processes' ``work_dir`` is a private scratch directory so that nothing they write can reach
the published stage directory.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from ladder.atomic import atomic_write_json
from ladder.errors import LadderError
from ladder.executors.spec import (
    ERROR_NAME,
    RESULT_NAME,
    SPEC_VERSION,
    checkpoint_chain,
    checkpoint_from_chain,
    context_from_spec,
    seal_spec,
    stage_from_spec,
    stage_spec,
    unseal_spec,
    worker_spec_paths,
)
from ladder.redaction import RedactingFilter, redact, redact_text
from ladder.runlock import stop_on_signals

if TYPE_CHECKING:
    from ladder.checkpoint import Checkpoint
    from ladder.stage import StageResult

__all__ = [
    "SPEC_VERSION",
    "stage_spec",
    "stage_from_spec",
    "context_from_spec",
    "checkpoint_chain",
    "checkpoint_from_chain",
    "run_spec",
    "read_result",
    "seal_spec",
    "unseal_spec",
    "worker_spec_paths",
    "main",
]

logger = logging.getLogger("ladder.executors.worker")  # not __name__: "__main__" under -m


def _rank() -> int:
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


def run_spec(spec: Mapping[str, Any], result_path: str | os.PathLike[str] | None = None) -> StageResult:
    """Rebuild the stage and its context from ``spec``, run it, and write the result.

    On the main process (``RANK`` 0, or a single process) the produced checkpoint and the
    stage's metrics are written to ``result_path`` atomically. Other processes of a
    multi-process launch run with a private scratch ``work_dir`` beside ``result_path`` and
    write no result. The spec's secrets (:func:`seal_spec`) are read from the environment.
    """
    from ladder.executors.base import run_here

    spec = unseal_spec(spec)
    stage = stage_from_spec(spec)
    ctx = context_from_spec(spec)
    checkpoint = checkpoint_from_chain(spec["checkpoint"])
    rank = _rank()
    if rank != 0:
        scratch_root = Path(result_path).parent if result_path is not None else ctx.run_dir / ".executor"
        ctx = attrs.evolve(ctx, work_dir=scratch_root / f"rank-{rank}")
    ctx.work_dir.mkdir(parents=True, exist_ok=True)
    produced = run_here(stage, checkpoint, ctx)
    if rank == 0 and result_path is not None:
        atomic_write_json(result_path, {"checkpoint": checkpoint_chain(produced.checkpoint),
                                        "metrics": redact(produced.metrics)})
    return produced


def read_result(path: str | os.PathLike[str], parent: Checkpoint) -> StageResult:
    """The result a worker wrote to ``RESULT.json``, its checkpoint with the caller's ``parent`` object.

    Raises:
        StageError: the result is missing, unreadable or was not trained from ``parent``.
    """
    from ladder.errors import StageError
    from ladder.stage import StageResult

    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        produced = checkpoint_from_chain(data["checkpoint"])
        metrics = data.get("metrics") or {}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StageError(f"the worker wrote no readable result at {path}: {exc}") from exc
    if produced.parent is not None and produced.parent.fingerprint != parent.fingerprint:
        raise StageError(
            f"the worker's checkpoint was trained from {produced.parent.fingerprint}, not from the "
            f"input {parent.fingerprint}; remove {Path(path).parent} and run again"
        )
    return StageResult(attrs.evolve(produced, parent=parent), metrics)


def write_error(path: str | os.PathLike[str], exc: BaseException) -> None:
    """Record a failure for the caller: error type, message and traceback."""
    atomic_write_json(
        path,
        {
            "type": type(exc).__name__,
            "module": type(exc).__module__,
            "message": redact_text(str(exc)),
            "ladder_error": isinstance(exc, LadderError),
            "traceback": redact_text("".join(traceback.format_exception(exc))),
            "rank": _rank(),
        },
    )


# ------------------------------------------------------------------------------------------------
# command line


def _world_size() -> int:
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def _setup_logging() -> None:
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
        handler.addFilter(RedactingFilter())
        root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger("ladder").setLevel(logging.INFO)
    os.environ.setdefault("TQDM_DISABLE", "1")
    logger.info("stage worker: process %d of %d (pid %d)", _rank(), _world_size(), os.getpid())
    if _rank() != 0:  # the other processes repeat the main one's messages; keep their warnings
        logging.getLogger("ladder").setLevel(logging.WARNING)


#: The pid of the process that started the worker (set by ``run_worker``): when it dies, so does
#: the worker, rather than train on alone into a run directory the next run may be using.
PARENT_PID_ENV = "LADDER_PARENT_PID"


def _watch_parent(interval_s: float = 2.0) -> None:
    try:
        parent = int(os.environ.get(PARENT_PID_ENV, "0"))
    except ValueError:
        return
    if parent <= 1:
        return

    def watch() -> None:
        while True:
            time.sleep(interval_s)
            try:
                os.kill(parent, 0)
            except ProcessLookupError:
                logger.error("the process that started this worker (pid %d) is gone; stopping", parent)
                os.kill(os.getpid(), signal.SIGTERM)  # raises Interrupted in the main thread
                return
            except PermissionError:  # the pid now belongs to another user's process
                os.kill(os.getpid(), signal.SIGTERM)
                return

    threading.Thread(target=watch, name="ladder-parent-watch", daemon=True).start()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the stage in ``SPEC.json``; exit status 0 on success, 1 on failure (see ERROR.json)."""
    parser = argparse.ArgumentParser(prog="python -m ladder.executors.worker", description=__doc__.splitlines()[0])
    parser.add_argument("spec", help="the SPEC.json a stage_spec() wrote")
    parser.add_argument("--result", help=f"where to write the result (default: {RESULT_NAME} beside the spec)")
    args = parser.parse_args(argv)
    _setup_logging()
    from ladder.cpu_allocator import keep_freed_memory

    keep_freed_memory()  # as the CLI that launched it does (its thread settings come in the environment)
    spec_path = Path(args.spec)
    result = Path(args.result) if args.result else spec_path.with_name(RESULT_NAME)
    rank = _rank()
    error_path = result.with_name(ERROR_NAME if rank == 0 else f"ERROR-rank-{rank}.json")
    _watch_parent()
    try:
        with stop_on_signals():  # SIGTERM from the parent: report it in ERROR.json, then exit
            spec = json.loads(spec_path.read_text(encoding="utf-8"))
            run_spec(spec, result)
    except BaseException as exc:  # the caller reads ERROR.json; re-raise nothing
        logger.error("stage worker failed: %s: %s", type(exc).__name__, exc, exc_info=not isinstance(exc, LadderError))
        try:
            write_error(error_path, exc)
        except OSError:
            logger.exception("could not write %s", error_path)
        return 130 if isinstance(exc, KeyboardInterrupt) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
