"""The demo behind ``keel demo``: a small hyperparameter search, tracked end to end.

It uses the breast-cancer data set that ships inside scikit-learn, so it needs
no download, and shows the fluent API a real project would use: a parent run
with nested child runs, params, metric series, dataset inputs, tags, a figure
and a JSON report, then ``keel.search_runs`` to pick the best model. The best
model is saved as a package (with an ONNX twin), checked as ``keel models
doctor`` would, and proved as ``keel models verify`` would: loaded in a fresh
uv environment holding only its locked packages plus Keel.

>>> result = run_demo("demo.db", quick=True)   # doctest: +SKIP
>>> result.best_run.data.metrics["accuracy"]   # doctest: +SKIP
0.98...
>>> result.verification.result.outcome         # doctest: +SKIP
'loads'
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import keel
from keel.entities import PARENT_RUN_ID_TAG, Run
from keel.errors import KeelError, require
from keel.uris import sqlite_path

if TYPE_CHECKING:
    from rich.console import Console

    from keel.data import DriftReport, KeelDataset, ValidationReport
    from keel.models.doctor import Diagnosis
    from keel.models.targets import VerifyResult
    from keel.registry.gates import PromotionReport
    from keel.serving.monitor import MonitorReport

EXPERIMENT_NAME = "keel-demo"
REGISTERED_MODEL_NAME = "keel-demo-classifier"
PROMOTION_ALIAS = "production"
# What the demo asks of a version before it may serve as production.
PROMOTION_GATES = ("metrics.accuracy >= 0.9", "signature", "loads")
PARENT_RUN_NAME = "hyperparameter-search"
DATASET_SOURCE = "sklearn.datasets.load_breast_cancer"
RANDOM_STATE = 0
TEST_SIZE = 0.2
# The batch the demo shifts on purpose, as a recalibrated instrument would: the
# drift report must name these columns and the validation suite must fail them.
SHIFTED_COLUMNS = {"mean radius": 1.3, "worst texture": 1.2}
SERVE_BATCH = 10  # rows per request the demo sends its served model


@dataclass(frozen=True)
class Candidate:
    """One model of the grid: a family and its hyperparameters."""

    family: str  # "logistic_regression" or "random_forest"
    params: dict[str, Any]

    @property
    def run_name(self) -> str:
        if self.family == "logistic_regression":
            return f"logreg-C={self.params['C']}"
        return f"forest-{self.params['n_estimators']}x{self.params['max_depth'] or 'full'}"

    def build(self) -> Any:
        """A fresh, unfitted scikit-learn estimator."""
        from sklearn.ensemble import RandomForestClassifier
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        if self.family == "logistic_regression":
            # Scaling lets lbfgs converge quickly (no ConvergenceWarning).
            return make_pipeline(
                StandardScaler(), LogisticRegression(C=self.params["C"], max_iter=1000)
            )
        return RandomForestClassifier(**self.params, random_state=RANDOM_STATE)


def candidates(quick: bool = False) -> list[Candidate]:
    """The grid: logistic regression over C, random forests over size x depth."""
    if quick:
        return [
            Candidate("logistic_regression", {"C": 0.1}),
            Candidate("logistic_regression", {"C": 1.0}),
            Candidate("random_forest", {"n_estimators": 25, "max_depth": 4}),
        ]
    grid = [Candidate("logistic_regression", {"C": c}) for c in (0.01, 0.1, 1.0, 10.0)]
    grid += [
        Candidate("random_forest", {"n_estimators": n, "max_depth": depth})
        for n in (50, 200)
        for depth in (4, None)
    ]
    return grid


@dataclass(frozen=True)
class _Data:
    x_train: Any
    x_test: Any
    y_train: Any
    y_test: Any
    target_names: list[str]
    dataset: KeelDataset
    # the same splits with the features' names: what the data checks read
    train_frame: Any
    test_frame: Any


@dataclass(frozen=True)
class _Evaluation:
    y_pred: Any
    metrics: dict[str, float]
    model: Any = None


@dataclass(frozen=True)
class Verification:
    """``keel models verify`` of the best model's package against its own lock.

    ``target`` is the package's ``requirements.txt`` (the lock's exact pins).
    ``result`` is None when the environment could not be built (no uv,
    offline, interrupted); ``error`` then holds the full reason.
    """

    target: Path
    pins: dict[str, str]
    python: str  # X.Y the environment was built for
    result: VerifyResult | None = None
    error: str | None = None
    cached: bool = False  # the environment already existed: nothing was built
    build_seconds: float = 0.0
    load_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when the package loaded (natively or through its twin) in the environment."""
        return self.result is not None and self.result.ok

    @property
    def reason(self) -> str | None:
        """``error`` on one line: its first line plus, for a uv failure, uv's last word."""
        if self.error is None:
            return None
        first, *rest = self.error.strip().splitlines() or [""]
        said = [line.strip() for line in rest if line.strip()]
        if not said:
            return first
        # uv ends with its most specific cause ("Connection refused", "the
        # network was disabled"), which is the part worth a line.
        last = said[-1].removeprefix("error: ").removeprefix("cause: ").removeprefix("hint: ")
        return f"{first.removesuffix(' uv said:').rstrip('.')} (uv: {last})"


