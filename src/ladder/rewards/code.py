"""``python_tests``: run a completion's code against the row's tests in a separate process.

The code runs in a child ``python -I -B`` (isolated: no user site-packages, no ``PYTHON*``
environment, no current directory on ``sys.path``) in a fresh temporary directory that is
removed afterwards, with:

* a CPU-time limit (``RLIMIT_CPU``) and a wall-clock timeout, after which the child's whole
  process group is killed;
* an address-space limit (``RLIMIT_AS``), so a runaway allocation raises ``MemoryError``;
* a file-size limit (``RLIMIT_FSIZE``) and an output cap: the parent reads at most
  ``max_output_bytes`` of stdout+stderr and kills a child that writes more;
* no network, in two layers: a new network namespace (``unshare -n``, which has no usable
  interface, not even loopback) where the system allows it (root, or unprivileged user
  namespaces), and always an audit hook (:pep:`578`) that refuses to create network sockets,
  to bind or connect any socket and to resolve host names;
* the same audit hook refuses to start processes (``subprocess``, ``os.system``, ``os.fork``,
  ``exec*``, ``posix_spawn``), to send signals, to load native code through ``ctypes``, to
  inspect the runner's frames, and to write, delete or rename files outside the temp dir.

Honest limits: this is a guard against accidents and against the reward hacks RL policies
stumble on (infinite loops, memory blow-ups, output floods, ``sys.exit(0)`` before the tests
run: success is a random token the runner prints *after* the tests, not the exit status). It is
not a security boundary. Audit hooks can be sidestepped by C extensions already loaded, the code
can read any file the training user can, and a determined adversary inside the process could
forge success (e.g. objects whose ``__eq__`` is always true). To run untrusted code, run the
training job itself in a container or VM. Linux and macOS only (it needs ``resource`` and
process groups).
"""

from __future__ import annotations

import functools
import logging
import os
import re
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import attrs

from ladder.rewards._common import completion_text, last_tag_block

__all__ = [
    "PythonTests",
    "SandboxLimits",
    "SandboxResult",
    "extract_code",
    "make_python_tests",
    "python_tests",
    "run_python_tests",
]

logger = logging.getLogger(__name__)


@attrs.frozen(kw_only=True)
class SandboxLimits:
    """Resource limits for one run of a completion's code."""

    timeout_s: float = attrs.field(
        default=10.0,
        validator=attrs.validators.gt(0),
        metadata={"help": "wall-clock seconds before the child's process group is killed"},
    )
    cpu_s: int = attrs.field(
        default=5,
        validator=[attrs.validators.instance_of(int), attrs.validators.ge(1)],
        metadata={"help": "CPU seconds (RLIMIT_CPU); the child gets SIGXCPU, then SIGKILL a second later"},
    )
    memory_mb: int = attrs.field(
        default=512,
        validator=[attrs.validators.instance_of(int), attrs.validators.ge(64)],
        metadata={"help": "address-space limit (RLIMIT_AS) in MiB; Python needs ~30 MiB to start"},
    )
    max_output_bytes: int = attrs.field(
        default=64 * 1024,
        validator=[attrs.validators.instance_of(int), attrs.validators.ge(1)],
        metadata={"help": "bytes of stdout+stderr read; a child writing more is killed and scores 0"},
    )
    max_file_bytes: int = attrs.field(
        default=10 * 1024 * 1024,
        validator=[attrs.validators.instance_of(int), attrs.validators.ge(0)],
        metadata={"help": "largest file the child may write (RLIMIT_FSIZE)"},
    )
    network_namespace: bool | None = attrs.field(
        default=None,
        metadata={
            "help": "run under `unshare -n` (no network interface): True requires it, False "
            "skips it, None uses it when the system allows"
        },
    )


@attrs.frozen(kw_only=True)
class SandboxResult:
    """What happened when a completion's code ran.

    ``status`` is one of ``passed``, ``failed`` (an exception, e.g. a failed assert),
    ``timeout`` (wall clock), ``cpu_limit``, ``memory_limit``, ``output_limit``, ``file_limit``,
    ``killed`` (by a signal), ``exited_early`` (status 0 without reaching the end of the tests),
    or ``no_code``.
    """

    passed: bool
    status: str
    returncode: int | None = None
    output: str = ""
    duration_s: float = 0.0


