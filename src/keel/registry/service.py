"""The registry's behaviour above the store: registering URIs, gates, resolving, lineage.

:class:`Registry` is what ``keel.Client`` and (later) the server call, so the
rules hold whichever way a request arrives: an alias with declared gates is
only ever set through them.

>>> from keel.store import open_registry_store, open_store
>>> reg = Registry(open_store("sqlite:///:memory:"), open_registry_store("sqlite:///:memory:"))
>>> reg.registry.create_registered_model("churn").name
'churn'
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from keel.artifacts import LocalArtifactRepository, get_repository, safe_relpath
from keel.entities import ModelStage, ModelVersion
from keel.errors import AlreadyExists, InvalidParameter, KeelError, NotFound
from keel.registry.gates import (
    Gate,
    GateResult,
    PromotionRefused,
    PromotionReport,
    dump_gates,
    gates_tag,
    load_gates,
    parse_gates,
)
from keel.registry.uris import ModelsUri, is_models_uri, parse_models_uri
from keel.store.base import TrackingStore, now_ms
from keel.store.registry import RegistryStore

GATE_RESULT_TAG_PREFIX = "keel.gate."
FORCED_REASON_KEY = "forced_reason"
_MAX_SOURCE_HOPS = 10  # models:/a/1 registered from models:/b/2 from ...


class Registry:
    """Registry operations that need more than the store: runs, packages, gates."""

    def __init__(
        self, tracking: TrackingStore, registry: RegistryStore, tracking_uri: str | None = None
    ) -> None:
        self.tracking = tracking
        self.registry = registry
        # The server that mlflow-artifacts:/ URIs resolve against (default: the current one).
        self.tracking_uri = tracking_uri

    # -- registering ---------------------------------------------------------

    def register_model(
        self,
        model_uri: str | os.PathLike[str],
        name: str,
        *,
        tags: Mapping[str, str] | None = None,
        description: str | None = None,
        user_id: str = "",
    ) -> ModelVersion:
        """Register ``model_uri`` as the next version of ``name`` (created if new).

        ``model_uri`` is ``runs:/<run_id>/<path>``, ``models:/...`` (another
        version's source), or a package directory.
        """
        source, run_id = self._source_of(os.fspath(model_uri))
        model_id = logged_model_id(source)
        with contextlib.suppress(AlreadyExists):  # a new version of an existing model
            self.registry.create_registered_model(name)
        return self.registry.create_model_version(
            name,
            source,
            run_id=run_id,
            tags=dict(tags or {}),
            description=description,
            user_id=user_id,
            model_id=model_id,
        )

    def _source_of(self, uri: str) -> tuple[str, str | None]:
        model_id = logged_model_id(uri)
        if model_id is not None:  # MLflow 3's models:/<model_id>: registered as is
            return uri, self.tracking.get_logged_model(model_id).source_run_id
        if uri.startswith("runs:/"):
            run_id, _, path = uri[len("runs:/") :].strip("/").partition("/")
            if not run_id or not path:
                raise InvalidParameter(
                    f"Invalid model URI {uri!r}: expected runs:/<run_id>/<artifact path>."
                )
            run = self.tracking.get_run(run_id)
            source = f"{run.info.artifact_uri.rstrip('/')}/{safe_relpath(path)}"
            repo = get_repository(run.info.artifact_uri, self.tracking_uri)
            if isinstance(repo, LocalArtifactRepository):
                _require_model_dir(repo.root / safe_relpath(path), uri)
            return source, run_id
        if is_models_uri(uri):
            version = self.resolve(uri)
            return version.source, version.run_id
        if "://" not in uri:
            local = Path(uri).expanduser()
            _require_model_dir(local, uri)
            return str(local.resolve()), None
        return uri, None

    # -- resolving -----------------------------------------------------------

    def resolve(self, uri: str | ModelsUri) -> ModelVersion:
        """The version a ``models:/`` URI names; NotFound says what exists instead."""
        ref = parse_models_uri(uri) if isinstance(uri, str) else uri
        if ref.version is not None:
            return self.registry.get_model_version(ref.name, ref.version)
        if ref.alias is not None:
            return self.registry.get_model_version_by_alias(ref.name, ref.alias)
        stages = [ref.stage] if ref.stage is not None else None
        latest = self.registry.get_latest_versions(ref.name, stages)
        if not latest:
            where = f"in stage {ref.stage.value}" if ref.stage else "at all"
            raise NotFound(f"Registered model {ref.name!r} has no version {where} ({ref}).")
        return max(latest, key=lambda v: v.version)

    def download_uri(self, version: ModelVersion) -> str:
        """Where a version's files are, as an artifact URI.

        A ``runs:/<run_id>/<path>`` source becomes the run's artifact URI plus
        the path, and a ``models:/<name>/<version>`` (or ``@alias``, stage)
        source the download URI of the version it names; any other source (a
        path, ``file://``, an artifact URI, MLflow 3's ``models:/m-…``) is
        returned as registered, as is one that cannot be resolved.
        """
        for _ in range(_MAX_SOURCE_HOPS):
            source = version.source
            if source.startswith("runs:/"):
                run_id, _, path = source[len("runs:/") :].strip("/").partition("/")
                try:
                    root = self.tracking.get_run(run_id).info.artifact_uri.rstrip("/")
                    relative = safe_relpath(path)
                except (NotFound, InvalidParameter):
                    return source
                return f"{root}/{relative}" if relative else root
            model_id = logged_model_id(source)
            if model_id is not None:
                try:
                    return self.tracking.get_logged_model(model_id).artifact_location
                except (NotFound, InvalidParameter):
                    return source
            if not names_registered_version(source):
                return source
            try:
                version = self.resolve(source)
            except (NotFound, InvalidParameter):
                return source
        return version.source

    def package_path(self, version: ModelVersion) -> Path:
        """A local directory holding the version's package (downloaded when remote)."""
        repo = get_repository(self.download_uri(version), self.tracking_uri)
        if isinstance(repo, LocalArtifactRepository):
            return repo.root
        dst = Path(tempfile.mkdtemp(prefix="keel-model-"))
        return repo.download_artifacts("", dst)

    # -- gates and aliases ---------------------------------------------------

    def set_gates(
        self, name: str, alias: str, gates: Sequence[str | Gate], *, base: Path | None = None
    ) -> list[Gate]:
        """Declare what a version must pass to get ``alias`` (an empty list removes the gates)."""
        parsed = parse_gates(gates, base=base)
        self.registry.get_registered_model(name)  # NotFound before anything is written
        if parsed:
            self.registry.set_registered_model_tag(name, gates_tag(alias), dump_gates(parsed))
        else:
            self.registry.delete_registered_model_tag(name, gates_tag(alias))
        return parsed

    def get_gates(self, name: str, alias: str) -> list[Gate]:
        return load_gates(self.registry.get_registered_model(name).tags.get(gates_tag(alias)))

    def check_gates(self, name: str, version: int | str, alias: str) -> PromotionReport:
        """Run ``alias``'s gates on a version without changing anything."""
        mv = self.registry.get_model_version(name, version)
        results = tuple(self._evaluate(gate, mv) for gate in self.get_gates(name, alias))
        return PromotionReport(name, mv.version, alias, results, checked_at=now_ms())

    def promote(
        self,
        name: str,
        version: int | str,
        alias: str,
        *,
        force_reason: str | None = None,
    ) -> PromotionReport:
        """Run the gates, record the outcome on the version, and set the alias if they pass.

        A failing gate raises :class:`PromotionRefused` (after recording the
        report) unless ``force_reason`` is given, which is recorded too.
        """
        if force_reason is not None and not force_reason.strip():
            raise InvalidParameter("A forced promotion needs a reason; it is recorded.")
        report = self.check_gates(name, version, alias)
        if not report.passed and force_reason:
            report = PromotionReport(
                name, report.version, alias, report.results, force_reason.strip(), report.checked_at
            )
        if report.results or force_reason:
            self.registry.set_model_version_tag(
                name,
                report.version,
                f"{GATE_RESULT_TAG_PREFIX}{alias}",
                json.dumps(report.to_dict(), sort_keys=True),
            )
        if not report.passed and not force_reason:
            raise PromotionRefused(report)
        self.registry.set_registered_model_alias(name, alias, report.version)
        return report

    def transition_stage(
        self,
        name: str,
        version: int | str,
        stage: ModelStage | str,
        archive_existing_versions: bool = False,
        *,
        force_reason: str | None = None,
    ) -> ModelVersion:
        """Move a version to a stage; gates declared for the stage's name apply as for aliases."""
        target = stage if isinstance(stage, ModelStage) else ModelStage.parse(stage)
        gate_name = target.value.lower()
        if target in (ModelStage.STAGING, ModelStage.PRODUCTION) and self.get_gates(
            name, gate_name
        ):
            report = self.check_gates(name, version, gate_name)
            if not report.passed and not force_reason:
                raise PromotionRefused(report)
        return self.registry.transition_model_version_stage(
            name, version, target, archive_existing_versions
        )

    def _evaluate(self, gate: Gate, mv: ModelVersion) -> GateResult:
        try:
            if gate.kind == "run":
                return self._run_gate(gate, mv)
            package = self.package_path(mv)
            if gate.kind == "signature":
                return _signature_gate(gate, package)
            if gate.kind == "loads":
                return _loads_gate(gate, package)
            return _verify_gate(gate, package)
        except KeelError as exc:
            return GateResult(gate.text, False, detail=exc.message)

    def _run_gate(self, gate: Gate, mv: ModelVersion) -> GateResult:
        if not mv.run_id:
            return GateResult(gate.text, False, detail="the version was not registered from a run")
        run = self.tracking.get_run(mv.run_id)
        found = self.tracking.search_runs(
            [run.info.experiment_id],
            f"attributes.run_id = '{mv.run_id}' AND ({gate.text})",
            max_results=1,
        )
        observed = _observed(gate.text, run.data.metrics, run.data.params, run.data.tags)
        passed = len(found) == 1
        return GateResult(
            gate.text, passed, observed, "" if passed else "the run does not satisfy it"
        )

    # -- lineage -------------------------------------------------------------

    def lineage(self, name: str, version: int | str) -> dict[str, Any]:
        """Where a version came from, as JSON-ready data: see :mod:`keel.registry.lineage`."""
        from keel.registry.lineage import build_lineage

        return build_lineage(self, self.registry.get_model_version(name, version))


def names_registered_version(source: str) -> bool:
    """``models:/<name>/<version|stage|latest>`` or ``models:/<name>@<alias>``: a registered
    version, not the ``models:/<model_id>`` of an MLflow 3 LoggedModel.

    >>> names_registered_version("models:/churn/2"), names_registered_version("models:/m-0f3a")
    (True, False)
    """
    if not is_models_uri(source):
        return False
    body = source[len("models:/") :].strip("/")
    return "/" in body or "@" in body


def logged_model_id(source: str) -> str | None:
    """The id in MLflow 3's ``models:/<model_id>``, or None for any other URI.

    >>> logged_model_id("models:/m-0f3a"), logged_model_id("models:/churn/2")
    ('m-0f3a', None)
    """
    if not is_models_uri(source) or names_registered_version(source):
        return None
    return source[len("models:/") :].strip("/") or None


def _require_model_dir(path: Path, uri: str) -> None:
    if not ((path / "MLmodel").is_file() or (path / "keel.json").is_file()):
        raise InvalidParameter(
            f"Cannot register {uri!r}: there is no model at {path} (no MLmodel or keel.json). "
            "Log one with keel.sklearn.log_model or save one with keel.models.save first."
        )


def _observed(
    text: str, metrics: Mapping[str, float], params: Mapping[str, str], tags: Mapping[str, str]
) -> str:
    from keel.search.filter import And, Comparison, Expr, Or, parse_filter

    values = {"metric": metrics, "param": params, "tag": tags}
    seen: list[str] = []

    def walk(expr: Expr | None) -> None:
        if isinstance(expr, Comparison):
            table = values.get(expr.entity)
            if table is not None:
                value = table.get(expr.key, "missing")
                shown = f"{value:.6g}" if isinstance(value, float) else value
                item = f"{expr.entity}s.{expr.key} = {shown}"
                if item not in seen:
                    seen.append(item)
        elif isinstance(expr, (And, Or)):
            for clause in expr.clauses:
                walk(clause)

    walk(parse_filter(text, "runs"))
    return ", ".join(seen)


def _signature_gate(gate: Gate, package: Path) -> GateResult:
    import yaml

    try:
        descriptor = yaml.safe_load((package / "MLmodel").read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        return GateResult(gate.text, False, detail=f"the package's MLmodel cannot be read: {exc}")
    signature = descriptor.get("signature") if isinstance(descriptor, dict) else None
    if isinstance(signature, dict) and signature.get("inputs"):
        return GateResult(gate.text, True, "inputs declared")
    return GateResult(
        gate.text,
        False,
        "no signature",
        "save the model with an input_example so the package declares its inputs",
    )


def _loads_gate(gate: Gate, package: Path) -> GateResult:
    from keel.models.doctor import diagnose

    diagnosis = diagnose(package)
    failed = [c for c in diagnosis.checks if not c.ok]
    observed = ", ".join(f"{c.name} {'ok' if c.ok else 'failed'}" for c in diagnosis.checks)
    detail = "; ".join(f"{c.name}: {c.detail}" for c in failed)
    return GateResult(gate.text, not failed, observed, detail)


def _verify_gate(gate: Gate, package: Path) -> GateResult:
    from keel.models.targets import build_environment, verify_in

    python = build_environment(gate.pins, gate.python)
    result = verify_in(python, package)
    passed = result.outcome in ("loads", "onnx") and result.predictions_match is not False
    observed = f"{result.outcome} ({result.backend or 'nothing answered'})"
    return GateResult(gate.text, passed, observed, "" if passed else result.message)
