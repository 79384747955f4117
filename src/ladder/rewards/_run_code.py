"""One confined run of a program and its tests: the limits, the result, and the decision.

:func:`run_python_tests` sends the program and the test *steps* (never an expected value) to a
backend (``_bwrap.Bubblewrap`` by default), then judges the untrusted report itself
(``_sandbox_checks.judge``) and names the outcome (:attr:`SandboxResult.status`).
"""

from __future__ import annotations

import errno
import json
import signal
import time
from typing import Any

import attrs

from ladder.errors import ConfigError
from ladder.rewards._bwrap import Bubblewrap
from ladder.rewards._sandbox import SandboxBackend, SandboxError, SandboxJob, SandboxRun, Unconfined
from ladder.rewards._sandbox_checks import judge, plan_tests
from ladder.settings import setting

__all__ = ["SandboxLimits", "SandboxResult", "resolve_backend", "run_python_tests"]

_REPORT_BYTES = 1 << 20  # the runner's report: one line per step, values included


def _whole(at_least: int) -> list[Any]:
    return [attrs.validators.instance_of(int), attrs.validators.ge(at_least)]


@attrs.frozen(kw_only=True)
class SandboxLimits:
    """Resource limits for one run of a completion's code."""

    timeout_s: float = setting(
        10.0, validator=attrs.validators.gt(0),
        help="wall-clock seconds before the run and everything it started is killed",
    )
    cpu_s: int = setting(
        5, validator=_whole(1), help="CPU seconds (RLIMIT_CPU); the child gets SIGXCPU, then SIGKILL a second later"
    )
    memory_mb: int = setting(
        512, validator=_whole(64), help="address-space limit (RLIMIT_AS) in MiB; Python needs ~30 MiB to start"
    )
    max_output_bytes: int = setting(
        64 * 1024, validator=_whole(1), help="bytes of stdout+stderr read; a child writing more is killed and scores 0"
    )
    max_file_bytes: int = setting(
        10 * 1024 * 1024, validator=_whole(0),
        help="largest file the child may write (RLIMIT_FSIZE); past it the child is killed",
    )
    max_disk_bytes: int = setting(
        32 * 1024 * 1024, validator=_whole(64 * 1024),
        help="all files together (the size of the sandbox's tmpfs; not enforced unconfined)",
    )
    max_processes: int = setting(
        16, validator=_whole(0), help="processes and threads the code may start (RLIMIT_NPROC in the sandbox)"
    )
    audit_hook: bool = setting(
        True, validator=attrs.validators.instance_of(bool),
        help="also install the runner's audit hook (an extra layer, never the boundary)",
    )


@attrs.frozen(kw_only=True)
class SandboxResult:
    """What happened when a completion's code ran.

    ``status`` is one of ``passed``, ``failed`` (an exception, a failed check), ``timeout``
    (wall clock), ``batch_timeout`` (cut short, or not started, at the batch's deadline),
    ``cpu_limit``, ``memory_limit``, ``output_limit``, ``file_limit`` (a file over
    ``max_file_bytes`` or all files over ``max_disk_bytes``), ``killed`` (another signal),
    ``exited_early`` (status 0 before the end of the tests) or ``no_code``. ``detail`` says
    which check failed; ``checked_outside``/``checked_inside`` count the checks the parent
    made and the test statements only the sandbox could judge.
    """

    passed: bool
    status: str
    returncode: int | None = None
    output: str = ""
    duration_s: float = 0.0
    detail: str = ""
    checked_outside: int = 0
    checked_inside: int = 0


def resolve_backend(backend: SandboxBackend | None, unconfined: bool) -> SandboxBackend:
    if unconfined:
        if backend is not None:
            raise ConfigError("python_tests: give either unconfined=True or backend=..., not both")
        return Unconfined()
    if backend is None:
        return Bubblewrap()
    if not isinstance(backend, SandboxBackend):
        raise ConfigError(
            f"python_tests: backend {backend!r} is not a sandbox backend (it needs name, confined, "
            f"check() and run(job)); see ladder.rewards.SandboxBackend"
        )
    return backend


