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



def _demo_rows(stages: tuple[str, ...]) -> list[dict[str, object]]:
    """Rows shaped like ``ladder demo``'s summary: every headline column, one regression."""
    from ladder.cli import _SUMMARY_COLUMNS

    values = {title: f"{40 + i}.5%" for i, (_, title) in enumerate(_SUMMARY_COLUMNS)}
    regression = {"metric": "behaviour.over_refusal", "before": 0.1, "after": 0.6, "compared_to": "base",
                  "n": 32, "worse": 16, "better": 0, "p_value": 0.001}
    rows: list[dict[str, object]] = [{"stage": "base", "status": "-", **values}]
    for i, name in enumerate(stages):
        rows.append({"stage": name, "status": "complete", **values, "last loss": f"{i}.125",
                     "regressions": [regression] if i == 1 else []})
    return rows


def _summary(rows: list[dict[str, object]], width: int) -> tuple[str, list[str], set[str]]:
    """The summary printed at ``width``, its words, and the words it is made of."""
    from ladder.evals.runner import describe

    out = io.StringIO()
    ProgressDisplay(Console(file=out, width=width, color_system=None), interactive=False).summary(rows)
    text = out.getvalue()
    assert max(len(line.rstrip()) for line in text.splitlines()) <= width
    sources = [str(k) for row in rows for k in row] + [str(v) for row in rows for v in row.values()]
    sources += [describe(r) for row in rows for r in row.get("regressions") or []]  # type: ignore[attr-defined]
    sources += [f"{row['stage']}:" for row in rows if row.get("regressions")]
    sources += ["ladder run ▼ over-refusal none",  # the table's own words (cells, title)
                "▼ 1 regression beyond noise (exact McNemar test, one-sided, alpha = 0.05):"]
    boxes = {ord(c): " " for c in "┏┓┗┛┡┩┳┻╇━┃│└┘┴─"}
    shown = [t for line in text.splitlines() for t in line.translate(boxes).split()]
    return text, shown, {w for source in sources for w in source.split()}


def test_the_demo_summary_at_80_columns_splits_no_word() -> None:
    text, shown, words = _summary(_demo_rows(("sft", "dpo", "grpo")), 80)
    assert [t for t in shown if t not in words] == []
    # Nothing was cut to fit: every stage, status and number is there whole.
    assert {"base", "sft", "dpo", "grpo", "complete", "40.5%", "48.5%", "2.125"} <= set(shown)
    assert "▼ over-refusal" in text and "pref. acc./token" in text


def test_a_long_run_continues_in_a_second_table_at_80_columns() -> None:
    stages = tuple(f"stage{i}" for i in range(9))
    text, shown, words = _summary(_demo_rows(stages), 80)
    assert [t for t in shown if t not in words] == []
    assert set(stages) <= set(shown) and shown.count("knowledge") == 2
    assert text.count("ladder run") == 1


def test_a_console_too_narrow_for_one_stage_shortens_cells_rather_than_splitting_words() -> None:
    _, shown, words = _summary(_demo_rows(("sft", "dpo")), 24)
    odd = [t for t in shown if t not in words]
    assert odd and all(t.endswith("…") and any(w.startswith(t[:-1]) for w in words) for t in odd)
