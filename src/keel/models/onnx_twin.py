"""The ONNX twin: the same model converted with skl2onnx, kept only if it answers the same.

A pickle needs the scikit-learn minor version it was saved with; an ONNX file
needs only onnxruntime. The twin is converted at save time, its answers are
compared with the native model's (the parity report), and it is written only
when they agree. At load time it stands in when the native model cannot be
used here.

>>> import numpy as np
>>> from sklearn.linear_model import LogisticRegression
>>> x = np.array([[0.0], [1.0], [2.0], [3.0]]); y = np.array([0, 0, 1, 1])
>>> model = LogisticRegression().fit(x, y)
>>> twin = convert(model, x)
>>> parity(model, twin.onnx_bytes, x).passed
True
>>> OnnxModel(twin.onnx_bytes).predict(x).tolist()
[0, 0, 1, 1]
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

DEFAULT_THRESHOLD = 1e-4
EXTRA_ROWS = 1000
# The ONNX opset skl2onnx targets; pinned so a package does not depend on
# whatever the installed onnx happens to support.
TARGET_OPSET = 17
# ai.onnx.ml 3 is the first whose tree ensembles compute in double; older ones
# round thresholds to float32 and lose parity with scikit-learn.
TARGET_ML_OPSET = 5
_MATRIX_INPUT = "X"


class FallbackWarning(UserWarning):
    """The native model could not be used, so the package's ONNX twin answers instead."""


@dataclass(frozen=True)
class TwinResult:
    """The serialized twin, or None with the reason conversion failed."""

    onnx_bytes: bytes | None
    reason: str | None = None
    opset: int | None = None


@dataclass(frozen=True)
class ParityReport:
    """How closely the twin matches the native model on the rows compared."""

    max_abs_diff: float
    label_agreement: float
    rows: int
    passed: bool
    threshold: float
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        """One line for error messages, e.g. ``label agreement 1.0, max abs diff 2e-09``."""
        if self.error:
            return self.error
        return (
            f"label agreement {self.label_agreement:.4g}, max abs diff "
            f"{self.max_abs_diff:.3g} (threshold {self.threshold:g}) over {self.rows} rows"
        )


def _is_frame(data: Any) -> bool:
    return hasattr(data, "columns") and hasattr(data, "iloc")


def _numeric_kind(dtype: Any) -> bool:
    # pandas' own dtypes (StringDtype, nullable Int64, category) are not numpy's.
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    return bool(is_numeric_dtype(dtype) or is_bool_dtype(dtype))


def _final_step(model: Any) -> Any:
    steps = getattr(model, "steps", None)
    return steps[-1][1] if steps else model


def _initial_types(sample: Any, per_column: bool, double: bool) -> list[tuple[str, Any]]:
    """skl2onnx input declarations: one per column, or one matrix for the whole sample."""
    import numpy as np
    from skl2onnx.common.data_types import (
        DoubleTensorType,
        FloatTensorType,
        StringTensorType,
    )

    number = DoubleTensorType if double else FloatTensorType
    if per_column:
        return [
            (str(name), number([None, 1]) if _numeric_kind(dtype) else StringTensorType([None, 1]))
            for name, dtype in zip(sample.columns, sample.dtypes, strict=True)
        ]
    array = np.asarray(sample)
    return [(_MATRIX_INPUT, number([None, array.shape[1] if array.ndim == 2 else 1]))]


def _layouts(sample: Any) -> list[tuple[bool, bool]]:
    """(one input per column?, double precision?) to try, most likely first.

    Double first: it keeps linear models within rounding error of scikit-learn.
    Float second: onnxruntime's tree ensembles only answer in float, and
    scikit-learn's trees split on float32 anyway. A float32 sample is
    float32 only, as the native model saw it.
    """
    import numpy as np

    precisions = [True, False]
    if not _is_frame(sample):
        return (
            [(False, False)]
            if np.asarray(sample).dtype == np.float32
            else [(False, True), (False, False)]
        )
    if all(_numeric_kind(dtype) for dtype in sample.dtypes):
        # Plain estimators take one matrix; a ColumnTransformer selects named columns.
        return [(c, d) for c in (False, True) for d in precisions]
    return [(True, d) for d in precisions]


