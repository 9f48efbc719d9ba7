"""Server-rendered SVG for comparing runs: a scatter and parallel coordinates.

No JavaScript: the server lays the charts out and a Jinja template (autoescaped,
so run names and param values stay text) writes the SVG. Lines, axes and text
use ``currentColor``, so the charts follow the page's light or dark theme; run
colours come from a scale of mid-lightness hues that reads on both.

An :class:`Axis` maps values to a position from 0 (bottom/left) to 1 (top/right):

>>> lr = axis("params.lr", ["0.1", "0.001", "0.01"])
>>> lr.kind, lr.log, [round(lr.position(v), 2) for v in (0.001, 0.01, 0.1)]
('numeric', False, [0.0, 0.09, 1.0])
>>> opt = axis("params.optimizer", ["sgd", "adam", None], missing_slot=True)
>>> opt.kind, opt.categories, opt.position(None), opt.position("sgd") > opt.position("adam")
('categorical', ('adam', 'sgd'), 0.0, True)
>>> svg = scatter_svg(lr, axis("metrics.acc", [0.8, 0.9, 0.85]),
...                   [Mark("r1", "a", (0.1, 0.8)), Mark("r2", "b", (0.001, 0.9))])
>>> svg.count("<circle")
2
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from markupsafe import Markup

from keel import formatting

MISSING = "(missing)"
# Past this many decades a linear axis crushes most points against zero.
LOG_DECADES = 3
# Room kept below the data for runs without a value (parallel coordinates).
_MISSING_GAP = 0.12
# Low to high: mid-lightness hues, readable on the light and the dark background.
SCALE = ("#3f6fd8", "#7b5bd6", "#c2489a", "#e0663a", "#d99a16")
NO_VALUE_COLOUR = "#8b93a1"

Value = str | float | int | None


@dataclass(frozen=True)
class Axis:
    """One chart axis: numeric (linear or log) or categorical, maybe with a slot for missing."""

    name: str
    kind: Literal["numeric", "categorical"]
    lo: float = 0.0
    hi: float = 1.0
    log: bool = False
    categories: tuple[str, ...] = ()
    missing_slot: bool = False

    @property
    def label(self) -> str:
        """What the axis says: its name, and that it is logarithmic when it is."""
        return f"{self.name} (log scale)" if self.log else self.name

    def position(self, value: Value) -> float | None:
        """Where ``value`` sits, 0..1; None when it cannot be placed on this axis."""
        if _absent(value):
            return 0.0 if self.missing_slot else None
        if self.kind == "categorical":
            text = str(value)
            if text not in self.categories:
                return None
            t = (self.categories.index(text) + 0.5) / len(self.categories)
        else:
            number = _number(value)
            if number is None or (self.log and number <= 0):
                return None
            t = self._fraction(number)
        return _MISSING_GAP + (1 - _MISSING_GAP) * t if self.missing_slot else t

    def _fraction(self, number: float) -> float:
        if self.log:
            lo, hi, number = math.log10(self.lo), math.log10(self.hi), math.log10(number)
        else:
            lo, hi = self.lo, self.hi
        return 0.5 if hi == lo else (number - lo) / (hi - lo)

    def ticks(self, most: int = 20) -> list[tuple[float, str]]:
        """``(position, label)`` pairs; at most ``most`` category labels are shown."""
        out: list[tuple[float, str]] = []
        if self.kind == "categorical":
            every = max(1, math.ceil(len(self.categories) / most))
            for i, name in enumerate(self.categories):
                if i % every == 0:
                    out.append((self.position(name) or 0.0, name))
        elif self.log:
            for k in range(math.ceil(math.log10(self.lo)), math.floor(math.log10(self.hi)) + 1):
                out.append((self.position(10.0**k) or 0.0, _power_label(k)))
        else:
            for v in nice_ticks(self.lo, self.hi):
                out.append((self.position(v) or 0.0, formatting.number(v)))
        if self.missing_slot:
            out.insert(0, (0.0, MISSING))
        return out

    def to_json(self) -> dict[str, Any]:
        """The axis as the JSON twin shows it."""
        return {
            "name": self.name,
            "kind": self.kind,
            "log": self.log,
            "min": self.lo if self.kind == "numeric" else None,
            "max": self.hi if self.kind == "numeric" else None,
            "categories": list(self.categories),
            "missing_slot": self.missing_slot,
        }


@dataclass(frozen=True)
class Mark:
    """One run on a chart: its values in axis order, and the value that colours it."""

    run_id: str
    run_name: str
    values: tuple[Value, ...]
    colour_value: float | None = None


def axis(name: str, values: Sequence[Value], *, missing_slot: bool = False) -> Axis:
    """The axis that fits ``values``: numeric when every present value is a finite number.

    ``missing_slot`` reserves the bottom for values that are absent, and is
    dropped when none are.

    >>> axis("x", ["1", "10", "100", "1000", "10000"]).label
    'x (log scale)'
    >>> axis("x", ["True", "False"]).kind
    'categorical'
    """
    present = [v for v in values if not _absent(v)]
    slot = missing_slot and len(present) < len(values)
    numbers = [_number(v) for v in present]
    if present and all(n is not None for n in numbers):
        found = [n for n in numbers if n is not None]
        lo, hi = min(found), max(found)
        log = lo > 0 and hi / lo > 10**LOG_DECADES
        return Axis(name, "numeric", lo, hi, log=log, missing_slot=slot)
    categories = tuple(sorted({str(v) for v in present}, key=_natural))
    return Axis(name, "categorical", categories=categories, missing_slot=slot)


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round numbers (1, 2 or 5 times a power of ten) from ``lo`` to ``hi``.

    >>> nice_ticks(0.0, 1.0)
    [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    >>> nice_ticks(3.0, 3.0)
    [3.0]
    """
    if hi == lo:
        return [lo]
    raw = (hi - lo) / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.ceil(lo / step - 1e-9)
    ticks = []
    k = first
    while k * step <= hi + step * 1e-9:
        ticks.append(round(k * step, 12))
        k += 1
    # A narrow range can hold a single round number: label the ends instead.
    return ticks if len(ticks) >= 2 else [lo, hi]


