"""Running the stage worker in child processes: :class:`SubprocessExecutor` and the shared launcher.

The parent writes the stage spec (:func:`~ladder.executors.worker.stage_spec`) to a scratch
directory ``<run_dir>/.executor/<stage>-<fingerprint>/``, starts the worker command, relays
its output to this process's log, forwards the training log records the worker appends to
``work_dir/trainer_log.jsonl`` to ``ctx.on_log`` (the progress display), and reads back
``RESULT.json`` — or ``ERROR.json``, re-raised here with the worker's message. The scratch
directory is removed on success and kept on failure (it holds the spec and the error).

The spec on disk holds no credential: they reach the worker in its environment
(:func:`~ladder.executors.spec.seal_spec`). The worker runs in a process group of its own (it
may be ``accelerate launch`` with its processes); when this process is interrupted (SIGTERM,
Ctrl-C) or fails while waiting, the whole group is sent SIGTERM, given a grace period, then
SIGKILL, so no worker is left training alone.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ladder import errors
from ladder.atomic import atomic_write_json
from ladder.errors import LadderError, StageError
from ladder.layout import TRAINER_LOG
from ladder.executors.worker import (
    ERROR_NAME,
    PARENT_PID_ENV,
    RESULT_NAME,
    read_result,
    seal_spec,
    stage_spec,
    worker_spec_paths,
)
from ladder.redaction import redact_text

if TYPE_CHECKING:
    from ladder.checkpoint import Checkpoint
    from ladder.stage import Stage, StageContext, StageResult

__all__ = ["SubprocessExecutor", "run_worker", "stop_process_group", "worker_command", "spec_dir_for",
           "reraise_worker_error"]

logger = logging.getLogger(__name__)

WORKER_MODULE = "ladder.executors.worker"
_TAIL_LINES = 40
#: Seconds a worker's process group has between SIGTERM and SIGKILL.
STOP_GRACE_S = 10.0
# Errors whose constructor takes just the message: re-raised as the same class in the parent,
# so the CLI reports a data error as a data error (exit status 2), not as a crash.
_RERAISABLE = (
    "ConfigError",
    "DataError",
    "StageError",
    "MergeVerificationError",
    "RewardError",
    "PluginLoadError",
    "ModelFetchError",
)


def worker_command(spec_path: Path) -> list[str]:
    """``python -m ladder.executors.worker SPEC.json`` with this interpreter."""
    return [sys.executable, "-m", WORKER_MODULE, str(spec_path)]


def spec_dir_for(ctx: StageContext, stage_name: str) -> Path:
    """The scratch directory of one stage run: ``<run_dir>/.executor/<stage>-<fingerprint>``."""
    return worker_spec_paths(ctx.run_dir, stage_name, ctx.fingerprint)[0].parent


class _LogForwarder:
    """Forwards new complete lines of ``trainer_log.jsonl`` to ``on_log`` while a worker runs."""

    def __init__(self, path: Path, on_log: Callable[[dict[str, Any]], None] | None) -> None:
        self.path = path
        self.on_log = on_log
        self.offset = path.stat().st_size if path.is_file() else 0

    def poll(self) -> None:
        if self.on_log is None or not self.path.is_file():
            return
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            chunk = f.read()
        end = chunk.rfind(b"\n")
        if end < 0:
            return  # no complete line yet
        self.offset += end + 1
        for line in chunk[: end + 1].splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            try:
                self.on_log(record)
            except Exception:  # progress display must never break training
                logger.debug("on_log callback failed", exc_info=True)


def _relay(stream: Any, tail: collections.deque[str], prefix: str) -> None:
    for raw in iter(stream.readline, b""):
        line = redact_text(raw.decode("utf-8", errors="replace").rstrip())
        if line:
            tail.append(line)
            logger.info("%s%s", prefix, line)
    stream.close()


def stop_process_group(proc: subprocess.Popen[Any], grace_s: float = STOP_GRACE_S) -> None:
    """SIGTERM ``proc``'s process group (it was started with ``start_new_session``), wait up to
    ``grace_s`` for ``proc``, then SIGKILL whatever of the group is left."""
    def signal_group(sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)

    if proc.poll() is None:
        logger.warning("stopping the stage worker (pid %d) and its processes", proc.pid)
        signal_group(signal.SIGTERM)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            logger.warning("the stage worker (pid %d) did not stop within %.0f s; killing it", proc.pid, grace_s)
    signal_group(signal.SIGKILL)  # the launcher may be gone and its processes not
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace_s)


def reraise_worker_error(info: Mapping[str, Any], stage_name: str, where: str, details: str) -> None:
    """Raise the error a worker reported (``ERROR.json``'s content) in this process.

    A ladder error whose constructor takes just the message is raised as the same class (so a
    data error stays a data error); anything else becomes a :class:`StageError`. ``details``
    (where the traceback is) is added as a note.
    """
    kind, message = info.get("type", "Error"), info.get("message", "")
    cls = getattr(errors, kind, None) if kind in _RERAISABLE else None
    exc: Exception | None = None
    if isinstance(cls, type) and issubclass(cls, LadderError):
        try:
            exc = cls(message)
        except TypeError:
            exc = None
    if exc is None:
        exc = StageError(f"stage {stage_name!r} failed in {where}: {kind}: {message}")
    exc.add_note(f"(raised in the stage worker in {where}; its traceback: {details})")
    raise exc


def _raise_worker_error(spec_dir: Path, stage_name: str, where: str, returncode: int, tail: Sequence[str]) -> None:
    main_error = spec_dir / ERROR_NAME
    errors_found = [main_error] if main_error.is_file() else sorted(spec_dir.glob("ERROR*.json"))
    if errors_found:
        try:
            info = json.loads(errors_found[0].read_text(encoding="utf-8"))
        except (OSError, ValueError):
            info = {}
        reraise_worker_error(info, stage_name, where, str(errors_found[0]))
    if returncode < 0:
        how = f"was killed by signal {-returncode}" + (" (out of memory?)" if -returncode == 9 else "")
    else:
        how = f"exited with status {returncode}"
    last = "\n    ".join(list(tail)[-15:]) or "(no output)"
    raise StageError(
        f"stage {stage_name!r}: the worker in {where} {how} without reporting an error. "
        f"Its last output:\n    {last}\nThe stage spec is kept in {spec_dir}."
    )


def run_worker(
    stage: Stage,
    checkpoint: Checkpoint,
    ctx: StageContext,
    *,
    command: Callable[[Path], list[str]] = worker_command,
    env: Mapping[str, str] | None = None,
    where: str = "a subprocess",
) -> StageResult:
    """Run ``stage`` through the worker in a child process and return what it produced.

    Args:
        stage, checkpoint, ctx: as :meth:`~ladder.executors.base.Executor.run_stage`.
        command: builds the command line from the spec path (default: this interpreter,
            ``-m ladder.executors.worker SPEC``; :class:`~ladder.executors.accelerate.AccelerateExecutor`
            wraps it in ``accelerate launch``).
        env: environment variables added to this process's for the child.
        where: how messages name the place the worker ran.

    Raises:
        StageError: the worker failed (its error message is included) or was killed. A
            ladder error raised in the worker (a data or config error) is re-raised as the same
            class where its constructor allows.
    """
    spec_dir = spec_dir_for(ctx, stage.name)
    shutil.rmtree(spec_dir, ignore_errors=True)  # a previous attempt's leftovers
    spec_dir.mkdir(parents=True)
    spec_path = spec_dir / "SPEC.json"
    spec, secrets = seal_spec(stage_spec(stage, checkpoint, ctx))
    atomic_write_json(spec_path, spec)
    cmd = command(spec_path)
    child_env = {**os.environ, **dict(env or {}), **secrets, PARENT_PID_ENV: str(os.getpid())}
    logger.info("%s: running the stage worker in %s: %s", stage.name, where, " ".join(cmd))

    forwarder = _LogForwarder(Path(ctx.work_dir) / TRAINER_LOG, ctx.on_log)
    tail: collections.deque[str] = collections.deque(maxlen=_TAIL_LINES)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=child_env,
                            start_new_session=True)
    relay = threading.Thread(target=_relay, args=(proc.stdout, tail, f"[{stage.name}] "), daemon=True)
    relay.start()
    try:
        while proc.poll() is None:
            forwarder.poll()
            time.sleep(0.5)
    except BaseException:  # SIGTERM, Ctrl-C or any error here: do not leave the worker training alone
        stop_process_group(proc)
        raise
    finally:
        relay.join(timeout=10)
        with contextlib.suppress(Exception):  # a last progress record must not replace the outcome
            forwarder.poll()
    result = spec_dir / RESULT_NAME
    if proc.returncode != 0 or not result.is_file():
        _raise_worker_error(spec_dir, stage.name, where, proc.returncode, tail)
    produced = read_result(result, checkpoint)
    shutil.rmtree(spec_dir, ignore_errors=True)
    with contextlib.suppress(OSError):
        spec_dir.parent.rmdir()  # only when empty (no other stage's scratch, no data files)
    return produced


class SubprocessExecutor:
    """Runs each stage in a fresh local Python process (``executor: subprocess``).

    The stage is rebuilt from plain data there (exactly as on Modal), so this is also the way
    to check that a pipeline can be shipped; and the process's memory (model, optimizer,
    CUDA context) is returned to the system when the stage ends.

    Args:
        env: environment variables for the worker process (e.g. ``CUDA_VISIBLE_DEVICES``).
    """

    name = "subprocess"

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self.env = {str(k): str(v) for k, v in (env or {}).items()}

    def run_stage(self, stage: Stage, checkpoint: Checkpoint, ctx: StageContext) -> StageResult:
        return run_worker(stage, checkpoint, ctx, env=self.env, where="a subprocess")

    def __repr__(self) -> str:
        return f"SubprocessExecutor(env={self.env!r})" if self.env else "SubprocessExecutor()"