def _status(run: SandboxRun, passed: bool, started: bool, done: bool, error: str | None, err: int | None) -> str:
    if run.stopped is not None:
        return run.stopped
    if run.signal == signal.SIGXCPU:
        return "cpu_limit"
    if run.signal == signal.SIGXFSZ or (error is not None and err in (errno.EFBIG, errno.ENOSPC, errno.EDQUOT)):
        return "file_limit"
    if error == "MemoryError":
        return "memory_limit"
    if run.signal is not None:
        return "killed"
    if passed:
        return "passed"
    if run.returncode == 0 and started and not done and error is None:
        return "exited_early"
    return "failed"


def run_python_tests(
    code: str,
    tests: str,
    limits: SandboxLimits | None = None,
    *,
    backend: SandboxBackend | None = None,
    unconfined: bool = False,
    deadline: float | None = None,
) -> SandboxResult:
    """Run ``code``, then ``tests``, confined; the parent judges the result (module docs).

    Args:
        code: the program under test.
        tests: statements that raise on failure, usually ``assert`` lines; they share the
            code's namespace (``from solution import f`` works too).
        limits: resource limits; defaults to :class:`SandboxLimits`'s defaults.
        backend: where to run it (default: bubblewrap).
        unconfined: run in a plain child process, without OS confinement (trusted code only).
        deadline: a ``time.monotonic()`` instant the run must end by (a batch's deadline);
            past it the run is killed, or not started, with status ``batch_timeout``.

    Raises:
        SandboxUnavailableError: no sandbox works here (the message says what to install).
        SandboxError: the sandbox failed before the code could start.

    Example:
        >>> run_python_tests("def add(a, b):\\n    return a + b", "assert add(2, 3) == 5").status
        'passed'
        >>> run_python_tests("import sys\\nsys.exit(0)", "assert False").status
        'exited_early'
    """
    limits = limits or SandboxLimits()
    runner = resolve_backend(backend, unconfined)
    runner.check()
    plan = plan_tests(tests)
    timeout = limits.timeout_s
    cut = deadline is not None and deadline - time.monotonic() < timeout
    if deadline is not None:
        timeout = min(timeout, deadline - time.monotonic())
    counts = {"checked_outside": len(plan.checks), "checked_inside": plan.inside}
    if timeout <= 0:
        return SandboxResult(passed=False, status="batch_timeout", detail="the batch's deadline passed before it started", **counts)
    job = SandboxJob(
        config={
            "cpu_s": limits.cpu_s,
            "memory": limits.memory_mb * 1024 * 1024,
            "file_bytes": limits.max_file_bytes,
            "processes": limits.max_processes + 2 if runner.confined else None,  # + bwrap's init and the runner
            "audit_hook": limits.audit_hook,
        },
        payload=json.dumps({"code": code, "steps": list(plan.steps)}).encode(),
        timeout_s=timeout,
        max_output_bytes=limits.max_output_bytes,
        max_report_bytes=_REPORT_BYTES,
        max_disk_bytes=limits.max_disk_bytes,
    )
    run = runner.run(job)
    verdict = judge(plan, run.report)
    output = run.output.decode("utf-8", errors="replace")
    if not verdict.started and run.stopped is None:
        raise SandboxError(
            f"the {runner.name} sandbox failed before the code started (exit status {run.returncode}): "
            f"{(run.report.decode('utf-8', errors='replace') + output).strip()[:800]}"
        )
    status = _status(run, verdict.passed, verdict.started, verdict.done, verdict.error, verdict.errno)
    if status == "timeout" and cut:
        status = "batch_timeout"
    return SandboxResult(
        passed=status == "passed",
        status=status,
        returncode=run.returncode,
        output=output,
        duration_s=run.duration_s,
        detail=verdict.detail or (f"raised {verdict.error}" if verdict.error else ""),
        **counts,
    )
