"""The registry half of ``keel.Client``: MLflow's ``MlflowClient`` names, plus gates and lineage.

>>> import keel
>>> c = keel.Client("sqlite:///:memory:")
>>> c.create_registered_model("churn").name
'churn'
>>> [m.name for m in c.search_registered_models("name LIKE 'ch%'")]
['churn']
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from keel.entities import ModelStage, ModelVersion, PagedList, RegisteredModel
from keel.registry.gates import Gate, PromotionReport
from keel.store.registry import (
    DEFAULT_RESULTS_MODEL_VERSIONS,
    DEFAULT_RESULTS_REGISTERED_MODELS,
    RegistryStore,
)

if TYPE_CHECKING:
    from keel.registry.service import Registry
    from keel.store.base import TrackingStore


class RegistryMethods:
    """Mixed into :class:`keel.Client`; every call goes through :class:`Registry`."""

    tracking_uri: str
    store: TrackingStore

    @property
    def registry_store(self) -> RegistryStore:
        return self.registry.registry

    @property
    def registry(self) -> Registry:
        """The registry service over this client's stores (opened on first use)."""
        found = self.__dict__.get("_registry")
        if found is None:
            from keel.registry.service import Registry
            from keel.store import open_registry_store

            found = Registry(self.store, open_registry_store(self.tracking_uri), self.tracking_uri)
            self.__dict__["_registry"] = found
        return found

    # -- registered models ---------------------------------------------------

    def create_registered_model(
        self,
        name: str,
        tags: Mapping[str, Any] | None = None,
        description: str | None = None,
    ) -> RegisteredModel:
        """Create an empty registered model; AlreadyExists if the name is taken."""
        return self.registry_store.create_registered_model(name, _str_tags(tags), description)

    def get_registered_model(self, name: str) -> RegisteredModel:
        return self.registry_store.get_registered_model(name)

    def rename_registered_model(self, name: str, new_name: str) -> RegisteredModel:
        return self.registry_store.rename_registered_model(name, new_name)

    def update_registered_model(self, name: str, description: str) -> RegisteredModel:
        return self.registry_store.update_registered_model(name, description)

    def delete_registered_model(self, name: str) -> None:
        self.registry_store.delete_registered_model(name)

    def search_registered_models(
        self,
        filter_string: str | None = None,
        max_results: int = DEFAULT_RESULTS_REGISTERED_MODELS,
        order_by: Sequence[str] | None = None,
        page_token: str | None = None,
    ) -> PagedList[RegisteredModel]:
        """One page of registered models; ``name``/``tags.<key>`` filters, OR allowed."""
        return self.registry_store.search_registered_models(
            filter_string or None, max_results, order_by, page_token
        )

    def set_registered_model_tag(self, name: str, key: str, value: Any) -> None:
        self.registry_store.set_registered_model_tag(name, key, str(value))

    def delete_registered_model_tag(self, name: str, key: str) -> None:
        self.registry_store.delete_registered_model_tag(name, key)

    # -- versions ------------------------------------------------------------

    def create_model_version(
        self,
        name: str,
        source: str,
        run_id: str | None = None,
        tags: Mapping[str, Any] | None = None,
        run_link: str | None = None,
        description: str | None = None,
    ) -> ModelVersion:
        """Register ``source`` as it is (no checks); prefer :meth:`register_model`."""
        return self.registry_store.create_model_version(
            name, source, run_id, _str_tags(tags), run_link, description
        )

    def register_model(
        self,
        model_uri: str | os.PathLike[str],
        name: str,
        tags: Mapping[str, Any] | None = None,
        description: str | None = None,
    ) -> ModelVersion:
        """Register a ``runs:/``, ``models:/`` or package-path model as the next version of
        ``name`` (created when new)."""
        from keel.tracking.context import current_user

        return self.registry.register_model(
            model_uri, name, tags=_str_tags(tags), description=description, user_id=current_user()
        )

    def get_model_version(self, name: str, version: int | str) -> ModelVersion:
        return self.registry_store.get_model_version(name, version)

    def update_model_version(self, name: str, version: int | str, description: str) -> ModelVersion:
        return self.registry_store.update_model_version(name, version, description)

    def delete_model_version(self, name: str, version: int | str) -> None:
        self.registry_store.delete_model_version(name, version)

    def get_model_version_download_uri(self, name: str, version: int | str) -> str:
        return self.registry_store.get_model_version(name, version).source

    def get_latest_versions(
        self, name: str, stages: Sequence[ModelStage | str] | None = None
    ) -> list[ModelVersion]:
        return self.registry_store.get_latest_versions(name, stages)

    def search_model_versions(
        self,
        filter_string: str | None = None,
        max_results: int = DEFAULT_RESULTS_MODEL_VERSIONS,
        order_by: Sequence[str] | None = None,
        page_token: str | None = None,
    ) -> PagedList[ModelVersion]:
        """One page of versions; ``name``, ``run_id``, ``version_number``, ``tags.<key>``."""
        return self.registry_store.search_model_versions(
            filter_string or None, max_results, order_by, page_token
        )

    def set_model_version_tag(self, name: str, version: int | str, key: str, value: Any) -> None:
        self.registry_store.set_model_version_tag(name, version, key, str(value))

    def delete_model_version_tag(self, name: str, version: int | str, key: str) -> None:
        self.registry_store.delete_model_version_tag(name, version, key)

    def transition_model_version_stage(
        self,
        name: str,
        version: int | str,
        stage: ModelStage | str,
        archive_existing_versions: bool = False,
    ) -> ModelVersion:
        """Move a version to a stage; gates declared for ``staging``/``production`` apply."""
        return self.registry.transition_stage(name, version, stage, archive_existing_versions)

    # -- aliases and gates ---------------------------------------------------

    def set_registered_model_alias(
        self, name: str, alias: str, version: int | str, *, force_reason: str | None = None
    ) -> None:
        """Point ``alias`` at ``version``, after the alias's gates pass (see :meth:`promote`)."""
        self.registry.promote(name, version, alias, force_reason=force_reason)

    def delete_registered_model_alias(self, name: str, alias: str) -> None:
        self.registry_store.delete_registered_model_alias(name, alias)

    def get_model_version_by_alias(self, name: str, alias: str) -> ModelVersion:
        return self.registry_store.get_model_version_by_alias(name, alias)

    def set_promotion_gates(
        self,
        name: str,
        alias: str,
        gates: Sequence[str | Gate],
        *,
        base: str | os.PathLike[str] | None = None,
    ) -> list[Gate]:
        """Declare what a version must pass before ``alias`` may point at it.

        ``gates`` are texts such as ``"metrics.f1 >= 0.85"``, ``"signature"``,
        ``"loads"``, ``"verify prod-requirements.txt"`` (relative to ``base``,
        default the working directory); an empty list removes them.
        """
        return self.registry.set_gates(name, alias, gates, base=Path(base) if base else None)

    def get_promotion_gates(self, name: str, alias: str) -> list[Gate]:
        return self.registry.get_gates(name, alias)

    def check_promotion_gates(self, name: str, version: int | str, alias: str) -> PromotionReport:
        """Run ``alias``'s gates on a version and report, changing nothing."""
        return self.registry.check_gates(name, version, alias)

    def promote(
        self, name: str, version: int | str, alias: str, *, force_reason: str | None = None
    ) -> PromotionReport:
        """Run the gates, record the report on the version, set the alias only if all pass.

        Raises :class:`~keel.registry.gates.PromotionRefused` with the report
        when a gate fails, unless ``force_reason`` (recorded) is given.
        """
        return self.registry.promote(name, version, alias, force_reason=force_reason)

    def get_model_version_lineage(self, name: str, version: int | str) -> dict[str, Any]:
        """Run, params, metrics, datasets and digests, code version, environment lock, checks
        and gate reports of one version, as JSON-ready data."""
        return self.registry.lineage(name, version)


def _str_tags(tags: Mapping[str, Any] | None) -> dict[str, str]:
    return {str(k): str(v) for k, v in (tags or {}).items()}
