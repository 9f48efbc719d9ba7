"""Compare runs side by side, across experiments: ``/compare?runs=<id>&runs=<id>...``.

The page's state lives in its URL:

- ``runs`` (repeated): the runs, in order; at most :data:`MAX_RUNS`;
- ``all=1``: every param and metric row, not only those that differ;
- ``value=latest|min|max``: which value of each metric the tables and charts use;
- ``chart`` (repeated): the metric keys to overlay (default: the first few shared);
- ``sx`` / ``sy``: the scatter's axes, ``params.<key>`` or ``metrics.<key>``;
- ``pc``: the metric that ends and colours the parallel coordinates.

>>> from keel.store import open_store
>>> store = open_store("sqlite:///:memory:")
>>> compare_data(store, CompareQuery(runs=["nope"]))["unknown"]
['nope']
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from keel import formatting
from keel.entities import Run
from keel.errors import KeelError
from keel.server.ui import svg_charts
from keel.server.ui.render import respond, wants_json
from keel.store.base import TrackingStore

if TYPE_CHECKING:
    from keel.server.ui import UI

MAX_RUNS = 100
MAX_CHARTS = 12
DEFAULT_CHARTS = 4
MAX_AXES = 12
VALUES = ("latest", "min", "max")
# Substrings of metric keys where smaller is better; every other metric: larger is better.
LOWER_IS_BETTER = ("loss", "error", "mae", "mse", "rmse")


@dataclass
class CompareQuery:
    """The page's URL state, parsed and normalised."""

    runs: list[str] = field(default_factory=list)
    show_all: bool = False
    value: str = "latest"
    charts: list[str] = field(default_factory=list)
    sx: str = ""
    sy: str = ""
    pc: str = ""

    @classmethod
    def from_request(cls, request: Request) -> CompareQuery:
        """Read the query string; unknown values fall back to the defaults."""
        q = request.query_params
        runs = list(dict.fromkeys(r.strip() for r in q.getlist("runs") if r.strip()))
        value = q.get("value", "latest")
        return cls(
            runs=runs,
            show_all=q.get("all") == "1",
            value=value if value in VALUES else "latest",
            charts=list(dict.fromkeys(k for k in q.getlist("chart") if k)),
            sx=q.get("sx", ""),
            sy=q.get("sy", ""),
            pc=q.get("pc", ""),
        )

    def url_state(self) -> dict[str, Any]:
        """The non-default state, for building links with ``query(state, ...)``."""
        return {
            "runs": self.runs,
            "all": 1 if self.show_all else None,
            "value": None if self.value == "latest" else self.value,
            "chart": self.charts,
            "sx": self.sx or None,
            "sy": self.sy or None,
            "pc": self.pc or None,
        }


def register(ui: UI) -> None:
    @ui.page("/compare")
    def compare(ui: UI, request: Request) -> Response:
        query = CompareQuery.from_request(request)
        data = compare_data(ui.ctx.tracking, query)
        n = len(data["runs"])
        title = f"Compare {n} runs" if n != 1 else "Compare runs"
        if wants_json(request):
            return respond(request, "compare.html", data, title=title, nav="experiments")
        page = {**data, "svg": _svgs(data), "state": query.url_state()}
        return respond(request, "compare.html", page, title=title, nav="experiments")


def compare_data(store: TrackingStore, query: CompareQuery) -> dict[str, Any]:
    """Everything the compare page shows, JSON-ready (the page's JSON twin).

    Param and metric rows carry one value per run (keyed by run id) and a
    ``differs`` flag; the page shows only differing rows unless ``all=1``.
    """
    data: dict[str, Any] = {
        "requested": query.runs,
        "limit": MAX_RUNS,
        "refused": None,
        "unknown": [],
        "runs": [],
        "show_all": query.show_all,
        "value": query.value,
        "params": {"rows": [], "differing": 0, "identical": 0},
        "metrics": {"rows": [], "differing": 0, "identical": 0},
        "charts": {"available": [], "selected": [], "shown": []},
        "scatter": None,
        "parallel": None,
    }
    if len(query.runs) > MAX_RUNS:
        data["refused"] = (
            f"You picked {len(query.runs)} runs; the compare page takes at most {MAX_RUNS}. "
            "Narrow the selection in the runs table (a filter helps) and compare again."
        )
        return data
    runs, data["unknown"] = _load_runs(store, query.runs)
    data["runs"] = _run_rows(store, runs)
    if len(runs) < 2:
        return data
    ids = [r.info.run_id for r in runs]
    data["params"] = _param_table(runs)
    summaries = _summaries(store, runs)
    data["metrics"] = _metric_table(ids, summaries, query.value)
    data["charts"] = _charts(runs, summaries, query.charts)
    values = _axis_values(runs, data["params"], data["metrics"])
    data["scatter"] = _scatter(runs, values, data["params"], data["metrics"], query)
    data["parallel"] = _parallel(runs, values, data["params"], data["metrics"], query)
    return data