def colour(t: float | None) -> str:
    """The scale's colour at ``t`` in 0..1 (grey when there is no value).

    >>> colour(0.0), colour(1.0), colour(None)
    ('#3f6fd8', '#d99a16', '#8b93a1')
    """
    if t is None or t != t:
        return NO_VALUE_COLOUR
    t = min(max(t, 0.0), 1.0) * (len(SCALE) - 1)
    i = min(int(t), len(SCALE) - 2)
    a, b = _rgb(SCALE[i]), _rgb(SCALE[i + 1])
    f = t - i
    return "#" + "".join(f"{round(x + (y - x) * f):02x}" for x, y in zip(a, b, strict=True))


# -- the scatter ---------------------------------------------------------------

_SW, _SH = 600, 380
_S_LEFT, _S_RIGHT, _S_TOP, _S_BOTTOM, _S_INSET = 84, 24, 16, 56, 14


def scatter_layout(x: Axis, y: Axis, marks: Sequence[Mark]) -> dict[str, Any]:
    """Pixel geometry of a scatter: one point per mark (values ``(x, y)``), ticks, labels.

    >>> g = scatter_layout(axis("a", [0, 1]), axis("b", [0, 1]),
    ...                    [Mark("r1", "one", (0, 0)), Mark("r2", "two", (1, 1))])
    >>> [(p["cx"] < g["width"] / 2, p["cy"] > g["height"] / 2) for p in g["points"]]
    [(True, True), (False, False)]
    """
    pw, ph = _SW - _S_LEFT - _S_RIGHT, _SH - _S_TOP - _S_BOTTOM

    def px(t: float) -> float:
        return round(_S_LEFT + _S_INSET + t * (pw - 2 * _S_INSET), 1)

    def py(t: float) -> float:
        return round(_S_TOP + ph - _S_INSET - t * (ph - 2 * _S_INSET), 1)

    points = []
    for mark in marks:
        tx, ty = x.position(mark.values[0]), y.position(mark.values[1])
        if tx is None or ty is None:
            continue
        points.append(
            {
                "run_id": mark.run_id,
                "cx": px(tx),
                "cy": py(ty),
                "title": _tooltip(mark, (x, y)),
            }
        )
    return {
        "width": _SW,
        "height": _SH,
        "plot": {"x": _S_LEFT, "y": _S_TOP, "w": pw, "h": ph},
        "x_ticks": [{"at": px(t), "label": _short(s, 14), "full": s} for t, s in x.ticks(12)],
        "y_ticks": [{"at": py(t), "label": _short(s, 12), "full": s} for t, s in y.ticks(16)],
        "x_label": x.label,
        "y_label": y.label,
        "points": points,
    }