@dataclass(frozen=True)
class Registration:
    """The best model in the registry: its version, the gates' report, and the reload.

    ``reloaded_accuracy`` is the test accuracy of the model loaded back through
    ``models:/<name>@production``: the same as the run's when all went well.
    """

    name: str
    version: int
    report: PromotionReport
    alias_uri: str
    reloaded_accuracy: float


@dataclass(frozen=True)
class DataChecks:
    """The demo's data checks, logged under ``data/`` in the parent run.

    A suite learned from the training split validates the held-out split
    (``fresh``, which should pass) and a copy of it with ``SHIFTED_COLUMNS``
    scaled (``shifted``, which should fail); ``drift`` compares that shifted
    batch with the training split.
    """

    expectations: int
    fresh: ValidationReport
    shifted: ValidationReport
    drift: DriftReport
    artifact_uri: str
    drift_html: Path | None = None  # the drift report on disk, when artifacts are local


@dataclass(frozen=True)
class Serving:
    """The production model served on loopback: traffic sent, and the monitoring report.

    ``normal_rows`` are the held-out split; ``shifted_rows`` the same rows with
    ``SHIFTED_COLUMNS`` scaled, sent twice. True labels of the normal rows went
    back through ``/feedback``.
    """

    model_uri: str
    url: str
    normal_rows: int
    shifted_rows: int
    report: MonitorReport
    log_dir: Path
    html: Path
    columns: list[str]  # the feature names, by position (the model takes arrays)

    def named(self, columns: list[str]) -> list[str]:
        """Positional column names ("0", "21") with the feature names beside them."""
        return [f"{c} ({self.columns[int(c)]})" if c.isdigit() else c for c in columns]


@dataclass(frozen=True)
class DemoResult:
    """What the demo made: where it is stored, and its runs (best first).

    ``seconds`` covers training and packaging; the verification's own timings
    are in ``verification`` (None when it was skipped).
    """

    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    best_run: Run
    runs: list[Run]
    artifacts: list[str] = field(default_factory=list)
    seconds: float = 0.0
    model_uri: str | None = None
    package: Path | None = None  # the best model's package directory, local
    diagnosis: Diagnosis | None = None  # of the best model's package, in this environment
    verification: Verification | None = None
    registration: Registration | None = None
    data_checks: DataChecks | None = None
    serving: Serving | None = None

    @property
    def database(self) -> Path | None:
        """The SQLite file, or None for other stores."""
        return sqlite_path(self.tracking_uri)


def _load_data() -> _Data:
    import numpy as np
    import pandas as pd
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    import keel.data

    bunch = load_breast_cancer()
    x, y = np.ascontiguousarray(bunch.data), np.ascontiguousarray(bunch.target)
    frame = pd.DataFrame(x, columns=[str(n) for n in bunch.feature_names])
    # The digest covers every cell, so two runs on the same data share one
    # dataset record and a changed copy gets a new one.
    dataset = keel.data.from_pandas(
        frame.assign(target=y), name="breast_cancer", source=DATASET_SOURCE
    )
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=TEST_SIZE, stratify=y, random_state=RANDOM_STATE
    )
    return _Data(
        x_train,
        x_test,
        y_train,
        y_test,
        [str(n) for n in bunch.target_names],
        dataset,
        pd.DataFrame(x_train, columns=frame.columns),
        pd.DataFrame(x_test, columns=frame.columns),
    )