# -- loading -----------------------------------------------------------------------


def _load_runs(store: TrackingStore, run_ids: Sequence[str]) -> tuple[list[Run], list[str]]:
    found: list[Run] = []
    unknown: list[str] = []
    for run_id in run_ids:
        try:
            found.append(store.get_run(run_id))
        except KeelError:
            unknown.append(run_id)
    return found, unknown


def _run_rows(store: TrackingStore, runs: Sequence[Run]) -> list[dict[str, Any]]:
    names: dict[str, str | None] = {}
    rows = []
    for run in runs:
        info = run.info
        if info.experiment_id not in names:
            try:
                names[info.experiment_id] = store.get_experiment(info.experiment_id).name
            except KeelError:
                names[info.experiment_id] = None
        rows.append(
            {
                "run_id": info.run_id,
                "run_name": info.run_name or info.run_id,
                "experiment_id": info.experiment_id,
                "experiment_name": names[info.experiment_id],
                "status": info.status.value,
                "lifecycle_stage": info.lifecycle_stage.value,
                "start_time": info.start_time,
                "end_time": info.end_time,
                "duration_ms": info.end_time - info.start_time
                if info.end_time and info.start_time
                else None,
            }
        )
    return rows


@dataclass(frozen=True)
class _Summary:
    latest: float | None
    min: float | None
    max: float | None
    points: int


def _summaries(store: TrackingStore, runs: Sequence[Run]) -> dict[str, dict[str, _Summary]]:
    from keel.store.sql.overview import metric_summaries
    from keel.store.sql.store import SqlTrackingStore

    ids = [r.info.run_id for r in runs]
    if isinstance(store, SqlTrackingStore):
        found = metric_summaries(store, ids)
        return {
            run: {k: _Summary(s.latest, s.min, s.max, s.points) for k, s in keys.items()}
            for run, keys in found.items()
        }
    # Other stores (REST) have no summary query: read each history once.
    out: dict[str, dict[str, _Summary]] = {}
    for run in runs:
        for key, latest in run.data.metrics.items():
            finite = [
                m.value
                for m in store.get_all_metric_history(run.info.run_id, key)
                if m.value == m.value
            ]
            out.setdefault(run.info.run_id, {})[key] = _Summary(
                latest, min(finite, default=None), max(finite, default=None), len(finite)
            )
    return out


# -- tables ------------------------------------------------------------------------


def _same(values: Sequence[Any]) -> bool:
    """All equal, NaN equal to NaN, missing different from anything present."""
    first = values[0]
    for v in values[1:]:
        if v is None or first is None:
            if v is not first:
                return False
        elif isinstance(v, float) and isinstance(first, float) and v != v and first != first:
            continue
        elif v != first:
            return False
    return True


def _param_table(runs: Sequence[Run]) -> dict[str, Any]:
    keys = sorted({k for r in runs for k in r.data.params})
    rows = []
    for key in keys:
        values = {r.info.run_id: r.data.params.get(key) for r in runs}
        rows.append({"key": key, "values": values, "differs": not _same(list(values.values()))})
    differing = sum(1 for r in rows if r["differs"])
    return {"rows": rows, "differing": differing, "identical": len(rows) - differing}


def lower_is_better(key: str) -> bool:
    """Whether smaller values of metric ``key`` are better (losses and errors).

    >>> lower_is_better("val_loss"), lower_is_better("RMSE"), lower_is_better("accuracy")
    (True, True, False)
    """
    low = key.lower()
    return any(word in low for word in LOWER_IS_BETTER)


