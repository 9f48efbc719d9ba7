"""Numbers, sizes, durations and times as people read them (HTML pages, the web UI).

>>> number(1234567.0), number(0.000123), number(0.91234), number(None)
('1,234,567', '1.230e-04', '0.9123', '–')
>>> size(1536), duration_ms(93_500)
('1.5 KB', '1 min 34 s')
"""

from __future__ import annotations

import datetime as _dt
import html
from typing import Any


def esc(value: Any) -> str:
    """``value`` as text safe inside HTML, attributes included."""
    return html.escape(str(value), quote=True)


def number(value: Any) -> str:
    """A number as people read it: 4 significant digits, thousands separated."""
    if value is None:
        return "–"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return esc(value)
    if value != value:  # NaN
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "∞" if value > 0 else "-∞"
    if isinstance(value, int) or (float(value).is_integer() and abs(value) < 1e15):
        return f"{int(value):,}"
    if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e6):
        return f"{value:.3e}"
    return f"{value:,.4g}"


def size(n_bytes: int | None) -> str:
    """A byte count in B, KB, MB, GB (powers of 1024)."""
    if n_bytes is None:
        return "–"
    value = float(n_bytes)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def duration_ms(ms: int | float | None) -> str:
    """A duration: ``850 ms``, ``12.3 s``, ``4 min 05 s``, ``2 h 03 min``."""
    if ms is None or ms < 0:
        return "–"
    if ms < 1000:
        return f"{int(ms)} ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, sec = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {sec:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def timestamp_ms(ms: int | None) -> str:
    """A millisecond epoch time as UTC ``2026-11-22 21:58:57``."""
    if not ms:
        return "–"
    moment = _dt.datetime.fromtimestamp(ms / 1000, tz=_dt.timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%S")
