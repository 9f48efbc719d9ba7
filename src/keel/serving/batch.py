"""Batch scoring: a file in, the same rows with a ``prediction`` column out, in chunks.

The input is read a batch at a time (:func:`keel.data.frames.batches`), each
batch is checked exactly as ``keel serve`` checks a request, scored, and
appended to the output, which is written under a temporary name and renamed
when complete. Memory stays at one batch, whatever the file's size.

>>> result = predict_file("models:/churn@prod", "today.parquet", "scored.parquet")  # doctest: +SKIP
>>> result.rows, result.problems                                                    # doctest: +SKIP
(1000000, {})
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from keel.data.frames import DataError, batches
from keel.serving.checks import InputChecker, Problem
from keel.serving.prediction_log import PREDICTION

BATCH_ROWS = 50_000


@dataclass
class BatchResult:
    """How a batch scoring run went."""

    rows: int = 0
    # under "warn": rows scored despite a problem, by "column:CODE"
    problems: dict[str, int] = field(default_factory=dict)
    output: Path | None = None


def predict_file(
    model_uri: str,
    input_path: str | Path,
    output_path: str | Path,
    *,
    validation: str = "reject",
    batch_rows: int = BATCH_ROWS,
    progress: Callable[[int], None] | None = None,
) -> BatchResult:
    """Score every row of ``input_path`` into ``output_path`` (.parquet or .csv)."""
    from keel.serving.app import POLICIES, ServedModel

    if validation not in POLICIES:
        raise DataError(f"validation must be one of {', '.join(POLICIES)}, not {validation!r}.")
    out = Path(output_path)
    if out.suffix.lower() not in (".parquet", ".csv"):
        raise DataError(f"Cannot write {str(out)!r}: the output must be a .parquet or .csv file.")
    served = ServedModel.load(model_uri)
    if not served.ready:
        raise DataError(f"Cannot score with {model_uri}: {served.error}")
    checker = InputChecker(served.schema, served.profile)
    result = BatchResult(output=out)
    tmp = out.with_name(f".{out.name}.tmp")
    writer: Any = None
    try:
        for batch in batches(input_path, batch_rows=batch_rows):
            frame = batch.to_pandas()
            model_input: Any = frame
            if validation != "off":
                model_input, problems = checker.check(frame)
                if problems:
                    _account(result, problems, validation, offset=result.rows)
            predictions = served.model.predict(model_input)
            scored = pa.Table.from_pandas(frame, preserve_index=False)
            scored = scored.append_column(PREDICTION, _column(predictions))
            writer = _write(writer, tmp, out, scored)
            result.rows += len(frame)
            if progress is not None:
                progress(len(frame))
        if writer is None:
            raise DataError(f"{str(input_path)!r} holds no rows to score.")
        writer.close()
        writer = None
        tmp.replace(out)
    finally:
        if writer is not None:
            writer.close()
        tmp.unlink(missing_ok=True)
    return result


def _account(result: BatchResult, problems: list[Problem], validation: str, offset: int) -> None:
    if validation == "reject":
        shown = "; ".join(
            f"{p.code} in {p.column!r} ({p.count} rows, first at row "
            f"{offset + p.rows[0] if p.rows else offset})"
            for p in problems[:5]
        )
        raise DataError(
            f"The input has rows the model should not score: {shown}. Fix them, or pass "
            "--validation warn to score them anyway."
        )
    for p in problems:
        key = f"{p.column}:{p.code}"
        result.problems[key] = result.problems.get(key, 0) + p.count


def _column(predictions: Any) -> pa.Array:
    values = np.asarray(predictions)
    if values.ndim > 1:
        return pa.array(list(values))
    return pa.array(values)


def _write(writer: Any, tmp: Path, out: Path, table: pa.Table) -> Any:
    if out.suffix.lower() == ".csv":
        if writer is None:
            writer = pacsv.CSVWriter(tmp, table.schema)
        writer.write_table(table)
        return writer
    if writer is None:
        writer = pq.ParquetWriter(tmp, table.schema)
    writer.write_table(table.cast(writer.schema))
    return writer
