"""Logged models (MLflow 3's LoggedModel): the store contract and its validation.

A logged model is created PENDING by ``mlflow.<flavor>.log_model`` before its
files are uploaded under its own artifact location, then finalised READY (or
UPLOAD_FAILED). It keeps params and tags of its own, and metrics logged with
its ``model_id`` link to it. Every tracking store implements this contract, so
the MLflow 3 client works against the embedded store and over HTTP alike.

>>> from keel.store import open_store
>>> store = open_store("sqlite:///:memory:")
>>> m = store.create_logged_model("0", "model", params={"C": "1.0"})
>>> store.finalize_logged_model(m.model_id, LoggedModelStatus.READY).status.name
'READY'
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from typing import Any

from keel.entities import (
    LoggedModel,
    LoggedModelOutput,
    LoggedModelStatus,
    PagedList,
    Param,
    RunTag,
)
from keel.errors import InvalidParameter

MAX_RESULTS_LOGGED_MODELS = 50_000  # per page; MLflow sets none, an unbounded page is a DoS
DEFAULT_RESULTS_LOGGED_MODELS = 100
MAX_MODEL_NAME_LENGTH = 500
MAX_MODEL_TYPE_LENGTH = 500
MAX_PARAMS_PER_REQUEST = 100  # what the MLflow client sends at most per call
MAX_TAGS_PER_REQUEST = 100

_STATUS_NUMBERS = {
    1: "LOGGED_MODEL_PENDING",
    2: "LOGGED_MODEL_READY",
    3: "LOGGED_MODEL_UPLOAD_FAILED",
}


def parse_status(value: Any) -> LoggedModelStatus:
    """A status by MLflow wire name, short name or proto number.

    >>> [parse_status(s).name for s in ("LOGGED_MODEL_READY", "ready", 3)]
    ['READY', 'READY', 'UPLOAD_FAILED']
    """
    if isinstance(value, LoggedModelStatus):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        value = _STATUS_NUMBERS.get(value, value)
    if isinstance(value, str):
        text = value.strip().upper()
        if text.isdigit():
            text = _STATUS_NUMBERS.get(int(text), text)
        for status in LoggedModelStatus:
            if text in (status.value, status.name):
                return status
    names = ", ".join(s.value for s in LoggedModelStatus)
    raise InvalidParameter(f"Invalid logged model status {value!r}: use one of {names}.")


def validate_model_name(name: object) -> str:
    if not isinstance(name, str) or not name.strip():
        raise InvalidParameter(f"Invalid logged model name {name!r}: give a non-empty name.")
    if len(name) > MAX_MODEL_NAME_LENGTH:
        raise InvalidParameter(
            f"Logged model name of length {len(name)} exceeds the limit of "
            f"{MAX_MODEL_NAME_LENGTH} characters."
        )
    return name


def validate_model_type(model_type: object) -> str:
    if not isinstance(model_type, str) or len(model_type) > MAX_MODEL_TYPE_LENGTH:
        raise InvalidParameter(
            f"Invalid model_type {str(model_type)[:80]!r}: a string of at most "
            f"{MAX_MODEL_TYPE_LENGTH} characters."
        )
    return model_type


def validate_params(params: Mapping[str, str]) -> None:
    from keel.store import validation  # base imports this module; validation imports base

    for key, value in params.items():
        validation.validate_param(Param(key, value))


def validate_tags(tags: Mapping[str, str]) -> None:
    from keel.store import validation

    for key, value in tags.items():
        validation.validate_tag(RunTag(key, value))


def validate_links(models: Sequence[LoggedModelOutput]) -> None:
    """Each link's direction is 'input' or 'output' and its step an int64."""
    from keel.store import validation

    for link in models:
        if link.direction not in ("input", "output"):
            raise InvalidParameter(
                f"Invalid direction {link.direction!r} for model {link.model_id}: "
                "use 'input' or 'output'."
            )
        validation.validate_int64("step", link.step)


class LoggedModelStore(abc.ABC):
    """The logged-model half of a tracking store (see the module docstring)."""

    @abc.abstractmethod
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
        """A new PENDING model in an active experiment, with a fresh ``m-<hex>`` id.

        Its artifact location is ``<experiment location>/models/<model_id>/artifacts``.
        A missing name gets a generated one. Raises NotFound for an unknown
        experiment or source run, InvalidParameter for bad names/params/tags.
        """

    @abc.abstractmethod
    def get_logged_model(self, model_id: str, *, allow_deleted: bool = False) -> LoggedModel:
        """The model with its params, tags and metrics. Raises NotFound."""

    @abc.abstractmethod
    def finalize_logged_model(self, model_id: str, status: LoggedModelStatus) -> LoggedModel:
        """Set the status (READY or UPLOAD_FAILED) and bump the update time."""

    @abc.abstractmethod
    def set_logged_model_tags(self, model_id: str, tags: Mapping[str, str]) -> None:
        """Set (or overwrite) tags."""

    @abc.abstractmethod
    def delete_logged_model_tag(self, model_id: str, key: str) -> None:
        """Remove a tag. Raises NotFound if the tag is not set."""

    @abc.abstractmethod
    def log_logged_model_params(self, model_id: str, params: Mapping[str, str]) -> None:
        """Add params; like run params they are immutable (a new value is refused)."""

    @abc.abstractmethod
    def delete_logged_model(self, model_id: str) -> None:
        """Soft-delete: gone from get and search (``allow_deleted`` still finds it)."""

    @abc.abstractmethod
    def search_logged_models(
        self,
        experiment_ids: Sequence[str],
        filter_string: str | None = None,
        datasets: Sequence[Mapping[str, str]] | None = None,
        max_results: int | None = None,
        order_by: Sequence[Mapping[str, Any]] | None = None,
        page_token: str | None = None,
    ) -> PagedList[LoggedModel]:
        """One page of live models in these experiments matching the filter.

        ``filter_string`` uses the search grammar over ``attributes`` (name,
        model_id, model_type, status, source_run_id, creation_time,
        last_updated_time), ``metrics``, ``params`` and ``tags``; ``datasets``
        (``{"dataset_name", "dataset_digest"?}``) restricts the metric
        comparisons to points measured on those datasets. ``order_by`` items are
        ``{"field_name", "ascending"?, "dataset_name"?, "dataset_digest"?}``;
        the default is newest first.
        """

    @abc.abstractmethod
    def log_model_links(self, run_id: str, models: Sequence[LoggedModelOutput]) -> None:
        """Record models a run produced (outputs, with a step) or used (inputs).

        Raises NotFound for an unknown run or model; repeating a link is a no-op.
        """


def model_artifact_location(experiment_location: str, model_id: str) -> str:
    """Where a logged model's files go, below its experiment's location.

    >>> model_artifact_location("mlflow-artifacts:/3", "m-ab")
    'mlflow-artifacts:/3/models/m-ab/artifacts'
    """
    return f"{experiment_location.rstrip('/')}/models/{model_id}/artifacts"


__all__ = [
    "DEFAULT_RESULTS_LOGGED_MODELS",
    "MAX_RESULTS_LOGGED_MODELS",
    "LoggedModelStore",
    "model_artifact_location",
    "parse_status",
]