def _metric_table(
    ids: Sequence[str], summaries: dict[str, dict[str, _Summary]], chosen: str
) -> dict[str, Any]:
    keys = sorted({k for run in summaries.values() for k in run})
    rows = []
    for key in keys:
        cells = {run: summaries.get(run, {}).get(key) for run in ids}
        by_kind = {
            kind: {run: (getattr(s, kind) if s else None) for run, s in cells.items()}
            for kind in VALUES
        }
        values = by_kind[chosen]
        lower = lower_is_better(key)
        finite = {run: v for run, v in values.items() if v is not None and math.isfinite(v)}
        best: list[str] = []
        if len(finite) >= 2 and len(set(finite.values())) > 1:
            target = min(finite.values()) if lower else max(finite.values())
            best = [run for run, v in finite.items() if v == target]
        rows.append(
            {
                "key": key,
                "values": values,
                **by_kind,
                "points": {run: (s.points if s else 0) for run, s in cells.items()},
                "differs": not _same(list(values.values())),
                "lower_is_better": lower,
                "best": best,
            }
        )
    differing = sum(1 for r in rows if r["differs"])
    return {"rows": rows, "differing": differing, "identical": len(rows) - differing}


def _charts(
    runs: Sequence[Run], summaries: dict[str, dict[str, _Summary]], wanted: Sequence[str]
) -> dict[str, Any]:
    ids = [r.info.run_id for r in runs]
    having: dict[str, list[str]] = {}
    for run in ids:
        for key in summaries.get(run, {}):
            having.setdefault(key, []).append(run)
    # A chart overlays runs: only keys that two or more of them logged.
    available = sorted(k for k, owners in having.items() if len(owners) >= 2)
    selected = [k for k in wanted if k in having][:MAX_CHARTS]
    if not selected:
        selected = available[:DEFAULT_CHARTS]
    items = []
    for key in selected:
        owners = [run for run in ids if run in having[key]]
        pairs = [("run", run) for run in owners] + [("key", key), ("x", "step")]
        items.append({"key": key, "runs": owners, "src": "/charts/metric?" + urlencode(pairs)})
    return {"available": available, "selected": selected, "shown": items, "limit": MAX_CHARTS}


# -- scatter and parallel coordinates ------------------------------------------------


def _axis_values(
    runs: Sequence[Run], params: dict[str, Any], metrics: dict[str, Any]
) -> dict[str, list[Any]]:
    """``{"params.lr": [value per run], "metrics.acc": [...]}`` in run order."""
    ids = [r.info.run_id for r in runs]
    out: dict[str, list[Any]] = {}
    for row in params["rows"]:
        out[f"params.{row['key']}"] = [row["values"][i] for i in ids]
    for row in metrics["rows"]:
        out[f"metrics.{row['key']}"] = [row["values"][i] for i in ids]
    return out


def _numeric(values: Sequence[Any]) -> bool:
    return svg_charts.axis("", values).kind == "numeric"


def _scatter(
    runs: Sequence[Run],
    values: dict[str, list[Any]],
    params: dict[str, Any],
    metrics: dict[str, Any],
    query: CompareQuery,
) -> dict[str, Any]:
    differing = [f"params.{r['key']}" for r in params["rows"] if r["differs"]]
    metric_names = [f"metrics.{r['key']}" for r in metrics["rows"]]
    candidates = [n for n in differing if _numeric(values[n])] + differing
    candidates += metric_names + [f"params.{r['key']}" for r in params["rows"]]
    sx = query.sx if query.sx in values else next(iter(candidates), "")
    sy_options = [n for n in metric_names + candidates if n != sx]
    sy = query.sy if query.sy in values else next(iter(sy_options), "")
    result: dict[str, Any] = {
        "sx": sx,
        "sy": sy,
        "choices": list(values),
        "x": None,
        "y": None,
        "points": [],
        "left_out": [],
        "message": None,
    }
    if not sx or not sy:
        result["message"] = "A scatter needs two params or metrics; these runs log fewer."
        return result
    plotted, left_out = [], []
    for run, xv, yv in zip(runs, values[sx], values[sy], strict=True):
        if _missing(xv) or _missing(yv):
            left_out.append(run.info.run_name or run.info.run_id)
        else:
            plotted.append((run, xv, yv))
    result["left_out"] = left_out
    if not plotted:
        result["message"] = f"No run has both {sx} and {sy}."
        return result
    x = svg_charts.axis(sx, [p[1] for p in plotted])
    y = svg_charts.axis(sy, [p[2] for p in plotted])
    result["x"], result["y"] = x.to_json(), y.to_json()
    result["points"] = [
        {
            "run_id": run.info.run_id,
            "run_name": run.info.run_name or run.info.run_id,
            "x": xv,
            "y": yv,
            "x_position": x.position(xv),
            "y_position": y.position(yv),
        }
        for run, xv, yv in plotted
    ]
    return result


