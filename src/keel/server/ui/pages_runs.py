"""The runs table of an experiment: chosen columns, filter, sort, pages, CSV, live refresh.

Everything the table shows is in its URL (``/experiments/<id>?q=...&cols=...&sort=...``),
so a reload, the back button or a link in a mail reproduces the view:

- ``q``: a filter in Keel's search grammar (MLflow's, plus ``OR`` and parentheses);
- ``name``: plain text the run name must contain;
- ``cols`` (repeated): column ids ``params.<key>``, ``metrics.<key>`` (latest value),
  ``metrics.<key>.min`` / ``.max``, ``tags.<key>``; ``cols_set=1`` marks an explicit
  choice (even an empty one), otherwise the first params and metrics are shown;
- ``sort`` (a column id or ``start_time``, ``run_name``, ``status``) and ``dir``;
- ``page`` and ``per``; ``hide_constant=1`` hides columns equal on every row shown;
- ``deleted=1`` includes deleted runs.

>>> column_label("metrics.loss.min"), order_clause("params.lr", "asc")
('loss (min)', 'params.`lr` ASC')
"""

from __future__ import annotations

import csv
import io
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from keel.entities import Run, RunStatus, ViewType
from keel.errors import InvalidParameter, KeelError
from keel.formatting import timestamp_ms
from keel.search.filter import parse_filter
from keel.search.order import parse_order_by
from keel.server.ui.render import respond, wants_json

if TYPE_CHECKING:
    from keel.server.ui import UI
    from keel.store.sql.overview import RunColumns
    from keel.store.sql.store import SqlTrackingStore

PAGE_SIZES = (25, 50, 100, 200)
DEFAULT_PER = 50
COUNT_CAP = 10_000
DEFAULT_PARAMS = 8
DEFAULT_METRICS = 8
CSV_LIMIT = 100_000
COLUMNS_TTL_S = 15.0  # after this, a request triggers a refresh (it still gets the old keys)
ATTRIBUTE_SORTS = {"start_time", "end_time", "run_name", "status"}


@dataclass(frozen=True, slots=True)
class View:
    """The table's state, parsed from (and written back to) the URL."""

    q: str
    name: str
    cols: tuple[str, ...]
    cols_set: bool
    sort: str
    dir: str
    page: int
    per: int
    hide_constant: bool
    deleted: bool

    @classmethod
    def from_request(cls, request: Request) -> View:
        params = request.query_params
        per = _int(params.get("per"), DEFAULT_PER)
        return cls(
            q=params.get("q", "").strip(),
            name=params.get("name", "").strip(),
            cols=tuple(dict.fromkeys(c for c in params.getlist("cols") if _column_group(c))),
            cols_set=params.get("cols_set") == "1",
            sort=params.get("sort", "start_time"),
            dir="asc" if params.get("dir") == "asc" else "desc",
            page=max(1, _int(params.get("page"), 1)),
            per=per if per in PAGE_SIZES else DEFAULT_PER,
            hide_constant=params.get("hide_constant") == "1",
            deleted=params.get("deleted") == "1",
        )

    def as_query(self) -> dict[str, Any]:
        """The URL parameters that reproduce this view (defaults left out)."""
        return {
            "q": self.q,
            "name": self.name,
            "cols": list(self.cols),
            "cols_set": "1" if self.cols_set else None,
            "sort": None if self.sort == "start_time" else self.sort,
            "dir": None if self.dir == "desc" else self.dir,
            "page": None if self.page == 1 else self.page,
            "per": None if self.per == DEFAULT_PER else self.per,
            "hide_constant": "1" if self.hide_constant else None,
            "deleted": "1" if self.deleted else None,
        }


def _int(text: str | None, default: int) -> int:
    try:
        return int(text) if text else default
    except ValueError:
        return default


def _column_group(column: str) -> str | None:
    group, _, rest = column.partition(".")
    if group in ("params", "metrics", "tags") and rest:
        return group
    return None


def column_label(column: str) -> str:
    """What a column's header says: the key, and for metrics which value."""
    group, _, key = column.partition(".")
    if group == "metrics":
        for suffix in (".min", ".max"):
            if key.endswith(suffix) and len(key) > len(suffix):
                return f"{key[: -len(suffix)]} ({suffix[1:]})"
    return key


def _metric_of(column: str) -> tuple[str, str]:
    """``metrics.<key>[.min|.max]`` -> (key, which)."""
    key = column.partition(".")[2]
    for which in ("min", "max"):
        if key.endswith("." + which) and len(key) > len(which) + 1:
            return key[: -len(which) - 1], which
    return key, "latest"


