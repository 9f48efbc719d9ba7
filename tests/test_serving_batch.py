"""``keel predict``: batch scoring in chunks, checked like ``keel serve``, written atomically."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

pytest.importorskip("sklearn")

from cli_runner import fails, ok
from keel.data.frames import DataError
from keel.serving import ServedModel
from keel.serving.batch import predict_file
from test_serving import package  # noqa: F401  (the fixture, shared)


def _rows(n: int, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "age": rng.normal(40, 10, n).round(1),
            "spend": rng.exponential(50, n).round(2),
            "plan": rng.choice(["basic", "pro", "team"], n),
        }
    )


def test_scores_every_row_in_chunks(package: Path, tmp_path: Path) -> None:  # noqa: F811
    rows = _rows(12_345)
    rows.to_parquet(tmp_path / "in.parquet", index=False)
    seen: list[int] = []
    result = predict_file(
        str(package), tmp_path / "in.parquet", tmp_path / "out.parquet", batch_rows=5_000,
        progress=seen.append,
    )  # fmt: skip
    assert result.rows == 12_345 and seen == [5_000, 5_000, 2_345] and result.problems == {}
    out = pq.read_table(tmp_path / "out.parquet").to_pandas()
    model = ServedModel.load(str(package)).model
    assert out.columns.tolist() == ["age", "spend", "plan", "prediction"]
    assert out["prediction"].tolist() == model.predict(rows).tolist()
    rows.to_csv(tmp_path / "in.csv", index=False)
    predict_file(str(package), tmp_path / "in.csv", tmp_path / "out.csv")
    assert pd.read_csv(tmp_path / "out.csv")["prediction"].tolist() == out["prediction"].tolist()


def test_reject_names_the_problem_and_leaves_no_output(package: Path, tmp_path: Path) -> None:  # noqa: F811
    rows = _rows(9_000)
    rows.loc[7_777, "plan"] = "gold"
    rows.to_parquet(tmp_path / "in.parquet", index=False)
    with pytest.raises(
        DataError, match=r"UNKNOWN_CATEGORY in 'plan' \(1 rows, first at row 7777\)"
    ):
        predict_file(
            str(package), tmp_path / "in.parquet", tmp_path / "out.parquet", batch_rows=4_000
        )
    assert list(tmp_path.iterdir()) == [tmp_path / "in.parquet"]  # no output, no temporary file
    result = predict_file(
        str(package), tmp_path / "in.parquet", tmp_path / "out.parquet", validation="warn"
    )
    assert result.rows == 9_000 and result.problems == {"plan:UNKNOWN_CATEGORY": 1}


def test_keel_predict_command(package: Path, tmp_path: Path) -> None:  # noqa: F811
    _rows(1_000).to_parquet(tmp_path / "in.parquet", index=False)
    out = ok(
        "predict",
        str(package),
        "-i",
        str(tmp_path / "in.parquet"),
        "-o",
        str(tmp_path / "o.parquet"),
    )
    assert "Scored 1,000 rows" in out and (tmp_path / "o.parquet").is_file()
    assert "must be a .parquet or .csv" in fails(
        "predict", str(package), "-i", str(tmp_path / "in.parquet"), "-o", str(tmp_path / "o.json")
    )
    assert "nope.csv" in fails(
        "predict", str(package), "-i", str(tmp_path / "nope.csv"), "-o", str(tmp_path / "o.csv")
    )
