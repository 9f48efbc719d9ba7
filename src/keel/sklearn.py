"""scikit-learn models as Keel packages inside a run: ``keel.sklearn.log_model``.

>>> with keel.start_run():                                                   # doctest: +SKIP
...     keel.sklearn.log_model(pipe, "model", input_example=X_train[:5])
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from keel.autolog_sklearn import autolog
from keel.models.package import save_model
from keel.tracking import fluent
from keel.tracking.client import Client

__all__ = ["autolog", "log_model"]


def log_model(
    sk_model: Any,
    artifact_path: str,
    *,
    input_example: Any = None,
    training_data: Any = None,
    run_id: str | None = None,
    onnx: bool = True,
    serialization: str = "pickle",
    registered_model_name: str | None = None,
) -> str:
    """Save the model as a package under a run's artifacts; return its ``runs:/`` URI.

    The run is ``run_id``, else the active run (started if there is none). The
    package records the run id, its git commit and its dataset digests as
    provenance. ``onnx=False`` skips the ONNX twin (faster to save, no fallback);
    ``serialization="skops"`` writes ``model.skops`` instead of ``model.pkl``.
    With ``registered_model_name``, the package is also registered as the
    next version of that registered model (created when new).
    """
    if run_id is None:
        active = fluent.active_run() or fluent.start_run()
        run_id = active.info.run_id
    run = fluent.get_run(run_id)
    tags = run.data.tags
    provenance = {
        "run_id": run_id,
        "git_commit": tags.get("mlflow.source.git.commit"),
        "git_dirty": tags.get("keel.source.git.dirty"),
        "datasets": [
            {"name": i.dataset.name, "digest": i.dataset.digest, "context": i.context}
            for i in run.inputs
        ],
    }
    with tempfile.TemporaryDirectory(prefix="keel-package-") as tmp:
        package = save_model(
            sk_model,
            Path(tmp) / Path(artifact_path).name,
            input_example=input_example,
            training_data=training_data,
            provenance=provenance,
            onnx=onnx,
            serialization=serialization,
        )
        Client().log_artifacts(run_id, package, artifact_path)
    uri = f"runs:/{run_id}/{artifact_path}"
    if registered_model_name is not None:
        Client().register_model(uri, registered_model_name)
    return uri