def scatter_svg(x: Axis, y: Axis, marks: Sequence[Mark]) -> Markup:
    """The scatter as SVG markup (every text escaped by the template)."""
    return _render("compare_svg_scatter.html", scatter_layout(x, y, marks))


# -- parallel coordinates --------------------------------------------------------

_P_LEFT, _P_RIGHT, _P_TOP, _P_BOTTOM, _P_GAP = 96, 96, 48, 44, 130


def parallel_layout(axes: Sequence[Axis], marks: Sequence[Mark]) -> dict[str, Any]:
    """Pixel geometry of parallel coordinates: one axis per entry, one polyline per mark.

    A mark's ``colour_value`` (0..1, or None for grey) picks its colour.

    >>> g = parallel_layout([axis("a", [0, 1]), axis("b", ["x", "y"])],
    ...                     [Mark("r1", "one", (0, "y"), 0.0), Mark("r2", "two", (1, "x"), 1.0)])
    >>> len(g["axes"]), [len(line["points"].split()) for line in g["lines"]]
    (2, [2, 2])
    """
    width = max(640, _P_LEFT + _P_RIGHT + _P_GAP * max(len(axes) - 1, 1))
    height = 400
    ph = height - _P_TOP - _P_BOTTOM
    span = (width - _P_LEFT - _P_RIGHT) / max(len(axes) - 1, 1)

    def py(t: float) -> float:
        return round(_P_TOP + ph - t * ph, 1)

    laid = []
    for i, ax in enumerate(axes):
        laid.append(
            {
                "x": round(_P_LEFT + i * span, 1),
                "label": _short(ax.label, 22),
                "full": ax.label,
                "ticks": [
                    {"at": py(t), "label": _short(s, 12), "full": s} for t, s in ax.ticks(14)
                ],
            }
        )
    lines = []
    for mark in marks:
        coords = []
        for ax, at, value in zip(axes, laid, mark.values, strict=True):
            t = ax.position(value)
            coords.append(f"{at['x']},{py(0.0 if t is None else t)}")
        lines.append(
            {
                "run_id": mark.run_id,
                "points": " ".join(coords),
                "colour": colour(mark.colour_value),
                "dashed": mark.colour_value is None,
                "title": _tooltip(mark, axes),
            }
        )
    return {
        "width": width,
        "height": height,
        "top": _P_TOP,
        "bottom": _P_TOP + ph,
        "axes": laid,
        "lines": lines,
        "scale": [{"offset": i / (len(SCALE) - 1), "colour": c} for i, c in enumerate(SCALE)],
    }


def parallel_svg(
    axes: Sequence[Axis], marks: Sequence[Mark], legend: tuple[str, str, str] | None = None
) -> Markup:
    """Parallel coordinates as SVG; ``legend`` is (metric, low label, high label)."""
    layout = parallel_layout(axes, marks)
    layout["legend"] = (
        {"name": _short(legend[0], 40), "low": legend[1], "high": legend[2]} if legend else None
    )
    return _render("compare_svg_parallel.html", layout)


# -- helpers -----------------------------------------------------------------------


def _render(template: str, layout: dict[str, Any]) -> Markup:
    from keel.server.ui.render import environment

    return Markup(environment().get_template(template).render(**layout))


def _tooltip(mark: Mark, axes: Sequence[Axis]) -> str:
    parts = [f"{ax.name} = {_show(v)}" for ax, v in zip(axes, mark.values, strict=False)]
    return "\n".join([mark.run_name, *parts])


def _show(value: Value) -> str:
    if _absent(value):
        return MISSING
    if isinstance(value, float | int):
        return formatting.number(value)
    return str(value)


def _absent(value: Value) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def _number(value: Value) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = float(value)
    else:
        try:
            number = float(str(value).strip())
        except ValueError:
            return None
    return number if math.isfinite(number) else None


def _natural(text: str) -> tuple[Any, ...]:
    number = _number(text)
    return (0, number, text) if number is not None else (1, 0.0, text.casefold())


def _power_label(k: int) -> str:
    return formatting.number(10.0**k) if -2 <= k <= 4 else f"1e{k}"


def _short(text: str, most: int) -> str:
    return text if len(text) <= most else text[: most - 1] + "…"


def _rgb(hex_colour: str) -> tuple[int, int, int]:
    return (int(hex_colour[1:3], 16), int(hex_colour[3:5], 16), int(hex_colour[5:7], 16))