def order_clause(column: str, direction: str) -> str:
    """The search ``order_by`` clause for a sortable column."""
    word = "ASC" if direction == "asc" else "DESC"
    if column in ATTRIBUTE_SORTS:
        return f"attributes.{column} {word}"
    group, _, key = column.partition(".")
    if "`" in key:
        raise InvalidParameter(f"Cannot sort by {column!r}: the key holds a back-quote.")
    return f"{group}.`{key}` {word}"


def sortable(column: str) -> bool:
    """Min and max are computed per page, so only the latest value sorts across runs."""
    if column in ATTRIBUTE_SORTS:
        return True
    return _column_group(column) != "metrics" or _metric_of(column)[1] == "latest"


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def filter_text(view: View) -> str:
    """The filter the store runs: ``q``, and the name search, joined with AND."""
    parts = []
    if view.q:
        parts.append(f"({view.q})")
    if view.name:
        parts.append(f"attributes.run_name ILIKE {_quote('%' + view.name + '%')}")
    return " AND ".join(parts)


# ---------------------------------------------------------------------------
# Column discovery: reading every key of 100,000 runs takes about a second, so
# answers are cached; past COLUMNS_TTL_S the cached answer is still served while
# one background thread refreshes it. keel server warms the busiest experiments
# at start (warm_columns).

_columns_cache: dict[tuple[int, tuple[str, ...]], tuple[float, RunColumns]] = {}
_columns_inflight: dict[tuple[int, tuple[str, ...]], threading.Event] = {}
_columns_lock = threading.Lock()


def discovered_columns(store: SqlTrackingStore, experiment_ids: list[str]) -> RunColumns:
    """Every key of the experiments' runs: cached, refreshed in the background when stale.

    One reader per experiment at a time: a request that finds the keys being
    read (the warm-up at server start, another request) waits for that read.
    """
    key = (id(store), tuple(experiment_ids))
    with _columns_lock:
        hit = _columns_cache.get(key)
        running = _columns_inflight.get(key)
        if running is None and (hit is None or hit[0] <= time.monotonic()):
            _columns_inflight[key] = threading.Event()
            if hit is not None:  # stale: answer now, refresh behind the scenes
                threading.Thread(
                    target=_refresh_columns, args=(store, experiment_ids, key), daemon=True
                ).start()
                return hit[1]
            mine = True
        else:
            mine = False
    if hit is not None:
        return hit[1]
    if not mine and running is not None:
        running.wait()
        with _columns_lock:
            done = _columns_cache.get(key)
        if done is not None:
            return done[1]
    return _refresh_columns(store, experiment_ids, key)


def _refresh_columns(
    store: SqlTrackingStore, experiment_ids: list[str], key: tuple[int, tuple[str, ...]]
) -> RunColumns:
    from keel.store.sql.overview import run_columns

    try:
        found = run_columns(store, experiment_ids)
        with _columns_lock:
            _columns_cache[key] = (time.monotonic() + COLUMNS_TTL_S, found)
        return found
    finally:
        with _columns_lock:
            event = _columns_inflight.pop(key, None)
        if event is not None:
            event.set()


def warm_columns(store: SqlTrackingStore, experiments: int = 5) -> None:
    """Fill the column cache of the most recently active experiments (a server start)."""
    from keel.store.sql.overview import experiment_activity

    activity = experiment_activity(store)
    busiest = sorted(activity, key=lambda e: activity[e].last_start_ms or 0, reverse=True)
    for experiment_id in busiest[:experiments]:
        discovered_columns(store, [experiment_id])


def default_columns(found: RunColumns) -> tuple[str, ...]:
    return tuple(
        [f"metrics.{k}" for k in found.metrics[:DEFAULT_METRICS]]
        + [f"params.{k}" for k in found.params[:DEFAULT_PARAMS]]
    )


# ---------------------------------------------------------------------------
# Values


