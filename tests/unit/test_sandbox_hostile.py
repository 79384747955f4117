"""Hostile code stays in its box: every program in hostile_programs.py is contained.

Each runs as a ``python_tests`` completion in the real bubblewrap sandbox, with the audit hook
off (the OS layer alone, as after the hook is disarmed) and on (the default). Every one must
score 0.0 with the expected status, and from outside the test checks that nothing changed:
the canary file and its directory, the site-packages listings, /tmp and /dev/shm; that no
process it started survives the reward; that no listener saw a connection; that no signal
reached this process; that the bystander process lives; that HF_TOKEN never showed up.
"""

from __future__ import annotations

import os
import secrets
import signal
import site
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ladder.rewards import SandboxLimits, make_python_tests
from tests.unit.hostile_programs import PROGRAMS, program
from tests.unit.sandbox_support import children, processes_with, require_sandbox

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="bubblewrap is Linux-only")

LIMITS: dict[str, Any] = {
    "timeout_s": 5.0, "cpu_s": 1, "memory_mb": 256, "max_output_bytes": 8192, "max_file_bytes": 4 << 20,
    "max_disk_bytes": 16 << 20, "max_processes": 16,
}
WATCHED = (signal.SIGUSR1, signal.SIGUSR2, signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGALRM,
           signal.SIGWINCH, signal.SIGCONT, signal.SIGQUIT)