def _parallel(
    runs: Sequence[Run],
    values: dict[str, list[Any]],
    params: dict[str, Any],
    metrics: dict[str, Any],
    query: CompareQuery,
) -> dict[str, Any]:
    metric_names = [f"metrics.{r['key']}" for r in metrics["rows"]]
    pc = query.pc if query.pc in metric_names else next(iter(metric_names), "")
    differing = [f"params.{r['key']}" for r in params["rows"] if r["differs"]]
    room = MAX_AXES - (1 if pc else 0)
    names = differing[:room] + ([pc] if pc else [])
    result: dict[str, Any] = {
        "pc": pc,
        "choices": metric_names,
        "axes": [],
        "lines": [],
        "left_out": differing[room:],
        "colour": None,
        "message": None,
    }
    if len(names) < 2:
        result["message"] = (
            "Parallel coordinates need at least two axes: a param that differs between "
            "the runs and a metric."
        )
        return result
    axes = [svg_charts.axis(n, values[n], missing_slot=True) for n in names]
    result["axes"] = [a.to_json() for a in axes]
    colour_axis = axes[-1] if pc and axes[-1].kind == "numeric" else None
    if colour_axis is not None:
        result["colour"] = {"axis": pc, "min": colour_axis.lo, "max": colour_axis.hi}
    for i, run in enumerate(runs):
        row = [values[n][i] for n in names]
        result["lines"].append(
            {
                "run_id": run.info.run_id,
                "run_name": run.info.run_name or run.info.run_id,
                "values": dict(zip(names, row, strict=True)),
                "positions": [a.position(v) for a, v in zip(axes, row, strict=True)],
                "colour_value": _colour_value(colour_axis, row[-1]),
            }
        )
    return result


def _colour_value(colour_axis: svg_charts.Axis | None, value: Any) -> float | None:
    if colour_axis is None or _missing(value):
        return None
    # The colour spans the data, not the axis's room for missing values.
    plain = svg_charts.Axis(colour_axis.name, "numeric", colour_axis.lo, colour_axis.hi)
    return plain.position(value)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def _svgs(data: dict[str, Any]) -> dict[str, Any]:
    """The SVG markup for the page (never in the JSON twin)."""
    out: dict[str, Any] = {"scatter": None, "parallel": None}
    scatter = data["scatter"]
    if scatter and scatter["points"]:
        x = svg_charts.axis(scatter["sx"], [p["x"] for p in scatter["points"]])
        y = svg_charts.axis(scatter["sy"], [p["y"] for p in scatter["points"]])
        marks = [
            svg_charts.Mark(p["run_id"], p["run_name"], (p["x"], p["y"])) for p in scatter["points"]
        ]
        out["scatter"] = svg_charts.scatter_svg(x, y, marks)
    parallel = data["parallel"]
    if parallel and parallel["axes"]:
        names = [a["name"] for a in parallel["axes"]]
        columns = {n: [line["values"][n] for line in parallel["lines"]] for n in names}
        axes = [svg_charts.axis(n, columns[n], missing_slot=True) for n in names]
        marks = [
            svg_charts.Mark(
                line["run_id"],
                line["run_name"],
                tuple(line["values"][n] for n in names),
                line["colour_value"],
            )
            for line in parallel["lines"]
        ]
        colour = parallel["colour"]
        legend = (
            (colour["axis"], formatting.number(colour["min"]), formatting.number(colour["max"]))
            if colour
            else None
        )
        out["parallel"] = svg_charts.parallel_svg(axes, marks, legend)
    return out
