"""Model packages that survive the trip to production: ``keel.models.save`` / ``load``.

>>> import keel
>>> keel.models.save(pipe, "out/model", input_example=X[:5])     # doctest: +SKIP
>>> m = keel.models.load("runs:/<run_id>/model")                  # doctest: +SKIP
>>> m.predict(X)                                                   # doctest: +SKIP
>>> keel.models.save(pipe, "out/m", input_example=X, serialization="skops")  # doctest: +SKIP
>>> keel.models.load("model.joblib").warnings  # bare file: fewer checks  # doctest: +SKIP
>>> keel.models.pack("out/model")  # one file, out/model.keel; load() reads it  # doctest: +SKIP
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from keel.models.archive import pack
from keel.models.package import LoadedModel, ModelRefused, load_model, save_model

__all__ = ["LoadedModel", "ModelRefused", "load", "pack", "resolve_model_uri", "save"]

save = save_model


def resolve_model_uri(uri: str | os.PathLike[str]) -> Path:
    """A local path for a model URI: a plain path, ``runs:/<run_id>/<path>`` or ``models:/…``.

    ``models:/<name>/<version>``, ``models:/<name>@<alias>``,
    ``models:/<name>/<stage>`` and ``models:/<name>/latest`` resolve through
    the registry of the current tracking URI. The path is a package
    directory, an MLflow model directory or a bare model file (pickle,
    joblib, skops), whichever the URI names.

    >>> resolve_model_uri("out/model.joblib").name
    'model.joblib'
    """
    text = os.fspath(uri)
    if text.startswith("models:/"):
        from keel.tracking.client import Client

        registry = Client().registry
        return registry.package_path(registry.resolve(text))
    if text.startswith("runs:/"):
        from keel.errors import InvalidParameter
        from keel.tracking.client import Client

        run_id, _, artifact_path = text[len("runs:/") :].strip("/").partition("/")
        if not run_id or not artifact_path:
            raise InvalidParameter(
                f"Invalid model URI {text!r}: expected runs:/<run_id>/<artifact path>."
            )
        from keel.artifacts import LocalArtifactRepository, get_repository, safe_relpath

        client = Client()
        repo = get_repository(client.get_run(run_id).info.artifact_uri)
        if isinstance(repo, LocalArtifactRepository):
            # Local artifacts are read in place: nothing to copy or clean up.
            return repo.root / safe_relpath(artifact_path)
        dst = tempfile.mkdtemp(prefix="keel-model-")
        return Path(client.download_artifacts(run_id, artifact_path, dst))
    return Path(text)


def load(uri: str | os.PathLike[str], **checks: Any) -> LoadedModel:
    """Load a package from a path, ``runs:/`` or ``models:/`` URI with every check (see
    ``load_model``).

    A package archive (:func:`pack`) loads as the directory it holds, with
    every check. A bare pickle, joblib or skops file loads too, through the
    allow-list and the tree check only; its ``warnings`` say what could not
    be verified.
    """
    return load_model(resolve_model_uri(uri), **checks)