def _train(candidate: Candidate, data: _Data, folds: int) -> _Evaluation:
    """Cross-validate and fit one candidate inside the active (child) run."""
    from sklearn.metrics import accuracy_score, f1_score, roc_auc_score
    from sklearn.model_selection import StratifiedKFold

    started = time.perf_counter()
    keel.log_input(data.dataset, context="training")
    keel.log_params({"model": candidate.family, **candidate.params, "cv_folds": folds})
    keel.set_tags({"model_family": candidate.family, "keel.demo": "true"})
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=RANDOM_STATE)
    scores = []
    for step, (fit_idx, val_idx) in enumerate(splitter.split(data.x_train, data.y_train)):
        model = candidate.build().fit(data.x_train[fit_idx], data.y_train[fit_idx])
        score = float(accuracy_score(data.y_train[val_idx], model.predict(data.x_train[val_idx])))
        scores.append(score)
        keel.log_metric("cv_accuracy", score, step=step)  # one point per fold: a series
    model = candidate.build().fit(data.x_train, data.y_train)
    y_pred = model.predict(data.x_test)
    proba = model.predict_proba(data.x_test)[:, 1]
    metrics = {
        "cv_accuracy_mean": sum(scores) / len(scores),
        "accuracy": float(accuracy_score(data.y_test, y_pred)),
        "f1": float(f1_score(data.y_test, y_pred)),
        "roc_auc": float(roc_auc_score(data.y_test, proba)),
        "train_seconds": time.perf_counter() - started,
    }
    keel.log_metrics(metrics)
    return _Evaluation(y_pred, metrics, model)


def _progress(items: list[Candidate], console: Console | None) -> Iterator[Candidate]:
    if console is None:
        yield from items
        return
    from rich.progress import Progress

    with Progress(console=console, transient=True, disable=not console.is_terminal) as bar:
        task = bar.add_task("Training models", total=len(items))
        for item in items:
            bar.update(task, description=f"Training {item.run_name}")
            yield item
            bar.advance(task)


def _confusion_figure(y_true: Any, y_pred: Any, labels: list[str], title: str) -> Any:
    from matplotlib.figure import Figure
    from sklearn.metrics import confusion_matrix

    matrix = confusion_matrix(y_true, y_pred)
    # A bare Figure (no pyplot) leaves the caller's matplotlib backend alone.
    fig = Figure(figsize=(4, 4), dpi=100)
    ax = fig.add_subplot()
    ax.imshow(matrix, cmap="Blues")
    for (row, col), count in _cells(matrix):
        color = "white" if count > matrix.max() / 2 else "black"
        ax.text(col, row, str(count), ha="center", va="center", color=color)
    ax.set_xticks(range(len(labels)), labels)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def _cells(matrix: Any) -> Iterable[tuple[tuple[int, int], int]]:
    for row in range(matrix.shape[0]):
        for col in range(matrix.shape[1]):
            yield (row, col), int(matrix[row, col])


def _log_best_artifacts(run: Run, evaluation: _Evaluation, data: _Data) -> list[str]:
    """A JSON report and, with matplotlib installed, a confusion-matrix figure."""
    from sklearn.metrics import classification_report, confusion_matrix

    client = keel.Client()
    run_id = run.info.run_id
    report = {
        "run_id": run_id,
        "run_name": run.info.run_name,
        "params": dict(run.data.params),
        "metrics": dict(evaluation.metrics),
        "dataset": {"name": data.dataset.name, "digest": data.dataset.digest},
        "confusion_matrix": confusion_matrix(data.y_test, evaluation.y_pred).tolist(),
        "classification_report": classification_report(
            data.y_test, evaluation.y_pred, target_names=data.target_names, output_dict=True
        ),
    }
    client.log_dict(run_id, report, "report.json")
    logged = ["report.json"]
    if importlib.util.find_spec("matplotlib") is not None:
        title = f"{run.info.run_name} (test set)"
        fig = _confusion_figure(data.y_test, evaluation.y_pred, data.target_names, title)
        client.log_figure(run_id, fig, "confusion_matrix.png")
        logged.append("confusion_matrix.png")
    return logged


def _package_best_model(
    run: Run, evaluation: _Evaluation, data: _Data
) -> tuple[str, Path, Diagnosis]:
    """Save the best model as a package in its run, then check it as a server would."""
    from keel.models import resolve_model_uri
    from keel.models.doctor import diagnose
    from keel.sklearn import log_model

    uri = log_model(
        evaluation.model,
        "model",
        input_example=data.x_test[:5],
        training_data=data.x_train,
        run_id=run.info.run_id,
    )
    package = resolve_model_uri(uri)
    return uri, package, diagnose(package)


def _register_and_promote(model_uri: str, data: _Data) -> Registration:
    """Register the best model, promote it through gates, and load it back by alias.

    The gates are declared on every run (declaring is idempotent), so a demo
    database always shows what production asks of a version.
    """
    client = keel.Client()
    version = client.register_model(
        model_uri, REGISTERED_MODEL_NAME, description="Best model of a keel demo run."
    )
    client.set_promotion_gates(REGISTERED_MODEL_NAME, PROMOTION_ALIAS, list(PROMOTION_GATES))
    report = client.promote(REGISTERED_MODEL_NAME, version.version, PROMOTION_ALIAS)
    alias_uri = f"models:/{REGISTERED_MODEL_NAME}@{PROMOTION_ALIAS}"
    reloaded = keel.models.load(alias_uri)
    accuracy = float((reloaded.predict(data.x_test) == data.y_test).mean())
    return Registration(REGISTERED_MODEL_NAME, version.version, report, alias_uri, accuracy)


