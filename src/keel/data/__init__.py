"""Data: dataset versions, mergeable profiles, validation suites and drift reports.

>>> import pandas as pd, keel.data
>>> df = pd.DataFrame({"age": [31, 45, 27], "plan": ["basic", "pro", "basic"]})
>>> keel.data.profile(df).rows
3
"""

from __future__ import annotations

import importlib
from typing import Any

# name -> module; loaded on first use so `import keel.data` stays light
_EXPORTS = {
    "from_pandas": "dataset",
    "from_csv": "dataset",
    "from_parquet": "dataset",
    "from_arrow": "dataset",
    "KeelDataset": "dataset",
    "profile": "profile",
    "Profile": "profile",
    "ColumnProfile": "profile",
    "suite_from": "suite",
    "Suite": "suite",
    "load_suite": "suite",
    "ValidationReport": "suite",
    "drift": "drift",
    "DriftReport": "drift",
    "DataError": "frames",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'keel.data' has no attribute {name!r}")
    return getattr(importlib.import_module(f"keel.data.{module}"), name)
