"""One run: overview, metric charts and artifacts; the chart data and raw artifact endpoints.

Routes:

- ``GET /runs/{run_id}?tab=overview|charts|artifacts`` the run page. Charts
  take ``x=step|time|relative``, ``smooth=0..0.99`` and ``log=1``; artifacts
  take ``path`` (a folder lists it, a file lists its folder and previews it).
- ``GET /runs/{run_id}/artifacts/raw?path=F`` the file's bytes, streamed.
- ``GET /charts/metric?run=ID[&run=ID…]&key=K&x=step&points=2000`` chart
  points as JSON (any page's ``data-chart-src``), downsampled in SQL by
  :mod:`keel.store.sql.metric_history`.

>>> chart_options({"x": "time", "smooth": "0.6", "log": "1"})
{'x': 'time', 'smooth': 0.6, 'log': True}
>>> chart_options({"x": "bogus", "smooth": "7"})
{'x': 'step', 'smooth': 0.99, 'log': False}
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import orjson
import sqlalchemy as sa
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from keel.entities import CONTEXT_TAG, PARENT_RUN_ID_TAG, Run, RunStatus, ViewType
from keel.errors import InvalidParameter, KeelError, NotFound
from keel.server import routes_artifacts as proxy
from keel.server.ui import artifact_view
from keel.server.ui.render import query_string, respond
from keel.store.sql import schema as t
from keel.store.sql.metric_history import X_MODES, metric_points
from keel.store.sql.overview import child_runs, metric_summaries
from keel.store.sql.store import SqlTrackingStore

if TYPE_CHECKING:
    from keel.server.ui import UI

TABS = ("overview", "charts", "artifacts")
MAX_CHART_RUNS = 100
DEFAULT_POINTS = 2000
MAX_POINTS = 10_000
SOURCE_TAG = "mlflow.source.name"
COMMIT_TAG = "mlflow.source.git.commit"
NOTE_TAG = "mlflow.note.content"
JSON_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


def register(ui: UI) -> None:
    @ui.page("/runs/{run_id}")
    def run_page(ui: UI, request: Request, run_id: str) -> Response:
        params = request.query_params
        tab = params.get("tab", "overview")
        if tab not in TABS:
            tab = "overview"
        data = run_data(ui, run_id, tab=tab, params=params)
        title = data["run"]["run_name"] or run_id
        return respond(request, "run.html", data, title=title, nav="experiments")

    @ui.page("/runs/{run_id}/artifacts/raw")
    def artifact_raw(ui: UI, request: Request, run_id: str) -> Response:
        run = ui.ctx.tracking.get_run(run_id)
        rel = proxy.clean_path(request.query_params.get("path"), file=True)
        artifacts = artifact_view.run_artifacts(ui.ctx, run.info.artifact_uri)
        opened = artifacts.open(rel)
        return StreamingResponse(
            _chunks(opened.fh),
            media_type=artifact_view.media_type(rel),
            headers=raw_headers(rel, opened.size),
        )

    @ui.page("/charts/metric")
    def chart_metric(ui: UI, request: Request) -> Response:
        try:
            body = chart_data(ui.ctx.tracking, request.query_params)
            status = 200
        except KeelError as exc:
            body = {"error": {"status": exc.http_status, "message": str(exc)}}
            status = exc.http_status
        return Response(
            orjson.dumps(body),
            status_code=status,
            media_type="application/json",
            headers=JSON_HEADERS,
        )


# -- the run page -------------------------------------------------------------


def chart_options(params: Mapping[str, str]) -> dict[str, Any]:
    """The charts tab's URL state, cleaned: unknown values fall back to defaults."""
    x = params.get("x", "step")
    try:
        smooth = min(max(float(params.get("smooth") or 0), 0.0), 0.99)
    except ValueError:
        smooth = 0.0
    if smooth != smooth:  # NaN
        smooth = 0.0
    return {"x": x if x in X_MODES else "step", "smooth": smooth, "log": params.get("log") == "1"}


def run_data(ui: UI, run_id: str, *, tab: str, params: Mapping[str, str]) -> dict[str, Any]:
    """The run page's JSON twin: everything the page shows for this tab."""
    store = ui.ctx.tracking
    run = store.get_run(run_id)
    info = run.info
    tags = run.data.tags
    # Min, max and counts read every point (a second for a million-point
    # metric): only the overview shows them; the other tabs need the keys.
    summaries = (
        metric_summaries(store, [info.run_id]).get(info.run_id, {})
        if isinstance(store, SqlTrackingStore) and tab == "overview"
        else {}
    )
    metrics: list[dict[str, Any]] = [
        {
            "key": key,
            "latest": s.latest,
            "latest_step": s.latest_step,
            "min": s.min,
            "max": s.max,
            "points": s.points,
        }
        for key, s in sorted(summaries.items())
    ] or [
        {"key": key, "latest": value, "latest_step": None, "min": None, "max": None, "points": None}
        for key, value in sorted(run.data.metrics.items())
    ]
    data: dict[str, Any] = {
        "tab": tab,
        "run": _info(ui, run),
        "children": _children(ui, run),
        "params": [{"key": k, "value": v} for k, v in sorted(run.data.params.items())],
        "metrics": metrics,
        "tags": [{"key": k, "value": v} for k, v in sorted(tags.items()) if not _system(k)],
        "system_tags": [{"key": k, "value": v} for k, v in sorted(tags.items()) if _system(k)],
        "datasets": _datasets(run),
        "models": _models(ui, info.run_id),
    }
    if tab == "charts":
        options = chart_options(params)
        data["chart_options"] = options
        data["chart_sections"] = _chart_sections(info.run_id, [m["key"] for m in metrics], options)
    if tab == "artifacts":
        data["artifacts"] = _artifacts(ui, run, params.get("path") or "")
    return data


