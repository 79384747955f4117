"""The run directory's lock and the signal handling of a run (no training: see
tests/integration/test_run_safety.py for two real `ladder run` processes)."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from ladder.errors import RunInUseError
from ladder.layout import LOCK
from ladder.runlock import Interrupted, RunLock, stop_on_signals

HOLD = """
import sys, time
from ladder.runlock import RunLock
with RunLock(sys.argv[1]):
    print("held", flush=True)
    sys.stdin.readline()
"""


def test_a_second_process_is_refused_and_named(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        facts = json.loads((run_dir / LOCK).read_text())
        assert facts["pid"] == holder.pid and facts["host"] == socket.gethostname()
        with pytest.raises(RunInUseError) as info:
            RunLock(run_dir).acquire()
        assert f"in use by another ladder run (pid {holder.pid} on {socket.gethostname()}" in str(info.value)
        assert f"kill {holder.pid}" in str(info.value)
    finally:
        holder.communicate("\n", timeout=30)
    assert holder.returncode == 0
    assert (run_dir / LOCK).read_text() == ""  # released cleanly: nothing to take over
    with RunLock(run_dir):  # free again
        assert json.loads((run_dir / LOCK).read_text())["pid"] == os.getpid()


def test_two_locks_in_one_process_exclude_each_other(tmp_path: Path) -> None:
    with RunLock(tmp_path), pytest.raises(RunInUseError, match=f"pid {os.getpid()}"):
        RunLock(tmp_path).acquire()


def test_the_lock_of_a_dead_process_is_taken_over_with_a_log_line(tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / LOCK).write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(), "started_at": 0}))
    with caplog.at_level(logging.WARNING, logger="ladder.runlock"), RunLock(tmp_path):
        assert json.loads((tmp_path / LOCK).read_text())["pid"] == os.getpid()
    assert f"taking over the lock of pid {dead.pid}" in caplog.text and "which is gone" in caplog.text

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="ladder.runlock"), RunLock(tmp_path):
        pass
    assert "taking over" not in caplog.text  # the previous holder released it


def _signal_self(signum: int) -> None:
    # To this thread, not the process: os.kill may deliver it to one of torch's threads, and on a
    # busy machine that thread may not run before the test has moved on (seen once in CI).
    signal.pthread_kill(threading.get_ident(), signum)


def test_sigterm_becomes_an_interruption_and_the_handlers_come_back(default_handlers: None) -> None:
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Interrupted) as info, stop_on_signals():
        _signal_self(signal.SIGTERM)
        for _ in range(1000):
            pass
    assert info.value.signum == signal.SIGTERM and isinstance(info.value, KeyboardInterrupt)
    assert str(info.value) == "interrupted by SIGTERM"
    assert signal.getsignal(signal.SIGTERM) == before


@pytest.fixture
def default_handlers() -> Iterator[None]:
    """SIGINT and SIGTERM as an interactive shell starts a process. stop_on_signals leaves alone
    a disposition someone else chose, and a suite started in the background (``cmd &`` or nohup
    in a script) inherits SIGINT ignored: the second-signal test then saw no warning."""
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        yield
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


def test_a_handler_someone_else_installed_is_left_alone(default_handlers: None) -> None:
    seen: list[int] = []
    signal.signal(signal.SIGINT, lambda signum, _frame: seen.append(signum))
    with stop_on_signals():
        _signal_self(signal.SIGINT)
        for _ in range(1000):
            pass
    assert seen == [signal.SIGINT]


def test_a_second_signal_while_stopping_does_not_cut_the_clean_up(caplog: pytest.LogCaptureFixture,
                                                                  default_handlers: None) -> None:
    caplog.set_level(logging.WARNING, logger="ladder.runlock")
    cleaned = False
    with pytest.raises(Interrupted), stop_on_signals():
        try:
            _signal_self(signal.SIGTERM)
            for _ in range(1000):
                pass
        finally:
            _signal_self(signal.SIGINT)  # impatient: Ctrl-C while stopping
            for _ in range(1000):
                pass
            cleaned = True
    assert cleaned and "SIGINT received while stopping" in caplog.text
