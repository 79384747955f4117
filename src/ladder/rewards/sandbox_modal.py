"""A ``python_tests`` backend that runs each program in its own Modal sandbox (a gVisor VM).

For when a kernel-namespace sandbox on the training machine is not enough, or not available::

    from ladder.rewards import ModalSandbox, make_python_tests
    reward = make_python_tests(backend=ModalSandbox(), workers=16, batch_timeout_s=50)

Each run creates a sandbox with ``modal.Sandbox.create(app=..., image=..., block_network=True,
timeout=...)``, executes the runner with ``sandbox.exec("python", "-I", "-B", "-c", RUNNER,
config, timeout=...)``, writes the payload to its stdin, reads its stdout (the program's
output) and stderr (the report), and terminates the sandbox. The verdict is made on this side,
as for every backend. Needs ``pip install 'ladder[modal]'`` and a Modal account
(``modal token new``). Not enforced in Modal: ``max_disk_bytes`` (the sandbox's own disk is
discarded with it), and ``max_processes`` where the image runs as root; output is capped after
it has arrived. Each run pays the sandbox's start-up (about a second): use more ``workers``.
"""

from __future__ import annotations

import json
import math
import sys
import time
from typing import Any

import attrs

from ladder.errors import MissingDependencyError
from ladder.rewards._sandbox import RUNNER, SandboxJob, SandboxRun, signal_of

__all__ = ["ModalSandbox"]


def _modal() -> Any:
    try:
        import modal
    except ImportError as exc:
        raise MissingDependencyError("modal", extra="modal") from exc
    return modal


@attrs.frozen(kw_only=True)
class ModalSandbox:
    """Each program in a fresh ``modal.Sandbox`` with the network blocked.

    Attributes:
        app_name: the Modal app the sandboxes belong to (created if missing).
        image: a ``modal.Image``; default ``modal.Image.debian_slim(python_version=...)``.
        python_version: the image's Python when ``image`` is not given (default: this one's).
        cpu: CPU cores per sandbox.
        memory_mb: memory per sandbox, MiB.
    """

    app_name: str = "ladder-python-tests"
    image: Any = None
    python_version: str = attrs.field(factory=lambda: f"{sys.version_info.major}.{sys.version_info.minor}")
    cpu: float = 1.0
    memory_mb: int = 1024
    name: str = "modal"
    confined: bool = True

    def check(self) -> None:
        """Raise :class:`~ladder.errors.MissingDependencyError` unless ``modal`` is installed."""
        _modal()

    def run(self, job: SandboxJob) -> SandboxRun:
        """Run the job in a new Modal sandbox; see ``SandboxBackend``."""
        modal = _modal()
        app = modal.App.lookup(self.app_name, create_if_missing=True)
        image = self.image if self.image is not None else modal.Image.debian_slim(python_version=self.python_version)
        timeout = max(1, math.ceil(job.timeout_s))
        start = time.monotonic()
        sandbox = modal.Sandbox.create(
            app=app,
            image=image,
            timeout=timeout + 60,  # the sandbox outlives its one exec, then is terminated below
            cpu=self.cpu,
            memory=self.memory_mb,
            block_network=True,
        )
        try:
            config = json.dumps({**job.config, "workdir": "/tmp/ladder-work"})
            process = sandbox.exec("python", "-I", "-B", "-c", RUNNER, config, timeout=timeout, text=False)
            process.stdin.write(job.payload)
            process.stdin.write_eof()
            process.stdin.drain()
            output = bytes(process.stdout.read())
            report = bytes(process.stderr.read())
            returncode = process.wait()
        finally:
            sandbox.terminate()
        stopped = None
        if returncode == -1:
            stopped = "timeout"  # Modal reports an exec past its deadline as -1
        elif len(output) > job.max_output_bytes or len(report) > job.max_report_bytes:
            stopped = "output_limit"
        return SandboxRun(
            returncode=returncode,
            output=output[: job.max_output_bytes],
            report=report[: job.max_report_bytes],
            stopped=stopped,
            signal=None if stopped else signal_of(returncode),
            duration_s=time.monotonic() - start,
        )
