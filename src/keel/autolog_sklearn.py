"""Automatic logging of scikit-learn fits: ``keel.sklearn.autolog()``.

After ``autolog()``, every outermost ``fit`` of a scikit-learn estimator
(plain, Pipeline, GridSearchCV, RandomizedSearchCV) logs its params, training
metrics, training dataset digest, tags and model package into the active run,
or into a run started and ended around the fit.

>>> keel.sklearn.autolog()                                               # doctest: +SKIP
>>> LogisticRegression().fit(X, y)                                       # doctest: +SKIP
>>> keel.sklearn.autolog(disable=True)                                   # doctest: +SKIP
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import threading
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from keel.entities import PARENT_RUN_ID_TAG, Dataset, Metric, Param, RunStatus
from keel.store import base as limits
from keel.store.base import now_ms
from keel.tracking import fluent
from keel.tracking.client import Client

SKIPPED_PARAMS_TAG = "keel.autolog.skipped_params"
_PATCH_MARK = "_keel_autolog_original"


class AutologWarning(UserWarning):
    """Autologging failed for one fit; the fit itself went through."""


@dataclass(frozen=True)
class _Config:
    log_models: bool
    log_datasets: bool
    log_onnx: bool
    max_tuning_runs: int | None


_lock = threading.Lock()
_config: _Config | None = None
_originals: dict[type, Callable[..., Any]] = {}
# Per thread: Pipeline.fit and GridSearchCV.fit call other (patched) fits, which
# must run untouched while the outer fit is being logged.
_local = threading.local()


def autolog(
    log_models: bool = True,
    log_datasets: bool = True,
    log_onnx: bool = False,
    max_tuning_runs: int | None = 5,
    disable: bool = False,
) -> None:
    """Log every outermost scikit-learn ``fit``; ``disable=True`` restores the originals.

    ``max_tuning_runs`` caps the search-CV candidates logged as child runs
    (``None``: all). ``log_onnx`` adds the ONNX twin to logged packages, which
    costs about a second per fit.

    >>> keel.sklearn.autolog(log_models=False)                            # doctest: +SKIP
    >>> with keel.start_run():                                            # doctest: +SKIP
    ...     GridSearchCV(SVC(), {"C": [0.1, 1, 10]}).fit(X, y)
    """
    global _config
    with _lock:
        if disable:
            _unpatch_all()
            _config = None
            return
        _config = _Config(log_models, log_datasets, log_onnx, max_tuning_runs)
        if not _originals:
            _patch_all()


# -- patching --------------------------------------------------------------------


def _estimator_classes() -> list[type]:
    from sklearn.model_selection import GridSearchCV, RandomizedSearchCV
    from sklearn.pipeline import Pipeline
    from sklearn.utils import all_estimators

    return [cls for _, cls in all_estimators()] + [Pipeline, GridSearchCV, RandomizedSearchCV]


def _fit_owners(classes: list[type]) -> set[type]:
    """The scikit-learn classes, bases included, whose own ``__dict__`` defines ``fit``."""
    owners: set[type] = set()
    for cls in classes:
        for klass in cls.__mro__:
            if "fit" in vars(klass) and klass.__module__.startswith("sklearn."):
                owners.add(klass)
    return owners


def _patch_all() -> None:
    for owner in _fit_owners(_estimator_classes()):
        original = vars(owner)["fit"]
        if not callable(original) or hasattr(original, _PATCH_MARK):
            continue
        _originals[owner] = original
        owner.fit = _wrap(original)  # type: ignore[attr-defined]


def _unpatch_all() -> None:
    for owner, original in _originals.items():
        owner.fit = original  # type: ignore[attr-defined]
    _originals.clear()


def _wrap(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def fit(self: Any, *args: Any, **kwargs: Any) -> Any:
        config = _config
        if config is None or getattr(_local, "busy", False):
            return original(self, *args, **kwargs)
        _local.busy = True
        try:
            return _fit_and_log(config, original, self, args, kwargs)
        finally:
            _local.busy = False

    setattr(fit, _PATCH_MARK, original)
    return fit


# -- one logged fit ----------------------------------------------------------------


def _warn(what: str, exc: BaseException) -> None:
    warnings.warn(
        f"keel.sklearn.autolog could not {what} ({type(exc).__name__}: {exc}); "
        "the fit itself was not affected.",
        AutologWarning,
        stacklevel=4,
    )


def _fit_and_log(
    config: _Config,
    original: Callable[..., Any],
    estimator: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    X, y = _training_data(args, kwargs)
    started = False
    try:
        started = fluent.active_run() is None
        if started:
            fluent.start_run()
    except Exception as exc:
        _warn("start a run", exc)
        return original(estimator, *args, **kwargs)
    try:
        fitted = original(estimator, *args, **kwargs)
    except BaseException as exc:
        if started:
            status = RunStatus.KILLED if isinstance(exc, KeyboardInterrupt) else RunStatus.FAILED
            _end_run(status)
        raise
    try:
        _log_fit(config, estimator, X, y, kwargs.get("sample_weight"))
    except Exception as exc:
        _warn("log the fit", exc)
    if started:
        _end_run(RunStatus.FINISHED)
    return fitted


def _end_run(status: RunStatus) -> None:
    try:
        fluent.end_run(status)
    except Exception as exc:
        _warn("end its run", exc)


def _training_data(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> tuple[Any, Any]:
    """``X`` and ``y`` as passed to ``fit``, positionally or by keyword."""
    X = args[0] if args else kwargs.get("X")
    y = args[1] if len(args) > 1 else kwargs.get("y", kwargs.get("Y"))
    return X, y


def _log_fit(config: _Config, estimator: Any, X: Any, y: Any, sample_weight: Any) -> None:
    run = fluent.active_run()
    assert run is not None  # _fit_and_log started one if needed
    cls = type(estimator)
    tags = {"estimator_name": cls.__name__, "estimator_class": f"{cls.__module__}.{cls.__name__}"}
    params, skipped = _loggable_params(estimator.get_params(deep=True))
    if skipped:
        tags[SKIPPED_PARAMS_TAG] = ",".join(skipped)[: limits.MAX_TAG_VALUE_LENGTH]
    fluent.set_tags(tags)
    fluent.log_params(params)
    if config.log_datasets and X is not None:
        fluent.log_input(training_dataset(X, y), context="training")
    metrics = training_metrics(estimator, X, y, sample_weight)
    model = estimator
    if _is_search_cv(estimator):
        model = getattr(estimator, "best_estimator_", None)
        metrics.update(_log_search(config, estimator, run.run_id))
    fluent.log_metrics(metrics, synchronous=True)
    if config.log_models and model is not None and X is not None:
        _log_package(model, run.run_id, _head(X), config.log_onnx)


def _loggable_params(params: Mapping[str, Any]) -> tuple[dict[str, str], list[str]]:
    """Params as strings; keys or values over the store's limits are left out and named."""
    kept: dict[str, str] = {}
    skipped: list[str] = []
    for key, value in params.items():
        text = str(value)
        if len(text) > limits.MAX_PARAM_VALUE_LENGTH or len(key) > limits.MAX_KEY_LENGTH:
            skipped.append(key)
        else:
            kept[key] = text
    return kept, skipped


