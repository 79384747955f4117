"""python_tests: hostile completions are contained in their own process and score 0."""

from __future__ import annotations

import os
import resource
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ladder.rewards import SandboxLimits, make_python_tests, python_tests, run_python_tests
from ladder.rewards.code import _netns_prefix, extract_code

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


def processes_mentioning(text: str) -> list[int]:
    """Pids whose command line contains ``text`` (the sandbox passes its work dir in argv)."""
    proc = Path("/proc")
    if not proc.is_dir():
        return []
    pids = []
    for entry in proc.iterdir():
        if entry.name.isdigit():
            try:
                if text.encode() in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:  # the process ended while we looked
                continue
    return pids


@pytest.fixture
def sandbox_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point tempfile at a private dir, to check the sandbox's work dirs are removed."""
    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    return root


def test_hostile_batch_is_contained(listener: socket.socket, sandbox_tmp: Path) -> None:
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
    assert status["network"] == "failed"
    assert status["wrong"] == "failed"
    assert elapsed < LIMITS.timeout_s * 3  # the loop did not stall the batch
    assert_no_connection(listener)
    # The test process is unharmed: its own limits are unchanged, no child is left, no work
    # dir is left behind.
    assert resource.getrlimit(resource.RLIMIT_AS) == limit_before
    assert processes_mentioning(str(sandbox_tmp)) == []
    assert list(sandbox_tmp.iterdir()) == []


def test_audit_hook_blocks_network_without_namespace(listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    limits = SandboxLimits(timeout_s=3.0, cpu_s=1, memory_mb=256, network_namespace=False)
    for code in (
        f"import socket\ns = socket.socket()\ns.connect(('127.0.0.1', {port}))",
        f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1)",
        "import socket\nsocket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', ('127.0.0.1', 9))",
    ):
        result = run_python_tests(code, "pass", limits)
        assert result.status == "failed", result.output
        assert "sandbox:" in result.output and "not allowed" in result.output
    assert_no_connection(listener)
    # asyncio still works: it only needs a Unix socketpair.
    ok = run_python_tests("import asyncio\nasync def one():\n    return 1", "assert asyncio.run(one()) == 1", limits)
    assert ok.passed, ok.output


def test_network_namespace_when_available() -> None:
    if not _netns_prefix() or not os.path.exists("/proc/self/ns/net"):
        pytest.skip("unshare -n is not available here (needs root or user namespaces)")
    ours = os.readlink("/proc/self/ns/net")
    show = "import os\nprint(os.readlink('/proc/self/ns/net'))"
    inside = run_python_tests(show, "pass", SandboxLimits(timeout_s=3.0, network_namespace=True))
    assert inside.passed and "net:[" in inside.output and ours not in inside.output
    outside = run_python_tests(show, "pass", SandboxLimits(timeout_s=3.0, network_namespace=False))
    assert outside.passed and ours in outside.output


@pytest.mark.parametrize(
    "code,tests,status",
    [
        ("import sys\nsys.exit(0)", "assert False", "exited_early"),
        ("import os\nos._exit(0)", "assert False", "exited_early"),
        ("import os\nos.system('true')", "pass", "failed"),
        ("import subprocess\nsubprocess.run(['true'])", "pass", "failed"),
        ("import os\nos.kill(os.getppid(), 9)", "pass", "failed"),
        ("import ctypes", "pass", "failed"),
        ("open('big', 'wb').write(b'x' * (2 * 1024 * 1024))", "pass", "failed"),
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
