"""Registered models, versions, tags, aliases and stages: MLflow's model-registry RPCs.

Field names, defaults, verbs and response shapes are MLflow's
(research/mlflow-wire.md §9e, §12.5): versions travel as strings, a
registered model's ``aliases`` are ``[{"alias", "version"}]`` and a version's
a list of names, ``DELETE`` requests carry a JSON body.

Keel's rules hold over REST as they do in ``keel.Client``: setting an alias
and moving a version into Staging or Production go through
:class:`keel.registry.service.Registry`, so the promotion gates declared for
that alias (or stage) run first. A refused promotion answers 400
``INVALID_STATE`` with the gate report in the message (never 5xx: the MLflow
client retries those).

Two requests take an optional field MLflow does not have, ``force_reason``
(``registered-models/alias``, ``model-versions/transition-stage``): an
override of failing gates, as in ``keel.Client.promote(..., force_reason=...)``
(for an alias, recorded on the version). MLflow clients never send it.

>>> sorted({e.path for e in ENDPOINTS})[:3]
['/model-versions/create', '/model-versions/delete', '/model-versions/delete-tag']
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlparse

from keel.artifacts import safe_relpath
from keel.entities import ModelVersion
from keel.errors import InvalidParameter, KeelError, NotFound
from keel.registry.gates import GATES_TAG_PREFIX, load_gates, parse_gate
from keel.registry.service import Registry, names_registered_version
from keel.server.app import Endpoint
from keel.server.config import is_local_destination, is_s3_destination, local_path_of
from keel.server.locations import check_model_source, is_local
from keel.server.wire import Field, model_version_json, parse, registered_model_json
from keel.store.registry import (
    DEFAULT_RESULTS_MODEL_VERSIONS,
    DEFAULT_RESULTS_REGISTERED_MODELS,
    RegistryStore,
)
from keel.store.registry_validation import parse_stage, validate_alias

if TYPE_CHECKING:
    from keel.server.app import ServerContext

_NAME = Field("name", required=True)
_VERSION = Field("version", required=True)
_KEY = Field("key", required=True)
_ALIAS = Field("alias", required=True)
_TAG_FIELDS = (Field("key", required=True), Field("value"))
_PROXY_SCHEME = "mlflow-artifacts"


class RegistryUnavailable(KeelError):
    """The server runs without a model registry (its tracking store has none)."""

    error_code: ClassVar[str] = "NOT_IMPLEMENTED"
    http_status: ClassVar[int] = 501


def _store(ctx: ServerContext) -> RegistryStore:
    if ctx.registry is None:
        raise RegistryUnavailable(
            "This server has no model registry: its tracking store keeps none. Serve a "
            "SQLite or PostgreSQL backend store (keel server --backend-store-uri ...)."
        )
    return ctx.registry


class ServerRegistry(Registry):
    """The registry service as the server runs it: packages under ``mlflow-artifacts:/``
    are read from the server's own artifacts destination, so package gates
    (``signature``, ``loads``, ``verify``) work on versions uploaded through the proxy."""

    def __init__(self, ctx: ServerContext) -> None:
        super().__init__(ctx.tracking, _store(ctx))
        destination = ctx.artifacts_destination
        self.proxy_root = (
            local_path_of(destination).resolve()
            if destination and is_local_destination(destination)
            else None
        )
        self.proxy_s3 = (
            destination.rstrip("/") if destination and is_s3_destination(destination) else None
        )

    def package_path(self, version: ModelVersion) -> Path:
        uri = self.download_uri(version)
        parsed = urlparse(uri)
        if parsed.scheme != _PROXY_SCHEME or parsed.netloc:
            return super().package_path(version)
        if self.proxy_s3 is not None:
            # Behind an S3 destination the package is fetched the way a client
            # would get it, into a fresh directory for this check.
            from keel.artifacts.s3 import S3ArtifactRepository

            rel = safe_relpath(parsed.path.lstrip("/"))
            repo = S3ArtifactRepository(f"{self.proxy_s3}/{rel}" if rel else self.proxy_s3)
            return repo.download_artifacts("", Path(tempfile.mkdtemp(prefix="keel-gate-")))
        if self.proxy_root is None:
            return super().package_path(version)
        target = (self.proxy_root / safe_relpath(parsed.path.lstrip("/"))).resolve()
        if target != self.proxy_root and self.proxy_root not in target.parents:
            raise InvalidParameter(f"Model source {uri!r} leaves the artifacts destination.")
        return target


def _service(ctx: ServerContext) -> Registry:
    return ServerRegistry(ctx)


def _tags(raw: list[Any] | None, what: str) -> dict[str, str]:
    tags: dict[str, str] = {}
    for item in raw or []:
        if not isinstance(item, dict):
            raise InvalidParameter(
                f"Invalid {what} {item!r}: expected {{'key': ..., 'value': ...}}."
            )
        tag = parse(_TAG_FIELDS, item)
        tags[tag["key"]] = tag.get("value", "")
    return tags


def _check_gates_tag(key: str, value: str) -> None:
    """A ``keel.gates.<alias>`` tag set over REST must hold gates Keel can run."""
    if not key.startswith(GATES_TAG_PREFIX):
        return
    try:
        for gate in load_gates(value):
            if gate.kind != "verify":  # a verify gate's text names a file read at declaration
                parse_gate(gate.text)
    except (KeelError, ValueError, TypeError, AttributeError) as exc:
        # Untrusted JSON: load_gates expects what dump_gates wrote.
        why = exc.message if isinstance(exc, KeelError) else f"{type(exc).__name__}: {exc}"
        raise InvalidParameter(
            f"Tag {key!r} holds promotion gates, and its value is not a valid gate list "
            f"({why}). Declare gates with keel.Client.set_promotion_gates or "
            "`keel models gates`."
        ) from None


def _paged(key: str, items: list[dict[str, Any]], token: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {key: items}
    if token:
        out["next_page_token"] = token
    return out


# -- registered models -------------------------------------------------------


def create_registered_model(ctx: ServerContext, a: dict[str, Any]) -> dict[str, Any]:
    tags = _tags(a.get("tags"), "registered model tag")
    for key, value in tags.items():
        _check_gates_tag(key, value)
    model = _store(ctx).create_registered_model(a["name"], tags, a.get("description") or None)
    return {"registered_model": registered_model_json(model)}


def get_registered_model(ctx: ServerContext, a: dict[str, Any]) -> dict[str, Any]:
    return {"registered_model": registered_model_json(_store(ctx).get_registered_model(a["name"]))}


def rename_registered_model(ctx: ServerContext, a: dict[str, Any]) -> dict[str, Any]:
    model = _store(ctx).rename_registered_model(a["name"], a["new_name"])
    return {"registered_model": registered_model_json(model)}


def update_registered_model(ctx: ServerContext, a: dict[str, Any]) -> dict[str, Any]:
    # As MLflow: an absent description is proto3's default, the empty string.
    model = _store(ctx).update_registered_model(a["name"], a.get("description", ""))
    return {"registered_model": registered_model_json(model)}


def delete_registered_model(ctx: ServerContext, a: dict[str, Any]) -> dict[str, Any]:
    _store(ctx).delete_registered_model(a["name"])
    return {}


def search_registered_models(ctx: ServerContext, a: dict[str, Any]) -> dict[str, Any]:
    page = _store(ctx).search_registered_models(
        a.get("filter") or None,
        a.get("max_results", DEFAULT_RESULTS_REGISTERED_MODELS),
        a.get("order_by") or None,
        a.get("page_token") or None,
    )
    return _paged(
        "registered_models", [registered_model_json(m) for m in page], page.next_page_token
    )


def set_registered_model_tag(ctx: ServerContext, a: dict[str, Any]) -> dict[str, Any]:
    value = a.get("value", "")
    _check_gates_tag(a["key"], value)
    _store(ctx).set_registered_model_tag(a["name"], a["key"], value)
    return {}


def delete_registered_model_tag(ctx: ServerContext, a: dict[str, Any]) -> dict[str, Any]:
    _store(ctx).delete_registered_model_tag(a["name"], a["key"])
    return {}


def get_latest_versions(ctx: ServerContext, a: dict[str, Any]) -> dict[str, Any]:
    versions = _store(ctx).get_latest_versions(a["name"], a.get("stages") or None)
    return {"model_versions": [model_version_json(v) for v in versions]}


# -- aliases -------------------------------------------------------------------


def set_registered_model_alias(ctx: ServerContext, a: dict[str, Any]) -> dict[str, Any]:
    validate_alias(a["alias"])
    # Registry.promote runs the alias's gates and records their report on the version;
    # a failing gate raises PromotionRefused (400 INVALID_STATE) and the alias stays put.
    _service(ctx).promote(
        a["name"], a["version"], a["alias"], force_reason=a.get("force_reason") or None
    )
    return {}


def delete_registered_model_alias(ctx: ServerContext, a: dict[str, Any]) -> dict[str, Any]:
    _store(ctx).delete_registered_model_alias(a["name"], a["alias"])
    return {}


def get_model_version_by_alias(ctx: ServerContext, a: dict[str, Any]) -> dict[str, Any]:
    store = _store(ctx)
    try:
        version = store.get_model_version_by_alias(a["name"], a["alias"])
    except NotFound as missing:
        store.get_registered_model(a["name"])  # a missing model stays 404, as in MLflow
        # MLflow answers a missing alias with 400 INVALID_PARAMETER_VALUE, not 404.
        raise InvalidParameter(missing.message) from None
    return {"model_version": model_version_json(version)}


# -- model versions ------------------------------------------------------------


def create_model_version(ctx: ServerContext, a: dict[str, Any]) -> dict[str, Any]:
    source: str = a["source"]
    run_id: str | None = a.get("run_id") or None
    model_id: str | None = a.get("model_id") or None
    # The run is read only when it can matter: a local source must lie in its directory.
    check_model_source(source, _run_artifact_uri(ctx, run_id) if is_local(source) else None)
    if (run_id is None or model_id is None) and names_registered_version(source):
        # Registered from another version (models:/clf/1): keep its lineage, as MLflow does.
        try:
            origin = _service(ctx).resolve(source)
        except KeelError:
            origin = None  # stored as given: the source is the caller's to name
        if origin is not None:
            run_id = run_id or origin.run_id
            model_id = model_id or origin.model_id
    if run_id is None and model_id is not None:
        # MLflow 3's log_model(registered_model_name=...) sends only the model: its
        # source run is the version's run, so lineage and run gates work.
        with contextlib.suppress(KeelError):
            run_id = ctx.tracking.get_logged_model(model_id).source_run_id
    version = _store(ctx).create_model_version(
        a["name"],
        source,
        run_id=run_id,
        tags=_tags(a.get("tags"), "model version tag"),
        run_link=a.get("run_link") or None,
        description=a.get("description") or None,
        model_id=model_id,
        user_id=a.get("user_id") or "",
    )
    return {"model_version": model_version_json(version)}


def _run_artifact_uri(ctx: ServerContext, run_id: str | None) -> str | None:
    if run_id is None:
        return None
    try:
        return ctx.tracking.get_run(run_id).info.artifact_uri
    except KeelError:
        return None  # an unknown run contains no local source


def get_model_version(ctx: ServerContext, a: dict[str, Any]) -> dict[str, Any]:
    version = _store(ctx).get_model_version(a["name"], a["version"])
    return {"model_version": model_version_json(version)}


def update_model_version(ctx: ServerContext, a: dict[str, Any]) -> dict[str, Any]:
    store = _store(ctx)
    if "description" in a:
        version = store.update_model_version(a["name"], a["version"], a["description"])
    else:  # MLflow leaves the version untouched when no description is sent
        version = store.get_model_version(a["name"], a["version"])
    return {"model_version": model_version_json(version)}


def delete_model_version(ctx: ServerContext, a: dict[str, Any]) -> dict[str, Any]:
    _store(ctx).delete_model_version(a["name"], a["version"])
    return {}


def search_model_versions(ctx: ServerContext, a: dict[str, Any]) -> dict[str, Any]:
    page = _store(ctx).search_model_versions(
        a.get("filter") or None,
        a.get("max_results", DEFAULT_RESULTS_MODEL_VERSIONS),
        a.get("order_by") or None,
        a.get("page_token") or None,
    )
    return _paged("model_versions", [model_version_json(v) for v in page], page.next_page_token)


def transition_model_version_stage(ctx: ServerContext, a: dict[str, Any]) -> dict[str, Any]:
    version = _service(ctx).transition_stage(
        a["name"],
        a["version"],
        parse_stage(a["stage"]),  # an unknown stage is a 400 listing the stages
        a.get("archive_existing_versions", False),
        force_reason=a.get("force_reason") or None,
    )
    return {"model_version": model_version_json(version)}


def set_model_version_tag(ctx: ServerContext, a: dict[str, Any]) -> dict[str, Any]:
    _store(ctx).set_model_version_tag(a["name"], a["version"], a["key"], a.get("value", ""))
    return {}


def delete_model_version_tag(ctx: ServerContext, a: dict[str, Any]) -> dict[str, Any]:
    _store(ctx).delete_model_version_tag(a["name"], a["version"], a["key"])
    return {}


def get_model_version_download_uri(ctx: ServerContext, a: dict[str, Any]) -> dict[str, Any]:
    # runs:/ and registered models:/ sources become the artifact URI behind them.
    version = _store(ctx).get_model_version(a["name"], a["version"])
    return {"artifact_uri": _service(ctx).download_uri(version)}


# -- the table -------------------------------------------------------------------


def _search_fields() -> tuple[Field, ...]:
    return (
        Field("filter"),
        Field("max_results", "int64"),
        Field("order_by", "string[]"),
        Field("page_token"),
    )


_LATEST_FIELDS = (_NAME, Field("stages", "string[]"))

ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(
        "POST",
        "/registered-models/create",
        (_NAME, Field("tags", "object[]"), Field("description")),
        create_registered_model,
        "Create a registered model",
    ),
    Endpoint(
        "GET", "/registered-models/get", (_NAME,), get_registered_model, "Get a registered model"
    ),
    Endpoint(
        "POST",
        "/registered-models/rename",
        (_NAME, Field("new_name", required=True)),
        rename_registered_model,
        "Rename a registered model",
    ),
    Endpoint(
        "PATCH",
        "/registered-models/update",
        (_NAME, Field("description")),
        update_registered_model,
        "Update a registered model's description",
    ),
    Endpoint(
        "DELETE",
        "/registered-models/delete",
        (_NAME,),
        delete_registered_model,
        "Delete a registered model and its versions",
    ),
    Endpoint(
        "GET",
        "/registered-models/search",
        _search_fields(),
        search_registered_models,
        "Search registered models",
    ),
    Endpoint(
        "POST",
        "/registered-models/set-tag",
        (_NAME, *_TAG_FIELDS),
        set_registered_model_tag,
        "Set a registered model tag",
    ),
    Endpoint(
        "DELETE",
        "/registered-models/delete-tag",
        (_NAME, _KEY),
        delete_registered_model_tag,
        "Delete a registered model tag",
    ),
    Endpoint(
        "POST",
        "/registered-models/get-latest-versions",
        _LATEST_FIELDS,
        get_latest_versions,
        "The newest version in each stage",
    ),
    Endpoint(
        "GET",
        "/registered-models/get-latest-versions",
        _LATEST_FIELDS,
        get_latest_versions,
        "The newest version in each stage",
    ),
    Endpoint(
        "POST",
        "/registered-models/alias",
        (_NAME, _ALIAS, _VERSION, Field("force_reason", doc="Keel: override failing gates")),
        set_registered_model_alias,
        "Point an alias at a version (after the alias's promotion gates pass)",
    ),
    Endpoint(
        "DELETE",
        "/registered-models/alias",
        (_NAME, _ALIAS),
        delete_registered_model_alias,
        "Delete an alias",
    ),
    Endpoint(
        "GET",
        "/registered-models/alias",
        (_NAME, _ALIAS),
        get_model_version_by_alias,
        "The version an alias points at",
    ),
    Endpoint(
        "POST",
        "/model-versions/create",
        (
            _NAME,
            Field("source", required=True),
            Field("run_id"),
            Field("tags", "object[]"),
            Field("run_link"),
            Field("description"),
            Field("model_id"),
            Field("user_id", doc="Keel: who registers the version"),
        ),
        create_model_version,
        "Register a new version of a model",
    ),
    Endpoint("GET", "/model-versions/get", (_NAME, _VERSION), get_model_version, "Get a version"),
    Endpoint(
        "PATCH",
        "/model-versions/update",
        (_NAME, _VERSION, Field("description")),
        update_model_version,
        "Update a version's description",
    ),
    Endpoint(
        "DELETE",
        "/model-versions/delete",
        (_NAME, _VERSION),
        delete_model_version,
        "Delete a version",
    ),
    Endpoint(
        "GET",
        "/model-versions/search",
        _search_fields(),
        search_model_versions,
        "Search model versions",
    ),
    Endpoint(
        "POST",
        "/model-versions/transition-stage",
        (
            _NAME,
            _VERSION,
            Field("stage", required=True),
            Field("archive_existing_versions", "bool"),
            Field("force_reason", doc="Keel: override failing gates"),
        ),
        transition_model_version_stage,
        "Move a version to a stage (after the stage's promotion gates pass)",
    ),
    Endpoint(
        "POST",
        "/model-versions/set-tag",
        (_NAME, _VERSION, *_TAG_FIELDS),
        set_model_version_tag,
        "Set a version tag",
    ),
    Endpoint(
        "DELETE",
        "/model-versions/delete-tag",
        (_NAME, _VERSION, _KEY),
        delete_model_version_tag,
        "Delete a version tag",
    ),
    Endpoint(
        "GET",
        "/model-versions/get-download-uri",
        (_NAME, _VERSION),
        get_model_version_download_uri,
        "Where a version's files can be downloaded from",
    ),
)
