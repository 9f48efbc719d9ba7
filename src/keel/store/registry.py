"""The model registry contract every backend implements.

Registered models are named; each has numbered versions, aliases pointing at
versions and, for MLflow's older workflow, one stage per version. The SQL
implementation lives next to the tracking store in the same database
(``keel.store.sql.registry``); the REST store follows the same contract and
``tests/test_registry_parity.py`` runs one suite against all of them.

Conventions (beyond those of :mod:`keel.store.base`):

- ``version`` arguments accept ``int`` or a decimal ``str`` (the wire sends
  strings); results carry ``int``;
- version numbers of a model start at 1, increase by one per registration,
  are correct under concurrent registration, and are never reused, even
  after a version is deleted;
- deleting a registered model deletes its versions, tags and aliases for good
  (MLflow does the same); registering the name again starts at version 1;
- a missing model, version or alias raises :class:`~keel.errors.NotFound`
  whose message names what exists (the model's versions, its aliases).

>>> from keel.store import open_registry_store
>>> registry = open_registry_store("sqlite:///:memory:")
>>> registry.create_registered_model("churn").name
'churn'
>>> registry.create_model_version("churn", "runs:/0f4c/model").version
1
>>> registry.set_registered_model_alias("churn", "champion", 1)
>>> registry.get_model_version_by_alias("churn", "champion").aliases
('champion',)
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence

from keel.entities import ModelStage, ModelVersion, PagedList, RegisteredModel

# MLflow's limits, so scripts behave the same on both.
MAX_REGISTERED_MODEL_NAME_LENGTH = 256
MAX_REGISTRY_TAG_KEY_LENGTH = 250
MAX_REGISTRY_TAG_VALUE_LENGTH = 100_000
MAX_ALIAS_LENGTH = 255
MAX_RESULTS_REGISTERED_MODELS = 1000
MAX_RESULTS_MODEL_VERSIONS = 200_000
DEFAULT_RESULTS_REGISTERED_MODELS = 100
DEFAULT_RESULTS_MODEL_VERSIONS = 10_000


class RegistryStore(abc.ABC):
    """Registered models, their versions, tags, aliases and stages."""

    # -- registered models ---------------------------------------------------

    @abc.abstractmethod
    def create_registered_model(
        self,
        name: str,
        tags: Mapping[str, str] | None = None,
        description: str | None = None,
    ) -> RegisteredModel:
        """Create an empty registered model. Raises AlreadyExists if the name is taken."""

    @abc.abstractmethod
    def get_registered_model(self, name: str) -> RegisteredModel:
        """The model with its tags, aliases and newest version per stage. Raises NotFound."""

    @abc.abstractmethod
    def rename_registered_model(self, name: str, new_name: str) -> RegisteredModel:
        """Rename; versions, tags and aliases follow. AlreadyExists if ``new_name`` is taken."""

    @abc.abstractmethod
    def update_registered_model(self, name: str, description: str) -> RegisteredModel:
        """Replace the description."""

    @abc.abstractmethod
    def delete_registered_model(self, name: str) -> None:
        """Delete the model and everything registered under it."""

    @abc.abstractmethod
    def search_registered_models(
        self,
        filter_string: str | None = None,
        max_results: int = DEFAULT_RESULTS_REGISTERED_MODELS,
        order_by: Sequence[str] | None = None,
        page_token: str | None = None,
    ) -> PagedList[RegisteredModel]:
        """One page of models matching the filter.

        Filter: ``name`` (``= != LIKE ILIKE IN``) and ``tags.<key>`` (``= !=
        LIKE ILIKE``; ``!=`` also matches models without the tag, as the
        MLflow client's implicit ``tags.`mlflow.prompt.is_prompt` != 'true'``
        needs), joined by ``AND``/``OR`` and parentheses. ``order_by``:
        ``name``, ``timestamp`` (creation) or ``last_updated_timestamp``,
        ``ASC``/``DESC``; default ``name ASC``.
        """

    @abc.abstractmethod
    def set_registered_model_tag(self, name: str, key: str, value: str) -> None:
        """Create or overwrite a tag on the model."""

    @abc.abstractmethod
    def delete_registered_model_tag(self, name: str, key: str) -> None:
        """Remove a tag; a tag that is not set is not an error (MLflow's behaviour)."""

    # -- model versions ------------------------------------------------------

    @abc.abstractmethod
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
        """Register the next version of ``name`` (which must exist), status READY."""

    @abc.abstractmethod
    def get_model_version(self, name: str, version: int | str) -> ModelVersion:
        """One version with its tags and aliases. Raises NotFound naming the versions there are."""

    @abc.abstractmethod
    def update_model_version(self, name: str, version: int | str, description: str) -> ModelVersion:
        """Replace the description."""

    @abc.abstractmethod
    def delete_model_version(self, name: str, version: int | str) -> None:
        """Delete one version (and the aliases pointing at it); its number is never reused."""

    @abc.abstractmethod
    def transition_model_version_stage(
        self,
        name: str,
        version: int | str,
        stage: ModelStage | str,
        archive_existing_versions: bool = False,
    ) -> ModelVersion:
        """Move a version to a stage.

        With ``archive_existing_versions`` (allowed only for Staging and
        Production), every other version in that stage moves to Archived in
        the same transaction.
        """

    @abc.abstractmethod
    def get_latest_versions(
        self, name: str, stages: Sequence[ModelStage | str] | None = None
    ) -> list[ModelVersion]:
        """The newest version in each of ``stages`` (every stage when None or empty)."""

    @abc.abstractmethod
    def search_model_versions(
        self,
        filter_string: str | None = None,
        max_results: int = DEFAULT_RESULTS_MODEL_VERSIONS,
        order_by: Sequence[str] | None = None,
        page_token: str | None = None,
    ) -> PagedList[ModelVersion]:
        """One page of versions matching the filter.

        Filter: ``name`` and ``run_id`` (``= != LIKE ILIKE IN NOT IN``),
        ``version_number`` (numeric comparators), ``source_path`` (``= !=
        LIKE ILIKE``), ``tags.<key>``. ``order_by``: ``name``,
        ``version_number``, ``creation_timestamp``, ``last_updated_timestamp``;
        default ``name ASC, version_number DESC``.
        """

    @abc.abstractmethod
    def set_model_version_tag(self, name: str, version: int | str, key: str, value: str) -> None:
        """Create or overwrite a tag on a version."""

    @abc.abstractmethod
    def delete_model_version_tag(self, name: str, version: int | str, key: str) -> None:
        """Remove a tag from a version; a tag that is not set is not an error."""

    # -- aliases -------------------------------------------------------------

    @abc.abstractmethod
    def set_registered_model_alias(self, name: str, alias: str, version: int | str) -> None:
        """Point ``alias`` at ``version``, moving it if it pointed elsewhere."""

    @abc.abstractmethod
    def delete_registered_model_alias(self, name: str, alias: str) -> None:
        """Remove an alias; one that is not set is not an error."""

    @abc.abstractmethod
    def get_model_version_by_alias(self, name: str, alias: str) -> ModelVersion:
        """The version ``alias`` points at. Raises NotFound naming the aliases there are."""

    # -- optional hooks ------------------------------------------------------

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections; the store must not be used afterwards."""