def _check_data(run_id: str, data: _Data) -> DataChecks:
    """Learn a suite from the training split, validate two batches, report drift; log it all."""
    import keel.data
    from keel.artifacts import LocalArtifactRepository, get_repository

    suite = keel.data.suite_from(data.train_frame, name="breast_cancer")
    fresh = suite.validate(data.test_frame)
    shifted_frame = data.test_frame.copy()
    for column, factor in SHIFTED_COLUMNS.items():
        shifted_frame[column] *= factor
    shifted = suite.validate(shifted_frame)
    report = keel.data.drift(data.train_frame, shifted_frame)
    client = keel.Client()
    client.log_text(run_id, suite.to_yaml(), "data/suite.yaml")
    client.log_report(run_id, shifted, "data/validation-shifted")
    client.log_report(run_id, report, "data/drift-shifted")
    # last, so the run's validation tag says how the fresh batch did
    client.log_report(run_id, fresh, "data/validation-fresh")
    artifact_uri = f"{client.get_run(run_id).info.artifact_uri}/data"
    repo = get_repository(artifact_uri)
    local = repo.root / "drift-shifted.html" if isinstance(repo, LocalArtifactRepository) else None
    return DataChecks(len(suite.expectations), fresh, shifted, report, artifact_uri, local)


def _serve_and_monitor(registration: Registration, data: _Data, run_id: str) -> Serving:
    """Serve the production model, send normal and shifted traffic, report on it.

    The report is also logged to run ``run_id`` (``monitoring/monitor.*`` and the
    ``keel.monitor.*`` tags), where the web UI's Data page finds it.
    """
    import httpx

    from keel.server.background import serve_in_background
    from keel.serving import ScoringApp, ServedModel
    from keel.serving.monitor import monitor_report
    from keel.serving.prediction_log import PredictionLog

    served = ServedModel.load(registration.alias_uri)
    database = sqlite_path(keel.get_tracking_uri())
    root = database.parent if database is not None else Path.cwd()
    log_dir = root / "keel-predictions" / f"{registration.name}-v{registration.version}"
    log = PredictionLog(log_dir, model_name=served.name, model_version=served.version)
    app = ScoringApp(served, validation="warn", prediction_log=log)
    columns = [str(c) for c in data.train_frame.columns]
    shifted = data.x_test.copy()
    for column, factor in SHIFTED_COLUMNS.items():
        shifted[:, columns.index(column)] *= factor
    sent = {"normal": 0, "shifted": 0}
    with serve_in_background(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        for kind, rows, rounds in (("normal", data.x_test, 1), ("shifted", shifted, 2)):
            for _ in range(rounds):
                for start in range(0, len(rows), SERVE_BATCH):
                    batch = rows[start : start + SERVE_BATCH]
                    scored = client.post("/invocations", json={"instances": batch.tolist()})
                    scored.raise_for_status()
                    sent[kind] += len(batch)
                    if kind == "normal":  # the labels come back later, as they would
                        truth = data.y_test[start : start + SERVE_BATCH].tolist()
                        rid = scored.headers["x-request-id"]
                        client.post("/feedback", json={"request_id": rid, "actuals": truth})
    app.close()
    report = monitor_report(
        log_dir,
        training_profile=served.profile,
        since=timedelta(hours=1),
        model_uri=registration.alias_uri,
    )
    html = log_dir / "monitor.html"
    report.to_html(html)
    keel.Client().log_report(run_id, report, "monitoring/monitor")
    return Serving(
        registration.alias_uri,
        url,
        sent["normal"],
        sent["shifted"],
        report,
        log_dir,
        html,
        columns,
    )


def _verify_package(package: Path, console: Console | None) -> Verification:
    """Load ``package`` in a uv environment built from its own requirements.txt.

    Never raises for the environment's sake: the runs are already tracked, so a
    missing uv or network only costs this check, which ``error`` explains.
    """
    from keel.models.targets import (
        build_environment,
        cached_environment,
        current_python,
        read_pins,
        verify_in,
    )

    target = package / "requirements.txt"
    python = current_python()
    pins: dict[str, str] = {}
    started = time.perf_counter()
    cached = False
    try:
        with _status(console, "Verifying the best model in a fresh environment") as update:
            pins = read_pins(target)
            cached = cached_environment(pins, python) is not None
            env_python = build_environment(
                pins, python, status=lambda message: update(f"Verify: {message}")
            )
            built = time.perf_counter()
            update("Verify: loading the package in the fresh environment")
            result = verify_in(env_python, package)
    except (KeelError, OSError) as exc:
        message = exc.message if isinstance(exc, KeelError) else f"{type(exc).__name__}: {exc}"
        return Verification(target, pins, python, error=message, cached=cached)
    except KeyboardInterrupt:
        # Ctrl-C during a slow first build should not lose the summary of runs
        # already tracked; an unfinished environment is rebuilt next time.
        return Verification(target, pins, python, error="Interrupted (Ctrl-C).", cached=cached)
    return Verification(
        target,
        pins,
        python,
        result=result,
        cached=cached,
        build_seconds=built - started,
        load_seconds=time.perf_counter() - built,
    )


@contextmanager
def _status(console: Console | None, message: str) -> Iterator[Callable[[str], None]]:
    """A spinner on ``console`` (none without one); yields the function that updates it."""
    if console is None:
        yield lambda _message: None
        return
    with console.status(message) as status:
        yield lambda text: status.update(text)


def run_demo(
    tracking_uri: str | None = None,
    *,
    quick: bool = False,
    verify: bool = True,
    console: Console | None = None,
) -> DemoResult:
    """Train a small grid of models into experiment ``keel-demo`` and return what it logged.

    ``tracking_uri`` is set as the process's tracking URI (as
    :func:`keel.set_tracking_uri` does); without it, the usual default applies
    (``$KEEL_TRACKING_URI``, else ``./keel.db``). ``quick`` trains three models
    instead of eight. ``verify`` loads the best model's package in a uv
    environment built from its own lock (cached under
    :func:`keel.models.targets.default_cache_dir`); a failure to build it is
    reported in ``verification.error``, never raised. With a ``console``, a
    progress bar and a spinner are shown on it.
    """
    require("sklearn", "sklearn", "The Keel demo")
    require("datasketches", "data", "The Keel demo")
    require("uvicorn", "server", "The Keel demo")
    started = time.perf_counter()
    if tracking_uri is not None:
        keel.set_tracking_uri(tracking_uri)
    data = _load_data()
    grid = candidates(quick)
    folds = 3 if quick else 5
    experiment = keel.set_experiment(EXPERIMENT_NAME)
    evaluations: dict[str, _Evaluation] = {}
    with keel.start_run(
        run_name=PARENT_RUN_NAME,
        description="A grid over logistic regression and random forests on breast_cancer.",
        tags={"keel.demo": "true"},
    ) as parent:
        keel.log_input(data.dataset, context="training")
        keel.log_params(
            {"dataset": data.dataset.name, "candidates": len(grid), "test_size": TEST_SIZE}
        )
        for candidate in _progress(grid, console):
            with keel.start_run(run_name=candidate.run_name, nested=True) as child:
                evaluations[child.run_id] = _train(candidate, data, folds)
        # Every child has ended, so its metrics are committed and searchable.
        children = keel.search_runs(
            experiment_ids=[experiment.experiment_id],
            filter_string=f"tags.{PARENT_RUN_ID_TAG} = '{parent.run_id}' AND status = 'FINISHED'",
            order_by=["metrics.accuracy DESC", "metrics.roc_auc DESC", "metrics.f1 DESC"],
            output_format="list",
        )
        best: Run = children[0]
        keel.set_tag("best_run_id", best.info.run_id)
        keel.log_metric("best_accuracy", best.data.metrics["accuracy"], synchronous=True)
    artifacts = _log_best_artifacts(best, evaluations[best.info.run_id], data)
    model_uri, package, diagnosis = _package_best_model(best, evaluations[best.info.run_id], data)
    registration = _register_and_promote(model_uri, data)
    data_checks = _check_data(parent.run_id, data)
    serving = _serve_and_monitor(registration, data, parent.run_id)
    seconds = time.perf_counter() - started
    verification = _verify_package(package, console) if verify else None
    return DemoResult(
        tracking_uri=keel.get_tracking_uri(),
        experiment_id=experiment.experiment_id,
        parent_run_id=parent.run_id,
        best_run=keel.get_run(best.info.run_id),
        runs=list(children),
        artifacts=artifacts,
        seconds=seconds,
        model_uri=model_uri,
        package=package,
        diagnosis=diagnosis,
        verification=verification,
        registration=registration,
        data_checks=data_checks,
        serving=serving,
    )
