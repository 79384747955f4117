"""How the report writes numbers: values, changes, durations, intervals; and which way is good.

The HTML and Markdown reports both format through these functions, so the two always agree,
and tests can recompute the text a cell should show from ``metrics.json``.
"""

from __future__ import annotations

import math
from typing import Any, Literal

__all__ = ["Unit", "delta_tone", "format_delta", "format_duration", "format_interval", "format_value", "is_number"]

Unit = Literal["pct", "float", "int", "tokens", "seconds"]


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def format_value(value: Any, unit: Unit) -> str:
    """The text a metric cell shows.

    >>> format_value(0.4567, "pct"), format_value(2.34567, "float"), format_value(12345, "int")
    ('45.7%', '2.346', '12,345')
    >>> format_value(42.25, "tokens"), format_value(75.5, "seconds"), format_value(None, "pct")
    ('42.2', '1 min 16 s', '—')
    """
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if not is_number(value):
        return str(value)
    v = float(value)
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "∞" if v > 0 else "−∞"
    if unit == "pct":
        return f"{v * 100:.1f}%"
    if unit == "int":
        return f"{round(v):,}"
    if unit == "tokens":
        return f"{v:.1f}"
    if unit == "seconds":
        return format_duration(v)
    if v != 0 and abs(v) < 1e-3:
        return f"{v:.2e}"
    return f"{v:,.3f}"


def format_duration(seconds: float) -> str:
    """``12.3 s``, ``1 min 15.5 s``, ``2 h 05 min``.

    >>> format_duration(3.14159), format_duration(7500)
    ('3.1 s', '2 h 05 min')
    """
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        minutes, rest = divmod(round(seconds), 60)
        return f"{minutes} min {rest:02d} s"
    hours, rest_s = divmod(seconds, 3600)
    return f"{int(hours)} h {int(rest_s // 60):02d} min"


def format_delta(value: Any, previous: Any, unit: Unit) -> str | None:
    """The change from ``previous`` to ``value`` (``None`` when either is not a number).

    Rates move in percentage points.

    >>> format_delta(0.5, 0.25, "pct"), format_delta(1.0, 1.5, "float"), format_delta(3, 3, "int")
    ('+25.0 pt', '−0.500', '±0')
    """
    if not (is_number(value) and is_number(previous)):
        return None
    diff = float(value) - float(previous)
    if not math.isfinite(diff):
        return None
    if unit == "pct":
        text, zero = f"{abs(diff) * 100:.1f} pt", round(diff * 100, 1) == 0
    elif unit in ("int",):
        text, zero = f"{abs(round(diff)):,}", round(diff) == 0
    elif unit in ("tokens", "seconds"):
        text, zero = f"{abs(diff):.1f}", round(diff, 1) == 0
    else:
        text, zero = f"{abs(diff):.3f}", round(diff, 3) == 0
    if zero:
        return "±0"
    return ("+" if diff > 0 else "−") + text


def delta_tone(value: Any, previous: Any, direction: int) -> str:
    """``good``, ``bad`` or ``neutral`` for a movement, given the metric's direction.

    >>> delta_tone(0.6, 0.5, 1), delta_tone(0.6, 0.5, -1), delta_tone(0.6, 0.5, 0)
    ('good', 'bad', 'neutral')
    """
    if direction == 0 or not (is_number(value) and is_number(previous)):
        return "neutral"
    diff = float(value) - float(previous)
    if not math.isfinite(diff) or diff == 0:
        return "neutral"
    return "good" if diff * direction > 0 else "bad"


def format_interval(low: Any, high: Any) -> str | None:
    """A rate's interval as percentages, ``"[47.3–75.8]"`` (``None`` unless both are numbers).

    >>> format_interval(0.4731, 0.7577), format_interval(None, 1.0)
    ('[47.3–75.8]', None)
    """
    if not (is_number(low) and is_number(high)):
        return None
    return f"[{float(low) * 100:.1f}–{float(high) * 100:.1f}]"