def _system(key: str) -> bool:
    return key.startswith("mlflow.")


def _info(ui: UI, run: Run) -> dict[str, Any]:
    info, tags = run.info, run.data.tags
    end = info.end_time
    duration: int | None
    if end is None and info.status == RunStatus.RUNNING:
        duration = int(time.time() * 1000) - info.start_time
    else:
        duration = end - info.start_time if end is not None else None
    experiment = ui.ctx.tracking.get_experiment(info.experiment_id)
    parent_id = tags.get(PARENT_RUN_ID_TAG)
    parent_name = None
    if parent_id:
        try:
            parent_name = ui.ctx.tracking.get_run(parent_id).info.run_name
        except KeelError:
            parent_name = None  # the parent was purged: the id alone still says something
    return {
        "run_id": info.run_id,
        "run_name": info.run_name,
        "status": info.status.value,
        "lifecycle_stage": info.lifecycle_stage.value,
        "experiment_id": info.experiment_id,
        "experiment_name": experiment.name,
        "start_time": info.start_time,
        "end_time": end,
        "duration_ms": duration,
        "user_id": info.user_id,
        "source": tags.get(SOURCE_TAG),
        "git_commit": tags.get(COMMIT_TAG),
        "parent_run_id": parent_id,
        "parent_run_name": parent_name,
        "note": tags.get(NOTE_TAG),
        "artifact_uri": info.artifact_uri,
    }


def _children(ui: UI, run: Run) -> list[dict[str, Any]]:
    store = ui.ctx.tracking
    if isinstance(store, SqlTrackingStore):
        return [asdict(child) for child in child_runs(store, run.info.run_id)]
    # Run ids are hex (get_run found this one), so quoting them in the filter is safe.
    found = store.search_runs(
        [run.info.experiment_id],
        f"tags.`{PARENT_RUN_ID_TAG}` = '{run.info.run_id}'",
        run_view_type=ViewType.ALL,
        max_results=1000,
        order_by=["attributes.start_time ASC"],
    )
    return [
        {
            "run_id": child.info.run_id,
            "run_name": child.info.run_name,
            "status": child.info.status.value,
            "start_time": child.info.start_time,
        }
        for child in found
    ]


def _datasets(run: Run) -> list[dict[str, Any]]:
    out = []
    for entry in run.inputs:
        ds = entry.dataset
        tags = {tag.key: tag.value for tag in entry.tags}
        out.append(
            {
                "name": ds.name,
                "digest": ds.digest,
                "context": tags.get(CONTEXT_TAG),
                "source_type": ds.source_type,
                "columns": _column_count(ds.schema),
                "profile": _profile(ds.profile),
                "href": "/data/dataset"
                + query_string(
                    {}, experiment_id=run.info.experiment_id, name=ds.name, digest=ds.digest
                ),
            }
        )
    return out


def _column_count(schema: str | None) -> int | None:
    try:
        parsed = json.loads(schema) if schema else None
    except ValueError:
        return None
    if isinstance(parsed, dict):
        for value in parsed.values():
            if isinstance(value, list):
                return len(value)
    return len(parsed) if isinstance(parsed, list) else None


def _profile(profile: str | None) -> dict[str, Any] | None:
    try:
        parsed = json.loads(profile) if profile else None
    except ValueError:
        return None
    if not isinstance(parsed, dict):
        return None
    return {k: v for k, v in parsed.items() if isinstance(v, int | float | str)}


def _models(ui: UI, run_id: str) -> list[dict[str, Any]] | None:
    registry = ui.ctx.registry
    if registry is None:
        return None
    versions = registry.search_model_versions(f"run_id = '{run_id}'", max_results=1000)
    return [
        {
            "name": v.name,
            "version": v.version,
            "stage": v.current_stage.value,
            "status": v.status.value,
            "aliases": list(v.aliases),
            "href": f"/models/{_quote(v.name)}/versions/{v.version}",
        }
        for v in sorted(versions, key=lambda v: (v.name, v.version))
    ]


def _quote(segment: str) -> str:
    from urllib.parse import quote

    return quote(segment, safe="")


def _chart_sections(run_id: str, keys: list[str], options: dict[str, Any]) -> list[dict[str, Any]]:
    sections: dict[str, list[dict[str, str]]] = {}
    for key in keys:
        prefix = key.split("/", 1)[0] if "/" in key else ""
        src = "/charts/metric" + query_string({}, run=run_id, key=key, x=options["x"])
        sections.setdefault(prefix, []).append({"key": key, "src": src})
    return [{"name": name, "charts": charts} for name, charts in sorted(sections.items())]


