"""The parent's half of python_tests (splitting tests, judging reports) and the Modal backend,
the latter against a fake ``modal`` module at the network boundary."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import types
from typing import Any

import pytest

from ladder.errors import MissingDependencyError
from ladder.rewards import ModalSandbox, SandboxBackend, make_python_tests
from ladder.rewards._sandbox_checks import decode, judge, plan_tests


def report(*lines: Any) -> bytes:
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


START, DONE = {"event": "start"}, {"done": True}


def test_expected_values_never_enter_the_steps() -> None:
    tests = "\n".join([
        "import math",
        "assert add(2, 3) == 5",
        "assert 7 == add(3, 4)",
        "assert 4 in divisors(12)",
        "assert set(pair()) == set((4, 5))",
        "assert math.isclose(area(2), 12.566, rel_tol=0.001)",
        "assert is_prime(7)",
        "assert not is_prime(8)",
        "assert f(1) == f(1)",
        "for x in range(3):\n    assert add(x, 0) == x",
        "assert (add(\n    1, 1) == 2)",
    ])
    plan = plan_tests(tests)
    sent = json.dumps(plan.steps)
    for expected in ("== 5", "7 ==", "4 in", "(4, 5)", "12.566", "not is_prime"):
        assert expected not in sent
    assert [c.op for c in plan.checks] == ["==", "==", "contains", "==", "isclose", "is truthy", "is falsy", "=="]
    assert [c.expected for c in plan.checks][:4] == [5, 7, 4, {4, 5}]
    assert plan.inside == 2  # `f(1) == f(1)` and the loop can only be judged inside
    kinds = [s["kind"] for s in plan.steps]
    assert kinds == ["exec", "value", "value", "value", "value", "value", "truth", "truth", "exec", "exec", "value"]


def test_judge_passes_only_honest_complete_reports() -> None:
    plan = plan_tests("x = 1\nassert add(2, 3) == 5\nassert is_prime(7)")
    ok = report(START, {"step": 1, "value": 5}, {"step": 2, "value": True}, DONE)
    assert judge(plan, ok).passed
    cases = {
        "wrong value": report(START, {"step": 1, "value": 4}, {"step": 2, "value": True}, DONE),
        "float close but not equal": report(START, {"step": 1, "value": 5.000001}, {"step": 2, "value": True}, DONE),
        "no done": report(START, {"step": 1, "value": 5}, {"step": 2, "value": True}),
        "missing answer": report(START, {"step": 2, "value": True}, DONE),
        "answered twice": report(START, {"step": 1, "value": 4}, {"step": 1, "value": 5}, {"step": 2, "value": True}, DONE),
        "an error": report(START, {"step": 0, "error": "NameError"}, {"step": 1, "value": 5}, {"step": 2, "value": True}, DONE),
        "unencodable": report(START, {"step": 1, "unencodable": "Anything"}, {"step": 2, "value": True}, DONE),
        "noise": report(START, {"step": 1, "value": 5}, {"step": 2, "value": True}, DONE) + b"garbage\n",
        "truthy is not True": report(START, {"step": 1, "value": 5}, {"step": 2, "value": 1}, DONE),
        "bad encoding": report(START, {"step": 1, "value": {"s": [[1]]}}, {"step": 2, "value": True}, DONE),
    }
    for name, raw in cases.items():
        verdict = judge(plan, raw)
        assert not verdict.passed, name
    assert "add(2, 3) == 5` failed: the value was 4" in judge(plan, cases["wrong value"]).detail
    assert "cannot be compared outside the sandbox" in judge(plan, cases["unencodable"]).detail
    assert judge(plan, cases["an error"]).error == "NameError"


def test_decode_rebuilds_plain_data_and_rejects_the_rest() -> None:
    encoded = {"t": [1, {"f": ["a"]}, {"d": [[{"t": [1, 2]}, {"b": "6869"}]]}, {"c": [1.0, -2.0]}, None, [True]]}
    assert decode(encoded) == (1, frozenset({"a"}), {(1, 2): b"hi"}, complex(1, -2), None, [True])
    for bad in ({"s": [[1, 2]]}, {"x": 1}, {"t": 1}, {"d": [[1]]}, {"a": 1, "b": 2}):
        with pytest.raises(ValueError):
            decode(bad)


# --------------------------------------------------------------------------------------------
# the Modal backend, up to the network boundary


class _Stream:
    def __init__(self) -> None:
        self.data = b""

    def read(self) -> bytes:
        return self.data


class _Stdin:
    def __init__(self, process: _Process) -> None:
        self.process, self.chunks = process, []

    def write(self, data: bytes) -> None:
        self.chunks.append(data)

    def write_eof(self) -> None:
        self.process.start(b"".join(self.chunks))

    def drain(self) -> None:
        pass


class _Process:
    """Runs the exec'd command here, as the remote container would, in a private work dir."""

    def __init__(self, args: tuple[str, ...], timeout: int) -> None:
        self.args, self.timeout = args, timeout
        self.stdin, self.stdout, self.stderr = _Stdin(self), _Stream(), _Stream()
        self.returncode: int | None = None

    def start(self, payload: bytes) -> None:
        with tempfile.TemporaryDirectory() as work:
            config = json.loads(self.args[-1])
            assert config["workdir"] == "/tmp/ladder-work"  # the container's path ...
            args = [sys.executable, *self.args[1:-1], json.dumps({**config, "workdir": work})]  # ... here
            try:
                done = subprocess.run(args, input=payload, capture_output=True, timeout=self.timeout, check=False)
                self.stdout.data, self.stderr.data, self.returncode = done.stdout, done.stderr, done.returncode
            except subprocess.TimeoutExpired:
                self.returncode = -1  # what modal's ContainerProcess.wait() reports past the deadline

    def wait(self) -> int:
        assert self.returncode is not None
        return self.returncode


