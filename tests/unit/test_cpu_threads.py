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