# The runner is trusted code that runs in the child before the completion's code: it reads the
# success token from stdin, sets the limits, installs the audit hook, then runs code and tests.
_RUNNER = r"""
import os, sys

def _main():
    import resource
    cpu_s, memory, fsize, root = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    token = sys.stdin.readline().strip()
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)

    def limit(kind, soft, hard):
        current = resource.getrlimit(kind)[1]
        if current != resource.RLIM_INFINITY:  # cannot raise a hard limit, only lower it
            soft, hard = min(soft, current), min(hard, current)
        resource.setrlimit(kind, (soft, hard))

    limit(resource.RLIMIT_CPU, cpu_s, cpu_s + 1)  # SIGXCPU at the soft limit, SIGKILL at the hard
    limit(resource.RLIMIT_AS, memory, memory)
    limit(resource.RLIMIT_FSIZE, fsize, fsize)
    limit(resource.RLIMIT_CORE, 0, 0)

    with open(os.path.join(root, "solution.py"), encoding="utf-8") as f:
        code = f.read()
    with open(os.path.join(root, "tests.py"), encoding="utf-8") as f:
        tests = f.read()

    root = os.path.realpath(root)
    realpath, fspath, sep = os.path.realpath, os.fspath, os.sep
    blocked = frozenset((
        "socket.bind", "socket.connect", "socket.getaddrinfo",
        "socket.gethostbyname", "socket.gethostbyaddr", "socket.gethostname", "socket.sendto",
        "socket.sendmsg", "socket.getnameinfo",
        "subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork",
        "os.forkpty", "os.kill", "os.killpg", "signal.pthread_kill", "os.startfile",
        "ctypes.dlopen", "ctypes.dlsym", "ctypes.cdata", "ctypes.call_function",
        "sys._current_frames", "gc.get_objects", "gc.get_referrers", "gc.get_referents",
    ))
    blocked_imports = frozenset(("_ctypes",))
    path_events = frozenset((
        "os.remove", "os.rmdir", "os.rename", "os.truncate", "os.chmod", "os.chown", "os.link",
        "os.symlink", "os.mkdir", "os.utime", "shutil.rmtree", "shutil.copyfile", "shutil.move",
    ))
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC

    def inside(path):
        if isinstance(path, int) or path is None:
            return True
        try:
            path = realpath(fspath(path))
        except Exception:
            return False
        return path == root or path.startswith(root + sep)

    def hook(event, args):
        if event in blocked:
            raise PermissionError(f"sandbox: {event} is not allowed")
        if event == "socket.__new__" and args[1] != af_unix:
            # Unix-domain sockets stay creatable (asyncio's event loop needs a socketpair);
            # connect/bind are refused for every family, so none can reach anything.
            raise PermissionError("sandbox: creating network sockets is not allowed")
        if event == "import" and args[0] in blocked_imports:
            raise ImportError(f"sandbox: importing {args[0]} is not allowed")
        if event == "open":
            path, mode, flags = args
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and flags & write_flags
            )
            if writing and not inside(path):
                raise PermissionError(f"sandbox: writing {path!r} outside the work dir is not allowed")
        elif event in path_events:
            for arg in args[:2]:
                if isinstance(arg, (str, bytes, os.PathLike)) and not inside(arg):
                    raise PermissionError(f"sandbox: {event} on {arg!r} is not allowed")

    # subprocess.Popen raises an audit event, but the private _posixsubprocess.fork_exec under
    # it does not; disarm it here (asyncio and others import subprocess, so the module itself
    # must stay importable).
    import subprocess, _posixsubprocess
    from socket import AF_UNIX as af_unix

    def no_fork_exec(*args, **kwargs):
        raise PermissionError("sandbox: starting processes is not allowed")

    _posixsubprocess.fork_exec = subprocess._fork_exec = no_fork_exec
    sys.addaudithook(hook)
    sys.dont_write_bytecode = True
    sys.path.insert(0, root)
    namespace = {"__name__": "__solution__", "__builtins__": __builtins__}
    exec(compile(code, "solution.py", "exec"), namespace)
    exec(compile(tests, "tests.py", "exec"), namespace)
    sys.stdout.flush()
    sys.stderr.flush()
    os.write(1, ("\n" + token + "\n").encode())

_main()
"""


