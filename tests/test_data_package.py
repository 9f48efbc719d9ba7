"""A model package carries the profile of its training data (what serving checks against)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

import keel.models


def _model() -> tuple[LogisticRegression, pd.DataFrame]:
    rng = np.random.default_rng(0)
    x = pd.DataFrame({"age": rng.normal(40, 10, 400), "spend": rng.exponential(50, 400)})
    return LogisticRegression().fit(x, (x["age"] > 40).astype(int)), x


def test_training_profile_travels_with_the_package(tmp_path: Path) -> None:
    model, x = _model()
    path = keel.models.save(model, tmp_path / "m", training_data=x)
    meta = json.loads((path / "keel.json").read_text())
    assert meta["training_data"] == {
        "profile": "profile.json",
        "rows": 400,
        "columns": ["age", "spend"],
    }
    assert "profile.json" in meta["files"]  # covered by the integrity check like every file
    loaded = keel.models.load(path)
    prof = loaded.training_profile()
    assert prof.rows == 400 and prof["age"].mean == x["age"].mean()
    packed = keel.models.load(keel.models.pack(path))
    assert packed.training_profile()["spend"].maximum == x["spend"].max()


def test_no_training_data_means_no_profile(tmp_path: Path) -> None:
    model, x = _model()
    path = keel.models.save(model, tmp_path / "m", input_example=x.iloc[:5])
    assert json.loads((path / "keel.json").read_text())["training_data"] is None
    assert keel.models.load(path).training_profile() is None


def test_lineage_runs_from_model_version_to_dataset_and_profile(tracking: Path) -> None:
    import keel
    import keel.data
    import keel.sklearn

    model, x = _model()
    ds = keel.data.from_pandas(x, name="customers", source="warehouse.customers")
    with keel.start_run():
        keel.log_input(ds, context="training")
        keel.sklearn.log_model(model, "model", training_data=x, registered_model_name="churn")
    lineage = keel.Client().get_model_version_lineage("churn", 1)
    assert [(d["name"], d["digest"]) for d in lineage["datasets"]] == [("customers", ds.digest)]
    assert lineage["package"]["training_data"]["rows"] == 400
