"""Content-addressed dataset versions on a local root and on S3 (moto's server on loopback)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from keel.data import versions
from keel.data.frames import DataError
from keel.errors import NotFound


@pytest.fixture
def csv_file(tmp_path: Path) -> Path:
    path = tmp_path / "people.csv"
    path.write_text("age,plan\n31,basic\n45,pro\n")
    return path


def test_add_stores_once(tmp_path: Path, csv_file: Path) -> None:
    root = str(tmp_path / "store")
    first = versions.add_file(csv_file, root=root)
    assert not first.already_stored
    folder = tmp_path / "store" / "datasets" / first.dataset.digest
    assert (folder / "people.csv").read_bytes() == csv_file.read_bytes()
    meta = json.loads((folder / "dataset.json").read_text())
    assert meta["name"] == "people" and meta["rows"] == 2 and meta["format"] == "csv"
    assert meta["size_bytes"] == csv_file.stat().st_size
    assert meta["schema"] == [["age", "int64"], ["plan", "string"]]
    assert first.dataset.source_type == "local"
    again = versions.add_file(csv_file, name="other", root=root)
    assert again.already_stored and again.dataset.digest == first.dataset.digest
    assert again.dataset.name == "people"
    # The same content as Parquet is the same version: nothing new is stored.
    parquet = tmp_path / "people.parquet"
    pq.write_table(pa.table({"age": [31, 45], "plan": ["basic", "pro"]}), parquet)
    assert versions.add_file(parquet, root=root).already_stored
    assert sorted(p.name for p in folder.iterdir()) == ["dataset.json", "people.csv"]


def test_list_get_load(tmp_path: Path, csv_file: Path) -> None:
    root = str(tmp_path / "store")
    a = versions.add(csv_file, root=root)
    other = tmp_path / "more.csv"
    other.write_text("age,plan\n1,x\n")
    b = versions.add(other, root=root, name="more")
    listed = versions.list_versions(root)
    assert {v.digest for v in listed} == {a.digest, b.digest}
    assert listed[0].added_at >= listed[1].added_at
    out = versions.get(a.digest[:6], tmp_path / "copy.csv", root=root)
    assert out.read_bytes() == csv_file.read_bytes()
    outdir = tmp_path / "outdir"
    outdir.mkdir()
    assert versions.get(b.digest, outdir, root=root) == outdir / "more.csv"
    path, info = versions.load(b.digest[:10], root=root)
    assert path.read_text() == "age,plan\n1,x\n" and info.name == "more"


def test_prefix_errors(tmp_path: Path, csv_file: Path) -> None:
    root = str(tmp_path / "store")
    versions.add(csv_file, root=root)
    with pytest.raises(DataError, match="at least 6"):
        versions.resolve("abc", root)
    with pytest.raises(DataError, match="not a dataset digest"):
        versions.resolve("zzzzzzzz", root)
    with pytest.raises(NotFound, match="keel data list"):
        versions.resolve("000000", root)


def test_ambiguous_prefix_lists_candidates(tmp_path: Path) -> None:
    root = tmp_path / "store"
    stored = []
    for i in range(2):
        path = tmp_path / f"d{i}.csv"
        path.write_text(f"x\n{i}\n")
        stored.append(versions.add(path, root=str(root)).digest)
    # Real digests almost never share 6 characters: fake a version whose digest does.
    src = root / "datasets" / stored[0]
    twin = stored[0][:6] + "f" * 58 if stored[0][6] != "f" else stored[0][:6] + "e" * 58
    (root / "datasets" / twin).mkdir()
    meta = json.loads((src / "dataset.json").read_text())
    meta["digest"] = twin
    (root / "datasets" / twin / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match="ambiguous") as err:
        versions.resolve(stored[0][:6], str(root))
    assert stored[0][:16] in str(err.value) and twin[:16] in str(err.value)


def test_unsafe_file_name_is_refused(tmp_path: Path, csv_file: Path) -> None:
    root = tmp_path / "store"
    ds = versions.add(csv_file, root=str(root))
    meta_path = root / "datasets" / ds.digest / "dataset.json"
    for bad in ("../../evil.csv", "/etc/passwd", "..", "a/b.csv", "a\\b.csv"):
        meta = json.loads(meta_path.read_text())
        meta["file_name"] = bad
        meta_path.write_text(json.dumps(meta))
        with pytest.raises(DataError, match="not a plain"):
            versions.get(ds.digest, tmp_path / "x.csv", root=str(root))


def test_incomplete_version_is_invisible_and_repaired(tmp_path: Path, csv_file: Path) -> None:
    root = tmp_path / "store"
    ds = versions.add(csv_file, root=str(root))
    (root / "datasets" / ds.digest / "dataset.json").unlink()  # as if a crash hit before it
    assert versions.list_versions(str(root)) == []
    assert not versions.add_file(csv_file, root=str(root)).already_stored
    assert len(versions.list_versions(str(root))) == 1


def test_corrupt_stored_file_is_detected(tmp_path: Path, csv_file: Path) -> None:
    root = tmp_path / "store"
    ds = versions.add(csv_file, root=str(root))
    (root / "datasets" / ds.digest / "people.csv").write_text("age,plan\n0,x\n")
    with pytest.raises(DataError, match="corrupt"):
        versions.get(ds.digest, tmp_path / "x.csv", root=str(root))


def test_default_root_from_env(
    tmp_path: Path, csv_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(versions.ENV_DATA_ROOT, str(tmp_path / "envroot"))
    ds = versions.add(csv_file)
    assert (tmp_path / "envroot" / "datasets" / ds.digest / "people.csv").is_file()


def test_default_root_is_beside_the_database(tracking: Path, csv_file: Path) -> None:
    ds = versions.add(csv_file)
    assert (tracking / "keel-artifacts" / "datasets" / ds.digest / "dataset.json").is_file()


def test_bad_paths(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="No such data file"):
        versions.add(tmp_path / "missing.csv", root=str(tmp_path))
    other = tmp_path / "notes.txt"
    other.write_text("hi")
    with pytest.raises(DataError, match=r"only \.csv"):
        versions.add(other, root=str(tmp_path))
    pd.DataFrame({"x": [1]}).to_csv(tmp_path / "ok.csv", index=False)
    ds = versions.add(tmp_path / "ok.csv", root=str(tmp_path / "s"))
    with pytest.raises(DataError, match="does not exist"):
        versions.get(ds.digest, tmp_path / "no" / "dir" / "x.csv", root=str(tmp_path / "s"))


def test_versions_on_s3(bucket: str, s3: Any, csv_file: Path, tmp_path: Path) -> None:
    pytest.importorskip("boto3")
    root = f"s3://{bucket}/team/data"
    added = versions.add_file(csv_file, name="people", root=root)
    digest = added.dataset.digest
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]}
    assert keys == {
        f"team/data/datasets/{digest}/people.csv",
        f"team/data/datasets/{digest}/dataset.json",
    }
    assert versions.add_file(csv_file, root=root).already_stored
    assert [v.digest for v in versions.list_versions(root)] == [digest]
    out = versions.get(digest[:8], tmp_path / "copy.csv", root=root)
    assert out.read_bytes() == csv_file.read_bytes()
    # a stored file that no longer matches its recorded sha256 is refused, not handed out
    s3.put_object(Bucket=bucket, Key=f"team/data/datasets/{digest}/people.csv", Body=b"x,y\n")
    with pytest.raises(DataError, match="corrupt"):
        versions.get(digest, tmp_path / "bad.csv", root=root)
    assert not (tmp_path / "bad.csv").exists()
