"""scikit-learn models as Keel packages inside a run: ``keel.sklearn.log_model``.

>>> with keel.start_run():                                                   # doctest: +SKIP
...     keel.sklearn.log_model(pipe, "model", input_example=X_train[:5])
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from keel.models.package import save_model
from keel.tracking import fluent


def log_model(
    sk_model: Any,
    artifact_path: str,
    *,
    input_example: Any = None,
    training_data: Any = None,
) -> str:
    """Save the model as a package under the active run's artifacts; return its ``runs:/`` URI.

    The package records the run id and the run's git commit as provenance.
    """
    run = fluent.active_run() or fluent.start_run()
    tags = fluent.get_run(run.info.run_id).data.tags
    provenance = {
        "run_id": run.info.run_id,
        "git_commit": tags.get("mlflow.source.git.commit"),
        "git_dirty": tags.get("keel.source.git.dirty"),
        "datasets": [
            {"name": i.dataset.name, "digest": i.dataset.digest, "context": i.context}
            for i in fluent.get_run(run.info.run_id).inputs
        ],
    }
    with tempfile.TemporaryDirectory(prefix="keel-package-") as tmp:
        package = save_model(
            sk_model,
            Path(tmp) / Path(artifact_path).name,
            input_example=input_example,
            training_data=training_data,
            provenance=provenance,
        )
        fluent.log_artifacts(str(package), artifact_path)
    return f"runs:/{run.info.run_id}/{artifact_path}"
