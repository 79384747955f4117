"""The CLI lets torch's idle CPU threads sleep (OMP_WAIT_POLICY=PASSIVE) unless the user said otherwise."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from ladder.cli import main


def test_the_cli_sets_passive_waiting_before_torch_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_WAIT_POLICY", "")  # recorded, so that the test's value is undone after it
    monkeypatch.delenv("OMP_WAIT_POLICY")
    assert main(["stages"]) == 0
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"


def test_a_value_in_the_environment_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    assert main(["stages"]) == 0
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"


def test_the_setting_is_made_before_torch_is_imported() -> None:
    # libgomp reads OMP_WAIT_POLICY once, when torch loads it: the CLI must not import torch first.
    code = ("import sys, os; os.environ.pop('OMP_WAIT_POLICY', None); from ladder.cli import main; "
            "main(['stages']); print('torch' in sys.modules, os.environ.get('OMP_WAIT_POLICY'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split()[-2:] == ["False", "PASSIVE"]


def _clean(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT"):
        monkeypatch.setenv(name, "")  # recorded, so that the test's value is undone after it
        monkeypatch.delenv(name)


def test_a_model_command_on_an_idle_machine_spins_briefly(monkeypatch: pytest.MonkeyPatch) -> None:
    from ladder.cli import QUIET_SPINCOUNT, cpu_thread_defaults

    _clean(monkeypatch)
    cpu_thread_defaults("run", busy=0.05)
    assert os.environ.get("GOMP_SPINCOUNT") == QUIET_SPINCOUNT and "OMP_WAIT_POLICY" not in os.environ


@pytest.mark.parametrize(("command", "busy"), [("run", 1.0), ("demo", 0.5), ("run", None), ("stages", 0.0)])
def test_a_busy_machine_or_a_light_command_sleeps_at_once(
        monkeypatch: pytest.MonkeyPatch, command: str, busy: float | None) -> None:
    from ladder import cli

    _clean(monkeypatch)
    if busy is None:  # the load could not be read (no /proc/stat)
        monkeypatch.setattr(cli, "other_cpu_load", lambda interval=0.1: None)
    cli.cpu_thread_defaults(command, busy=busy)
    assert os.environ.get("OMP_WAIT_POLICY") == "PASSIVE" and "GOMP_SPINCOUNT" not in os.environ


def test_a_spin_count_in_the_environment_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    from ladder.cli import cpu_thread_defaults

    _clean(monkeypatch)
    monkeypatch.setenv("GOMP_SPINCOUNT", "0")
    cpu_thread_defaults("run", busy=2.0)
    assert os.environ["GOMP_SPINCOUNT"] == "0" and "OMP_WAIT_POLICY" not in os.environ


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="reads /proc/stat")
def test_other_cpu_load_sees_a_busy_process() -> None:
    from ladder.cli import other_cpu_load

    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        import time

        time.sleep(0.3)
        busy = other_cpu_load(0.3)
    finally:
        hog.kill()
        hog.wait()
    assert busy is not None and 0.6 <= busy <= (os.cpu_count() or 1)
