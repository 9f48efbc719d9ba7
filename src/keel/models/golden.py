"""The golden sample: a few input rows and the model's outputs on them at save time.

Re-predicting them after loading catches the model that loads but answers
differently (a pickle read by another library version), which no version
check can prove absent.

>>> import numpy as np
>>> from sklearn.linear_model import LogisticRegression
>>> x = np.array([[0.0], [1.0], [2.0], [3.0]]); y = np.array([0, 0, 1, 1])
>>> sample = capture_golden(LogisticRegression().fit(x, y), x)
>>> sorted(sample.outputs)
['decision_function', 'predict', 'predict_proba']
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any

from keel.errors import InvalidParameter

GOLDEN_METHODS = ("predict", "predict_proba", "decision_function")
DEFAULT_ROWS = 20
RTOL = 1e-5
ATOL = 1e-8


@dataclass(frozen=True)
class GoldenSample:
    """Encoded inputs and, per method, the encoded outputs (JSON-ready)."""

    inputs: dict[str, Any]
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    # True when, at save time, predict returned exactly the class of highest
    # probability on every row: load then checks both from one predict_proba
    # call, which halves the check's cost for forests and boosting.
    labels_from_proba: bool = False

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"inputs": self.inputs, "outputs": self.outputs}
        if self.labels_from_proba:
            out["labels_from_proba"] = True
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GoldenSample:
        return cls(
            inputs=dict(data["inputs"]),
            outputs=dict(data["outputs"]),
            labels_from_proba=data.get("labels_from_proba") is True,
        )


def _cell(value: Any) -> Any:
    """A JSON-representable cell; NaN stays NaN (Python's json writes it)."""
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()  # numpy scalar -> Python scalar
    if isinstance(value, (datetime.datetime, datetime.date)):
        return value.isoformat()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def encode_frame(data: Any, rows: int | None = None) -> dict[str, Any]:
    """Encode a DataFrame or array-like (first ``rows`` rows) with its dtypes."""
    import numpy as np

    if hasattr(data, "iloc") and hasattr(data, "columns"):
        frame = data.iloc[:rows] if rows is not None else data
        return {
            "kind": "dataframe",
            "columns": [str(c) for c in frame.columns],
            "dtypes": [str(t) for t in frame.dtypes],
            "data": [[_cell(v) for v in row] for row in frame.itertuples(index=False)],
        }
    array = np.asarray(data)
    if rows is not None:
        array = array[:rows]
    return {
        "kind": "ndarray",
        "dtype": str(array.dtype),
        "shape": list(array.shape),
        "data": [_cell(v) for v in array.ravel().tolist()],
    }


def decode_frame(encoded: dict[str, Any]) -> Any:
    """The DataFrame or ndarray :func:`encode_frame` described."""
    import numpy as np

    kind = encoded.get("kind")
    if kind == "dataframe":
        import pandas as pd

        frame = pd.DataFrame(encoded["data"], columns=encoded["columns"])
        for column, dtype in zip(encoded["columns"], encoded["dtypes"], strict=True):
            frame[column] = frame[column].astype(dtype)
        return frame
    if kind == "ndarray":
        dtype = encoded["dtype"]
        return np.array(encoded["data"], dtype=dtype).reshape(encoded["shape"])
    raise InvalidParameter(f"Unknown golden sample encoding {kind!r}.")


def capture_golden(model: Any, inputs: Any, rows: int = DEFAULT_ROWS) -> GoldenSample:
    """Run every available prediction method of ``model`` on the first ``rows`` rows."""
    encoded = encode_frame(inputs, rows)
    sample_inputs = decode_frame(encoded)  # predict on what load will see, not the original
    outputs = {}
    for method in GOLDEN_METHODS:
        fn = getattr(model, method, None)
        if fn is None:
            continue
        try:
            outputs[method] = encode_frame(fn(sample_inputs))
        except (AttributeError, NotImplementedError, ValueError, TypeError):
            # e.g. predict_proba on an SVC without probability=True
            continue
    if "predict" not in outputs:
        raise InvalidParameter(
            f"{type(model).__name__}.predict failed on the input example: a package needs "
            "a model that can predict its own example rows."
        )
    derived = "predict_proba" in outputs and _same_labels(
        _argmax_labels(model, decode_frame(outputs["predict_proba"])),
        decode_frame(outputs["predict"]),
    )
    return GoldenSample(encoded, outputs, labels_from_proba=derived)


def _argmax_labels(model: Any, proba: Any) -> Any:
    """The class of highest probability per row, or None when that is undefined."""
    import numpy as np

    classes = getattr(model, "classes_", None)
    proba = np.asarray(proba)
    if classes is None or proba.ndim != 2 or proba.shape[1] != len(classes):
        return None
    return np.asarray(classes)[proba.argmax(axis=1)]


def _same_labels(got: Any, expected: Any) -> bool:

    if got is None or got.shape != expected.shape:
        return False
    return bool((got.astype(str) == expected.astype(str)).all())


def compare_golden(model: Any, sample: GoldenSample) -> list[str]:
    """Re-predict the sample; one line per method whose outputs differ (empty: all match).

    Labels (non-float outputs) must match exactly; scores and float predictions
    within ``rtol=1e-5, atol=1e-8``. With ``labels_from_proba``, predict's
    labels are compared with the class of highest probability instead of
    calling predict as well.
    """
    inputs = decode_frame(sample.inputs)
    problems = []
    got: dict[str, Any] = {}
    for method, expected_enc in sample.outputs.items():
        if method == "predict" and sample.labels_from_proba:
            continue  # compared below, from predict_proba's answer
        try:
            got[method] = getattr(model, method)(inputs)
        except Exception as exc:  # the loaded model is broken for this method
            problems.append(f"{method} raised {type(exc).__name__}: {exc}")
            continue
        problems += _differences(method, got[method], decode_frame(expected_enc))
    if sample.labels_from_proba and "predict_proba" in got:
        labels = _argmax_labels(model, got["predict_proba"])
        if labels is None:
            problems.append("predict_proba no longer has one column per class")
        else:
            problems += _differences("predict", labels, decode_frame(sample.outputs["predict"]))
    return problems


def _differences(method: str, got: Any, expected: Any) -> list[str]:
    import numpy as np

    got = np.asarray(got)
    if got.shape != expected.shape:
        return [f"{method} returned shape {got.shape}, saved {expected.shape}"]
    if np.issubdtype(expected.dtype, np.floating):
        close = np.isclose(got.astype(float), expected, rtol=RTOL, atol=ATOL, equal_nan=True)
        if not close.all():
            worst = float(np.nanmax(np.abs(got.astype(float) - expected)))
            return [
                f"{method}: {int((~close).sum())} of {close.size} values differ "
                f"(largest difference {worst:.3g})"
            ]
        return []
    same = got.astype(str) == expected.astype(str)
    if not same.all():
        return [f"{method}: {int((~same).sum())} of {same.size} labels differ"]
    return []
