"""python_tests: hostile completions are contained in their own process and score 0."""

from __future__ import annotations

import os
import resource
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ladder.rewards import (
    SandboxLimits,
    SandboxUnavailableError,
    make_python_tests,
    python_tests,
    run_python_tests,
)
from ladder.rewards._bwrap import Bubblewrap
from ladder.rewards.code import UNCONFINED_ENV, extract_code
from tests.unit.sandbox_support import children, require_sandbox

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="the sandbox needs POSIX process groups")

# Small limits keep the hostile cases fast.
LIMITS = SandboxLimits(timeout_s=3.0, cpu_s=1, memory_mb=256, max_output_bytes=8192)


def fenced(code: str) -> str:
    return f"Here is my solution:\n```python\n{code}\n```\n"


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A server on 127.0.0.1 that records whether anything connected."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    server.settimeout(0.2)
    yield server
    server.close()


def assert_no_connection(server: socket.socket) -> None:
    with pytest.raises(socket.timeout):
        server.accept()


@pytest.fixture(autouse=True)
def sandbox() -> None:
    require_sandbox()


def test_hostile_batch_is_contained(listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    cases = {
        "correct": "def add(a, b):\n    return a + b",
        "infinite_loop": "def add(a, b):\n    while True:\n        pass",
        "memory_hog": "hog = []\nwhile True:\n    hog.append(bytearray(50 * 1024 * 1024))",
        "output_flood": "import sys\nwhile True:\n    sys.stdout.write('x' * 65536)",
        "network": (
            "import socket\n"
            f"socket.create_connection(('127.0.0.1', {port}), timeout=1)\n"
            "def add(a, b):\n    return a + b"
        ),
        "wrong": "def add(a, b):\n    return a - b",
    }
    tests = "assert add(2, 3) == 5\nassert add(-1, 1) == 0"
    reward = make_python_tests(LIMITS, workers=2)
    logged: dict[str, list[Any]] = {}
    limit_before = resource.getrlimit(resource.RLIMIT_AS)
    threads = threading.active_count()
    start = time.monotonic()
    scores = reward(
        [fenced(code) for code in cases.values()],
        tests=[tests] * len(cases),
        log_extra=lambda column, values: logged.setdefault(column, values),
    )
    elapsed = time.monotonic() - start
    assert dict(zip(cases, scores)) == {
        "correct": 1.0,
        "infinite_loop": 0.0,
        "memory_hog": 0.0,
        "output_flood": 0.0,
        "network": 0.0,
        "wrong": 0.0,
    }
    status = dict(zip(cases, logged["python_tests_status"]))
    assert status["correct"] == "passed"
    assert status["infinite_loop"] in ("cpu_limit", "timeout")
    assert status["memory_hog"] == "memory_limit"
    assert status["output_flood"] == "output_limit"
    assert status["network"] == "failed"  # no interface: the connect fails
    assert status["wrong"] == "failed"
    assert elapsed < LIMITS.timeout_s * 3  # the loop did not stall the batch
    assert_no_connection(listener)
    # The test process is unharmed: its own limits are unchanged, no child process or thread is left.
    assert resource.getrlimit(resource.RLIMIT_AS) == limit_before
    assert children() == set()
    assert threading.active_count() == threads


def test_audit_hook_blocks_network_when_unconfined(listener: socket.socket) -> None:
    # Unconfined, the audit hook is the only layer between the code and the network.
    limits = SandboxLimits(timeout_s=3.0, cpu_s=1, memory_mb=256)
    for code in (
        f"import socket\ns = socket.socket()\ns.connect(('127.0.0.1', {listener.getsockname()[1]}))",
        f"import socket\nsocket.create_connection(('127.0.0.1', {listener.getsockname()[1]}), timeout=1)",
        "import socket\nsocket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', ('127.0.0.1', 9))",
    ):
        result = run_python_tests(code, "pass", limits, unconfined=True)
        assert result.status == "failed", result.output
        assert "sandbox:" in result.output and "not allowed" in result.output
    assert_no_connection(listener)
    # asyncio still works: it only needs a Unix socketpair.
    ok = run_python_tests(
        "import asyncio\nasync def one():\n    return 1", "assert asyncio.run(one()) == 1", limits, unconfined=True
    )
    assert ok.passed, ok.output


def test_sandbox_has_its_own_namespaces_and_nothing_else() -> None:
    ours = {kind: os.readlink(f"/proc/self/ns/{kind}") for kind in ("net", "pid", "mnt", "user", "ipc")}
    show = (
        "import os, sys\n"
        "ns = {k: os.readlink(f'/proc/self/ns/{k}') for k in ('net', 'pid', 'mnt', 'user', 'ipc')}\n"
        "print(ns, os.getuid(), os.getgid(), sorted(os.listdir('/')), sorted(os.listdir('/proc')), dict(os.environ))\n"
        "print(sys.path)\n"
    )
    result = run_python_tests(show, "assert os.getuid() == 65534\nassert os.getpid() <= 4", SandboxLimits(timeout_s=5.0))
    assert result.passed, (result.detail, result.output)
    for kind, ident in ours.items():
        assert kind in result.output and ident not in result.output
    assert "site-packages" in result.output  # on sys.path, but hidden: an empty read-only tmpfs
    assert "HF_TOKEN" not in result.output and "PYTHONPATH" not in result.output


@pytest.mark.parametrize(
    "code,tests,status",
    [
        ("import sys\nsys.exit(0)", "assert False", "exited_early"),
        ("import os\nos._exit(0)", "assert False", "exited_early"),
        ("import os\nos.system('true')", "pass", "failed"),
        ("import subprocess\nsubprocess.run(['true'])", "pass", "failed"),
        ("import os\nos.kill(os.getppid(), 9)", "pass", "failed"),
        ("import ctypes", "pass", "failed"),
        # SIGXFSZ kills the child, so the status says why (it used to say "failed")
        ("open('big', 'wb').write(b'x' * (2 * 1024 * 1024))", "pass", "file_limit"),
        ("open('local.txt', 'w').write('fine')", "assert open('local.txt').read() == 'fine'", "passed"),
        ("def f(:\n    pass", "pass", "failed"),
        ("def g():\n    return 3", "from solution import g as h\nassert h() == 3", "passed"),
    ],
    ids=[
        "sys.exit",
        "os._exit",
        "os.system",
        "subprocess",
        "kill-parent",
        "ctypes",
        "big-file",
        "local-file",
        "syntax-error",
        "import-solution",
    ],
)
def test_reward_hacks_and_escapes(code: str, tests: str, status: str) -> None:
    limits = SandboxLimits(timeout_s=3.0, cpu_s=1, memory_mb=256, max_file_bytes=1024 * 1024)
    result = run_python_tests(code, tests, limits)
    assert result.status == status, result.output
    assert result.passed == (status == "passed")


def test_cannot_write_outside_work_dir(tmp_path: Path) -> None:
    target = tmp_path / "escaped.txt"
    result = run_python_tests(f"open({str(target)!r}, 'w').write('x')", "pass", LIMITS)
    assert result.status == "failed" and not target.exists()
    result = run_python_tests(f"import os\nos.remove({str(tmp_path)!r})", "pass", LIMITS)
    assert result.status == "failed" and tmp_path.exists()


def test_wall_clock_timeout_kills_a_sleeper() -> None:
    start = time.monotonic()
    result = run_python_tests("import time\ntime.sleep(60)", "pass", SandboxLimits(timeout_s=1.0))
    assert result.status == "timeout" and time.monotonic() - start < 10


def test_extraction_and_skips() -> None:
    assert extract_code("```bash\nls\n```\n```python\nx = 1\n```\n```\ny = 2\n```") == "x = 1\n"
    assert extract_code("```\ny = 2\n```") == "y = 2\n"
    assert extract_code("<answer>\n```py\nz = 3\n```\n</answer>") == "z = 3\n"
    assert extract_code("```python\nignored = 1\n```<answer>w = 4</answer>") == "w = 4"
    assert extract_code("") is None
    reward = make_python_tests(LIMITS, workers=1)
    # no code: 0.0 without running anything; no tests: skipped (None); tests as a list (MBPP)
    assert reward(
        ["just prose", fenced("x = 1"), [{"role": "assistant", "content": fenced("def f():\n    return 2")}]],
        tests=["assert True", None, ["assert f() == 2", "assert f() != 3"]],
    ) == [0.0, None, 1.0]


def test_default_reward_has_sane_limits() -> None:
    assert python_tests([fenced("x = 1")], tests=["assert x == 1"]) == [1.0]
    with pytest.raises(ValueError):
        SandboxLimits(memory_mb=1)
    with pytest.raises(TypeError):
        SandboxLimits(cpu_s=1.5)  # type: ignore[arg-type]


def test_without_bubblewrap_it_refuses_and_says_what_to_install(caplog: pytest.LogCaptureFixture) -> None:
    missing = Bubblewrap(executable="/nonexistent/bwrap")
    with pytest.raises(SandboxUnavailableError) as info:
        run_python_tests("x = 1", "assert x == 1", backend=missing)
    message = str(info.value)
    assert "/nonexistent/bwrap" in message and "apt-get install -y bubblewrap" in message
    assert "unconfined=True" in message and UNCONFINED_ENV in message and "ladder[modal]" in message
    assert isinstance(info.value, ImportError)  # a MissingDependencyError, like other missing tools
    with pytest.raises(SandboxUnavailableError):
        make_python_tests(backend=missing)([fenced("x = 1")], tests=["assert x == 1"])
    # the opt-in runs it, with a warning naming what is given up
    with caplog.at_level("WARNING", logger="ladder.rewards.code"):
        loose = make_python_tests(unconfined=True, workers=1)
    assert "unconfined=True" in caplog.text and "network" in caplog.text
    assert loose([fenced("x = 1")], tests=["assert x == 1"]) == [1.0]
    with pytest.raises(ValueError, match="not both"):
        make_python_tests(unconfined=True, backend=missing)


def test_registered_reward_reads_the_unconfined_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    from ladder.rewards import code

    monkeypatch.setenv(UNCONFINED_ENV, "1")
    assert python_tests([fenced("import os\nuid = os.getuid()")], tests=[f"assert uid == {os.getuid()}"]) == [1.0]
    assert code._default().backend.confined is False
    monkeypatch.delenv(UNCONFINED_ENV)
    assert code._default().backend.confined is True


def test_process_limit_counts_what_the_code_starts() -> None:
    code = (
        "import os, time\nstarted = 0\n"
        "for _ in range(100):\n"
        "    try:\n"
        "        if os.fork() == 0:\n"
        "            time.sleep(5)\n"
        "            os._exit(0)\n"
        "    except OSError:\n"
        "        break\n"
        "    started += 1\n"
    )
    limits = SandboxLimits(timeout_s=5.0, max_processes=5, audit_hook=False)
    result = run_python_tests(code, "assert started == 5", limits)
    assert result.passed, (result.detail, result.output)
    assert children() == set()  # the five sleepers went with the sandbox