def fake_modal(log: list[tuple[str, Any]]) -> types.ModuleType:
    modal = types.ModuleType("modal")

    class Sandbox:
        @staticmethod
        def create(**kwargs: Any) -> Sandbox:
            log.append(("create", kwargs))
            return Sandbox()

        def exec(self, *args: str, timeout: int, text: bool) -> _Process:
            log.append(("exec", {"args": args[:4], "timeout": timeout, "text": text}))
            return _Process(args, timeout)

        def terminate(self) -> None:
            log.append(("terminate", {}))

    modal.Sandbox = Sandbox  # type: ignore[attr-defined]
    modal.App = types.SimpleNamespace(lookup=lambda name, create_if_missing: log.append(("app", name)) or "app")  # type: ignore[attr-defined]
    modal.Image = types.SimpleNamespace(debian_slim=lambda python_version: f"image-{python_version}")  # type: ignore[attr-defined]
    return modal


def test_modal_backend_runs_each_program_in_its_own_sandbox(monkeypatch: pytest.MonkeyPatch) -> None:
    log: list[tuple[str, Any]] = []
    monkeypatch.setitem(sys.modules, "modal", fake_modal(log))
    backend = ModalSandbox(app_name="ladder-test", python_version="3.11")
    assert isinstance(backend, SandboxBackend) and backend.confined
    reward = make_python_tests(backend=backend, workers=1, timeout_s=2)
    good, bad, hang = ("def add(a, b):\n    return a + b", "def add(a, b):\n    return a - b",
                       "import time\ntime.sleep(30)")
    logged: dict[str, Any] = {}
    scores = reward([f"```python\n{c}\n```" for c in (good, bad, hang)], tests=["assert add(2, 3) == 5"] * 3,
                    log_extra=lambda column, values: logged.setdefault(column, values))
    assert scores == [1.0, 0.0, 0.0]
    assert logged["python_tests_status"] == ["passed", "failed", "timeout"]
    creates = [kw for kind, kw in log if kind == "create"]
    assert len(creates) == 3 and all(kw["block_network"] is True and kw["image"] == "image-3.11" for kw in creates)
    assert [kind for kind, _ in log].count("terminate") == 3
    execs = [kw for kind, kw in log if kind == "exec"]
    assert execs[0]["args"][:3] == ("python", "-I", "-B") and execs[0]["timeout"] == 2 and execs[0]["text"] is False


def test_modal_backend_without_modal_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "modal", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'ladder\[modal\]'"):
        make_python_tests(backend=ModalSandbox())(["```python\nx = 1\n```"], tests=["assert x == 1"])
