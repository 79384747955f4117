"""Progress a person can follow while a pipeline runs.

On an interactive terminal, :class:`ProgressDisplay` keeps one live status line for the running
stage (``[2/3] dpo · step 40/120 · loss 0.512 · ETA 1m20s``) and leaves one line per finished
stage. On anything else (a log file, CI, a notebook's captured stream) it stays quiet: one
start line and one end line per stage through :mod:`logging`, nothing per step. Both end with
one summary table.

The CLI creates the display; the pipeline calls its methods and passes :meth:`log` as the
stages' ``on_log`` callback.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console
    from rich.status import Status

__all__ = ["ProgressDisplay", "format_duration"]

logger = logging.getLogger(__name__)

_STATUS_MARKS = {
    "done": "[green]✓[/]",
    "complete": "[green]✓[/]",
    "skipped": "[cyan]↷[/]",
    "cached": "[cyan]↷[/]",
    "failed": "[red]✗[/]",
}


def format_duration(seconds: float | None) -> str:
    """``"42s"``, ``"3m05s"``, ``"1h02m"``; ``"?"`` when unknown.

    >>> format_duration(42.4), format_duration(185), format_duration(3725)
    ('42s', '3m05s', '1h02m')
    """
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "?"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _number(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return str(value)
    return f"{value:.4g}"


class ProgressDisplay:
    """Stage-by-stage progress on a rich console (live) or through logging (quiet).

    Args:
        console: where to draw; defaults to a rich console on stderr.
        interactive: force live (``True``) or quiet (``False``) mode; defaults to whether the
            console is an interactive terminal.
    """

    def __init__(self, console: Console | None = None, *, interactive: bool | None = None) -> None:
        from rich.console import Console

        self.console = console or Console(stderr=True)
        self.interactive = self.console.is_interactive if interactive is None else interactive
        self._status: Status | None = None
        self._stage: dict[str, Any] | None = None
        self._last: dict[str, Any] = {}

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> ProgressDisplay:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the live line (safe to call twice)."""
        if self._status is not None:
            self._status.stop()
            self._status = None

    # -- events ------------------------------------------------------------------------------

    def _prefix(self) -> str:
        s = self._stage or {}
        return f"[{s.get('index', '?')}/{s.get('total', '?')}] {s.get('name', '?')}"

    def stage_started(self, index: int, total: int, name: str, kind: str) -> None:
        """A stage begins (``index`` is 1-based)."""
        self._stage = {"index": index, "total": total, "name": name, "kind": kind, "start": time.monotonic()}
        self._last = {}
        if self.interactive:
            self.close()
            self._status = self.console.status(self._text(), spinner="dots")
            self._status.start()
        else:
            logger.info("%s (%s) started", self._prefix(), kind)

    def log(self, record: Mapping[str, Any]) -> None:
        """A trainer log record: ``step``, maybe ``max_steps``, ``loss``, ``reward``."""
        if self._stage is None:
            return
        now = time.monotonic()
        step = record.get("step")
        if isinstance(step, (int, float)) and "first_step" not in self._stage:
            # Rate is measured from the first record: loading the model is not training speed.
            self._stage["first_step"], self._stage["first_time"] = step, now
        self._last.update({k: v for k, v in record.items() if k in ("step", "max_steps", "loss", "reward")})
        self._last["time"] = now
        if self._status is not None:
            self._status.update(self._text())

    def eta_s(self) -> float | None:
        """Seconds left in the current stage, from the step rate so far; ``None`` if unknown."""
        stage, last = self._stage or {}, self._last
        step, max_steps = last.get("step"), last.get("max_steps")
        if not stage or not isinstance(step, (int, float)) or not isinstance(max_steps, (int, float)):
            return None
        done = step - stage["first_step"]
        elapsed = last["time"] - stage["first_time"]
        if done <= 0 or elapsed <= 0 or max_steps <= 0:
            return None
        return max(0.0, (max_steps - step) * elapsed / done)

    def _line(self) -> str:
        parts = [f"{self._prefix()} ({(self._stage or {}).get('kind', '?')})"]
        last = self._last
        if "step" in last:
            total = last.get("max_steps")
            parts.append(f"step {last['step']}/{total}" if total else f"step {last['step']}")
        for key in ("loss", "reward"):
            if key in last:
                parts.append(f"{key} {_number(last[key])}")
        eta = self.eta_s()
        if eta is not None:
            parts.append(f"ETA {format_duration(eta)}")
        return " · ".join(parts)

    def _text(self) -> Any:
        from rich.text import Text

        return Text(self._line())  # plain text: names and paths are not markup

    def stage_finished(self, name: str, status: str, duration_s: float | None, output: str | None) -> None:
        """A stage ended: ``status`` is ``done``/``complete``, ``skipped`` (already done) or ``failed``."""
        prefix = self._prefix() if self._stage and self._stage.get("name") == name else name
        where = f" -> {output}" if output else ""
        if self.interactive:
            self.close()
            from rich.markup import escape

            mark = _STATUS_MARKS.get(status, "•")
            line = f"{prefix} {status} in {format_duration(duration_s)}{where}"
            self.console.print(f"{mark} {escape(line)}", highlight=False)
        else:
            log = logger.error if status == "failed" else logger.info
            log("%s %s in %s%s", prefix, status, format_duration(duration_s), where)
        self._stage, self._last = None, {}

    def summary(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """One table for the whole run; columns are the rows' keys, in first-seen order.

        Where that is wider than the console, the table is turned: one column per stage, one
        row per key (see :func:`_table`). Keys ending in ``_s`` are shown as durations, floats with 4 significant digits.
        A ``regressions`` value (a stage's list of regression entries, see
        :func:`ladder.evals.find_regressions`) is shown in red by metric, and each regression
        is spelled out under the table; a run whose stages were all compared and none
        regressed says so.
        """
        from rich.markup import escape

        from ladder.evals.runner import describe
        from ladder.evals.stats import ALPHA

        self.close()
        if not rows:
            return
        columns: list[str] = []
        for row in rows:
            columns.extend(k for k in row if k not in columns)
        found = [(row.get("stage"), r) for row in rows if isinstance(row.get("regressions"), list)
                 for r in row["regressions"]]
        cells = [[self._cell(col, row.get(col)) for col in columns] for row in rows]
        for table in _tables(columns, cells, self.console):
            self.console.print(table)
        test = f"exact McNemar test, one-sided, alpha = {ALPHA}"
        if found:
            plural = "s" if len(found) > 1 else ""
            self.console.print(f"[bold red]▼ {len(found)} regression{plural} beyond noise[/] ({test}):")
            for stage, entry in found:
                self.console.print(f"  [red]{escape(str(stage))}[/]: {escape(describe(entry))}", highlight=False)
        elif any(isinstance(row.get("regressions"), list) for row in rows):
            self.console.print(f"No regression beyond noise on the behaviour evaluations ({test}).")

    @staticmethod
    def _cell(col: str, value: Any) -> str:
        from rich.markup import escape

        if col == "regressions" and isinstance(value, list):
            # Short names in the table (the lines under it spell each one out).
            names = ", ".join(escape(str(r.get("metric", "?")).rsplit(".", 1)[-1].replace("_", "-"))
                              for r in value)
            return f"[bold red]▼ {names}[/]" if value else "none"
        if value is None:
            return ""
        if col.endswith("_s") and isinstance(value, (int, float)):
            return format_duration(value)
        return escape(_number(value))


def _tables(columns: Sequence[str], cells: Sequence[Sequence[str]], console: Console) -> list[Any]:
    """The summary as one row per stage if that fits the console, else one column per stage.

    A run's dozen headline columns do not fit 80 columns side by side, and squeezing them makes
    rich cut words ("complet/e"); stages as columns fit a handful of stages, and more stages
    continue in another table. Where not even one stage fits, cells are shortened with "…"
    rather than broken mid-word.
    """
    from rich.markup import escape
    from rich.measure import Measurement
    from rich.table import Table

    def build(headers: Sequence[str], body: Sequence[Sequence[str]], overflow: str = "fold") -> Table:
        table = Table(title="ladder run", title_justify="left")
        for header in headers:
            table.add_column(header, overflow=overflow)  # type: ignore[arg-type]
        for line in body:
            table.add_row(*line)
        return table

    def fits(table: Table) -> bool:
        return Measurement.get(console, console.options.update_width(10**6), table).maximum <= console.width

    wide = build(columns, cells)
    if fits(wide):
        return [wide]
    # Turned: the first column holds the keys, the "stage" row becomes the header.
    key = columns.index("stage") if "stage" in columns else 0
    keys = [i for i in range(len(columns)) if i != key]

    def turned(stages: Sequence[Sequence[str]], overflow: str = "fold") -> Table:
        return build(["", *(s[key] for s in stages)], [[escape(columns[i]), *(s[i] for s in stages)] for i in keys],
                     overflow)

    chunks: list[list[Sequence[str]]] = [[]]
    for stage in cells:
        if chunks[-1] and not fits(turned([*chunks[-1], stage])):
            chunks.append([])
        chunks[-1].append(stage)
    tables = [turned(chunk) if fits(turned(chunk)) else turned(chunk, "ellipsis") for chunk in chunks]
    for table in tables[1:]:  # one title over the lot
        table.title = None
    return tables
