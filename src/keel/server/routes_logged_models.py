"""MLflow 3's logged models: what ``mlflow.<flavor>.log_model`` and ``runs:/`` loading call.

The sequence, shapes and error texts follow research/mlflow-wire.md §8 and
§12.4: create PENDING, link to the run (``runs/outputs``), upload files under
the model's own artifact location, finalise READY; registering sets
``source = models:/<model_id>``.

>>> [f"{e.method} {e.path}" for e in ENDPOINTS][:2]
['POST /logged-models', 'POST /logged-models/search']
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from keel.entities import LoggedModelOutput
from keel.errors import InvalidParameter
from keel.mlflow_json import logged_model_json
from keel.server.app import Endpoint
from keel.server.wire import Field, experiment_id_value, parse
from keel.store.logged_models import (
    MAX_PARAMS_PER_REQUEST,
    MAX_TAGS_PER_REQUEST,
    parse_status,
)

if TYPE_CHECKING:
    from keel.server.app import ServerContext

_MODEL_ID = Field("model_id", required=True)
_KEY_VALUE = (Field("key", required=True), Field("value", required=True))


def _key_values(raw: list[Any], what: str, limit: int) -> dict[str, str]:
    if len(raw) > limit:
        raise InvalidParameter(
            f"A request can carry at most {limit} {what}s; got {len(raw)}. Send them in "
            "several calls (the MLflow client splits for you)."
        )
    out: dict[str, str] = {}
    for item in raw:
        if not isinstance(item, dict):
            raise InvalidParameter(
                f"Invalid {what} {item!r}: expected {{'key': ..., 'value': ...}}."
            )
        kv = parse(_KEY_VALUE, item)
        out[kv["key"]] = kv["value"]
    return out


def create_logged_model(ctx: ServerContext, a: dict[str, Any]) -> dict[str, Any]:
    model = ctx.tracking.create_logged_model(
        experiment_id_value(a["experiment_id"]),
        a.get("name") or None,
        source_run_id=a.get("source_run_id") or None,
        model_type=a.get("model_type", ""),
        params=_key_values(a.get("params", []), "param", MAX_PARAMS_PER_REQUEST),
        tags=_key_values(a.get("tags", []), "tag", MAX_TAGS_PER_REQUEST),
    )
    return {"model": logged_model_json(model)}


def get_logged_model(ctx: ServerContext, a: dict[str, Any]) -> dict[str, Any]:
    model = ctx.tracking.get_logged_model(
        a["model_id"], allow_deleted=bool(a.get("allow_deleted", False))
    )
    return {"model": logged_model_json(model)}


def finalize_logged_model(ctx: ServerContext, a: dict[str, Any]) -> dict[str, Any]:
    model = ctx.tracking.finalize_logged_model(a["model_id"], parse_status(a["status"]))
    return {"model": logged_model_json(model)}


def delete_logged_model(ctx: ServerContext, a: dict[str, Any]) -> dict[str, Any]:
    ctx.tracking.delete_logged_model(a["model_id"])
    return {}


def log_logged_model_params(ctx: ServerContext, a: dict[str, Any]) -> dict[str, Any]:
    params = _key_values(a.get("params", []), "param", MAX_PARAMS_PER_REQUEST)
    ctx.tracking.log_logged_model_params(a["model_id"], params)
    return {}


def set_logged_model_tags(ctx: ServerContext, a: dict[str, Any]) -> dict[str, Any]:
    tags = _key_values(a.get("tags", []), "tag", MAX_TAGS_PER_REQUEST)
    ctx.tracking.set_logged_model_tags(a["model_id"], tags)
    return {}


def delete_logged_model_tag(ctx: ServerContext, a: dict[str, Any]) -> dict[str, Any]:
    ctx.tracking.delete_logged_model_tag(a["model_id"], a["tag_key"])
    return {}


def search_logged_models(ctx: ServerContext, a: dict[str, Any]) -> dict[str, Any]:
    page = ctx.tracking.search_logged_models(
        [experiment_id_value(str(i)) for i in a.get("experiment_ids", [])],
        a.get("filter") or None,
        a.get("datasets") or None,
        a.get("max_results"),
        a.get("order_by") or None,
        a.get("page_token") or None,
    )
    out: dict[str, Any] = {"models": [logged_model_json(m) for m in page]}
    if page.next_page_token:
        out["next_page_token"] = page.next_page_token
    return out


_LINK_FIELDS = (Field("model_id", required=True), Field("step", "int64"))


def model_links(raw: list[Any], direction: str) -> list[LoggedModelOutput]:
    """``[{"model_id", "step"?}]`` from ``runs/outputs`` or ``runs/log-inputs``."""
    links = []
    for item in raw:
        if not isinstance(item, dict):
            raise InvalidParameter(f"Invalid model {item!r}: expected {{'model_id': ...}}.")
        link = parse(_LINK_FIELDS, item)
        links.append(LoggedModelOutput(link["model_id"], link.get("step", 0), direction))
    return links


def log_outputs(ctx: ServerContext, a: dict[str, Any]) -> dict[str, Any]:
    ctx.tracking.log_model_links(a["run_id"], model_links(a.get("models", []), "output"))
    return {}


_BY_ID = "/logged-models/{model_id}"

ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(
        "POST",
        "/logged-models",
        (
            Field("experiment_id", required=True),
            Field("name"),
            Field("model_type"),
            Field("source_run_id"),
            Field("params", "object[]"),
            Field("tags", "object[]"),
        ),
        create_logged_model,
        "Create a logged model (PENDING)",
    ),
    Endpoint(
        "POST",
        "/logged-models/search",
        (
            Field("experiment_ids", "string[]", required=True),
            Field("filter"),
            Field("datasets", "object[]"),
            Field("max_results", "int64"),
            Field("order_by", "object[]"),
            Field("page_token"),
        ),
        search_logged_models,
        "Search logged models",
    ),
    Endpoint(
        "GET",
        _BY_ID,
        (_MODEL_ID, Field("allow_deleted", "bool")),
        get_logged_model,
        "Get a logged model",
    ),
    Endpoint(
        "PATCH",
        _BY_ID,
        (_MODEL_ID, Field("status", "enum", required=True)),
        finalize_logged_model,
        "Finalize a logged model (READY or UPLOAD_FAILED)",
    ),
    Endpoint("DELETE", _BY_ID, (_MODEL_ID,), delete_logged_model, "Delete a logged model"),
    Endpoint(
        "POST",
        _BY_ID + "/params",
        (_MODEL_ID, Field("params", "object[]")),
        log_logged_model_params,
        "Log params on a logged model",
    ),
    Endpoint(
        "PATCH",
        _BY_ID + "/tags",
        (_MODEL_ID, Field("tags", "object[]")),
        set_logged_model_tags,
        "Set tags on a logged model",
    ),
    Endpoint(
        "DELETE",
        _BY_ID + "/tags/{tag_key:path}",
        (_MODEL_ID, Field("tag_key", required=True)),
        delete_logged_model_tag,
        "Delete a tag of a logged model",
    ),
    Endpoint(
        "POST",
        "/runs/outputs",
        (Field("run_id", required=True), Field("models", "object[]")),
        log_outputs,
        "Link models a run produced",
    ),
)