@pytest.fixture(scope="module")
def arena(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Targets for the programs: listeners, a canary, a secret, a bystander process."""
    require_sandbox()
    home = tmp_path_factory.mktemp("arena")
    marker = f"ladder-escape-{secrets.token_hex(6)}"
    (home / "canary.txt").write_text("ladder-secret canary\n")
    (home / "secret.txt").write_text("ladder-secret: hunter2\n")
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    tcp.bind(("127.0.0.1", 0))
    tcp.listen(8)
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    unix.bind(str(home / "listener.sock"))
    unix.listen(8)
    abstract = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    abstract.bind("\0" + marker)
    abstract.listen(8)
    token = f"hf_{secrets.token_hex(12)}"
    # The bystander holds HF_TOKEN in its environment from the start, as a trainer launched with
    # it does (/proc/PID/environ shows a process's initial environment, not later setenv calls).
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], env={**os.environ, "HF_TOKEN": token})
    constants = {
        "trainer": os.getpid(),
        "bystander": bystander.pid,
        "port": tcp.getsockname()[1],
        "unix": str(home / "listener.sock"),
        "abstract": marker,
        "dir": str(home),
        "canary": str(home / "canary.txt"),
        "secret": str(home / "secret.txt"),
        "marker": marker,
        "site": site.getsitepackages(),
        "token": token,
    }
    try:
        yield {"C": constants, "home": home, "listeners": (tcp, unix, abstract), "bystander": bystander}
    finally:
        bystander.kill()
        bystander.wait()
        for listener in (tcp, unix, abstract):
            listener.close()


def _snapshot(home: Path, marker: str) -> dict[str, Any]:
    canary = home / "canary.txt"
    listings = {}
    for folder in [*site.getsitepackages(), "/tmp", "/dev/shm"]:
        try:
            listings[folder] = sorted(n for n in os.listdir(folder) if marker in n or folder not in ("/tmp", "/dev/shm"))
        except OSError:
            continue
    return {
        "canary": (canary.read_bytes(), canary.stat().st_mtime_ns),
        "home": sorted(p.name for p in home.iterdir()),
        "listings": listings,
    }


def _nobody_files_since(start: float) -> list[str]:
    """Files in /tmp or /dev/shm owned by uid 65534 (the sandbox's uid outside) made since start."""
    if os.geteuid() != 0:
        return []  # unprivileged, the sandbox maps to our own uid: the marker checks cover it
    found = []
    for folder in ("/tmp", "/dev/shm"):
        for entry in os.scandir(folder):
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if st.st_uid == 65534 and st.st_ctime >= start:
                found.append(entry.path)
    return found


def fenced(code: str) -> str:
    return f"```python\n{code}\n```"


@pytest.mark.parametrize("audit_hook", [False, True], ids=["os-layer-only", "with-audit-hook"])
def test_every_hostile_program_is_contained(arena: dict[str, Any], audit_hook: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    C = arena["C"]
    monkeypatch.setenv("HF_TOKEN", C["token"])
    received: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, frame: received.append(signum)) for sig in WATCHED}
    before = _snapshot(arena["home"], C["marker"])
    threads = threading.active_count()
    start = time.time()
    names = list(PROGRAMS)
    reward = make_python_tests(SandboxLimits(audit_hook=audit_hook, **LIMITS), workers=4, batch_timeout_s=None)
    try:
        t0 = time.monotonic()
        results = reward.run([fenced(program(n, C)) for n in names], [PROGRAMS[n][1] for n in names])
        elapsed = time.monotonic() - t0
        survivors = processes_with(C["marker"])
        our_children = children()
        time.sleep(0.2)  # give a stray signal time to arrive
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    outcome = {n: (r.status, r.passed) for n, r in zip(names, results) if r is not None}
    for name, result in zip(names, results):
        assert result is not None and not result.passed, (name, result)
        assert result.status in PROGRAMS[name][2], (name, result.status, result.detail, result.output[-2000:])
        assert C["token"] not in result.output, name
        assert "hunter2" not in result.output, name
    assert len(outcome) == len(PROGRAMS) >= 25
    # outside the box nothing changed
    assert received == []
    assert survivors == []
    assert our_children == {arena["bystander"].pid}
    assert arena["bystander"].poll() is None
    assert _snapshot(arena["home"], C["marker"]) == before
    assert not Path("/tmp", C["marker"]).exists() and not Path("/dev/shm", C["marker"]).exists()
    assert _nobody_files_since(start) == []
    for listener in arena["listeners"]:
        listener.setblocking(False)
        with pytest.raises(BlockingIOError):  # nothing ever connected
            listener.accept()
    assert threading.active_count() == threads
    assert elapsed < 30, elapsed


def test_grandchild_is_gone_even_when_it_would_outlive_a_delay(arena: dict[str, Any]) -> None:
    """A setsid grandchild that sleeps first, then would announce itself: it never gets to."""
    C = arena["C"]
    code = (
        "import os, sys, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        f"        os.execv(sys.executable, [sys.executable, '-c', 'import time; time.sleep(1.5); print(1)', {C['marker'] + '-late'!r}])\n"
        "    os._exit(0)\n"
        "escaped = False\n"
    )
    reward = make_python_tests(SandboxLimits(audit_hook=False, **LIMITS), workers=1)
    (result,) = reward.run([fenced(code)], ["assert escaped"])
    assert result is not None and result.status == "failed"
    assert processes_with(C["marker"] + "-late") == []
    time.sleep(2.0)  # past the grandchild's delay: still nothing
    assert processes_with(C["marker"] + "-late") == []
    assert children() == {arena["bystander"].pid}


def test_the_attacks_are_real_without_confinement(arena: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same programs, unconfined and without the hook, do escape: the checks above can fail.

    Only attacks that harm nothing outside this test run here (no fork bomb, no writes under /).
    """
    C = {**arena["C"], "canary": str(tmp_path / "canary.txt"), "secret": str(tmp_path / "secret.txt")}
    Path(C["canary"]).write_text("original\n")
    Path(C["secret"]).write_text("ladder-secret: hunter2\n")
    monkeypatch.setenv("HF_TOKEN", C["token"])
    received: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, frame: received.append(signum)) for sig in WATCHED}
    names = ["read_secrets", "parent_environ", "signal_trainer", "connect_loopback", "frame_inspection"]
    overwrite = "open(C['canary'], 'w').write('escaped')\nescaped = True"
    reward = make_python_tests(SandboxLimits(audit_hook=False, **LIMITS), workers=1, batch_timeout_s=None, unconfined=True)
    try:
        results = reward.run(
            [fenced(program(n, C)) for n in names] + [fenced(f"C = {C!r}\n{overwrite}")],
            [PROGRAMS[n][1] for n in names] + ["assert escaped"],
        )
        time.sleep(0.2)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    status = {n: r.status for n, r in zip([*names, "overwrite"], results) if r is not None}
    # Without confinement, the secret, the token, the signal, the connection and the file write
    # all get through; only forging the verdict still fails, because the parent decides.
    assert status == {"read_secrets": "passed", "parent_environ": "passed", "signal_trainer": "passed",
                      "connect_loopback": "passed", "frame_inspection": "failed", "overwrite": "passed"}
    assert signal.SIGUSR1 in received and Path(C["canary"]).read_text() == "escaped"
    tcp = arena["listeners"][0]
    tcp.setblocking(False)
    tcp.accept()[0].close()  # the connection that the sandbox refused
