"""What ``import keel`` offers, and what it costs."""

from __future__ import annotations

import subprocess
import sys

import keel

EXPECTED = {
    # fluent API, MLflow's names
    "set_tracking_uri", "get_tracking_uri", "set_experiment", "create_experiment",
    "get_experiment", "get_experiment_by_name", "search_experiments", "delete_experiment",
    "restore_experiment", "start_run", "end_run", "active_run", "last_active_run",
    "log_param", "log_params", "log_metric", "log_metrics", "set_tag", "set_tags",
    "delete_tag", "log_artifact", "log_artifacts", "log_text", "log_dict", "log_figure",
    "log_image", "log_input", "log_report", "get_artifact_uri", "get_run", "search_runs",
    "delete_run", "restore_run", "flush",
    # registry
    "register_model", "ModelStage", "ModelVersion", "RegisteredModel",
    # classes and values
    "Client", "ActiveRun", "Dataset", "DatasetInput", "Experiment", "FileInfo", "KeelError",
    "Metric", "PagedList", "Param", "Run", "RunInfo", "RunStatus", "RunTag", "ViewType",
    "__version__",
}  # fmt: skip


def test_exported_members_are_deliberate() -> None:
    assert set(keel.__all__) == EXPECTED, "update EXPECTED when the public API changes"
    for name in keel.__all__:
        assert getattr(keel, name) is not None


def test_import_is_light() -> None:
    code = (
        "import sys, keel; "
        "print(sorted(m for m in ('pandas', 'numpy', 'sqlalchemy', 'alembic', 'matplotlib') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", "import keel must not pull in heavy dependencies"
