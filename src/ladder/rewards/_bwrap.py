"""The default ``python_tests`` backend: one fresh bubblewrap sandbox per program (Linux)."""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import site
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import attrs

from ladder.rewards._sandbox import RUNNER, SandboxJob, SandboxRun, SandboxUnavailableError, drive
from ladder.rewards._seccomp import seccomp_program

__all__ = ["Bubblewrap"]

NOBODY = 65534




def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except (OSError, ValueError):
        pass
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _kill_namespace(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the sandbox's init: the kernel then kills every process in its PID namespace,
    and bwrap exits only once the namespace is empty. bwrap itself is killed last."""
    give_up = time.monotonic() + 3.0
    while proc.poll() is None and time.monotonic() < give_up:
        for child in _children(proc.pid):
            try:
                os.kill(child, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        try:
            proc.wait(timeout=0.05)
        except subprocess.TimeoutExpired:
            continue
    if proc.poll() is None:  # --die-with-parent takes the sandbox down with bwrap
        proc.kill()


# Run as root, bwrap would map the sandbox's uid onto root outside, where RLIMIT_NPROC does not
# apply. So a root parent starts bwrap as nobody, and since nobody may not reach the interpreter
# (pyenv keeps it under /root, mode 0700), this helper first bind-mounts the paths bwrap needs
# into a private mount namespace, at /tmp/ladder-stage/N, then drops to nobody and execs bwrap.
_STAGE_HELPER = r"""
import ctypes, json, os, sys
libc = ctypes.CDLL(None, use_errno=True)
def check(result, what):
    if result != 0:
        sys.stderr.write("ladder-sandbox: %s failed: %s\n" % (what, os.strerror(ctypes.get_errno())))
        os._exit(126)
cfg = json.loads(sys.argv[1])
check(libc.unshare(0x00020000), "unshare(CLONE_NEWNS)")
check(libc.mount(b"none", b"/", None, 0x40000 | 0x4000, None), "making / private")
# opened before the staging tmpfs covers /tmp, so an interpreter under /tmp is still reachable
sources = [(os.open(src, os.O_PATH), os.path.isdir(src)) for src in cfg["stage"]]
check(libc.mount(b"tmpfs", b"/tmp", b"tmpfs", 0, b"mode=0755,size=1m"), "mounting the staging tmpfs")
os.mkdir("/tmp/ladder-stage", 0o755)
for i, (fd, is_dir) in enumerate(sources):
    dest = "/tmp/ladder-stage/%d" % i
    if is_dir:
        os.mkdir(dest, 0o755)
    else:
        open(dest, "w").close()
    check(libc.mount(b"/proc/self/fd/%d" % fd, dest.encode(), None, 0x1000 | 0x4000, None), "bind-mounting " + cfg["stage"][i])
    os.close(fd)
os.setgroups([])
os.setgid(cfg["gid"])
os.setuid(cfg["uid"])
os.execv(sys.argv[2], sys.argv[2:])
"""


@functools.lru_cache(maxsize=1)
def _interpreter() -> tuple[str, list[str], list[str]]:
    """The interpreter's real path, the host paths it needs read-only, and site-packages to hide."""
    exe = os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)
    paths = [exe, os.path.realpath(sysconfig.get_paths()["stdlib"]), os.path.realpath(sysconfig.get_paths()["platstdlib"])]
    lib = os.path.realpath(os.path.join(sys.base_prefix, "lib"))
    if os.path.isdir(lib):
        paths.append(lib)  # libpython and, for conda, the libraries lib-dynload links to
    try:
        with open("/proc/self/maps", encoding="utf-8") as maps:
            paths += [os.path.realpath(line.split()[-1]) for line in maps if "libpython" in line and "/" in line]
    except OSError:
        pass
    kept: list[str] = []
    for path in sorted(set(paths), key=len):
        if os.path.exists(path) and not any(path == k or path.startswith(k + os.sep) for k in kept):
            kept.append(path)
    hidden = {os.path.realpath(p) for p in [*site.getsitepackages(), sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]}
    hide = sorted(p for p in hidden if os.path.isdir(p) and any(p.startswith(k + os.sep) for k in kept))
    return exe, kept, hide