def convert(model: Any, sample: Any) -> TwinResult:
    """Convert a fitted scikit-learn model; on any failure return the reason instead.

    The first input layout whose twin converts and runs on ``sample`` wins.

    >>> import numpy as np
    >>> from sklearn.tree import DecisionTreeClassifier
    >>> x = np.array([[0.0], [1.0]]); t = convert(DecisionTreeClassifier().fit(x, [0, 1]), x)
    >>> t.onnx_bytes is not None, t.reason
    (True, None)
    """
    try:
        from skl2onnx import convert_sklearn
    except ImportError:
        return TwinResult(None, "skl2onnx is not installed (pip install 'keel[onnx]')")
    from sklearn.base import is_classifier

    final = _final_step(model)
    options = {id(final): {"zipmap": False}} if is_classifier(final) else None
    errors = []
    for per_column, double in _layouts(sample):
        try:
            onx = convert_sklearn(
                model,
                initial_types=_initial_types(sample, per_column, double),
                options=options,
                target_opset={"": TARGET_OPSET, "ai.onnx.ml": TARGET_ML_OPSET},
            )
            onnx_bytes = onx.SerializeToString()
            OnnxModel(onnx_bytes).smoke(sample)
        except Exception as exc:  # skl2onnx and onnxruntime raise many types
            errors.append(f"{type(exc).__name__}: {_first_line(exc)}")
            continue
        return TwinResult(onnx_bytes, None, TARGET_OPSET)
    return TwinResult(None, f"skl2onnx cannot convert {type(model).__name__}: {errors[0]}")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else ""


class OnnxModel:
    """An ONNX twin with scikit-learn's ``predict`` / ``predict_proba`` calling convention.

    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> x = np.array([[0.0], [3.0]]); m = LogisticRegression().fit(x, ["no", "yes"])
    >>> OnnxModel(convert(m, x).onnx_bytes).predict(x).tolist()
    ['no', 'yes']
    """

    def __init__(self, onnx_bytes: bytes) -> None:
        import onnxruntime as ort

        self._session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
        self._inputs = [(i.name, i.type) for i in self._session.get_inputs()]
        self._outputs = [o.name for o in self._session.get_outputs()]

    @property
    def methods(self) -> tuple[str, ...]:
        """The prediction methods the twin answers (classifiers add ``predict_proba``)."""
        return ("predict", "predict_proba") if len(self._outputs) > 1 else ("predict",)

    def smoke(self, data: Any) -> None:
        """Run every method once; raises when the twin cannot answer ``data``."""
        for method in self.methods:
            getattr(self, method)(data)

    def _feeds(self, data: Any) -> dict[str, Any]:
        import numpy as np

        if _is_frame(data) and (len(self._inputs) > 1 or self._inputs[0][0] in data.columns):
            return {
                name: _cast(data[name].to_numpy().reshape(-1, 1), kind)
                for name, kind in self._inputs
            }
        name, kind = self._inputs[0]
        array = np.asarray(data)
        return {name: _cast(array.reshape(len(array), -1), kind)}

    def _run(self, data: Any) -> list[Any]:
        return list(self._session.run(None, self._feeds(data)))

    def predict(self, data: Any) -> Any:
        """Labels (classifiers) or values (regressors), shaped like scikit-learn's."""
        import numpy as np

        out = np.asarray(self._run(data)[0])
        if out.ndim == 2 and out.shape[1] == 1:
            out = out.ravel()  # regressors answer [N, 1]; scikit-learn answers [N]
        return out.astype(str) if out.dtype == object else out

    def predict_proba(self, data: Any) -> Any:
        """Class probabilities, one column per class in ``classes_`` order."""
        import numpy as np

        if "predict_proba" not in self.methods:
            raise AttributeError("This ONNX twin is a regressor and has no predict_proba.")
        return np.asarray(self._run(data)[1])


def _cast(values: Any, onnx_type: str) -> Any:
    import numpy as np

    if "string" in onnx_type:
        return values.astype(str).astype(object)
    if "double" in onnx_type:
        return values.astype(np.float64)
    if "float" in onnx_type:
        return values.astype(np.float32)
    return values.astype(np.int64)


def _batches(sample: Any, extra: Any) -> Iterator[Any]:
    yield sample
    if extra is not None:
        yield extra.iloc[:EXTRA_ROWS] if _is_frame(extra) else extra[:EXTRA_ROWS]