def cell_values(
    runs: Sequence[Run], columns: Sequence[str], summaries: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    """Per run, its value in every column (None where it has none)."""
    rows = []
    for run in runs:
        values: dict[str, Any] = {}
        for column in columns:
            group, _, key = column.partition(".")
            if group == "params":
                values[column] = run.data.params.get(key)
            elif group == "tags":
                values[column] = run.data.tags.get(key)
            else:
                metric, which = _metric_of(column)
                if which == "latest":
                    values[column] = run.data.metrics.get(metric)
                else:
                    summary = summaries.get(run.info.run_id, {}).get(metric)
                    values[column] = getattr(summary, which) if summary else None
        rows.append(values)
    return rows


def _json_number(value: Any) -> Any:
    if isinstance(value, float) and value != value:
        return "NaN"
    if isinstance(value, float) and value in (float("inf"), float("-inf")):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def _run_row(run: Run, values: dict[str, Any]) -> dict[str, Any]:
    info = run.info
    end = info.end_time
    return {
        "run_id": info.run_id,
        "run_name": info.run_name,
        "experiment_id": info.experiment_id,
        "status": info.status.value,
        "start_time": info.start_time,
        "end_time": end,
        "duration_ms": (end - info.start_time) if end and info.start_time else None,
        "user": info.user_id,
        "parent_run_id": run.data.tags.get("mlflow.parentRunId"),
        "lifecycle_stage": info.lifecycle_stage.value,
        "values": {k: _json_number(v) for k, v in values.items()},
    }


def constant_columns(columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> list[str]:
    """Columns whose value is the same on every row (two rows or more)."""
    if len(rows) < 2:
        return []
    return [c for c in columns if len({repr(r[c]) for r in rows}) == 1]


# ---------------------------------------------------------------------------
# The page


def register(ui: UI) -> None:
    @ui.page("/experiments/{experiment_id}")
    def runs_page(ui: UI, request: Request, experiment_id: str) -> Response:
        store = _sql_store(ui)
        experiment = store.get_experiment(experiment_id)
        view = View.from_request(request)
        part = request.query_params.get("part")
        if part == "count":
            data = count_data(store, experiment_id, view)
        else:
            # The page asks for its count separately (part=count), so rows never
            # wait for a count over 100,000 runs; the JSON twin carries both.
            data = runs_data(store, experiment_id, view, count=wants_json(request))
        data["experiment"] = {
            "experiment_id": experiment.experiment_id,
            "name": experiment.name,
            "tags": {k: v for k, v in experiment.tags.items() if not k.startswith("mlflow.")},
        }
        template = _PARTS.get(request.query_params.get("part", ""), "runs.html")
        return respond(request, template, data, title=experiment.name, nav="experiments")

    @ui.page("/experiments/{experiment_id}/runs.csv")
    def runs_csv(ui: UI, request: Request, experiment_id: str) -> Response:
        store = _sql_store(ui)
        experiment = store.get_experiment(experiment_id)
        view = View.from_request(request)
        columns = _columns_for(store, [experiment_id], view)
        _, condition, order = _query(view)  # bad input fails here, before streaming starts
        filename = "".join(c if c.isalnum() or c in "-_." else "_" for c in experiment.name)
        return StreamingResponse(
            _csv_rows(store, experiment_id, view, columns, condition, order),
            media_type="text/csv; charset=utf-8",
            headers={
                "Content-Disposition": f'attachment; filename="{filename or "runs"}-runs.csv"'
            },
        )


_PARTS = {"table": "runs_part.html", "count": "runs_count.html"}


def _sql_store(ui: UI) -> SqlTrackingStore:
    from keel.store.sql.store import SqlTrackingStore

    store = ui.ctx.tracking
    if not isinstance(store, SqlTrackingStore):
        raise InvalidParameter("The web UI needs a SQL store (sqlite:// or postgresql://).")
    return store


def _columns_for(store: SqlTrackingStore, experiment_ids: list[str], view: View) -> tuple[str, ...]:
    if view.cols or view.cols_set:
        return view.cols
    return default_columns(discovered_columns(store, experiment_ids))


def _query(view: View) -> tuple[Any, Any, Sequence[Any]]:
    """The view's parsed filter, its SQL condition, and its ordering."""
    from keel.store.sql.search import run_filter_condition

    expr = parse_filter(filter_text(view) or None, "runs")
    sort = view.sort if sortable(view.sort) else "start_time"
    return expr, run_filter_condition(expr), parse_order_by([order_clause(sort, view.dir)], "runs")


def count_data(store: SqlTrackingStore, experiment_id: str, view: View) -> dict[str, Any]:
    """How many runs the view's filter matches (capped at :data:`COUNT_CAP`)."""
    stage = ViewType.ALL if view.deleted else ViewType.ACTIVE_ONLY
    try:
        expr, _, _ = _query(view)
        total = store.count_runs([experiment_id], expr, stage, COUNT_CAP)
    except KeelError as exc:
        return {"view": view.as_query(), "total": None, "total_capped": False, "error": str(exc)}
    return {
        "view": view.as_query(),
        "total": min(total, COUNT_CAP),
        "total_capped": total > COUNT_CAP,
        "error": None,
    }


def runs_data(
    store: SqlTrackingStore, experiment_id: str, view: View, *, count: bool = True
) -> dict[str, Any]:
    """The table's JSON twin: view, columns, rows of this page, total (capped), error.

    With ``count=False`` the total is None (the page fetches it on its own).
    """
    from keel.store.sql.overview import metric_summaries

    found = discovered_columns(store, [experiment_id])
    columns = _columns_for(store, [experiment_id], view)
    stage = ViewType.ALL if view.deleted else ViewType.ACTIVE_ONLY
    error = None
    runs: list[Run] = []
    more = False
    total: int | None = None
    try:
        expr, condition, order = _query(view)
        runs, more = store.runs_at(
            [experiment_id], condition, stage, order, (view.page - 1) * view.per, view.per
        )
        if count:
            total = store.count_runs([experiment_id], expr, stage, COUNT_CAP)
    except KeelError as exc:  # a filter that does not parse: say where, show no rows
        error = str(exc)
    wanted = sorted({_metric_of(c)[0] for c in columns if _column_group(c) == "metrics"})
    needs_ranges = any(_metric_of(c)[1] != "latest" for c in columns if c.startswith("metrics."))
    summaries: dict[str, dict[str, Any]] = {}
    if needs_ranges and runs:
        summaries = metric_summaries(store, [r.info.run_id for r in runs], wanted)
    values = cell_values(runs, columns, summaries)
    hidden = constant_columns(columns, values) if view.hide_constant else []
    shown = [c for c in columns if c not in hidden]
    return {
        "view": view.as_query(),
        "columns": [
            {"id": c, "label": column_label(c), "group": _column_group(c), "sortable": sortable(c)}
            for c in shown
        ],
        "chosen": list(columns),
        "hidden_constant": hidden,
        "available": {"params": found.params, "metrics": found.metrics, "tags": found.tags},
        "runs": [_run_row(r, v) for r, v in zip(runs, values, strict=True)],
        "total": None if total is None else min(total, COUNT_CAP),
        "total_capped": total is not None and total > COUNT_CAP,
        "page": view.page,
        "per": view.per,
        "has_next": more,
        "active": any(r.info.status == RunStatus.RUNNING for r in runs),
        "error": error,
        "sort": view.sort,
        "dir": view.dir,
        "page_sizes": list(PAGE_SIZES),
    }


def csv_cell(value: Any) -> Any:
    """A cell spreadsheet programs will not run as a formula (text starting ``=+-@``).

    >>> csv_cell("=HYPERLINK(1)"), csv_cell(-0.5), csv_cell("-0.5"), csv_cell(None)
    ("'=HYPERLINK(1)", -0.5, '-0.5', '')
    """
    if value is None:
        return ""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        try:
            float(value)
        except ValueError:
            return "'" + value
    return value


def _csv_rows(
    store: SqlTrackingStore,
    experiment_id: str,
    view: View,
    columns: Sequence[str],
    condition: Any,
    order: Sequence[Any],
) -> Iterator[str]:
    from keel.store.sql.overview import metric_summaries

    buffer = io.StringIO()
    writer = csv.writer(buffer)
    header = ["run_id", "run_name", "status", "start_time_utc", "end_time_utc", "duration_s"]
    writer.writerow(header + list(columns))
    stage = ViewType.ALL if view.deleted else ViewType.ACTIVE_ONLY
    wanted = sorted({_metric_of(c)[0] for c in columns if _column_group(c) == "metrics"})
    offset = 0
    chunk = 1000
    while offset < CSV_LIMIT:
        runs, more = store.runs_at([experiment_id], condition, stage, order, offset, chunk)
        summaries = metric_summaries(store, [r.info.run_id for r in runs], wanted) if runs else {}
        for run, values in zip(runs, cell_values(runs, columns, summaries), strict=True):
            info = run.info
            duration = (info.end_time - info.start_time) / 1000 if info.end_time else ""
            writer.writerow(
                [
                    info.run_id,
                    info.run_name,
                    info.status.value,
                    timestamp_ms(info.start_time),
                    timestamp_ms(info.end_time) if info.end_time else "",
                    duration,
                ]
                + [csv_cell(values[c]) for c in columns]
            )
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        if not more:
            break
        offset += chunk
