"""The landing page: experiments with their run counts and last activity.

>>> from keel.store import open_store
>>> experiments_data(open_store("sqlite:///:memory:"), show_deleted=False)["experiments"][0]["name"]
'Default'
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from keel.entities import Experiment, ViewType
from keel.server.ui.render import respond
from keel.store.base import TrackingStore

if TYPE_CHECKING:
    from keel.server.ui import UI


def register(ui: UI) -> None:
    @ui.page("/")
    def experiments(ui: UI, request: Request) -> Response:
        show_deleted = request.query_params.get("deleted") == "1"
        data = experiments_data(ui.ctx.tracking, show_deleted=show_deleted)
        return respond(request, "experiments.html", data, title="Experiments", nav="experiments")


def experiments_data(store: TrackingStore, *, show_deleted: bool) -> dict[str, Any]:
    """Every experiment (newest activity first) with runs and last activity."""
    from keel.store.sql.overview import experiment_activity
    from keel.store.sql.store import SqlTrackingStore

    view = ViewType.ALL if show_deleted else ViewType.ACTIVE_ONLY
    found: list[Experiment] = []
    token = None
    while True:
        page = store.search_experiments(view_type=view, max_results=1000, page_token=token)
        found.extend(page)
        token = page.next_page_token
        if not token:
            break
    activity = experiment_activity(store) if isinstance(store, SqlTrackingStore) else {}
    rows = []
    for exp in found:
        act = activity.get(exp.experiment_id)
        last = max(
            (v for v in (act.last_start_ms if act else None, exp.last_update_time) if v),
            default=None,
        )
        rows.append(
            {
                "experiment_id": exp.experiment_id,
                "name": exp.name,
                "runs": act.runs if act else 0,
                "last_activity_ms": last,
                "lifecycle_stage": str(exp.lifecycle_stage.value),
                "artifact_location": exp.artifact_location,
                "tags": {k: v for k, v in exp.tags.items() if not k.startswith("mlflow.")},
            }
        )
    rows.sort(key=lambda r: (r["last_activity_ms"] or 0, r["name"]), reverse=True)
    return {"experiments": rows, "show_deleted": show_deleted}
