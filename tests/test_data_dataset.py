"""KeelDataset: constructors, MLflow-format schema/profile, and logging as a run input."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import keel
from keel.data import KeelDataset, from_arrow, from_csv, from_pandas, from_parquet
from keel.data.frames import DataError


def people() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "age": [31, 45, 27],
            "score": [0.5, 0.25, 1.0],
            "plan": ["basic", "pro", "basic"],
            "active": [True, False, True],
            "joined": pd.to_datetime(["2024-01-01 10:00", "2024-02-01 11:30", "2024-03-01 09:15"]),
        }
    )


def test_constructors_agree(tmp_path: Path) -> None:
    df = people()
    ds = from_pandas(df, name="people")
    table = pa.Table.from_pandas(df, preserve_index=False)
    pq.write_table(table, tmp_path / "people.parquet")
    df.to_csv(tmp_path / "people.csv", index=False)
    for other in (
        from_arrow(table),
        from_parquet(tmp_path / "people.parquet"),
        from_csv(tmp_path / "people.csv"),
    ):
        assert other.digest == ds.digest
        assert other.rows == 3
    parquet = from_parquet(str(tmp_path / "people.parquet"))
    assert parquet.name == "people"
    assert parquet.source == str((tmp_path / "people.parquet").resolve())
    assert parquet.source_type == "parquet"
    assert (
        from_csv(tmp_path / "people.csv", name="n", source="s3://b/p.csv").source == "s3://b/p.csv"
    )


def test_mlflow_schema_and_profile() -> None:
    ds = from_pandas(people(), name="people")
    spec = json.loads(ds.mlflow_schema)["mlflow_colspec"]
    assert spec == [
        {"type": "long", "name": "age", "required": True},
        {"type": "double", "name": "score", "required": True},
        {"type": "string", "name": "plan", "required": True},
        {"type": "boolean", "name": "active", "required": True},
        {"type": "datetime", "name": "joined", "required": True},
    ]
    assert json.loads(ds.profile) == {"num_rows": 3, "num_elements": 15}
    entity = ds.to_entity()
    assert (entity.name, entity.digest, entity.source_type) == ("people", ds.digest, "pandas")
    assert entity.schema == ds.mlflow_schema


def test_bad_inputs_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no columns"):
        from_pandas(pd.DataFrame())
    with pytest.raises(DataError, match="DataFrame"):
        from_pandas([1, 2])
    with pytest.raises(DataError, match="pyarrow Table"):
        from_arrow(people())
    with pytest.raises(DataError, match=r"nope\.csv"):
        from_csv(tmp_path / "nope.csv")
    bad = tmp_path / "bad.parquet"
    bad.write_text("garbage")
    with pytest.raises(DataError, match=r"bad\.parquet"):
        from_parquet(bad)
    with pytest.raises(DataError, match="does not look like a CSV"):
        from_csv(bad)


def test_log_input_records_the_dataset(tracking: Path) -> None:
    ds = from_pandas(people(), name="people", source="warehouse.people")
    with keel.start_run() as run:
        keel.log_input(ds, context="training")
    inputs = keel.Client().get_run(run.info.run_id).inputs
    assert len(inputs) == 1
    logged = inputs[0]
    assert logged.dataset.name == "people"
    assert logged.dataset.digest == ds.digest
    assert logged.dataset.source_type == "pandas"
    assert json.loads(logged.dataset.schema or "")["mlflow_colspec"][0]["name"] == "age"
    assert json.loads(logged.dataset.profile or "") == {"num_rows": 3, "num_elements": 15}
    assert logged.context == "training"


def test_is_frozen() -> None:
    ds = KeelDataset("d", "0" * 64, 0, (), "", "pandas")
    with pytest.raises(AttributeError):
        ds.name = "x"  # type: ignore[misc]


def test_reports_are_logged_with_searchable_outcome_tags(tracking: Path) -> None:
    import numpy as np

    import keel.data

    rng = np.random.default_rng(0)
    ref = pd.DataFrame({"x": rng.normal(0, 1, 2_000), "plan": rng.choice(["a", "b"], 2_000)})
    moved = pd.DataFrame({"x": rng.normal(1, 1, 500), "plan": rng.choice(["a", "c"], 500)})
    suite = keel.data.suite_from(ref)
    with keel.start_run() as good:
        keel.log_report(suite.validate(ref.iloc[:500]), "data/validation")
    with keel.start_run() as bad:
        keel.log_report(suite.validate(moved), "data/validation")
        keel.log_report(keel.data.drift(ref, moved), "data/drift")
    client = keel.Client()
    assert client.get_run(good.info.run_id).data.tags["keel.validation.status"] == "passed"
    tags = client.get_run(bad.info.run_id).data.tags
    assert (tags["keel.validation.status"], tags["keel.drift.status"]) == ("failed", "drift")
    assert tags["keel.drift.columns"] == "x,plan"
    found = keel.search_runs(
        filter_string="tags.`keel.validation.status` = 'failed'", output_format="list"
    )
    assert [r.info.run_id for r in found] == [bad.info.run_id]
    files = {f.path for f in client.list_artifacts(bad.info.run_id, "data")}
    assert files == {
        "data/validation.json",
        "data/validation.html",
        "data/drift.json",
        "data/drift.html",
    }
    assert json.loads((Path(bad.info.artifact_uri) / "data/drift.json").read_text())["drifted"]
