"""What runs inside a stage's Modal container: :func:`run_stage_remote`, every stage function's body."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from ladder.errors import StageError

__all__ = ["move_paths", "run_stage_remote"]

logger = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------------
# inside the container


def _accelerate_prefix(count: int, config: str) -> list[str]:
    from ladder.executors.accelerate import AccelerateExecutor

    args, _env = AccelerateExecutor(num_processes=count, config=config).launch_args(cpu=False, gpus=count)
    return args


def run_stage_remote(spec: dict[str, Any], settings: dict[str, Any], volume: Any = None) -> dict[str, Any]:
    """The body of every stage function (runs in the Modal container).

    Writes the spec to the volume, runs the stage worker (under ``accelerate launch`` for
    several GPUs) while committing the volume every ``commit_every`` seconds, then moves the
    stage's outputs from its work folder to its stage folder on the volume and commits.

    Args:
        spec: the stage spec, its paths already on the volume (:meth:`ModalExecutor.prepare`).
        settings: ``volume`` (name), ``gpu_count``, ``accelerate_config``, ``commit_every``.
        volume: the mounted volume (default: ``modal.Volume.from_name(settings["volume"])``).

    Returns:
        ``{"ok": True, "checkpoint": [...], "metrics": {...}}`` (the checkpoint chain, volume paths,
        and the stage's metrics), or
        ``{"ok": False, "error": {...}}`` for an error the stage reported (not retried: it
        would fail again). A worker that dies without reporting raises, so Modal retries it.
    """
    from ladder.executors.worker import ERROR_NAME, checkpoint_from_chain, worker_spec_paths

    if volume is None:
        import modal

        volume = modal.Volume.from_name(settings["volume"])
    try:
        volume.reload()  # see what the caller uploaded since this container started
    except Exception:  # nothing to reload on a fresh container
        logger.debug("volume reload failed", exc_info=True)
    ctx = spec["context"]
    work, final = Path(ctx["work_dir"]), Path(ctx["final_dir"])
    shutil.rmtree(work, ignore_errors=True)  # a preempted attempt's partial output (resumable state is elsewhere)
    spec_path, result_path = worker_spec_paths(Path(ctx["run_dir"]), spec["name"], ctx["fingerprint"])
    shutil.rmtree(spec_path.parent, ignore_errors=True)
    spec_path.parent.mkdir(parents=True)
    spec_path.write_text(json.dumps(spec), encoding="utf-8")
    cmd = [sys.executable, "-m", "ladder.executors.worker", str(spec_path)]
    if int(settings.get("gpu_count", 1)) > 1:
        cmd = [*_accelerate_prefix(int(settings["gpu_count"]), settings["accelerate_config"]), "-m",
               "ladder.executors.worker", str(spec_path)]

    stop = threading.Event()

    def commit_periodically() -> None:  # trainer checkpoints must outlive a preemption
        while not stop.wait(float(settings.get("commit_every", 300))):
            try:
                volume.commit()
            except Exception:
                logger.warning("volume commit failed; trying again later", exc_info=True)

    committer = threading.Thread(target=commit_periodically, daemon=True)
    committer.start()
    try:
        returncode = subprocess.call(cmd, env={**os.environ, **(settings.get("env") or {})})  # the spec's secrets
    finally:
        stop.set()
        committer.join(timeout=5)
    if returncode == 0 and result_path.is_file():
        result = json.loads(result_path.read_text(encoding="utf-8"))
        chain = result["checkpoint"]
        if final.exists():
            shutil.rmtree(final)
        os.rename(work, final)  # the stage's outputs now live where the next stage looks for them
        shutil.rmtree(ctx["trainer_dir"], ignore_errors=True)  # resumable state is no longer needed
        chain[0] = move_paths(chain[0], work, final)
        checkpoint_from_chain(chain)  # check it still reads
        volume.commit()
        return {"ok": True, "checkpoint": chain, "metrics": result.get("metrics") or {}}
    volume.commit()
    error = result_path.with_name(ERROR_NAME)
    if error.is_file():
        return {"ok": False, "error": json.loads(error.read_text(encoding="utf-8"))}
    raise StageError(f"stage {spec['name']!r}: the worker exited with status {returncode} without a result")


def move_paths(data: dict[str, Any], old: Path, new: Path) -> dict[str, Any]:
    out = dict(data)
    for key in ("path", "adapter_path"):
        value = out.get(key)
        if isinstance(value, str):
            try:
                out[key] = str(new / Path(value).relative_to(old))
            except ValueError:
                pass
    return out
