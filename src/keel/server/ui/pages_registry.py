"""Registry pages: registered models, their versions with aliases inline, and lineage.

``/models`` lists the models (name search, paged), ``/models/{name}`` a
model's versions newest first with the aliases pointing at each, and
``/models/{name}/versions/{version}`` one version: facts, the lineage chain
(run, datasets, code, environment, checks), recorded gate results and the
``keel serve`` commands. Aliases move through ``POST /models/{name}/aliases``
(JSON ``{"alias", "version"}``) and ``DELETE /models/{name}/aliases/{alias}``;
a move runs the alias's promotion gates, as the REST API and ``keel.Client``
do, and a refusal comes back with the gates' report.

>>> serve_commands("churn", 3, ["champion"])[1]["command"]
'keel serve models:/churn@champion'
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio.from_thread
from starlette.requests import Request
from starlette.responses import Response

from keel.entities import PARENT_RUN_ID_TAG, ModelVersion, RegisteredModel
from keel.errors import InvalidParameter, KeelError, NotFound
from keel.registry.gates import GATES_TAG_PREFIX, load_gates
from keel.registry.service import GATE_RESULT_TAG_PREFIX
from keel.search.filter import quote_text
from keel.server.ui.pages_data import dataset_url, run_reports, take
from keel.server.ui.render import respond
from keel.tracking.client import DRIFT_COLUMNS_TAG, DRIFT_STATUS_TAG, VALIDATION_STATUS_TAG

if TYPE_CHECKING:
    from keel.server.app import ServerContext
    from keel.server.routes_registry import ServerRegistry
    from keel.server.ui import UI
    from keel.store.registry import RegistryStore

PER_PAGE = 25
_EXCERPT = 140
# Tags the pages show in their own places (gates, gate results), not as plain tags.
_HIDDEN_TAG_PREFIXES = (GATES_TAG_PREFIX, GATE_RESULT_TAG_PREFIX, "mlflow.")
# The packages worth naming first in an environment: the model's own libraries.
_KEY_PACKAGES = ("scikit-learn", "xgboost", "lightgbm", "torch", "tensorflow", "onnxruntime")


def register(ui: UI) -> None:
    @ui.page("/models")
    def models(ui: UI, request: Request) -> Response:
        params = request.query_params
        page = _page_number(params.get("page"))
        body = models_data(_service(ui.ctx).registry, q=params.get("q", "").strip(), page=page)
        return respond(request, "models.html", body, title="Models", nav="models")

    @ui.page("/models/{name}/versions/{version}")
    def model_version(ui: UI, request: Request, name: str, version: str) -> Response:
        body = version_data(ui.ctx, name, version)
        return respond(
            request, "model_version.html", body, title=f"{name} v{version}", nav="models"
        )

    @ui.change("/models/{name}/aliases", "POST")
    def set_alias(ui: UI, request: Request, name: str) -> Response:
        return _alias_change(request, lambda: _set_alias(ui.ctx, name, _json_body(request)))

    @ui.change("/models/{name}/aliases/{alias}", "DELETE")
    def delete_alias(ui: UI, request: Request, name: str, alias: str) -> Response:
        return _alias_change(request, lambda: _delete_alias(ui.ctx, name, alias))

    @ui.page("/models/{name}")
    def model(ui: UI, request: Request, name: str) -> Response:
        body = model_data(_service(ui.ctx).registry, name)
        return respond(request, "model.html", body, title=name, nav="models")


# -- /models ---------------------------------------------------------------------


def models_data(registry: RegistryStore, *, q: str, page: int) -> dict[str, Any]:
    """Registered models whose name contains ``q`` (any case), by name, one page of them.

    >>> from keel.store import open_registry_store
    >>> reg = open_registry_store("sqlite:///:memory:")
    >>> _ = reg.create_registered_model("churn"), reg.create_registered_model("fraud")
    >>> [m["name"] for m in models_data(reg, q="UR", page=1)["models"]]
    ['churn']
    """
    found: list[RegisteredModel] = []
    token = None
    while True:
        batch = registry.search_registered_models(max_results=1000, page_token=token)
        found.extend(batch)
        token = batch.next_page_token
        if not token:
            break
    needle = q.lower()
    matching = [m for m in found if needle in m.name.lower()]
    start = (page - 1) * PER_PAGE
    return {
        "q": q,
        "page": page,
        "per_page": PER_PAGE,
        "total": len(matching),
        "has_next": start + PER_PAGE < len(matching),
        "models": [_model_row(m) for m in matching[start : start + PER_PAGE]],
    }


def _model_row(m: RegisteredModel) -> dict[str, Any]:
    latest = max((v.version for v in m.latest_versions), default=None)
    return {
        "name": m.name,
        "url": model_url(m.name),
        "latest_version": latest,
        "aliases": _aliases(m.aliases),
        "gated_aliases": _gated_aliases(m.tags),
        "tags": visible_tags(m.tags),
        "description": m.description or "",
        "excerpt": _excerpt(m.description),
        "creation_timestamp": m.creation_timestamp,
        "last_updated_timestamp": m.last_updated_timestamp,
    }


# -- /models/{name} --------------------------------------------------------------


def model_data(registry: RegistryStore, name: str) -> dict[str, Any]:
    """A model with all its versions, newest first, each with the aliases pointing at it."""
    rm = registry.get_registered_model(name)

    def fetch(token: str | None, size: int) -> Any:
        return registry.search_model_versions(
            f"name = {quote_text(name)}",
            max_results=size,
            order_by=["version_number DESC"],
            page_token=token,
        )

    versions, _ = take(fetch, 0, 100_000)
    by_version = _aliases_by_version(rm.aliases)
    return {
        "model": {
            **_model_row(rm),
            "gates": {alias: [g.text for g in gates] for alias, gates in _gates(rm).items()},
        },
        "versions": [_version_row(v, by_version.get(v.version, [])) for v in versions],
    }


def _version_row(v: ModelVersion, aliases: list[str]) -> dict[str, Any]:
    return {
        "version": v.version,
        "url": version_url(v.name, v.version),
        "aliases": aliases,
        "stage": v.current_stage.value,
        "status": v.status.value,
        "tags": visible_tags(v.tags),
        "gate_results": _gate_results(v.tags),
        "run_id": v.run_id,
        "source": v.source,
        "description": v.description or "",
        "excerpt": _excerpt(v.description),
        "creation_timestamp": v.creation_timestamp,
        "last_updated_timestamp": v.last_updated_timestamp,
    }


# -- /models/{name}/versions/{version} ------------------------------------------------


def version_data(ctx: ServerContext, name: str, version: str) -> dict[str, Any]:
    """One version: facts, aliases, tags, lineage chain, checks, gates, serve commands."""
    from keel.registry.lineage import build_lineage

    if not version.isdigit():
        raise NotFound(f"Model versions are numbers; {version!r} is not one.")
    service = _service(ctx)
    mv = service.registry.get_model_version(name, version)
    rm = service.registry.get_registered_model(name)
    aliases = _aliases_by_version(rm.aliases).get(mv.version, [])
    try:
        lineage = build_lineage(_local_packages_only(ctx), mv)
    except KeelError as exc:  # lineage is extra: the version page stands without it
        from keel.registry.lineage import empty_lineage

        lineage = empty_lineage()
        lineage["notes"].append(f"lineage: {exc.message}")
    run = lineage["run"]
    reports: list[dict[str, str]] = []
    parent: dict[str, Any] | None = None
    if run is not None:
        reports, parent = _run_and_parent_reports(ctx, run)
        for ds in lineage["datasets"]:
            ds["url"] = dataset_url(run["experiment_id"], ds["name"], ds["digest"])
    gates = _gates(rm)
    recorded = _gate_results(mv.tags)
    return {
        "model_name": name,
        "model_url": model_url(name),
        # not "version": base.html shows Keel's own version under that name
        "model_version": _version_row(mv, aliases),
        "other_aliases": [a for a in _aliases(rm.aliases) if a["version"] != mv.version],
        "lineage": lineage,
        "environment": _environment(lineage.get("environment")),
        "checks": _checks(lineage, run, parent),
        "reports": reports,
        "gates": [
            {
                "alias": alias,
                "gates": [g.text for g in declared],
                "result": recorded.get(alias),
            }
            for alias, declared in gates.items()
        ],
        "serve": serve_commands(name, mv.version, aliases),
        "aliases_url": f"{model_url(name)}/aliases",
    }


def serve_commands(name: str, version: int, aliases: Iterable[str]) -> list[dict[str, str]]:
    """``keel serve`` for the version itself and for each alias pointing at it."""
    uris = [f"models:/{name}/{version}"] + [f"models:/{name}@{a}" for a in aliases]
    return [{"uri": uri, "command": f"keel serve {shlex.quote(uri)}"} for uri in uris]


def _run_and_parent_reports(
    ctx: ServerContext, run: dict[str, Any]
) -> tuple[list[dict[str, str]], dict[str, Any] | None]:
    """Reports logged to the source run and to its parent (a search logs its data checks
    once, on the parent of the runs it trains), and the parent's tags when it has one."""
    reports: list[dict[str, str]] = []
    parent: dict[str, Any] | None = None
    ids = [run["run_id"]]
    parent_id = (run.get("tags") or {}).get(PARENT_RUN_ID_TAG)
    if parent_id:
        ids.append(parent_id)
    for run_id in ids:
        try:
            found = ctx.tracking.get_run(run_id)
        except KeelError:
            continue
        if run_id == parent_id:
            parent = {"run_id": run_id, "tags": dict(found.data.tags)}
        reports.extend(run_reports(ctx, found))
    return reports, parent