def parity(
    model: Any,
    onnx_bytes: bytes | None,
    sample: Any,
    extra: Any = None,
    *,
    threshold: float = DEFAULT_THRESHOLD,
) -> ParityReport:
    """Compare the twin with the native model on ``sample`` and up to 1000 ``extra`` rows.

    Labels must agree on every row; probabilities (or regression values) within
    ``threshold``. A twin that fails to run fails parity with infinite difference.

    >>> import numpy as np
    >>> from sklearn.linear_model import LinearRegression
    >>> x = np.array([[0.0], [1.0]]); m = LinearRegression().fit(x, [1.0, 3.0])
    >>> parity(m, convert(m, x).onnx_bytes, x).max_abs_diff < 1e-9
    True
    """
    if onnx_bytes is None:
        return ParityReport(float("inf"), 0.0, 0, False, threshold, "there is no twin")
    try:
        twin = OnnxModel(onnx_bytes)
        diffs, agree, rows = _compare(model, twin, list(_batches(sample, extra)))
    except Exception as exc:  # a twin that cannot run on these rows is not a twin
        error = f"the twin failed to run: {type(exc).__name__}: {_first_line(exc)}"
        return ParityReport(float("inf"), 0.0, 0, False, threshold, error)
    agreement = agree / rows if rows else 0.0
    passed = rows > 0 and agreement == 1.0 and diffs <= threshold
    return ParityReport(diffs, agreement, rows, passed, threshold)


def _compare(model: Any, twin: OnnxModel, batches: list[Any]) -> tuple[float, int, int]:
    """(max abs difference, rows whose labels agree, rows) over every batch."""
    import numpy as np

    worst, agree, rows = 0.0, 0, 0
    for batch in batches:
        native, onnx = np.asarray(model.predict(batch)), twin.predict(batch)
        rows += len(native)
        if "predict_proba" in twin.methods:
            agree += int((native.astype(str) == onnx.astype(str)).sum())
            worst = max(worst, _max_diff(model.predict_proba, twin.predict_proba, batch))
        else:
            # Regressors have no labels: their values are what parity measures.
            agree += len(native)
            worst = max(worst, _max_diff(model.predict, twin.predict, batch))
    return worst, agree, rows


def _max_diff(native: Callable[[Any], Any], onnx: Callable[[Any], Any], batch: Any) -> float:
    import numpy as np

    expected = np.asarray(native(batch), dtype=np.float64)
    got = np.asarray(onnx(batch), dtype=np.float64)
    if expected.shape != got.shape:
        return float("inf")
    return float(np.max(np.abs(expected - got), initial=0.0))


def versions() -> dict[str, str]:
    """Versions of the converter and runtime, recorded next to the twin."""
    import onnxruntime
    import skl2onnx

    return {"skl2onnx": skl2onnx.__version__, "onnxruntime": onnxruntime.__version__}


def golden_problems(
    twin: OnnxModel, sample: Any, threshold: float = DEFAULT_THRESHOLD
) -> list[str]:
    """Check the twin against the golden sample; one line per method that differs.

    Like :func:`keel.models.golden.compare_golden`, restricted to the methods
    the twin has (it has no ``decision_function``), with scores held to the
    parity threshold the twin was accepted under rather than the native
    model's ``rtol=1e-5``: a float32 tree ensemble meets the one, not always
    the other. Labels must match exactly.

    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> from keel.models.golden import capture_golden
    >>> x = np.array([[0.0], [3.0]]); m = LogisticRegression().fit(x, [0, 1])
    >>> golden_problems(OnnxModel(convert(m, x).onnx_bytes), capture_golden(m, x))
    []
    """
    import numpy as np

    from keel.models.golden import decode_frame

    inputs = decode_frame(sample.inputs)
    problems = []
    for method in (m for m in sample.outputs if m in twin.methods):
        expected = decode_frame(sample.outputs[method])
        try:
            got = np.asarray(getattr(twin, method)(inputs))
        except Exception as exc:  # the twin cannot answer these rows
            problems.append(f"{method} raised {type(exc).__name__}: {_first_line(exc)}")
            continue
        if got.shape != expected.shape:
            problems.append(f"{method} returned shape {got.shape}, saved {expected.shape}")
        elif np.issubdtype(expected.dtype, np.floating):
            worst = float(np.max(np.abs(got.astype(float) - expected), initial=0.0))
            if not worst <= threshold:
                problems.append(f"{method}: largest difference {worst:.3g} > {threshold:g}")
        elif not (same := got.astype(str) == expected.astype(str)).all():
            problems.append(f"{method}: {int((~same).sum())} of {same.size} labels differ")
    return problems