# -- datasets ----------------------------------------------------------------------


def training_dataset(X: Any, y: Any = None) -> Dataset:
    """The ``Dataset`` autolog links to a run: a digest of ``X`` (then ``y``) and its schema.

    >>> import numpy as np
    >>> training_dataset(np.zeros((3, 2))).schema
    '{"dtype": "float64", "shape": [3, 2]}'
    """
    digest = hashlib.sha256()
    for part in (X, y):
        if part is not None:
            digest.update(_content_bytes(part))
    return Dataset(
        name="training",
        digest=digest.hexdigest(),
        source_type="autolog",
        source="autolog",
        schema=json.dumps(_schema(X), sort_keys=True),
    )


def _content_bytes(data: Any) -> bytes:
    """Bytes that identify the data's content: pandas hashes for frames, raw array bytes else."""
    import numpy as np
    import pandas as pd

    if isinstance(data, pd.DataFrame | pd.Series):
        return bytes(pd.util.hash_pandas_object(data, index=True).to_numpy().tobytes())
    if hasattr(data, "tocsr"):  # scipy sparse: the CSR arrays are its content
        csr = data.tocsr()
        return b"".join(_content_bytes(a) for a in (csr.data, csr.indices, csr.indptr))
    array = np.asarray(data)
    if array.dtype == object:  # object arrays hold pointers, not values
        frame = pd.DataFrame(array.reshape(len(array), -1))
        return bytes(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return np.ascontiguousarray(array).tobytes()


def _schema(X: Any) -> dict[str, Any]:
    import numpy as np
    import pandas as pd

    if isinstance(X, pd.DataFrame):
        return {
            "columns": [str(c) for c in X.columns],
            "dtypes": [str(d) for d in X.dtypes],
            "shape": list(X.shape),
        }
    shape = getattr(X, "shape", None) or np.shape(X)
    dtype = getattr(X, "dtype", None)
    return {"shape": [int(n) for n in shape], "dtype": str(dtype) if dtype else None}


def _head(X: Any, n: int = 5) -> Any:
    import pandas as pd

    if isinstance(X, pd.DataFrame | pd.Series):
        return X.iloc[:n]
    return X[:n]


# -- metrics -----------------------------------------------------------------------


@contextmanager
def _quiet() -> Iterator[None]:
    # Our own metric computations must not spam (or, under -W error, break) the user.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def training_metrics(estimator: Any, X: Any, y: Any, sample_weight: Any = None) -> dict[str, float]:
    """Metrics of a fitted estimator on its training data; undefined ones are left out.

    >>> from sklearn.linear_model import LinearRegression
    >>> sorted(training_metrics(LinearRegression().fit([[0], [1]], [0, 1]), [[0], [1]], [0, 1]))
    ['training_mae', 'training_mse', 'training_r2', 'training_rmse', 'training_score']
    """
    from sklearn.base import is_classifier, is_regressor

    metrics: dict[str, float | None] = {}
    if X is None:
        return {}
    with _quiet():
        score = _try(lambda: estimator.score(X, y, sample_weight=sample_weight))
        if score is None:
            score = _try(lambda: estimator.score(X, y))
        metrics["training_score"] = score
        if y is not None and is_classifier(estimator):
            metrics.update(_classifier_metrics(estimator, X, y, sample_weight))
        elif y is not None and is_regressor(estimator):
            metrics.update(_regressor_metrics(estimator, X, y, sample_weight))
    return {k: v for k, v in metrics.items() if v is not None and math.isfinite(v)}


def _try(compute: Callable[[], Any]) -> float | None:
    """The metric as a float, or None when it is undefined for this estimator or data."""
    try:
        return float(compute())
    except Exception:
        return None


def _classifier_metrics(est: Any, X: Any, y: Any, sw: Any) -> dict[str, float | None]:
    from sklearn import metrics as m

    y_pred = est.predict(X)
    classes = getattr(est, "classes_", None)
    binary = classes is not None and len(classes) == 2
    avg: dict[str, Any] = {"average": "weighted", "zero_division": 0, "sample_weight": sw}
    if binary:
        assert classes is not None
        avg.update(average="binary", pos_label=classes[1])
    out: dict[str, float | None] = {
        "training_accuracy": _try(lambda: m.accuracy_score(y, y_pred, sample_weight=sw)),
        "training_precision": _try(lambda: m.precision_score(y, y_pred, **avg)),
        "training_recall": _try(lambda: m.recall_score(y, y_pred, **avg)),
        "training_f1": _try(lambda: m.f1_score(y, y_pred, **avg)),
    }
    if hasattr(est, "predict_proba") and classes is not None:
        proba = _try_proba(est, X)
        if proba is not None:
            out["training_log_loss"] = _try(
                lambda: m.log_loss(y, proba, labels=classes, sample_weight=sw)
            )
            out["training_roc_auc"] = _try(lambda: _roc_auc(y, proba, classes, binary, sw))
    return out


def _try_proba(est: Any, X: Any) -> Any:
    try:
        return est.predict_proba(X)
    except Exception:  # e.g. SVC(probability=False) has the method but refuses
        return None


def _roc_auc(y: Any, proba: Any, classes: Any, binary: bool, sw: Any) -> float:
    from sklearn.metrics import roc_auc_score

    if binary:
        import numpy as np

        return float(roc_auc_score(np.asarray(y) == classes[1], proba[:, 1], sample_weight=sw))
    return float(
        roc_auc_score(
            y, proba, multi_class="ovr", average="weighted", labels=classes, sample_weight=sw
        )
    )


def _regressor_metrics(est: Any, X: Any, y: Any, sw: Any) -> dict[str, float | None]:
    from sklearn import metrics as m

    y_pred = est.predict(X)
    mse = _try(lambda: m.mean_squared_error(y, y_pred, sample_weight=sw))
    return {
        "training_mse": mse,
        "training_rmse": math.sqrt(mse) if mse is not None else None,
        "training_mae": _try(lambda: m.mean_absolute_error(y, y_pred, sample_weight=sw)),
        "training_r2": _try(lambda: m.r2_score(y, y_pred, sample_weight=sw)),
    }


# -- search CV -----------------------------------------------------------------------


def _is_search_cv(estimator: Any) -> bool:
    from sklearn.model_selection._search import BaseSearchCV

    return isinstance(estimator, BaseSearchCV)


def _log_search(config: _Config, search: Any, parent_run_id: str) -> dict[str, float]:
    """Log best params and the top candidates as child runs; return the search's metrics."""
    best_params = getattr(search, "best_params_", None) or {}
    if best_params:
        params, _ = _loggable_params({f"best_{k}": v for k, v in best_params.items()})
        fluent.log_params(params)
    results = getattr(search, "cv_results_", None)
    if results is not None:
        for rank, index in enumerate(_top_candidates(search, results, config.max_tuning_runs)):
            _log_candidate(results, index, rank + 1, parent_run_id)
    best_score = _try(lambda: search.best_score_)
    return {"best_score": best_score} if best_score is not None else {}


def _rank_key(search: Any) -> str | None:
    refit = getattr(search, "refit", True)
    for key in ("rank_test_score", f"rank_test_{refit}" if isinstance(refit, str) else None):
        if key is not None and key in search.cv_results_:
            return key
    return None


def _top_candidates(search: Any, results: Mapping[str, Any], limit: int | None) -> list[int]:
    """Indices of the best candidates by rank (ties keep their original order)."""
    key = _rank_key(search)
    if key is None:
        return []
    ranks = [int(r) for r in results[key]]
    order = sorted(range(len(ranks)), key=lambda i: ranks[i])
    return order if limit is None else order[: max(limit, 0)]


def _log_candidate(results: Mapping[str, Any], index: int, rank: int, parent_run_id: str) -> None:
    # Through the client, not the fluent stack: the autologged run stays the
    # one keel.last_active_run() returns, as it does with MLflow.
    params, _ = _loggable_params(results["params"][index])
    metrics = [
        Metric(key, float(values[index]), now_ms(), 0)
        for key, values in results.items()
        if key.startswith(("mean_test_", "std_test_")) and math.isfinite(float(values[index]))
    ]
    client = Client()
    parent = client.get_run(parent_run_id)
    child = client.create_run(
        parent.info.experiment_id,
        tags={PARENT_RUN_ID_TAG: parent_run_id},
        run_name=f"candidate-{rank}",
    )
    client.log_batch(
        child.info.run_id,
        metrics=metrics,
        params=[Param(k, v) for k, v in params.items()],
    )
    client.set_terminated(child.info.run_id)


# -- model package -------------------------------------------------------------------


def _log_package(model: Any, run_id: str, input_example: Any, onnx: bool) -> None:
    """``keel.sklearn.log_model(model, "model")`` into the autologged run."""
    from keel.sklearn import log_model  # keel.sklearn re-exports autolog: import late

    log_model(model, "model", input_example=input_example, run_id=run_id, onnx=onnx)
