"""Data and monitoring pages: the datasets runs consumed, their profiles, and logged reports.

``/data`` lists every dataset logged as a run input (across experiments) and
the runs that carry a data report (``keel.log_report`` tags them with
``keel.validation.status`` / ``keel.drift.status``) or a monitoring report
(``keel.monitor.status``). ``/data/dataset`` shows one dataset: schema,
profile and the runs that used it; a Keel profile is also rendered as its
self-contained HTML page at ``/data/dataset/profile.html``, which is served
with ``Content-Security-Policy: sandbox`` and only ever shown in an
``<iframe sandbox>``.

``keel.data`` (the ``data`` extra) is optional on a server: without it a
Keel profile is shown as readable JSON instead of a table and a page.

>>> schema_columns('{"mlflow_colspec": [{"type": "long", "name": "age"}]}')
[{'name': 'age', 'type': 'long'}]
>>> dataset_shape('{"mlflow_colspec": [{"type": "long", "name": "age"}]}', '{"num_rows": 3}')
(3, 1)
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from keel.entities import CONTEXT_TAG, Experiment, PagedList, Run, ViewType
from keel.errors import InvalidParameter, KeelError, NotFound
from keel.search.filter import quote_text
from keel.server.ui.render import respond
from keel.store.base import TrackingStore
from keel.tracking.client import (
    DRIFT_COLUMNS_TAG,
    DRIFT_STATUS_TAG,
    MONITOR_COLUMNS_TAG,
    MONITOR_MODEL_TAG,
    MONITOR_STATUS_TAG,
    VALIDATION_STATUS_TAG,
)

if TYPE_CHECKING:
    from keel.server.app import ServerContext
    from keel.server.ui import UI

# Monitoring reports of served models, logged to a run with this tag ("drift" or
# "none") and the report's files as <path>.json / <path>.html, as log_report does.
PER_PAGE = 25
# Bounds on the work one page may do: walking a run's artifacts for report
# files, and scanning runs when the store has no SQL to ask.
_MAX_ARTIFACT_ENTRIES = 500
_MAX_ARTIFACT_DEPTH = 4
_MAX_SCANNED_RUNS = 5000
_KEEL_PROFILE_FORMAT = "keel-profile/1"

T = TypeVar("T")


def register(ui: UI) -> None:
    @ui.page("/data")
    def data(ui: UI, request: Request) -> Response:
        params = request.query_params
        body = data_overview(
            ui.ctx,
            q=params.get("q", "").strip(),
            page=_page_number(params.get("page")),
            report_filter=params.get("filter", "").strip(),
            report_page=_page_number(params.get("rpage")),
        )
        return respond(request, "data.html", body, title="Data", nav="data")

    @ui.page("/data/dataset")
    def dataset(ui: UI, request: Request) -> Response:
        exp, name, digest = _dataset_key(request)
        body = dataset_data(ui.ctx.tracking, exp, name, digest)
        return respond(request, "dataset.html", body, title=f"Dataset {name}", nav="data")

    @ui.page("/data/dataset/profile.html")
    def profile_html(ui: UI, request: Request) -> Response:
        exp, name, digest = _dataset_key(request)
        found = _find_dataset(ui.ctx.tracking, exp, name, digest)
        page = _profile_page(found.get("profile"), f"{name} · profile")
        return Response(
            page,
            media_type="text/html",
            headers={
                # Logged content: no scripts, no same-origin access, whatever it holds.
                "Content-Security-Policy": "sandbox",
                "X-Content-Type-Options": "nosniff",
                "Cache-Control": "no-store",
                "Referrer-Policy": "same-origin",
            },
        )


# -- /data -----------------------------------------------------------------------


def data_overview(
    ctx: ServerContext, *, q: str, page: int, report_filter: str, report_page: int
) -> dict[str, Any]:
    """The ``/data`` page: datasets (searched, paged) and runs with data or monitoring reports."""
    store = ctx.tracking
    experiments = _experiments(store)
    rows, total = datasets_page(store, experiments, q=q, offset=(page - 1) * PER_PAGE)
    reports, more_reports, report_error = _report_runs(
        ctx, experiments, report_filter, (report_page - 1) * PER_PAGE
    )
    monitoring, _, monitor_error = _tagged_runs(
        ctx, experiments, f"tags.{_quoted_key(MONITOR_STATUS_TAG)} LIKE '%'", "", 0
    )
    return {
        "q": q,
        "page": page,
        "per_page": PER_PAGE,
        "datasets": rows,
        "datasets_total": total,
        "has_next": page * PER_PAGE < total,
        "filter": report_filter,
        "rpage": report_page,
        "reports": reports,
        "reports_has_next": more_reports,
        "filter_error": report_error,
        "monitoring": monitoring,
        "monitoring_error": monitor_error,
    }


def datasets_page(
    store: TrackingStore, experiments: dict[str, Experiment], *, q: str, offset: int
) -> tuple[list[dict[str, Any]], int]:
    """One page of logged datasets (newest use first) matching ``q``, and how many match."""
    from keel.store.sql.store import SqlTrackingStore

    if isinstance(store, SqlTrackingStore):
        return _datasets_sql(store, experiments, q, offset)
    rows = _datasets_scanned(store, experiments, q)
    return rows[offset : offset + PER_PAGE], len(rows)


def _datasets_sql(
    store: Any, experiments: dict[str, Experiment], q: str, offset: int
) -> tuple[list[dict[str, Any]], int]:
    import sqlalchemy as sa

    from keel.store.sql import schema as t

    d, ri, r = t.datasets, t.run_inputs, t.runs
    joined = d.outerjoin(ri, ri.c.dataset_uuid == d.c.dataset_uuid).outerjoin(
        r, sa.and_(r.c.run_uuid == ri.c.run_uuid, r.c.lifecycle_stage == "active")
    )
    where: sa.ColumnElement[bool] = d.c.experiment_id.in_(
        [int(e) for e in experiments if e.isdigit()]
    )
    if q:
        needle = q.lower()
        where = sa.and_(
            where,
            sa.or_(
                sa.func.lower(d.c.name).contains(needle, autoescape=True),
                d.c.digest.startswith(needle, autoescape=True),
            ),
        )
    grouped = (
        sa.select(
            d.c.dataset_uuid,
            sa.func.count(r.c.run_uuid).label("runs"),
            sa.func.max(r.c.start_time).label("last"),
        )
        .select_from(joined)
        .where(where)
        .group_by(d.c.dataset_uuid)
    )
    counted = sa.select(sa.func.count()).select_from(grouped.subquery())
    ordered = grouped.order_by(
        sa.desc(sa.func.coalesce(sa.func.max(r.c.start_time), 0)), d.c.dataset_uuid
    )
    with store._db.read() as conn:
        total = int(conn.execute(counted).scalar_one())
        page = conn.execute(ordered.limit(PER_PAGE).offset(offset)).all()
        uuids = [row.dataset_uuid for row in page]
        details = {
            row.dataset_uuid: row
            for row in conn.execute(sa.select(d).where(d.c.dataset_uuid.in_(uuids)))
        }
    rows = []
    for row in page:
        found = details[row.dataset_uuid]
        rows.append(
            _dataset_row(
                experiments,
                str(found.experiment_id),
                found.name,
                found.digest,
                found.source_type,
                found.source,
                found.schema,
                found.profile,
                int(row.runs),
                row.last,
            )
        )
    return rows, total


def _datasets_scanned(
    store: TrackingStore, experiments: dict[str, Experiment], q: str
) -> list[dict[str, Any]]:
    seen: dict[tuple[str, str, str], dict[str, Any]] = {}
    for run in _scan_runs(store, list(experiments)):
        for item in run.inputs:
            ds = item.dataset
            key = (run.info.experiment_id, ds.name, ds.digest)
            if q and q.lower() not in ds.name.lower() and not ds.digest.startswith(q.lower()):
                continue
            row = seen.get(key)
            if row is None:
                seen[key] = _dataset_row(
                    experiments,
                    *key,
                    ds.source_type,
                    ds.source,
                    ds.schema,
                    ds.profile,
                    1,
                    run.info.start_time,
                )
            else:
                row["runs"] += 1
                row["last_used_ms"] = max(row["last_used_ms"] or 0, run.info.start_time or 0)
    return sorted(seen.values(), key=lambda r: r["last_used_ms"] or 0, reverse=True)


def _dataset_row(
    experiments: dict[str, Experiment],
    experiment_id: str,
    name: str,
    digest: str,
    source_type: str,
    source: str,
    schema: str | None,
    profile: str | None,
    runs: int,
    last: int | None,
) -> dict[str, Any]:
    rows, columns = dataset_shape(schema, profile)
    exp = experiments.get(experiment_id)
    return {
        "experiment_id": experiment_id,
        "experiment": exp.name if exp else experiment_id,
        "name": name,
        "digest": digest,
        "digest_short": digest[:12],
        "source_type": source_type,
        "source": source,
        "rows": rows,
        "columns": columns,
        "runs": runs,
        "last_used_ms": last,
        "url": dataset_url(experiment_id, name, digest),
    }


def dataset_url(experiment_id: str, name: str, digest: str) -> str:
    """The dataset page's URL.

    >>> dataset_url("1", "train set", "ab12")
    '/data/dataset?experiment_id=1&name=train+set&digest=ab12'
    """
    query = urlencode({"experiment_id": experiment_id, "name": name, "digest": digest})
    return f"/data/dataset?{query}"


def schema_columns(schema: str | None) -> list[dict[str, str]] | None:
    """``[{"name", "type"}]`` from a logged schema (MLflow colspec, pairs or a mapping), or None."""
    parsed = _loads(schema)
    if isinstance(parsed, dict) and isinstance(parsed.get("mlflow_colspec"), list):
        parsed = parsed["mlflow_colspec"]
    if isinstance(parsed, dict) and all(isinstance(v, str) for v in parsed.values()):
        return [{"name": str(k), "type": v} for k, v in parsed.items()]
    if not isinstance(parsed, list):
        return None
    out = []
    for item in parsed:
        if isinstance(item, dict) and "name" in item:
            out.append({"name": str(item["name"]), "type": str(item.get("type", ""))})
        elif isinstance(item, list | tuple) and len(item) == 2:
            out.append({"name": str(item[0]), "type": str(item[1])})
        else:
            return None
    return out


def dataset_shape(schema: str | None, profile: str | None) -> tuple[int | None, int | None]:
    """(rows, columns) as far as the logged schema and profile tell."""
    columns = schema_columns(schema)
    ncols = len(columns) if columns is not None else None
    parsed = _loads(profile)
    rows = None
    if isinstance(parsed, dict):
        value = parsed.get("num_rows", parsed.get("rows"))
        rows = value if isinstance(value, int) else None
        if ncols is None and isinstance(parsed.get("columns"), list):
            ncols = len(parsed["columns"])
    return rows, ncols


# -- reports -------------------------------------------------------------------


def _report_runs(
    ctx: ServerContext, experiments: dict[str, Experiment], user_filter: str, offset: int
) -> tuple[list[dict[str, Any]], bool, str | None]:
    base = " OR ".join(
        f"tags.{_quoted_key(tag)} LIKE '%'" for tag in (VALIDATION_STATUS_TAG, DRIFT_STATUS_TAG)
    )
    return _tagged_runs(ctx, experiments, base, user_filter, offset)


def _tagged_runs(
    ctx: ServerContext,
    experiments: dict[str, Experiment],
    base: str,
    user_filter: str,
    offset: int,
) -> tuple[list[dict[str, Any]], bool, str | None]:
    """A page of runs matching ``base`` (and the user's filter), each with its report files."""
    text = f"({base}) AND ({user_filter})" if user_filter else base
    ids = list(experiments)
    if not ids:
        return [], False, None

    def fetch(token: str | None, size: int) -> PagedList[Run]:
        return ctx.tracking.search_runs(
            ids, text, max_results=size, order_by=["attributes.start_time DESC"], page_token=token
        )

    try:
        runs, more = take(fetch, offset, PER_PAGE)
    except KeelError as exc:  # the user's filter, mostly: say so on the page
        return [], False, exc.message
    return [_report_row(ctx, experiments, run) for run in runs], more, None


def _report_row(ctx: ServerContext, experiments: dict[str, Experiment], run: Run) -> dict[str, Any]:
    tags = run.data.tags
    columns = [c for c in tags.get(DRIFT_COLUMNS_TAG, "").split(",") if c]
    exp = experiments.get(run.info.experiment_id)
    return {
        "run_id": run.info.run_id,
        "run_name": run.info.run_name,
        "experiment_id": run.info.experiment_id,
        "experiment": exp.name if exp else run.info.experiment_id,
        "start_time": run.info.start_time,
        "validation": tags.get(VALIDATION_STATUS_TAG),
        "drift": tags.get(DRIFT_STATUS_TAG),
        "drift_columns": columns,
        "monitor": tags.get(MONITOR_STATUS_TAG),
        "monitor_model": tags.get(MONITOR_MODEL_TAG),
        "monitor_columns": [c for c in tags.get(MONITOR_COLUMNS_TAG, "").split(",") if c],
        "files": run_reports(ctx, run),
    }


def run_reports(ctx: ServerContext, run: Run) -> list[dict[str, str]]:
    """The reports a run logged: ``<path>.html`` beside ``<path>.json`` (``log_report``'s pair).

    Each comes with the run page's artifact view and the raw (sandboxed) file URLs.
    """
    try:
        files = set(_artifact_files(ctx, run.info.artifact_uri))
    except (KeelError, OSError, ValueError):
        return []  # unreachable artifacts: the page still shows the run and its tags
    out = []
    for path in sorted(files):
        stem = path[: -len(".html")]
        if path.endswith(".html") and f"{stem}.json" in files:
            out.append(report_links(run.info.run_id, stem))
    return out


def report_links(run_id: str, stem: str) -> dict[str, str]:
    """URLs of a logged report's view, raw HTML and JSON.

    >>> report_links("r1", "data/drift")["view"]
    '/runs/r1?tab=artifacts&path=data%2Fdrift.html'
    """
    html, js = f"{stem}.html", f"{stem}.json"
    return {
        "path": stem,
        "name": stem.rsplit("/", 1)[-1],
        "view": f"/runs/{run_id}?" + urlencode({"tab": "artifacts", "path": html}),
        "html": f"/runs/{run_id}/artifacts/raw?" + urlencode({"path": html}),
        "json": f"/runs/{run_id}/artifacts/raw?" + urlencode({"path": js}),
    }


def _artifact_files(ctx: ServerContext, artifact_uri: str) -> Iterator[str]:
    from keel.artifacts import get_repository

    uri = artifact_uri
    if uri.startswith("mlflow-artifacts:"):
        # The server is the proxy: read its own destination, never itself over HTTP.
        destination = ctx.artifacts_destination
        if not destination:
            return
        uri = f"{destination.rstrip('/')}/{uri.split(':', 1)[1].lstrip('/')}"
    repo = get_repository(uri)
    pending: list[tuple[str | None, int]] = [(None, 0)]
    seen = 0
    while pending:
        path, depth = pending.pop()
        for info in repo.list_artifacts(path):
            seen += 1
            if seen > _MAX_ARTIFACT_ENTRIES:
                return
            if info.is_dir:
                if depth < _MAX_ARTIFACT_DEPTH:
                    pending.append((info.path, depth + 1))
            else:
                yield info.path


# -- /data/dataset -------------------------------------------------------------


def dataset_data(
    store: TrackingStore, experiment_id: str, name: str, digest: str
) -> dict[str, Any]:
    """One dataset: identity, schema, profile (Keel's as statistics) and the runs that used it."""
    found = _find_dataset(store, experiment_id, name, digest)
    schema = schema_columns(found["schema"])
    profile = profile_view(found["profile"])
    query = urlencode({"experiment_id": experiment_id, "name": name, "digest": digest})
    return {
        "dataset": {
            "experiment_id": experiment_id,
            "experiment": found["experiment"],
            "name": name,
            "digest": digest,
            "source_type": found["source_type"],
            "source": found["source"],
        },
        "schema": schema,
        "schema_raw": None if schema is not None else found["schema"],
        "profile": profile,
        "profile_html": (
            f"/data/dataset/profile.html?{query}" if profile["kind"] == "keel-stats" else None
        ),
        "runs": found["runs"],
    }


def profile_view(text: str | None) -> dict[str, Any]:
    """How to show a logged profile: Keel statistics, MLflow's counts, or readable JSON.

    >>> profile_view('{"num_rows": 2, "num_elements": 4}')["kind"]
    'counts'
    >>> profile_view(None)["kind"]
    'none'
    """
    parsed = _loads(text)
    if text is None or text == "":
        return {"kind": "none", "rows": None, "columns": [], "json": None}
    if isinstance(parsed, dict) and parsed.get("format") == _KEEL_PROFILE_FORMAT:
        stats = _keel_profile_stats(text)
        if stats is not None:
            rows, columns = stats
            return {"kind": "keel-stats", "rows": rows, "columns": columns, "json": None}
        # keel.data is not installed here: the readable part, without the sketches.
        readable = {
            **parsed,
            "columns": [
                {k: v for k, v in c.items() if k != "state"}
                for c in parsed.get("columns") or []
                if isinstance(c, dict)
            ],
        }
        return {
            "kind": "keel-json",
            "rows": parsed.get("rows"),
            "columns": [],
            "json": json.dumps(readable, indent=2, default=str),
        }
    if isinstance(parsed, dict) and set(parsed) <= {"num_rows", "num_elements"}:
        return {"kind": "counts", "rows": parsed.get("num_rows"), "columns": [], "json": None}
    shown = json.dumps(parsed, indent=2, default=str) if parsed is not None else text
    return {"kind": "json", "rows": None, "columns": [], "json": shown}


def _keel_profile_stats(text: str) -> tuple[int, list[dict[str, Any]]] | None:
    try:
        from keel.data.profiles import Profile
    except ImportError:
        return None
    try:
        prof = Profile.from_json(text)
    except (KeelError, ValueError, KeyError, TypeError):
        return None
    columns = []
    for col in prof:
        summary = col.summary()
        quantiles = summary.get("quantiles") or {}
        columns.append(
            {
                "name": col.name,
                "kind": col.kind.value,
                "dtype": col.dtype,
                "count": summary["count"],
                "nulls": summary["nulls"],
                "null_fraction": summary["null_fraction"],
                "distinct": summary["distinct"],
                "mean": _plain(summary.get("mean")),
                "std": _plain(summary.get("std")),
                "min": _plain(summary.get("min")),
                "p25": _plain(quantiles.get("0.25")),
                "median": _plain(quantiles.get("0.5")),
                "p75": _plain(quantiles.get("0.75")),
                "max": _plain(summary.get("max")),
                "top": [[str(v), int(n)] for v, n in summary.get("top") or []][:5],
            }
        )
    return prof.rows, columns


def _profile_page(text: str | None, title: str) -> str:
    try:
        from keel.data.html import profile_page
        from keel.data.profiles import Profile
    except ImportError:
        raise NotFound(
            "This server cannot draw profiles: install Keel's data extra (pip install keel[data])."
        ) from None
    parsed = _loads(text)
    if not (isinstance(parsed, dict) and parsed.get("format") == _KEEL_PROFILE_FORMAT):
        raise NotFound("This dataset's logged profile is not a Keel profile.")
    try:
        return profile_page(Profile.from_json(text or ""), title=title)
    except KeelError as exc:
        raise InvalidParameter(f"The logged profile cannot be read: {exc.message}") from None


def _find_dataset(
    store: TrackingStore, experiment_id: str, name: str, digest: str
) -> dict[str, Any]:
    from keel.store.sql.store import SqlTrackingStore

    try:
        experiment = store.get_experiment(experiment_id)
    except (NotFound, InvalidParameter):
        raise NotFound(f"There is no experiment {experiment_id!r}.") from None
    if isinstance(store, SqlTrackingStore) and experiment_id.isdigit():
        found = _find_dataset_sql(store, int(experiment_id), name, digest)
    else:
        found = _find_dataset_scanned(store, experiment_id, name, digest)
    if found is None:
        raise NotFound(
            f"No dataset {name!r} with digest {digest!r} was logged in experiment "
            f"{experiment.name!r}. The datasets there are listed at /data."
        )
    found["experiment"] = experiment.name
    found["runs"].sort(key=lambda r: r["start_time"] or 0, reverse=True)
    return found


def _find_dataset_sql(
    store: Any, experiment_id: int, name: str, digest: str
) -> dict[str, Any] | None:
    import sqlalchemy as sa

    from keel.store.sql import schema as t

    d, ri, r, it = t.datasets, t.run_inputs, t.runs, t.input_tags
    with store._db.read() as conn:
        row = conn.execute(
            sa.select(d).where(
                d.c.experiment_id == experiment_id, d.c.name == name, d.c.digest == digest
            )
        ).first()
        if row is None:
            return None
        context = (
            sa.select(it.c.value)
            .where(
                it.c.run_uuid == r.c.run_uuid,
                it.c.dataset_uuid == row.dataset_uuid,
                it.c.key == CONTEXT_TAG,
            )
            .scalar_subquery()
        )
        runs = conn.execute(
            sa.select(
                r.c.run_uuid,
                r.c.name,
                r.c.status,
                r.c.start_time,
                r.c.lifecycle_stage,
                context.label("context"),
            )
            .select_from(ri.join(r, r.c.run_uuid == ri.c.run_uuid))
            .where(ri.c.dataset_uuid == row.dataset_uuid)
            .order_by(r.c.start_time.desc())
            .limit(1000)
        ).all()
    return {
        "source_type": row.source_type,
        "source": row.source,
        "schema": row.schema,
        "profile": row.profile,
        "runs": [
            {
                "run_id": run.run_uuid,
                "run_name": run.name,
                "status": run.status,
                "start_time": run.start_time,
                "lifecycle_stage": run.lifecycle_stage,
                "context": run.context,
            }
            for run in runs
        ],
    }


def _find_dataset_scanned(
    store: TrackingStore, experiment_id: str, name: str, digest: str
) -> dict[str, Any] | None:
    found: dict[str, Any] | None = None
    for run in _scan_runs(store, [experiment_id]):
        for item in run.inputs:
            if item.dataset.name != name or item.dataset.digest != digest:
                continue
            if found is None:
                ds = item.dataset
                found = {
                    "source_type": ds.source_type,
                    "source": ds.source,
                    "schema": ds.schema,
                    "profile": ds.profile,
                    "runs": [],
                }
            found["runs"].append(
                {
                    "run_id": run.info.run_id,
                    "run_name": run.info.run_name,
                    "status": run.info.status.value,
                    "start_time": run.info.start_time,
                    "lifecycle_stage": run.info.lifecycle_stage.value,
                    "context": item.context,
                }
            )
    return found


# -- helpers -------------------------------------------------------------------


def take(
    fetch: Callable[[str | None, int], PagedList[T]], offset: int, limit: int
) -> tuple[list[T], bool]:
    """Items ``offset .. offset+limit`` of a paged listing, and whether more follow.

    >>> def fetch(token, size):
    ...     start = int(token or 0)
    ...     items = list(range(10))[start : start + size]
    ...     nxt = str(start + size) if start + size < 10 else None
    ...     return PagedList(items, nxt)
    >>> take(fetch, 4, 3)
    ([4, 5, 6], True)
    """
    wanted = offset + limit + 1
    got: list[T] = []
    token: str | None = None
    while len(got) < wanted:
        page = fetch(token, min(1000, wanted - len(got)))
        got.extend(page)
        token = page.next_page_token
        if not token:
            break
    return got[offset : offset + limit], len(got) > offset + limit


def _experiments(store: TrackingStore) -> dict[str, Experiment]:
    out: dict[str, Experiment] = {}
    token = None
    while True:
        page = store.search_experiments(
            view_type=ViewType.ACTIVE_ONLY, max_results=1000, page_token=token
        )
        out.update((e.experiment_id, e) for e in page)
        token = page.next_page_token
        if not token:
            return out


def _scan_runs(store: TrackingStore, experiment_ids: Sequence[str]) -> Iterator[Run]:
    """Runs newest first, at most _MAX_SCANNED_RUNS: for stores without SQL to ask."""
    if not experiment_ids:
        return
    token = None
    seen = 0
    while seen < _MAX_SCANNED_RUNS:
        page = store.search_runs(
            list(experiment_ids),
            max_results=1000,
            order_by=["attributes.start_time DESC"],
            page_token=token,
        )
        for run in page:
            seen += 1
            yield run
        token = page.next_page_token
        if not token:
            return


def _dataset_key(request: Request) -> tuple[str, str, str]:
    params = request.query_params
    values = tuple(params.get(k, "") for k in ("experiment_id", "name", "digest"))
    if not all(values):
        raise InvalidParameter(
            "A dataset is named by experiment_id, name and digest; open one from /data."
        )
    return values  # type: ignore[return-value]


def _page_number(raw: str | None) -> int:
    try:
        return max(1, min(int(raw or 1), 100_000))
    except ValueError:
        return 1


def _quoted_key(key: str) -> str:
    return quote_text(key, "`")


def _loads(text: str | None) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def _plain(value: Any) -> Any:
    """Numbers stay numbers (the template formats them); anything else becomes text."""
    if value is None or isinstance(value, bool | int | float):
        return value
    return str(value)
