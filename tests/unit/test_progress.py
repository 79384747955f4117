"""Progress display: live on a terminal, one start and one end log line otherwise."""

from __future__ import annotations

import io
import logging

import pytest
from rich.console import Console

import ladder.progress as progress
from ladder.progress import ProgressDisplay, format_duration


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(progress.time, "monotonic", c)
    return c


def plain_console() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=False, width=120), out


def run_stage(display: ProgressDisplay, clock: Clock) -> None:
    display.stage_started(1, 2, "sft", "sft")
    clock.now += 30  # loading the model
    for step in (1, 2, 3, 4):
        display.log({"step": step, "max_steps": 10, "loss": 2.0 / step, "learning_rate": 1e-4})
        clock.now += 5
    display.stage_finished("sft", "done", 65.0, "runs/demo/01-sft")


def test_non_interactive_logs_one_start_and_one_end_line(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    console, out = plain_console()
    display = ProgressDisplay(console)
    assert display.interactive is False
    with caplog.at_level(logging.DEBUG, logger="ladder.progress"):
        run_stage(display, clock)
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["[1/2] sft (sft) started", "[1/2] sft done in 1m05s -> runs/demo/01-sft"]
    assert out.getvalue() == ""  # nothing per step on a non-terminal


def test_failed_stage_is_logged_as_an_error(clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    display = ProgressDisplay(plain_console()[0])
    with caplog.at_level(logging.INFO, logger="ladder.progress"):
        display.stage_started(2, 2, "dpo", "dpo")
        display.stage_finished("dpo", "failed", 3.0, None)
    assert caplog.records[-1].levelno == logging.ERROR
    assert caplog.records[-1].getMessage() == "[2/2] dpo failed in 3s"


def test_eta_from_the_step_rate_after_the_first_record(clock: Clock) -> None:
    display = ProgressDisplay(plain_console()[0])
    display.stage_started(1, 1, "grpo", "grpo")
    assert display.eta_s() is None
    clock.now += 100  # model loading does not count
    display.log({"step": 10, "max_steps": 100, "reward": 0.25})
    assert display.eta_s() is None  # one record: no rate yet
    clock.now += 10
    display.log({"step": 20, "max_steps": 100, "reward": 0.5})
    assert display.eta_s() == pytest.approx(80.0)  # 1 step/s, 80 steps left
    assert display._line() == "[1/1] grpo (grpo) · step 20/100 · reward 0.5 · ETA 1m20s"


def test_record_without_max_steps_shows_the_step_only(clock: Clock) -> None:
    display = ProgressDisplay(plain_console()[0])
    display.stage_started(1, 1, "sft", "sft")
    display.log({"step": 3, "loss": 1.23456})
    assert display.eta_s() is None
    assert display._line() == "[1/1] sft (sft) · step 3 · loss 1.235"


def test_interactive_leaves_one_line_per_finished_stage(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120, color_system=None)
    display = ProgressDisplay(console, interactive=True)
    with caplog.at_level(logging.DEBUG, logger="ladder.progress"):
        run_stage(display, clock)
    display.close()
    assert caplog.records == []
    assert "✓ [1/2] sft done in 1m05s -> runs/demo/01-sft" in out.getvalue()


def test_interactive_marks_failures(clock: Clock) -> None:
    out = io.StringIO()
    display = ProgressDisplay(
        Console(file=out, force_terminal=True, width=120, color_system=None), interactive=True
    )
    display.stage_started(1, 1, "grpo", "grpo")
    display.stage_finished("grpo", "failed", 12.0, None)
    assert "✗ [1/1] grpo failed in 12s" in out.getvalue()
    assert display._status is None  # the live line is gone


def test_summary_is_one_table(clock: Clock) -> None:
    console, out = plain_console()
    display = ProgressDisplay(console)
    display.summary(
        [
            {"stage": "sft", "status": "done", "duration_s": 65.2, "loss": 0.51234},
            {"stage": "dpo", "status": "skipped", "duration_s": None, "pref_acc": 0.75},
        ]
    )
    text = out.getvalue()
    lines = text.splitlines()
    header = next(line for line in lines if "stage" in line)
    for col in ("stage", "status", "duration_s", "loss", "pref_acc"):
        assert col in header
    sft = next(line for line in lines if "sft" in line)
    assert "1m05s" in sft and "0.5123" in sft
    dpo = next(line for line in lines if " dpo " in line)
    assert "skipped" in dpo and "0.75" in dpo


def test_summary_of_nothing_prints_nothing() -> None:
    console, out = plain_console()
    ProgressDisplay(console).summary([])
    assert out.getvalue() == ""


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (59.4, "59s"),
        (60, "1m00s"),
        (3599, "59m59s"),
        (3600, "1h00m"),
        (None, "?"),
        (float("nan"), "?"),
    ],
)
def test_format_duration(seconds: float | None, text: str) -> None:
    assert format_duration(seconds) == text