# -- artifacts ----------------------------------------------------------------


def _artifacts(ui: UI, run: Run, raw_path: str) -> dict[str, Any]:
    path = proxy.clean_path(raw_path)
    out: dict[str, Any] = {"path": path, "crumbs": _crumbs(path), "entries": [], "preview": None}
    try:
        artifacts = artifact_view.run_artifacts(ui.ctx, run.info.artifact_uri)
    except artifact_view.ArtifactsUnavailable as exc:
        return {**out, "unavailable": str(exc)}
    entry = artifacts.stat(path)
    if entry is None:
        raise NotFound(f"No artifact {path!r} in run {run.info.run_id}.")
    directory = path if entry.is_dir else path.rpartition("/")[0]
    out["directory"] = directory
    out["entries"] = [artifact_view.entry_json(e, directory) for e in artifacts.list(directory)]
    if not entry.is_dir:
        shown = artifact_view.preview(artifacts, path, entry.file_size or 0)
        shown["raw"] = raw_url(run.info.run_id, path)
        out["preview"] = shown
    return out


def _crumbs(path: str) -> list[dict[str, str]]:
    parts = path.split("/") if path else []
    return [{"name": p, "path": "/".join(parts[: i + 1])} for i, p in enumerate(parts)]


def raw_url(run_id: str, path: str) -> str:
    """The raw endpoint's URL for one artifact.

    >>> raw_url("abc", "plots/a b.png")
    '/runs/abc/artifacts/raw?path=plots%2Fa+b.png'
    """
    return f"/runs/{run_id}/artifacts/raw" + query_string({}, path=path)


def raw_headers(path: str, size: int) -> dict[str, str]:
    """Headers for an artifact's bytes: only images and HTML display inline.

    Everything goes out sandboxed and unsniffed, so even an SVG opened on its
    own, or HTML in a tab, runs no script with this origin's rights.

    >>> raw_headers("index.html", 5)["Content-Security-Policy"]
    'sandbox'
    >>> raw_headers("w.bin", 5)["Content-Disposition"]
    'attachment; filename=w.bin'
    """
    name = path.rpartition("/")[2]
    headers = {
        "Content-Length": str(size),
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "sandbox",
        "Cache-Control": "no-store",
        "Referrer-Policy": "same-origin",
    }
    if artifact_view.kind_of(path) not in ("image", "html"):
        headers["Content-Disposition"] = proxy._disposition(name)
    return headers


def _chunks(fh: proxy.Readable) -> Iterator[bytes]:
    try:
        while chunk := fh.read(proxy.CHUNK_BYTES):
            yield chunk
    finally:
        fh.close()


# -- chart data ---------------------------------------------------------------


def chart_data(store: Any, params: Any) -> dict[str, Any]:
    """``{"key", "x", "series": [{"run_id", "run_name", "total_points", "x", "y"}]}``.

    ``x`` is the step, the time in epoch milliseconds, or seconds since the
    run started; ``y`` has null for NaN and infinities. Runs that do not exist
    are left out; none at all is a 404.
    """
    if not isinstance(store, SqlTrackingStore):
        raise KeelError("Charts need a SQL tracking store.")
    run_ids = list(dict.fromkeys(params.getlist("run")))
    key = params.get("key") or ""
    x = params.get("x", "step")
    if not run_ids or not key:
        raise InvalidParameter("Give at least one run= and a key=.")
    if len(run_ids) > MAX_CHART_RUNS:
        raise InvalidParameter(f"At most {MAX_CHART_RUNS} runs per chart.")
    if x not in X_MODES:
        raise InvalidParameter(f"x must be one of {', '.join(X_MODES)}.")
    try:
        points = int(params.get("points") or DEFAULT_POINTS)
    except ValueError:
        raise InvalidParameter("points must be a whole number.") from None
    points = min(max(points, 10), MAX_POINTS)
    heads = _run_heads(store, run_ids)
    if not heads:
        raise NotFound("None of these runs exist.")
    series = []
    for run_id in run_ids:
        if run_id not in heads:
            continue
        name, start = heads[run_id]
        found = metric_points(store, run_id, key, max_points=points, by_time=x != "step")
        if x == "step":
            xs: list[float] = [p[0] for p in found.points]
        elif x == "time":
            xs = [p[1] for p in found.points]
        else:
            xs = [(p[1] - start) / 1000 for p in found.points]
        series.append(
            {
                "run_id": run_id,
                "run_name": name,
                "total_points": found.total_points,
                "x": xs,
                "y": [p[2] for p in found.points],
            }
        )
    return {"key": key, "x": x, "series": series}


def _run_heads(store: SqlTrackingStore, run_ids: list[str]) -> dict[str, tuple[str, int]]:
    r = t.runs
    stmt = sa.select(r.c.run_uuid, r.c.name, r.c.start_time).where(r.c.run_uuid.in_(run_ids))
    with store._db.read() as conn:
        return {row[0]: (row[1], int(row[2])) for row in conn.execute(stmt)}
