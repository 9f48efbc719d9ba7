"""Datasets with a content digest, ready to log as a run's input.

A :class:`KeelDataset` is a name plus the :mod:`keel.data.digest` of the data,
its row count, logical schema and where it came from. ``keel.log_input(ds)``
records it as an MLflow-compatible dataset input: the schema in MLflow's
``mlflow_colspec`` format and a ``{"num_rows", "num_elements"}`` profile, so the
MLflow UI shows it as it shows its own datasets.

>>> import pandas as pd
>>> ds = from_pandas(pd.DataFrame({"age": [31, 45]}), name="people")
>>> ds.name, ds.rows, ds.source_type, len(ds.digest)
('people', 2, 'pandas', 64)
>>> ds.to_entity().profile
'{"num_rows": 2, "num_elements": 2}'
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from keel.data.digest import DigestResult, content_digest
from keel.data.frames import DataError
from keel.entities import Dataset

# Keel logical type -> MLflow colspec type name (mlflow.types.DataType).
_MLFLOW_TYPES = {
    "int64": "long",
    "uint64": "long",
    "float64": "double",
    "bool": "boolean",
    "string": "string",
    "binary": "binary",
    "date": "datetime",
    "decimal": "double",
}


@dataclass(frozen=True)
class KeelDataset:
    """A named dataset identified by its content digest.

    ``schema`` is ``((column, logical type), ...)`` as defined in
    :mod:`keel.data.digest`; ``source_type`` says what it was read from
    (``pandas``, ``arrow``, ``csv``, ``parquet``, ``local``, ``s3``, ...).
    """

    name: str
    digest: str
    rows: int
    schema: tuple[tuple[str, str], ...]
    source: str
    source_type: str

    @property
    def mlflow_schema(self) -> str:
        """The schema as MLflow stores it: ``{"mlflow_colspec": [...]}``.

        >>> KeelDataset("d", "0" * 64, 1, (("age", "int64"),), "", "pandas").mlflow_schema
        '{"mlflow_colspec": [{"type": "long", "name": "age", "required": true}]}'
        """
        specs = [
            {"type": _mlflow_type(kind), "name": name, "required": True}
            for name, kind in self.schema
        ]
        return json.dumps({"mlflow_colspec": specs})

    @property
    def profile(self) -> str:
        """What MLflow records as a dataset's profile: rows and cells."""
        return json.dumps({"num_rows": self.rows, "num_elements": self.rows * len(self.schema)})

    @property
    def columns(self) -> list[str]:
        """The column names, in order."""
        return [name for name, _ in self.schema]

    def to_entity(self) -> Dataset:
        """The tracking entity ``keel.log_input`` records for this dataset."""
        return Dataset(
            name=self.name,
            digest=self.digest,
            source_type=self.source_type,
            source=self.source,
            schema=self.mlflow_schema,
            profile=self.profile,
        )


def _mlflow_type(kind: str) -> str:
    if kind.startswith("timestamp"):
        return "datetime"
    return _MLFLOW_TYPES.get(kind, "string")


def _make(result: DigestResult, name: str, source: str, source_type: str) -> KeelDataset:
    return KeelDataset(
        name=name,
        digest=result.digest,
        rows=result.rows,
        schema=tuple(result.schema),
        source=source,
        source_type=source_type,
    )


def from_pandas(df: Any, name: str | None = None, source: str | None = None) -> KeelDataset:
    """A dataset of a pandas DataFrame (its index is not part of the content).

    >>> import pandas as pd
    >>> from_pandas(pd.DataFrame({"x": [1.5]})).schema
    (('x', 'float64'),)
    """
    if not (type(df).__module__.startswith("pandas") and hasattr(df, "columns")):
        raise DataError(
            f"from_pandas needs a pandas DataFrame, not {type(df).__name__}. "
            "Use from_arrow, from_csv or from_parquet for other inputs."
        )
    result = content_digest(df)
    return _make(result, name or "dataset", source or "", "pandas")


def from_arrow(data: Any, name: str | None = None, source: str | None = None) -> KeelDataset:
    """A dataset of a pyarrow Table, RecordBatch or RecordBatchReader (read once, streamed).

    >>> import pyarrow as pa
    >>> from_arrow(pa.table({"x": [1, 2]}), name="t").rows
    2
    """
    if not isinstance(data, pa.Table | pa.RecordBatch | pa.RecordBatchReader):
        raise DataError(
            f"from_arrow needs a pyarrow Table, RecordBatch or RecordBatchReader, not "
            f"{type(data).__name__}. Use from_pandas, from_csv or from_parquet for other inputs."
        )
    result = content_digest(data)
    return _make(result, name or "dataset", source or "", "arrow")


def from_csv(path: str | Path, name: str | None = None, source: str | None = None) -> KeelDataset:
    """A dataset of a CSV file, streamed (name: the file stem; source: its absolute path).

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "people.csv"
    >>> _ = p.write_text("age,plan\\n31,basic\\n45,pro\\n")
    >>> ds = from_csv(p)
    >>> ds.name, ds.rows, ds.schema
    ('people', 2, (('age', 'int64'), ('plan', 'string')))
    """
    return _from_file(path, name, source, "csv", (".csv", ".tsv", ".csv.gz"))


def from_parquet(
    path: str | Path, name: str | None = None, source: str | None = None
) -> KeelDataset:
    """A dataset of a Parquet file, streamed a batch at a time (defaults as :func:`from_csv`).

    >>> import tempfile, pathlib, pyarrow as pa, pyarrow.parquet as pq
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "t.parquet"
    >>> pq.write_table(pa.table({"x": [1, 2]}), p)
    >>> from_parquet(p).digest == from_arrow(pa.table({"x": [1, 2]})).digest
    True
    """
    return _from_file(path, name, source, "parquet", (".parquet", ".pq"))


def _from_file(
    path: str | Path,
    name: str | None,
    source: str | None,
    source_type: str,
    suffixes: tuple[str, ...],
) -> KeelDataset:
    if not isinstance(path, str | Path):
        raise DataError(
            f"from_{source_type} needs a path to a .{source_type} file, not {type(path).__name__}."
        )
    file = Path(path).expanduser()
    if not file.name.lower().endswith(suffixes):
        raise DataError(
            f"{str(file)!r} does not look like a {source_type.upper()} file (expected a name "
            f"ending in {', '.join(suffixes)}). Rename it or use the matching from_* function."
        )
    result = content_digest(file)
    stem = file.name[: -len(next(s for s in suffixes if file.name.lower().endswith(s)))]
    return _make(result, name or stem, source or str(file.resolve()), source_type)