@attrs.frozen(kw_only=True)
class Bubblewrap:
    """Each run in a fresh bubblewrap sandbox (Linux; ``apt-get install -y bubblewrap``).

    New user, PID, mount, IPC, UTS, cgroup and network namespaces (no interface but a down
    loopback), no further user namespaces, uid/gid 65534, a fresh ``/proc`` (only the sandbox's
    processes), a minimal read-only ``/dev``, a read-only root holding only the interpreter,
    its standard library (site-packages hidden) and the system libraries, one writable tmpfs
    ``/work`` of ``max_disk_bytes`` (also ``/tmp`` and ``HOME``), an empty environment,
    a seccomp filter (``_seccomp.py``), ``--die-with-parent``, and a new session. A run ends by killing the namespace's init, after
    which the kernel kills every process left in it.
    """

    executable: str | None = None
    name: str = "bubblewrap"
    confined: bool = True

    def _bwrap(self) -> str:
        exe = self.executable or shutil.which("bwrap")
        if not exe or not os.access(exe, os.X_OK):
            raise SandboxUnavailableError(f"bubblewrap (`{exe or 'bwrap'}`) is not installed")
        return exe

    def argv(self, job: SandboxJob, seccomp_fd: int | None = None) -> list[str]:
        """The command line: bwrap's, or (as root) the staging helper's around it."""
        exe, binds, hide = _interpreter()
        root = os.geteuid() == 0
        args = [
            "--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent", "--new-session",
            "--uid", str(NOBODY), "--gid", str(NOBODY), "--hostname", "sandbox",
        ]
        if seccomp_fd is not None:
            args += ["--seccomp", str(seccomp_fd)]
        for lib in ("/usr/lib", "/usr/lib64", "/usr/lib32"):
            if os.path.isdir(lib) and not os.path.islink(lib):
                args += ["--ro-bind", lib, lib]
        for lib in ("/lib", "/lib64", "/lib32"):
            if os.path.islink(lib):
                args += ["--symlink", os.readlink(lib), lib]
            elif os.path.isdir(lib):
                args += ["--ro-bind", lib, lib]
        args += ["--ro-bind-try", "/etc/ld.so.cache", "/etc/ld.so.cache"]
        for i, path in enumerate(binds):
            args += ["--ro-bind", f"/tmp/ladder-stage/{i}" if root else path, path]
        for path in hide:
            args += ["--tmpfs", path, "--remount-ro", path]
        args += [
            "--proc", "/proc", "--dev", "/dev",
            "--size", str(job.max_disk_bytes), "--perms", "1777", "--tmpfs", "/work",
            "--symlink", "/work", "/tmp", "--remount-ro", "/dev", "--remount-ro", "/",
            "--chdir", "/work", "--clearenv",
            "--setenv", "HOME", "/work", "--setenv", "TMPDIR", "/work", "--setenv", "LANG", "C.UTF-8",
            "--", exe, "-I", "-B", "-c", RUNNER, json.dumps({**job.config, "workdir": "/work"}),
        ]
        bwrap = self._bwrap()
        if not root:
            return [bwrap, *args]
        helper = json.dumps({"stage": binds, "uid": NOBODY, "gid": NOBODY})
        return [sys.executable, "-I", "-S", "-c", _STAGE_HELPER, helper, bwrap, *args]

    def run(self, job: SandboxJob) -> SandboxRun:
        """Run the job under bwrap; see :class:`SandboxBackend`."""
        program = seccomp_program()
        filter_fd = None
        if program is not None:  # a pipe holds it: bwrap reads it before it runs anything
            filter_fd, write_fd = os.pipe()
            os.write(write_fd, program)
            os.close(write_fd)
        try:
            proc = subprocess.Popen(
                self.argv(job, filter_fd),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env={"PATH": os.defpath},
                close_fds=True,
                pass_fds=() if filter_fd is None else (filter_fd,),
                start_new_session=True,
            )
        finally:
            if filter_fd is not None:
                os.close(filter_fd)
        return drive(proc, job, _kill_namespace)

    def check(self) -> None:
        """Raise :class:`SandboxUnavailableError` unless a trivial program runs confined here."""
        _probe(self)


@functools.lru_cache(maxsize=8)
def _probe(backend: Bubblewrap) -> None:
    if not sys.platform.startswith("linux"):
        raise SandboxUnavailableError(f"bubblewrap needs Linux (this is {sys.platform})")
    backend._bwrap()
    payload = json.dumps({"code": "", "steps": []}).encode()
    job = SandboxJob(
        config={"cpu_s": 5, "memory": 512 << 20, "file_bytes": 1 << 20, "processes": 8, "audit_hook": False},
        payload=payload, timeout_s=30.0, max_output_bytes=65536, max_report_bytes=65536, max_disk_bytes=1 << 20,
    )
    run = backend.run(job)
    if b'{"done":true}' not in run.report:
        reason = (run.report + run.output).decode("utf-8", errors="replace").strip()[:500] or f"exit status {run.returncode}"
        raise SandboxUnavailableError(
            f"bubblewrap is installed but cannot start a sandbox ({reason}); it needs unprivileged user "
            f"namespaces (e.g. `sysctl -w kernel.unprivileged_userns_clone=1`, or on Ubuntu 24.04 "
            f"`sysctl -w kernel.apparmor_restrict_unprivileged_userns=0`; in Docker, a seccomp profile "
            f"that allows them)"
        )
