"""Where a checked reward runs, and how its time limit is enforced: process, main, thread."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from typing import Any

import pytest

from ladder.errors import ConfigError, RewardError
from ladder.rewards import checked_reward, make_python_tests
from ladder.rewards._isolation import _DEADLINE_SIGNAL
from tests.unit.sandbox_support import children, processes_with

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="process isolation forks (Linux)")


def alarm_reward(completions: list[Any], **kwargs: Any) -> list[float]:
    """math-verify's pattern: a SIGALRM handler and signal.alarm around each parse."""

    def on_alarm(signum: int, frame: Any) -> None:
        raise TimeoutError

    previous = signal.signal(signal.SIGALRM, on_alarm)
    try:
        signal.alarm(5)
        return [float(len(str(c)) > 0) for c in completions]
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def test_a_hung_reward_leaves_no_thread_and_no_process(tmp_path: Any) -> None:
    marker = f"ladder-hung-{secrets.token_hex(4)}"

    def hangs(completions: list[Any], **kwargs: Any) -> list[float]:
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", marker])
        time.sleep(60)
        return [1.0] * len(completions)

    checked = checked_reward(hangs, "hangs", timeout_s=0.5)
    assert checked.isolation == "process"
    threads, kids = threading.active_count(), children()
    for _ in range(3):  # three hung calls, as in the review: nothing accumulates
        start = time.monotonic()
        with pytest.raises(RewardError, match=r"'hangs' did not return within 0.5 s.*killed"):
            checked(["a"])
        assert time.monotonic() - start < 5
    assert threading.active_count() == threads
    assert children() == kids
    assert processes_with(marker) == []  # the subprocess it started went with it


def test_thread_isolation_is_the_one_that_leaks() -> None:
    release = threading.Event()

    def waits(completions: list[Any], **kwargs: Any) -> list[float]:
        release.wait(30)
        return [1.0]

    threads = threading.active_count()
    with pytest.raises(RewardError, match="left running in the background"):
        checked_reward(waits, timeout_s=0.2, isolation="thread")(["a"])
    assert threading.active_count() == threads + 1
    release.set()


def test_signal_alarm_rewards_work_in_process_and_main_not_in_thread() -> None:
    assert checked_reward(alarm_reward)(["a", ""]) == [1.0, 0.0]  # the child's only thread is its main
    assert checked_reward(alarm_reward, isolation="main")(["a", ""]) == [1.0, 0.0]
    with pytest.raises(RewardError, match="signal only works in main thread"):
        checked_reward(alarm_reward, isolation="thread")(["a"])
    assert signal.getsignal(signal.SIGALRM) in (signal.SIG_DFL, signal.default_int_handler, None)


def test_main_thread_deadline_interrupts_and_cleans_up() -> None:
    def sleeps(completions: list[Any], **kwargs: Any) -> list[float]:
        try:
            time.sleep(30)
        except Exception:  # noqa: BLE001, S110 - a reward that swallows errors still gets stopped
            pass
        return [1.0]

    sleeps.isolation = "main"  # type: ignore[attr-defined]  # the declared mode
    checked = checked_reward(sleeps, timeout_s=0.3)
    assert checked.isolation == "main"
    handler, threads = signal.getsignal(_DEADLINE_SIGNAL), threading.active_count()
    start = time.monotonic()
    with pytest.raises(RewardError, match=r"'sleeps' did not return within 0.3 s.*main thread"):
        checked(["a"])
    assert time.monotonic() - start < 3
    assert signal.getsignal(_DEADLINE_SIGNAL) == handler and threading.active_count() == threads
    # a quick main-thread reward is not hit by a late deadline signal
    quick = checked_reward(lambda completions, **kw: [0.5] * len(completions), "quick", timeout_s=0.05, isolation="main")
    for _ in range(20):
        assert quick(["a"]) == [0.5]
    time.sleep(0.1)


def test_main_isolation_refuses_other_threads() -> None:
    checked = checked_reward(alarm_reward, isolation="main")
    errors: list[BaseException] = []
    worker = threading.Thread(target=lambda: errors.append(pytest.raises(RewardError, checked, ["a"]).value))
    worker.start()
    worker.join()
    assert "asks for the main thread" in str(errors[0]) and "isolation='process'" in str(errors[0])


def test_log_hooks_come_back_from_the_child_other_state_does_not() -> None:
    calls: list[int] = []

    def logs(completions: list[Any], log_extra: Any, log_metric: Any, **kwargs: Any) -> list[float]:
        calls.append(1)  # happens in the forked copy only
        log_extra("length", [len(c) for c in completions])
        log_metric("mean_length", sum(map(len, completions)) / len(completions))
        return [1.0] * len(completions)

    extra: list[tuple[str, list[int]]] = []
    metrics: list[tuple[str, float]] = []
    scores = checked_reward(logs)(
        ["ab", "abcd"], log_extra=lambda c, v: extra.append((c, v)), log_metric=lambda n, v: metrics.append((n, v))
    )
    assert scores == [1.0, 1.0]
    assert extra == [("length", [2, 4])] and metrics == [("mean_length", 3.0)]
    assert calls == []


def test_a_reward_that_dies_is_named() -> None:
    def exits(completions: list[Any], **kwargs: Any) -> list[float]:
        os._exit(3)

    def crashes(completions: list[Any], **kwargs: Any) -> list[float]:
        import ctypes

        ctypes.string_at(0)
        return [1.0]

    with pytest.raises(RewardError, match=r"'exits' raised RewardCrash.*exit status 3.*sample 0"):
        checked_reward(exits)(["a"])
    with pytest.raises(RewardError, match=r"'crashes' raised RewardCrash.*signal 11"):
        checked_reward(crashes)(["a"])


@pytest.mark.parametrize(
    "value,kind",
    [(True, "bool"), ({"score": 1.0}, "dict"), ("1.0", "str"), (1 + 0j, "complex"), ([1.0], "list")],
)
def test_rewards_must_return_floats_ints_or_none(value: Any, kind: str) -> None:
    def loose(completions: list[Any], **kwargs: Any) -> list[Any]:
        return [0.5, value]

    with pytest.raises(RewardError) as info:
        checked_reward(loose, "loose")(["first", "second one"])
    message = str(info.value)
    assert "'loose'" in message and "sample 1 of 2" in message and "second one" in message
    assert f"({kind})" in message and repr(value)[:20] in message and "float(...)" in message


class Score(float):
    """numpy.float64 is such a subclass."""


def test_ints_and_float_subclasses_pass_and_unpicklable_results_are_named() -> None:
    assert checked_reward(lambda completions, **kw: [1, Score(0.25), None])(["a", "b", "c"]) == [1.0, 0.25, None]

    def generator(completions: list[Any], **kwargs: Any) -> Any:
        return (1.0 for _ in completions)

    with pytest.raises(RewardError, match="'generator' returned generator, not a list"):
        checked_reward(generator)(["a"])


def test_isolation_settings_are_checked() -> None:
    def fn(completions: list[Any], **kwargs: Any) -> list[float]:
        return [1.0]

    with pytest.raises(ConfigError, match="isolation must be one of process, thread, main"):
        checked_reward(fn, isolation="vm")
    # python_tests declares thread: its programs already run in killable sandboxes
    assert checked_reward(make_python_tests()).isolation == "thread"
    assert checked_reward(checked_reward(fn, isolation="main")).isolation == "main"
