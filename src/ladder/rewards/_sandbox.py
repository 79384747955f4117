"""Where ``python_tests`` runs code: the backend protocol, and the unconfined child.

Every backend executes the same trusted runner (``_sandbox_runner.py``) on the same payload
and hands back raw, untrusted bytes (:class:`SandboxRun`); the verdict is made by the caller
(``_sandbox_checks.judge``), never by the backend or the child. ``Bubblewrap`` (``_bwrap.py``)
is the default; :class:`Unconfined` is the opt-in without OS confinement; ``ModalSandbox``
(``sandbox_modal.py``) runs each program in a Modal sandbox.
"""

from __future__ import annotations

import json
import logging
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import attrs

from ladder.errors import LadderError, MissingDependencyError

__all__ = [
    "RUNNER",
    "SandboxBackend",
    "SandboxError",
    "SandboxJob",
    "SandboxRun",
    "SandboxUnavailableError",
    "Unconfined",
    "drive",
    "signal_of",
]

logger = logging.getLogger(__name__)

RUNNER = (Path(__file__).with_name("_sandbox_runner.py")).read_text(encoding="utf-8")


class SandboxUnavailableError(MissingDependencyError):
    """No confinement tool works here; the message names the tool and how to install it."""

    def __init__(self, reason: str) -> None:  # a custom message, not a pip name
        ImportError.__init__(
            self,
            f"python_tests runs model-written code only inside a sandbox, and none works here: {reason}. "
            "Install bubblewrap (`apt-get install -y bubblewrap`; `dnf install bubblewrap` on Fedora), "
            "or run it in Modal sandboxes (`pip install 'ladder[modal]'`, then "
            "`make_python_tests(backend=ModalSandbox())`), or accept running it without OS confinement "
            "with `make_python_tests(unconfined=True)` (for the registered `python_tests`: "
            "LADDER_PYTHON_TESTS_UNCONFINED=1).",
        )


class SandboxError(LadderError, RuntimeError):
    """The sandbox itself failed (not the code in it): the runner never started."""


@attrs.frozen(kw_only=True)
class SandboxJob:
    """One run of the runner: what a backend executes.

    ``config`` becomes the runner's ``argv[1]`` (JSON) once the backend adds its ``workdir``;
    ``payload`` (the code and the steps, never an expected value) is its stdin.
    """

    config: dict[str, Any]
    payload: bytes
    timeout_s: float
    max_output_bytes: int
    max_report_bytes: int
    max_disk_bytes: int


@attrs.frozen(kw_only=True)
class SandboxRun:
    """What a backend hands back; nothing in it is trusted.

    ``stopped`` is ``"timeout"`` or ``"output_limit"`` when the backend ended the run;
    ``signal`` the signal that ended the child, when the backend can tell.
    """

    returncode: int | None
    output: bytes
    report: bytes
    stopped: str | None = None
    signal: int | None = None
    duration_s: float = 0.0


@runtime_checkable
class SandboxBackend(Protocol):
    """Runs the runner somewhere confined. Implement it to add a backend (a VM, a service).

    ``check()`` raises :class:`SandboxUnavailableError` when the backend cannot run here (it is
    called before the first run, and may cache); ``run(job)`` executes ``python -I -B -c
    RUNNER json.dumps(config)`` with ``job.payload`` on stdin, the runner's stdout as
    ``output`` and its stderr as ``report``, kills the run and everything it started after
    ``job.timeout_s`` or once ``output`` exceeds ``job.max_output_bytes``, and returns without
    leaving a process behind. ``confined`` says whether the code is under OS confinement.
    """

    name: str
    confined: bool

    def check(self) -> None: ...

    def run(self, job: SandboxJob) -> SandboxRun: ...


def signal_of(returncode: int | None) -> int | None:
    if returncode is None:
        return None
    if returncode < 0:
        return -returncode
    return returncode - 128 if 128 < returncode < 128 + 65 else None  # bwrap, shells: 128 + signal


def drive(proc: subprocess.Popen[bytes], job: SandboxJob, kill: Any) -> SandboxRun:
    """Feed the payload, read output and report within their caps until EOF or the deadline."""
    start = time.monotonic()
    deadline = start + job.timeout_s
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    out_fd, report_fd = proc.stdout.fileno(), proc.stderr.fileno()
    buffers = {out_fd: bytearray(), report_fd: bytearray()}
    caps = {out_fd: job.max_output_bytes, report_fd: job.max_report_bytes}
    pending = memoryview(job.payload)
    stdin = proc.stdin.fileno()
    os.set_blocking(stdin, False)
    stopped: str | None = None
    with selectors.DefaultSelector() as selector:
        selector.register(stdin, selectors.EVENT_WRITE)
        for fd in buffers:
            selector.register(fd, selectors.EVENT_READ)
        readers = len(buffers)
        while readers and stopped is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                stopped = "timeout"
                break
            for key, _events in selector.select(remaining):
                fd = int(key.fd)
                if fd == stdin:
                    try:
                        pending = pending[os.write(stdin, pending[:65536]) :]
                    except BlockingIOError:
                        continue
                    except OSError:  # the child stopped reading: it will fail on its own
                        pending = pending[:0]
                    if not pending:
                        selector.unregister(stdin)
                        proc.stdin.close()
                    continue
                chunk = os.read(fd, 65536)
                if not chunk:
                    selector.unregister(fd)
                    readers -= 1
                    continue
                buffers[fd] += chunk
                if len(buffers[fd]) > caps[fd]:
                    stopped = "output_limit"
                    break
    if not proc.stdin.closed:
        proc.stdin.close()
    if stopped is None:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            stopped = "timeout"
    if stopped is not None:
        kill(proc)
    proc.wait()
    for stream in (proc.stdout, proc.stderr):
        stream.close()
    return SandboxRun(
        returncode=proc.returncode,
        output=bytes(buffers[out_fd][: job.max_output_bytes]),
        report=bytes(buffers[report_fd][: job.max_report_bytes]),
        stopped=stopped,
        signal=signal_of(proc.returncode),
        duration_s=time.monotonic() - start,
    )


# ------------------------------------------------------------------------------------------------
# unconfined


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


@attrs.frozen(kw_only=True)
class Unconfined:
    """A plain ``python -I -B`` child in a temporary directory: rlimits and the audit hook only.

    The code runs as the training user: it can read what that user can, see the network, and
    signal or trace the user's processes. Only for code you trust (``unconfined=True``).
    """

    name: str = "unconfined"
    confined: bool = False

    def check(self) -> None:
        """Always usable."""

    def run(self, job: SandboxJob) -> SandboxRun:
        """Run the job in a child process group, killed as a whole at the end."""
        with tempfile.TemporaryDirectory(prefix="ladder-sandbox-") as workdir:
            config = json.dumps({**job.config, "workdir": workdir})
            proc = subprocess.Popen(
                [sys.executable, "-I", "-B", "-c", RUNNER, config],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=workdir,
                env={"PATH": os.defpath, "HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8"},
                close_fds=True,
                start_new_session=True,
            )
            try:
                return drive(proc, job, _kill_group)
            finally:
                _kill_group(proc)  # whatever the code started in its group goes too