@functools.lru_cache(maxsize=1)
def _netns_prefix() -> tuple[str, ...]:
    """The ``unshare`` command that gives a child its own (empty) network namespace, or ``()``.

    Probed once per process: plain ``unshare -n`` needs root; ``unshare -r -n`` needs
    unprivileged user namespaces, which many containers and hardened kernels disable.
    """
    exe = shutil.which("unshare")
    if not exe or not sys.platform.startswith("linux"):
        return ()
    candidates = [[exe, "-n"], [exe, "-r", "-n"]] if os.geteuid() == 0 else [[exe, "-r", "-n"]]
    for prefix in candidates:
        try:
            probe = subprocess.run(
                [*prefix, sys.executable, "-I", "-c", "pass"], capture_output=True, timeout=20, check=False
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        if probe.returncode == 0:
            return tuple(prefix)
    logger.info("no network namespace available (unshare -n failed); relying on the audit hook only")
    return ()


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def run_python_tests(code: str, tests: str, limits: SandboxLimits | None = None) -> SandboxResult:
    """Run ``code`` followed by ``tests`` in a sandboxed child process (see the module docs).

    Args:
        code: the program under test.
        tests: statements that raise on failure, usually ``assert`` lines. They run in the same
            namespace as ``code`` (and ``import solution`` also works).
        limits: resource limits; defaults to :class:`SandboxLimits`'s defaults.

    Returns:
        A :class:`SandboxResult`; ``passed`` only if the tests ran to their end.

    Raises:
        RuntimeError: ``limits.network_namespace`` is True but ``unshare -n`` is unavailable.

    Example:
        >>> run_python_tests("def add(a, b):\\n    return a + b", "assert add(2, 3) == 5").status
        'passed'
        >>> run_python_tests("import sys\\nsys.exit(0)", "assert False").status
        'exited_early'
    """
    limits = limits or SandboxLimits()
    prefix: tuple[str, ...] = ()
    if limits.network_namespace is not False:
        prefix = _netns_prefix()
        if limits.network_namespace and not prefix:
            raise RuntimeError(
                "network_namespace=True but `unshare -n` is not available here (needs root or "
                "unprivileged user namespaces); set network_namespace=None to fall back to the "
                "audit hook"
            )
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ladder-sandbox-") as workdir:
        with open(os.path.join(workdir, "solution.py"), "w", encoding="utf-8") as f:
            f.write(code)
        with open(os.path.join(workdir, "tests.py"), "w", encoding="utf-8") as f:
            f.write(tests)
        token = secrets.token_hex(16)
        cmd = [
            *prefix,
            sys.executable,
            "-I",
            "-B",
            "-c",
            _RUNNER,
            str(limits.cpu_s),
            str(limits.memory_mb * 1024 * 1024),
            str(limits.max_file_bytes),
            workdir,
        ]
        env = {"PATH": os.defpath, "HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=workdir,
            env=env,
            start_new_session=True,  # its own process group, so the kill reaches every child
            close_fds=True,
        )
        try:
            output, status = _collect(proc, token, limits, start)
        finally:
            _kill_group(proc)  # also reaps strays if anything escaped the hook
            proc.wait()
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    stream.close()
    duration = time.monotonic() - start
    text = output.decode("utf-8", errors="replace")
    marker = f"\n{token}\n"
    finished = marker in text
    text = text.replace(marker, "")
    returncode = proc.returncode
    if status is None:
        status = _classify(returncode, text, finished)
    return SandboxResult(
        passed=status == "passed", status=status, returncode=returncode, output=text, duration_s=duration
    )


def _collect(
    proc: subprocess.Popen[bytes], token: str, limits: SandboxLimits, start: float
) -> tuple[bytes, str | None]:
    """Send the token, read at most the output cap until EOF or the deadline."""
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdin.write(f"{token}\n".encode())
        proc.stdin.close()
    except (BrokenPipeError, OSError):
        pass
    deadline = start + limits.timeout_s
    cap = limits.max_output_bytes + len(token) + 2  # the success marker is not the code's output
    buffer = bytearray()
    fd = proc.stdout.fileno()
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                _kill_group(proc)
                return bytes(buffer), "timeout"
            if not selector.select(remaining):
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            buffer += chunk
            if len(buffer) > cap:
                _kill_group(proc)
                return bytes(buffer[: limits.max_output_bytes]), "output_limit"
    try:
        proc.wait(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        return bytes(buffer), "timeout"
    return bytes(buffer), None


def _classify(returncode: int | None, output: str, finished: bool) -> str:
    if returncode == 0:
        return "passed" if finished else "exited_early"
    if returncode is not None and returncode < 0:
        sig = -returncode
        if sig == getattr(signal, "SIGXCPU", None):
            return "cpu_limit"
        if sig == getattr(signal, "SIGXFSZ", None):
            return "file_limit"
        return "killed"
    if "MemoryError" in output:
        return "memory_limit"
    return "failed"


# --------------------------------------------------------------------------------------------
# extraction

_FENCE = re.compile(r"```[ \t]*([\w+-]*)[^\n]*\n(.*?)```", re.DOTALL)


def extract_code(text: str) -> str | None:
    """The code in a completion, or ``None``.

    The last fenced block labelled ``python``/``py``/``python3`` wins, else the last unlabelled
    fenced block (blocks in other languages are skipped). When the completion has an
    ``<answer>`` block, only that block is searched, and its whole content is the code if it
    has no fence.

    Example:
        >>> extract_code("Here:\\n```python\\ndef f():\\n    return 1\\n```\\nDone.")
        'def f():\\n    return 1\\n'
        >>> extract_code("<answer>x = 1</answer>")
        'x = 1'
        >>> extract_code("no code here") is None
        True
    """
    block = last_tag_block(text)
    scope = block if block is not None else text
    fences = _FENCE.findall(scope)
    labelled = [body for lang, body in fences if lang.lower() in ("python", "py", "python3")]
    unlabelled = [body for lang, body in fences if not lang]
    if labelled:
        return labelled[-1]
    if unlabelled:
        return unlabelled[-1]
    if block is not None and block.strip():
        return block.strip()
    return None


def _tests_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value if value.strip() else None
    lines = [str(v) for v in value if v is not None and str(v).strip()]
    return "\n".join(lines) or None


# --------------------------------------------------------------------------------------------
# the reward


class PythonTests:
    """The ``python_tests`` reward with your own limits. Build one with :func:`make_python_tests`."""

    def __init__(
        self, limits: SandboxLimits | None = None, *, workers: int | None = None, name: str = "python_tests"
    ) -> None:
        self.limits = limits or SandboxLimits()
        # Children spend most of their time in their own process, so a few threads overlap
        # process start-up without oversubscribing the CPU.
        self.workers = workers if workers is not None else max(1, min(4, os.cpu_count() or 1))
        self.__name__ = name

    def run(self, completions: Sequence[Any], tests: Sequence[Any]) -> list[SandboxResult | None]:
        """Run every completion against its tests; ``None`` where a row has no tests."""
        jobs: list[tuple[int, str, str]] = []
        results: list[SandboxResult | None] = [None] * len(completions)
        for i, (completion, row_tests) in enumerate(zip(completions, tests, strict=True)):
            test_text = _tests_text(row_tests)
            if test_text is None:
                continue
            code = extract_code(completion_text(completion))
            if code is None:
                results[i] = SandboxResult(passed=False, status="no_code")
                continue
            jobs.append((i, code, test_text))
        if len(jobs) <= 1 or self.workers == 1:
            for i, code, test_text in jobs:
                results[i] = run_python_tests(code, test_text, self.limits)
        else:
            with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="ladder-sandbox") as pool:
                futures = {i: pool.submit(run_python_tests, code, t, self.limits) for i, code, t in jobs}
                for i, future in futures.items():
                    results[i] = future.result()
        return results

    def __call__(
        self,
        completions: Sequence[Any],
        tests: Sequence[Any],
        log_extra: Any = None,
        **kwargs: Any,
    ) -> list[float | None]:
        results = self.run(completions, tests)
        if callable(log_extra):  # TRL's hook: a column in the logged completions table
            log_extra(f"{self.__name__}_status", [r.status if r else None for r in results])
        return [None if r is None else (1.0 if r.passed else 0.0) for r in results]

    def __repr__(self) -> str:
        return f"make_python_tests({self.limits!r}, workers={self.workers})"


def make_python_tests(
    limits: SandboxLimits | None = None,
    *,
    workers: int | None = None,
    name: str = "python_tests",
    **limit_overrides: Any,
) -> PythonTests:
    """A ``python_tests`` reward with other limits, e.g. ``make_python_tests(timeout_s=3)``.

    Args:
        limits: a full :class:`SandboxLimits`; keyword overrides are applied on top of it.
        workers: how many children run at once (default: up to 4, by CPU count).
        name: the reward's ``__name__``, what TRL logs.
        **limit_overrides: any :class:`SandboxLimits` field.

    Example:
        >>> quick = make_python_tests(timeout_s=5, cpu_s=2, workers=1)
        >>> quick(["```python\\nx = 2\\n```"], tests=["assert x == 2"])
        [1.0]
    """
    base = limits or SandboxLimits()
    return PythonTests(attrs.evolve(base, **limit_overrides), workers=workers, name=name)


_DEFAULT = PythonTests()


def python_tests(completions: Sequence[Any], tests: Sequence[Any], **kwargs: Any) -> list[float | None]:
    """1.0 iff the completion's code passes every test of the row's ``tests`` column, else 0.0.

    The code is the completion's last ```` ```python ```` block (or its ``<answer>`` block);
    the ``tests`` column holds statements that raise on failure, as a string or a list of
    strings (MBPP's ``test_list``). Each completion runs in its own sandboxed process (see
    this module's docs for what is and is not contained) with a 10 s timeout, 5 s of CPU and
    512 MiB of memory; build other limits with :func:`make_python_tests`. A completion without
    code scores 0.0; a row without tests gets ``None``. With TRL, each completion's outcome
    (``passed``, ``failed``, ``timeout``...) is logged as the ``python_tests_status`` column.

    Example:
        >>> python_tests(
        ...     ["```python\\ndef sq(x):\\n    return x * x\\n```", "```python\\ndef sq(x):\\n    return x + x\\n```"],
        ...     tests=["assert sq(3) == 9", "assert sq(3) == 9"],
        ... )
        [1.0, 0.0]
    """
    return _DEFAULT(completions, tests=tests, **kwargs)
