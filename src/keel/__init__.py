"""Keel: the ML lifecycle platform.

>>> import keel
>>> keel.set_experiment("churn")                         # doctest: +SKIP
>>> with keel.start_run(run_name="rf-baseline"):          # doctest: +SKIP
...     keel.log_params({"n_estimators": 100})
...     keel.log_metric("accuracy", 0.91)
"""

from __future__ import annotations

__version__ = "0.1.0"

from keel.entities import (
    Dataset,
    DatasetInput,
    Experiment,
    FileInfo,
    Metric,
    ModelStage,
    ModelVersion,
    PagedList,
    Param,
    RegisteredModel,
    Run,
    RunInfo,
    RunStatus,
    RunTag,
    ViewType,
)
from keel.errors import KeelError
from keel.tracking.client import Client
from keel.tracking.config import get_tracking_uri
from keel.tracking.fluent import (
    ActiveRun,
    active_run,
    create_experiment,
    delete_experiment,
    delete_run,
    delete_tag,
    end_run,
    flush,
    get_artifact_uri,
    get_experiment,
    get_experiment_by_name,
    get_run,
    last_active_run,
    log_artifact,
    log_artifacts,
    log_dict,
    log_figure,
    log_image,
    log_input,
    log_metric,
    log_metrics,
    log_param,
    log_params,
    log_report,
    log_text,
    register_model,
    restore_experiment,
    restore_run,
    search_experiments,
    search_runs,
    set_experiment,
    set_tag,
    set_tags,
    set_tracking_uri,
    start_run,
)

_SUBMODULES = ("data", "models", "optuna", "sklearn")


def __getattr__(name: str) -> object:
    # keel.data, keel.models, keel.optuna and keel.sklearn load on first use:
    # `import keel` stays light.
    if name in _SUBMODULES:
        import importlib

        return importlib.import_module(f"keel.{name}")
    raise AttributeError(f"module 'keel' has no attribute {name!r}")


__all__ = [
    "ActiveRun",
    "Client",
    "Dataset",
    "DatasetInput",
    "Experiment",
    "FileInfo",
    "KeelError",
    "Metric",
    "ModelStage",
    "ModelVersion",
    "PagedList",
    "Param",
    "RegisteredModel",
    "Run",
    "RunInfo",
    "RunStatus",
    "RunTag",
    "ViewType",
    "__version__",
    "active_run",
    "create_experiment",
    "delete_experiment",
    "delete_run",
    "delete_tag",
    "end_run",
    "flush",
    "get_artifact_uri",
    "get_experiment",
    "get_experiment_by_name",
    "get_run",
    "get_tracking_uri",
    "last_active_run",
    "log_artifact",
    "log_artifacts",
    "log_dict",
    "log_figure",
    "log_image",
    "log_input",
    "log_metric",
    "log_metrics",
    "log_param",
    "log_params",
    "log_report",
    "log_text",
    "register_model",
    "restore_experiment",
    "restore_run",
    "search_experiments",
    "search_runs",
    "set_experiment",
    "set_tag",
    "set_tags",
    "set_tracking_uri",
    "start_run",
]
