"""The model registry over HTTP: MLflow's registry REST API, spoken to a Keel or MLflow server.

``open_registry_store("http://host:5000")`` returns a :class:`RestRegistryStore`.
It keeps the :class:`~keel.store.registry.RegistryStore` contract of the SQL
registry: the same entities (``version`` as ``int``, stages as
:class:`~keel.entities.ModelStage`), the same exceptions mapped back from the
server's ``error_code`` with the server's message, and the same argument checks,
made here before anything is sent.

The transport is :class:`~keel.store.rest.RestTrackingStore`'s: its pooled
client, credentials, timeouts, retries (reads only) and error mapping. A
registry opened from a tracking store shares that store's connection pool.

Differences from the SQL store, all the server's doing:

- a Keel server runs the promotion gates declared for an alias or stage before
  ``set_registered_model_alias`` and ``transition_model_version_stage`` (the
  raw contract has none); a refused promotion raises
  :class:`~keel.errors.InvalidState`;
- a missing alias answers 400 ``INVALID_PARAMETER_VALUE`` on the wire (as
  MLflow does); it is raised here as :class:`~keel.errors.NotFound`, as the
  contract says;
- ``user_id`` of a new version is a Keel field; an MLflow server ignores it.

>>> registry = RestRegistryStore("http://127.0.0.1:5000/")
>>> registry.url
'http://127.0.0.1:5000'
>>> registry.close()
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from keel.entities import (
    ModelStage,
    ModelVersion,
    ModelVersionStatus,
    PagedList,
    RegisteredModel,
)
from keel.errors import InvalidParameter, NotFound
from keel.mlflow_json import int_from_json
from keel.search.filter import parse_filter
from keel.search.order import parse_order_by
from keel.store import validation
from keel.store.registry import (
    DEFAULT_RESULTS_MODEL_VERSIONS,
    DEFAULT_RESULTS_REGISTERED_MODELS,
    MAX_RESULTS_MODEL_VERSIONS,
    MAX_RESULTS_REGISTERED_MODELS,
    RegistryStore,
)
from keel.store.registry_validation import (
    parse_stage,
    parse_version,
    validate_alias,
    validate_model_name,
    validate_tag,
    validate_tags,
)
from keel.store.rest import RestTrackingStore


def _text(what: str, value: object) -> str:
    """An optional free-text argument: None means empty; anything else must be a string."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidParameter(f"Invalid {what} {value!r}: it must be a string.")
    return value


def _tags_from_json(raw: Any) -> dict[str, str]:
    return {str(t["key"]): str(t.get("value", "")) for t in raw or ()}


def _tags_json(tags: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"key": k, "value": v} for k, v in tags.items()]


def model_version_from_json(d: Mapping[str, Any]) -> ModelVersion:
    """A :class:`ModelVersion` from MLflow's ``model_version`` JSON (version as a string)."""
    return ModelVersion(
        name=str(d.get("name", "")),
        version=int(d["version"]),
        creation_timestamp=int_from_json(d.get("creation_timestamp")),
        last_updated_timestamp=int_from_json(d.get("last_updated_timestamp")),
        source=str(d.get("source") or ""),
        run_id=str(d["run_id"]) if d.get("run_id") else None,
        description=str(d.get("description") or ""),
        user_id=str(d.get("user_id") or ""),
        current_stage=ModelStage.parse(d.get("current_stage") or ModelStage.NONE.value),
        status=ModelVersionStatus(d.get("status") or ModelVersionStatus.READY.value),
        status_message=str(d.get("status_message") or ""),
        run_link=str(d.get("run_link") or ""),
        model_id=str(d["model_id"]) if d.get("model_id") else None,
        tags=_tags_from_json(d.get("tags")),
        aliases=tuple(str(a) for a in d.get("aliases") or ()),
    )


def registered_model_from_json(d: Mapping[str, Any]) -> RegisteredModel:
    """A :class:`RegisteredModel` from MLflow's ``registered_model`` JSON."""
    return RegisteredModel(
        name=str(d.get("name", "")),
        creation_timestamp=int_from_json(d.get("creation_timestamp")),
        last_updated_timestamp=int_from_json(d.get("last_updated_timestamp")),
        description=str(d.get("description") or ""),
        tags=_tags_from_json(d.get("tags")),
        aliases={str(a["alias"]): int(a["version"]) for a in d.get("aliases") or ()},
        latest_versions=tuple(model_version_from_json(v) for v in d.get("latest_versions") or ()),
    )


