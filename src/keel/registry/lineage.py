"""Lineage of a model version: how we got from raw data to this model, in one answer.

``build_lineage`` follows a version to its run (params, metrics, tags), the
datasets the run consumed (name, digest, source, context), the code version
(git commit, branch, remote, dirty flag, entry point), the package's
environment lock and its check results, and the gate reports recorded on the
version. Every part that cannot be reached (a version registered from a bare
path has no run) is ``None`` with a note, never an error.

>>> sorted(empty_lineage())  # the keys every lineage has
['checks', 'code', 'datasets', 'environment', 'gates', 'model_version', 'notes', 'package', 'run']
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from keel.entities import (
    GIT_BRANCH_TAG,
    GIT_COMMIT_TAG,
    GIT_DIRTY_TAG,
    GIT_REPO_URL_TAG,
    PYTHON_VERSION_TAG,
    SOURCE_NAME_TAG,
    ModelVersion,
    Run,
)
from keel.errors import KeelError

if TYPE_CHECKING:
    from keel.registry.service import Registry


def empty_lineage() -> dict[str, Any]:
    return {
        "model_version": None,
        "run": None,
        "datasets": [],
        "code": None,
        "package": None,
        "environment": None,
        "checks": None,
        "gates": {},
        "notes": [],
    }


def build_lineage(registry: Registry, mv: ModelVersion) -> dict[str, Any]:
    """The lineage of ``mv`` as JSON-ready data (see the module docstring)."""
    from keel.registry.service import GATE_RESULT_TAG_PREFIX

    out = empty_lineage()
    out["model_version"] = _version_dict(mv)
    out["gates"] = {
        key[len(GATE_RESULT_TAG_PREFIX) :]: _json_or_text(value)
        for key, value in mv.tags.items()
        if key.startswith(GATE_RESULT_TAG_PREFIX)
    }
    if mv.run_id:
        try:
            run = registry.tracking.get_run(mv.run_id)
        except KeelError as exc:
            out["notes"].append(f"run {mv.run_id}: {exc.message}")
        else:
            out["run"] = _run_dict(run)
            out["datasets"] = _datasets(run)
            out["code"] = _code(run)
    else:
        out["notes"].append("registered from a path, not a run: no run, datasets or code version")
    try:
        package = registry.package_path(mv)
    except KeelError as exc:
        out["notes"].append(f"package at {mv.source}: {exc.message}")
        return out
    _add_package(out, package)
    return out


def _version_dict(mv: ModelVersion) -> dict[str, Any]:
    data = asdict(mv)
    data["current_stage"] = mv.current_stage.value
    data["status"] = mv.status.value
    data["aliases"] = list(mv.aliases)
    data["uri"] = mv.uri
    return data


def _run_dict(run: Run) -> dict[str, Any]:
    info = run.info
    return {
        "run_id": info.run_id,
        "run_name": info.run_name,
        "experiment_id": info.experiment_id,
        "status": info.status.value,
        "user_id": info.user_id,
        "start_time": info.start_time,
        "end_time": info.end_time,
        "artifact_uri": info.artifact_uri,
        "params": dict(run.data.params),
        "metrics": dict(run.data.metrics),
        "tags": {k: v for k, v in run.data.tags.items() if not k.startswith("mlflow.source.")},
    }


def _datasets(run: Run) -> list[dict[str, Any]]:
    return [
        {
            "name": i.dataset.name,
            "digest": i.dataset.digest,
            "source": i.dataset.source,
            "source_type": i.dataset.source_type,
            "context": i.context,
        }
        for i in run.inputs
    ]


def _code(run: Run) -> dict[str, Any]:
    tags = run.data.tags
    dirty = tags.get(GIT_DIRTY_TAG)
    return {
        "git_commit": tags.get(GIT_COMMIT_TAG),
        "git_branch": tags.get(GIT_BRANCH_TAG),
        "git_repo_url": tags.get(GIT_REPO_URL_TAG),
        "git_dirty": None if dirty is None else dirty == "true",
        "source_name": tags.get(SOURCE_NAME_TAG),
        "python_version": tags.get(PYTHON_VERSION_TAG),
    }


def _add_package(out: dict[str, Any], package: Any) -> None:
    from keel.models.package import KEEL_FILE

    out["package"] = {"path": str(package)}
    meta_file = package / KEEL_FILE
    if not meta_file.is_file():
        out["notes"].append("the package has no keel.json (an MLflow model): no lock or checks")
        return
    try:
        meta = json.loads(meta_file.read_text())
    except (OSError, ValueError) as exc:
        out["notes"].append(f"keel.json cannot be read: {exc}")
        return
    onnx = meta.get("onnx") or {}
    out["package"] |= {
        "flavor": meta.get("flavor"),
        "model_class": meta.get("model_class"),
        "serializer": meta.get("serializer"),
        "created": meta.get("created"),
        "keel_version": meta.get("keel_version"),
        "golden_rows": len(((meta.get("golden") or {}).get("inputs") or {}).get("data") or []),
        "onnx_twin": onnx.get("file"),
        "onnx_parity": onnx.get("parity"),
        "provenance": meta.get("provenance"),
        # the training data's profile (rows, columns) that serving validates against
        "training_data": meta.get("training_data"),
    }
    out["environment"] = meta.get("environment")
    from keel.models.doctor import diagnose

    try:
        diagnosis = diagnose(package)
    except KeelError as exc:
        out["notes"].append(f"checks could not run: {exc.message}")
        return
    out["checks"] = [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in diagnosis.checks]


def _json_or_text(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        return value
