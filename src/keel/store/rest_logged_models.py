"""Logged models over MLflow's REST API (mixed into :class:`RestTrackingStore`).

The calls are the ones the MLflow 3 client makes (research/mlflow-wire.md §8),
so this works against ``keel server`` and ``mlflow server`` alike. Checks that
need no server run first, with the SQL store's messages.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from keel.entities import LoggedModel, LoggedModelOutput, LoggedModelStatus, PagedList
from keel.mlflow_json import key_value_json, logged_model_from_json
from keel.search.filter import parse_filter
from keel.store import logged_models as contract
from keel.store import validation

_BASE = "/logged-models"


def _path(model_id: str, *rest: str) -> str:
    # The id is a path segment: quote everything, '/' included.
    return "/".join([_BASE, quote(model_id, safe=""), *(quote(p, safe="") for p in rest)])


class RestLoggedModels(contract.LoggedModelStore):
    """The :class:`~keel.store.logged_models.LoggedModelStore` methods over HTTP."""

    if TYPE_CHECKING:

        def _call(
            self,
            method: str,
            path: str,
            fields: Mapping[str, Any] | None = None,
            *,
            read: bool = False,
        ) -> dict[str, Any]: ...

    def create_logged_model(
        self,
        experiment_id: str,
        name: str | None = None,
        *,
        source_run_id: str | None = None,
        model_type: str = "",
        params: Mapping[str, str] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> LoggedModel:
        if name is not None:
            contract.validate_model_name(name)
        contract.validate_model_type(model_type)
        params, tags = dict(params or {}), dict(tags or {})
        contract.validate_params(params)
        contract.validate_tags(tags)
        fields: dict[str, Any] = {"experiment_id": str(experiment_id)}
        if name:
            fields["name"] = name
        if model_type:
            fields["model_type"] = model_type
        if source_run_id:
            fields["source_run_id"] = source_run_id
        if tags:
            fields["tags"] = key_value_json(tags)
        # As the MLflow client does: the first params travel with the create call.
        first = dict(list(params.items())[: contract.MAX_PARAMS_PER_REQUEST])
        if first:
            fields["params"] = key_value_json(first)
        model = logged_model_from_json(self._call("POST", _BASE, fields)["model"])
        rest = dict(list(params.items())[contract.MAX_PARAMS_PER_REQUEST :])
        if rest:
            self.log_logged_model_params(model.model_id, rest)
            model = self.get_logged_model(model.model_id)
        return model

    def get_logged_model(self, model_id: str, *, allow_deleted: bool = False) -> LoggedModel:
        fields = {"allow_deleted": "true"} if allow_deleted else {}
        answer = self._call("GET", _path(model_id), fields, read=True)
        return logged_model_from_json(answer["model"])

    def finalize_logged_model(self, model_id: str, status: LoggedModelStatus) -> LoggedModel:
        status = contract.parse_status(status)
        fields = {"model_id": model_id, "status": status.value}
        return logged_model_from_json(self._call("PATCH", _path(model_id), fields)["model"])

    def set_logged_model_tags(self, model_id: str, tags: Mapping[str, str]) -> None:
        contract.validate_tags(tags)
        fields = {"model_id": model_id, "tags": key_value_json(tags)}
        self._call("PATCH", _path(model_id, "tags"), fields)

    def delete_logged_model_tag(self, model_id: str, key: str) -> None:
        self._call("DELETE", _path(model_id, "tags", key))

    def log_logged_model_params(self, model_id: str, params: Mapping[str, str]) -> None:
        contract.validate_params(params)
        items = list(params.items())
        for i in range(0, len(items), contract.MAX_PARAMS_PER_REQUEST):
            chunk = dict(items[i : i + contract.MAX_PARAMS_PER_REQUEST])
            fields = {"model_id": model_id, "params": key_value_json(chunk)}
            self._call("POST", _path(model_id, "params"), fields)

    def delete_logged_model(self, model_id: str) -> None:
        self._call("DELETE", _path(model_id), {"model_id": model_id})

    def search_logged_models(
        self,
        experiment_ids: Sequence[str],
        filter_string: str | None = None,
        datasets: Sequence[Mapping[str, str]] | None = None,
        max_results: int | None = None,
        order_by: Sequence[Mapping[str, Any]] | None = None,
        page_token: str | None = None,
    ) -> PagedList[LoggedModel]:
        parse_filter(filter_string, "logged_models")
        if max_results is not None:
            validation.validate_max_results(
                max_results, contract.MAX_RESULTS_LOGGED_MODELS, "logged models"
            )
        fields: dict[str, Any] = {"experiment_ids": [str(i) for i in experiment_ids]}
        if filter_string:
            fields["filter"] = filter_string
        if datasets:
            fields["datasets"] = [dict(d) for d in datasets]
        if max_results is not None:
            fields["max_results"] = max_results
        if order_by:
            fields["order_by"] = [dict(o) for o in order_by]
        if page_token:
            fields["page_token"] = page_token
        answer = self._call("POST", f"{_BASE}/search", fields, read=True)
        return PagedList(
            [logged_model_from_json(m) for m in answer.get("models", ())],
            answer.get("next_page_token") or None,
        )

    def log_model_links(self, run_id: str, models: Sequence[LoggedModelOutput]) -> None:
        contract.validate_links(models)
        outputs = [
            {"model_id": m.model_id, "step": m.step} for m in models if m.direction == "output"
        ]
        inputs = [{"model_id": m.model_id} for m in models if m.direction == "input"]
        if outputs:
            self._call("POST", "/runs/outputs", {"run_id": run_id, "models": outputs})
        if inputs:
            self._call("POST", "/runs/log-inputs", {"run_id": run_id, "models": inputs})