def _checks(
    lineage: dict[str, Any], run: dict[str, Any] | None, parent: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """Every check the lineage knows of, as pass/fail: data, package, parity, gates."""
    out: list[dict[str, Any]] = []
    # The run's own data checks win; a parent's apply to the runs it trained.
    tags = {**((parent or {}).get("tags") or {}), **((run or {}).get("tags") or {})}
    if VALIDATION_STATUS_TAG in tags:
        status = tags[VALIDATION_STATUS_TAG]
        out.append({"name": "data validation", "ok": status == "passed", "detail": status})
    if DRIFT_STATUS_TAG in tags:
        columns = tags.get(DRIFT_COLUMNS_TAG) or ""
        detail = f"drift in {columns}" if columns else tags[DRIFT_STATUS_TAG]
        out.append({"name": "drift", "ok": tags[DRIFT_STATUS_TAG] == "none", "detail": detail})
    for check in lineage.get("checks") or []:
        out.append({"name": check["name"], "ok": bool(check["ok"]), "detail": check["detail"]})
    parity = (lineage.get("package") or {}).get("onnx_parity")
    if isinstance(parity, dict):
        passed = bool(parity.get("passed"))
        detail = parity.get("error") or (
            f"label agreement {parity.get('label_agreement')}, "
            f"max abs diff {parity.get('max_abs_diff')}"
        )
        out.append({"name": "ONNX parity", "ok": passed, "detail": str(detail)})
    for alias, report in (lineage.get("gates") or {}).items():
        status = report.get("status") if isinstance(report, dict) else str(report)
        out.append({"name": f"gates for @{alias}", "ok": status == "passed", "detail": str(status)})
    return out


def _environment(env: Any) -> dict[str, Any] | None:
    if not isinstance(env, dict):
        return None
    packages = env.get("packages") or {}
    ordered = sorted(packages.items(), key=lambda kv: (kv[0] not in _KEY_PACKAGES, kv[0]))
    return {
        "python": env.get("python"),
        "implementation": env.get("implementation"),
        "platform": env.get("platform"),
        "packages": [{"name": str(k), "version": str(v)} for k, v in ordered],
    }


# -- alias changes -----------------------------------------------------------------


def _alias_change(request: Request, change: Any) -> Response:
    """Run an alias change; answer JSON, with the refusal's message and status on failure."""
    try:
        body = change()
        status = 200
    except KeelError as exc:
        body = {"error": {"status": exc.http_status, "message": exc.message}}
        report = getattr(exc, "report", None)
        if report is not None:
            body["error"]["report"] = report.to_dict()
        status = exc.http_status
    return Response(
        json.dumps(body),
        status_code=status,
        media_type="application/json",
        headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"},
    )


def _set_alias(ctx: ServerContext, name: str, body: Any) -> dict[str, Any]:
    from keel.store.registry_validation import validate_alias

    if not isinstance(body, dict):
        raise InvalidParameter('Send {"alias": "...", "version": "..."} as JSON.')
    alias = validate_alias(str(body.get("alias") or "").strip())
    version = str(body.get("version") or "").strip()
    if not version.isdigit():
        raise InvalidParameter(f"The version must be a number, not {version!r}.")
    # The registry service runs the alias's gates and records their report: the
    # same rules as the REST API and keel.Client.
    report = _service(ctx).promote(name, version, alias)
    return {"alias": alias, "version": int(version), "report": report.to_dict()}


def _delete_alias(ctx: ServerContext, name: str, alias: str) -> dict[str, Any]:
    registry = _service(ctx).registry
    rm = registry.get_registered_model(name)
    if alias not in rm.aliases:
        raise NotFound(f"Model {name!r} has no alias {alias!r}; its aliases: {sorted(rm.aliases)}.")
    registry.delete_registered_model_alias(name, alias)
    return {"alias": alias, "deleted": True}


def _json_body(request: Request) -> Any:
    # Page handlers run in a worker thread; the body is read on the event loop.
    raw = anyio.from_thread.run(request.body)
    if len(raw) > 64 * 1024:
        raise InvalidParameter("The request body is too large for an alias change.")
    try:
        return json.loads(raw or b"null")
    except ValueError as exc:
        raise InvalidParameter(f"The request body is not JSON: {exc}") from None


# -- helpers -----------------------------------------------------------------------


def _service(ctx: ServerContext) -> ServerRegistry:
    from keel.server.routes_registry import ServerRegistry

    return ServerRegistry(ctx)  # raises 501 with the fix when the server has no registry


def _local_packages_only(ctx: ServerContext) -> ServerRegistry:
    """The registry service for lineage on a page: it reads packages on this machine, and
    notes a remote one rather than downloading a whole model on every page view."""
    from urllib.parse import urlparse

    from keel.artifacts import LocalArtifactRepository, get_repository
    from keel.errors import InvalidState
    from keel.server.routes_registry import ServerRegistry

    class PageRegistry(ServerRegistry):
        def package_path(self, version: ModelVersion) -> Path:
            uri = self.download_uri(version)
            if urlparse(uri).scheme == "mlflow-artifacts":
                if self.proxy_root is not None:
                    return super().package_path(version)
            else:
                repo = get_repository(uri, self.tracking_uri)
                if isinstance(repo, LocalArtifactRepository):
                    return repo.root
            raise InvalidState(
                "the package is stored remotely and is not fetched for a page view; "
                "`keel models doctor` checks it"
            )

    return PageRegistry(ctx)


def model_url(name: str) -> str:
    """The model page's path (names never hold '/', so one quoted segment).

    >>> model_url("churn v2?")
    '/models/churn%20v2%3F'
    """
    from urllib.parse import quote

    return f"/models/{quote(name, safe='')}"


def version_url(name: str, version: int) -> str:
    """The version page's path.

    >>> version_url("churn", 3)
    '/models/churn/versions/3'
    """
    return f"{model_url(name)}/versions/{version}"


def visible_tags(tags: dict[str, str]) -> dict[str, str]:
    """Tags without the ones shown elsewhere (gates, gate results, mlflow.*).

    >>> visible_tags({"team": "ml", "keel.gates.production": "[]"})
    {'team': 'ml'}
    """
    return {k: v for k, v in sorted(tags.items()) if not k.startswith(_HIDDEN_TAG_PREFIXES)}


def _aliases(aliases: dict[str, int]) -> list[dict[str, Any]]:
    return [{"alias": a, "version": v} for a, v in sorted(aliases.items())]


def _aliases_by_version(aliases: dict[str, int]) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for alias, version in sorted(aliases.items()):
        out.setdefault(int(version), []).append(alias)
    return out


def _gated_aliases(tags: dict[str, str]) -> list[str]:
    return sorted(k[len(GATES_TAG_PREFIX) :] for k in tags if k.startswith(GATES_TAG_PREFIX))


def _gates(rm: RegisteredModel) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for alias in _gated_aliases(rm.tags):
        try:
            out[alias] = load_gates(rm.tags[f"{GATES_TAG_PREFIX}{alias}"])
        except KeelError:
            out[alias] = []
    return out


def _gate_results(tags: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tags.items():
        if key.startswith(GATE_RESULT_TAG_PREFIX):
            try:
                out[key[len(GATE_RESULT_TAG_PREFIX) :]] = json.loads(value)
            except ValueError:
                out[key[len(GATE_RESULT_TAG_PREFIX) :]] = {"status": value, "results": []}
    return out


def _excerpt(text: str | None) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= _EXCERPT else text[: _EXCERPT - 1] + "…"


def _page_number(raw: str | None) -> int:
    try:
        return max(1, min(int(raw or 1), 100_000))
    except ValueError:
        return 1
