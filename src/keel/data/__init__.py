"""Data: dataset versions, mergeable profiles, validation suites and drift reports.

>>> import pandas as pd, keel.data
>>> df = pd.DataFrame({"age": [31, 45, 27], "plan": ["basic", "pro", "basic"]})
>>> keel.data.profile(df).rows
3
>>> keel.data.suite_from(df).validate(df).passed
True

Needs Keel's ``data`` extra (pyarrow, DataSketches, scipy): ``pip install keel[data]``.
"""

from __future__ import annotations

from keel.data.dataset import KeelDataset, from_arrow, from_csv, from_pandas, from_parquet
from keel.data.drift_report import ColumnDrift, DriftReport, drift
from keel.data.frames import DataError
from keel.data.profiles import ColumnProfile, Profile, profile
from keel.data.suite import Suite, ValidationReport, load_suite, suite_from

__all__ = [
    "ColumnDrift",
    "ColumnProfile",
    "DataError",
    "DriftReport",
    "KeelDataset",
    "Profile",
    "Suite",
    "ValidationReport",
    "drift",
    "from_arrow",
    "from_csv",
    "from_pandas",
    "from_parquet",
    "load_suite",
    "profile",
    "suite_from",
]