class RestRegistryStore(RegistryStore):
    """The model registry behind an ``http(s)://`` Keel or MLflow tracking server.

    ``target`` is the server's base URL, or a :class:`RestTrackingStore` whose
    connection pool (and settings) this registry then shares without owning
    it. The keyword arguments apply to a URL only and mean what they mean for
    :class:`RestTrackingStore`.
    """

    def __init__(
        self,
        target: str | RestTrackingStore,
        *,
        timeout: float | None = None,
        max_retries: int | None = None,
        backoff_factor: float | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if isinstance(target, RestTrackingStore):
            self._rest = target
            self._owns_transport = False
        else:
            self._rest = RestTrackingStore(
                target,
                timeout=timeout,
                max_retries=max_retries,
                backoff_factor=backoff_factor,
                transport=transport,
            )
            self._owns_transport = True

    @property
    def url(self) -> str:
        return self._rest.url

    def __repr__(self) -> str:
        return f"RestRegistryStore({self.url!r})"

    def close(self) -> None:
        if self._owns_transport:
            self._rest.close()

    def after_fork(self) -> None:
        if self._owns_transport:
            self._rest.after_fork()

    def _call(
        self, method: str, path: str, fields: Mapping[str, Any], *, read: bool = False
    ) -> dict[str, Any]:
        return self._rest._call(method, path, fields, read=read)

    # -- registered models ---------------------------------------------------

    def create_registered_model(
        self,
        name: str,
        tags: Mapping[str, str] | None = None,
        description: str | None = None,
    ) -> RegisteredModel:
        validate_model_name(name)
        checked = validate_tags(tags)
        fields: dict[str, Any] = {"name": name, "tags": _tags_json(checked)}
        if description:
            fields["description"] = _text("description", description)
        answer = self._call("POST", "/registered-models/create", fields)
        return registered_model_from_json(answer["registered_model"])

    def get_registered_model(self, name: str) -> RegisteredModel:
        validate_model_name(name)
        answer = self._call("GET", "/registered-models/get", {"name": name}, read=True)
        return registered_model_from_json(answer["registered_model"])

    def rename_registered_model(self, name: str, new_name: str) -> RegisteredModel:
        validate_model_name(name)
        validate_model_name(new_name, "new registered model name")
        answer = self._call(
            "POST", "/registered-models/rename", {"name": name, "new_name": new_name}
        )
        return registered_model_from_json(answer["registered_model"])

    def update_registered_model(self, name: str, description: str) -> RegisteredModel:
        validate_model_name(name)
        fields = {"name": name, "description": _text("description", description)}
        answer = self._call("PATCH", "/registered-models/update", fields)
        return registered_model_from_json(answer["registered_model"])

    def delete_registered_model(self, name: str) -> None:
        validate_model_name(name)
        self._call("DELETE", "/registered-models/delete", {"name": name})

    def search_registered_models(
        self,
        filter_string: str | None = None,
        max_results: int = DEFAULT_RESULTS_REGISTERED_MODELS,
        order_by: Sequence[str] | None = None,
        page_token: str | None = None,
    ) -> PagedList[RegisteredModel]:
        # Checked here as the SQL store checks them: the same exceptions
        # (FilterSyntaxError with its position) whatever the server is.
        validation.validate_max_results(
            max_results, MAX_RESULTS_REGISTERED_MODELS, "registered models"
        )
        parse_filter(filter_string, "registered_models")
        parse_order_by(order_by, "registered_models")
        fields = _search_fields(filter_string, max_results, order_by, page_token)
        answer = self._call("GET", "/registered-models/search", fields, read=True)
        return PagedList(
            [registered_model_from_json(m) for m in answer.get("registered_models", ())],
            answer.get("next_page_token") or None,
        )

    def set_registered_model_tag(self, name: str, key: str, value: str) -> None:
        validate_model_name(name)
        validate_tag(key, value)
        self._call("POST", "/registered-models/set-tag", {"name": name, "key": key, "value": value})

    def delete_registered_model_tag(self, name: str, key: str) -> None:
        validate_model_name(name)
        validation.validate_key("registered model tag", key)
        self._call("DELETE", "/registered-models/delete-tag", {"name": name, "key": key})

    # -- model versions ------------------------------------------------------

    def create_model_version(
        self,
        name: str,
        source: str,
        run_id: str | None = None,
        tags: Mapping[str, str] | None = None,
        run_link: str | None = None,
        description: str | None = None,
        model_id: str | None = None,
        user_id: str = "",
    ) -> ModelVersion:
        validate_model_name(name)
        checked = validate_tags(tags, "model version")
        fields: dict[str, Any] = {
            "name": name,
            "source": _text("source", source),
            "tags": _tags_json(checked),
        }
        optional = {
            "run_id": _text("run_id", run_id),
            "run_link": _text("run_link", run_link),
            "description": _text("description", description),
            "model_id": _text("model_id", model_id),
            "user_id": _text("user_id", user_id),
        }
        fields.update({k: v for k, v in optional.items() if v})
        answer = self._call("POST", "/model-versions/create", fields)
        return model_version_from_json(answer["model_version"])

    def get_model_version(self, name: str, version: int | str) -> ModelVersion:
        validate_model_name(name)
        fields = {"name": name, "version": str(parse_version(version))}
        answer = self._call("GET", "/model-versions/get", fields, read=True)
        return model_version_from_json(answer["model_version"])

    def update_model_version(self, name: str, version: int | str, description: str) -> ModelVersion:
        validate_model_name(name)
        fields = {
            "name": name,
            "version": str(parse_version(version)),
            "description": _text("description", description),
        }
        answer = self._call("PATCH", "/model-versions/update", fields)
        return model_version_from_json(answer["model_version"])

    def delete_model_version(self, name: str, version: int | str) -> None:
        validate_model_name(name)
        fields = {"name": name, "version": str(parse_version(version))}
        self._call("DELETE", "/model-versions/delete", fields)

    def transition_model_version_stage(
        self,
        name: str,
        version: int | str,
        stage: ModelStage | str,
        archive_existing_versions: bool = False,
    ) -> ModelVersion:
        validate_model_name(name)
        fields = {
            "name": name,
            "version": str(parse_version(version)),
            "stage": parse_stage(stage).value,
            "archive_existing_versions": bool(archive_existing_versions),
        }
        answer = self._call("POST", "/model-versions/transition-stage", fields)
        return model_version_from_json(answer["model_version"])

    def get_latest_versions(
        self, name: str, stages: Sequence[ModelStage | str] | None = None
    ) -> list[ModelVersion]:
        validate_model_name(name)
        if isinstance(stages, (str, ModelStage)):
            stages = [stages]
        wanted = list(dict.fromkeys(parse_stage(s) for s in stages or ()))
        fields: dict[str, Any] = {"name": name}
        if wanted:
            fields["stages"] = [s.value for s in wanted]
        # POST, as MLflow's client sends it; it changes nothing, so it may be retried.
        answer = self._call("POST", "/registered-models/get-latest-versions", fields, read=True)
        found = [model_version_from_json(v) for v in answer.get("model_versions", ())]
        if not wanted:
            return found
        # The contract's order is the order asked for; servers need not keep it.
        by_stage = {v.current_stage: v for v in found}
        return [by_stage[s] for s in wanted if s in by_stage]

    def search_model_versions(
        self,
        filter_string: str | None = None,
        max_results: int = DEFAULT_RESULTS_MODEL_VERSIONS,
        order_by: Sequence[str] | None = None,
        page_token: str | None = None,
    ) -> PagedList[ModelVersion]:
        validation.validate_max_results(max_results, MAX_RESULTS_MODEL_VERSIONS, "model versions")
        parse_filter(filter_string, "model_versions")
        parse_order_by(order_by, "model_versions")
        fields = _search_fields(filter_string, max_results, order_by, page_token)
        answer = self._call("GET", "/model-versions/search", fields, read=True)
        return PagedList(
            [model_version_from_json(v) for v in answer.get("model_versions", ())],
            answer.get("next_page_token") or None,
        )

    def set_model_version_tag(self, name: str, version: int | str, key: str, value: str) -> None:
        validate_model_name(name)
        number = parse_version(version)
        validate_tag(key, value, "model version")
        fields = {"name": name, "version": str(number), "key": key, "value": value}
        self._call("POST", "/model-versions/set-tag", fields)

    def delete_model_version_tag(self, name: str, version: int | str, key: str) -> None:
        validate_model_name(name)
        number = parse_version(version)
        validation.validate_key("model version tag", key)
        fields = {"name": name, "version": str(number), "key": key}
        self._call("DELETE", "/model-versions/delete-tag", fields)

    # -- aliases -------------------------------------------------------------

    def set_registered_model_alias(self, name: str, alias: str, version: int | str) -> None:
        validate_model_name(name)
        validate_alias(alias)
        fields = {"name": name, "alias": alias, "version": str(parse_version(version))}
        self._call("POST", "/registered-models/alias", fields)

    def delete_registered_model_alias(self, name: str, alias: str) -> None:
        validate_model_name(name)
        validate_alias(alias, for_setting=False)
        self._call("DELETE", "/registered-models/alias", {"name": name, "alias": alias})

    def get_model_version_by_alias(self, name: str, alias: str) -> ModelVersion:
        validate_model_name(name)
        validate_alias(alias, for_setting=False)
        try:
            answer = self._call(
                "GET", "/registered-models/alias", {"name": name, "alias": alias}, read=True
            )
        except InvalidParameter as missing:
            # The arguments were checked above, so a 400 here is MLflow's answer
            # for an alias that is not set (a missing model is a 404 already).
            raise NotFound(missing.message) from None
        return model_version_from_json(answer["model_version"])


def _search_fields(
    filter_string: str | None,
    max_results: int,
    order_by: Sequence[str] | None,
    page_token: str | None,
) -> dict[str, Any]:
    fields: dict[str, Any] = {"max_results": max_results}
    if filter_string:
        fields["filter"] = filter_string
    if order_by:
        fields["order_by"] = list(order_by)
    if page_token:
        fields["page_token"] = page_token
    return fields
