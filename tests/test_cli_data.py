"""``keel data``: add, get, list and diff through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli_runner import fails, keel_cli, ok


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    a = tmp_path / "a.csv"
    a.write_text("id,plan\n1,basic\n2,pro\n")
    b = tmp_path / "b.csv"
    b.write_text("id,plan\n1,basic\n2,team\n3,pro\n")
    return a, b


def test_add_list_get(tmp_path: Path, files: tuple[Path, Path]) -> None:
    a, b = files
    root = str(tmp_path / "store")
    out = ok("data", "add", str(a), "--root", root)
    digest = out.split()[1]
    assert len(digest) == 64 and "rows     2" in out and "stored at" in out
    assert "already stored" in ok("data", "add", str(a), "--root", root)
    ok("data", "add", str(b), "--name", "bee", "--root", root)
    table = ok("data", "list", "--root", root)
    assert digest[:12] in table and "bee" in table and "digest" in table
    listed = json.loads(ok("data", "list", "--root", root, "--json"))
    assert {v["name"] for v in listed} == {"a", "bee"}
    target = tmp_path / "copy.csv"
    ok("data", "get", digest[:8], "-o", str(target), "--root", root)
    assert target.read_text() == a.read_text()


def test_diff_files_and_digests(tmp_path: Path, files: tuple[Path, Path]) -> None:
    a, b = files
    root = str(tmp_path / "store")
    out = ok("data", "diff", str(a), str(b), "--key", "id")
    assert "changed   1" in out and "plan: 'pro' -> 'team'" in out
    da = ok("data", "add", str(a), "--root", root).split()[1]
    report = json.loads(ok("data", "diff", da[:8], str(b), "--root", root, "--json"))
    assert report["rows"] == {"a": 2, "b": 3, "added": 2, "removed": 1, "changed": 0}
    assert "identical" in ok("data", "diff", str(a), da, "--root", root)


def test_errors_are_one_line(tmp_path: Path, files: tuple[Path, Path]) -> None:
    a, _ = files
    root = str(tmp_path / "store")
    assert "No such data file" in fails("data", "add", str(tmp_path / "nope.csv"), "--root", root)
    assert "neither a data file" in fails("data", "diff", "nope.csv", str(a))
    assert "keel data list" in fails("data", "get", "abcdef", "-o", "x", "--root", root)
    dup = tmp_path / "dup.csv"
    dup.write_text("id,plan\n1,a\n1,b\n")
    assert "not unique" in fails("data", "diff", str(dup), str(a), "--key", "id")


def test_ambiguous_prefix(tmp_path: Path, files: tuple[Path, Path]) -> None:
    a, _ = files
    root = tmp_path / "store"
    digest = ok("data", "add", str(a), "--root", str(root)).split()[1]
    twin = digest[:6] + ("0" if digest[6] != "0" else "1") * 58
    (root / "datasets" / twin).mkdir()
    meta = json.loads((root / "datasets" / digest / "dataset.json").read_text())
    (root / "datasets" / twin / "dataset.json").write_text(json.dumps({**meta, "digest": twin}))
    err = fails("data", "get", digest[:6], "-o", str(tmp_path / "x.csv"), "--root", str(root))
    assert "ambiguous" in err and digest[:16] in err and twin[:16] in err


def test_help_on_every_command() -> None:
    for command in ("add", "get", "list", "diff"):
        out = ok("data", command, "--help")
        assert "--root" in out


@pytest.fixture
def batches(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A reference, a fresh sample of the same distribution, and a shifted one with a new plan."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)

    def batch(n: int, shift: float, plans: list[str]) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "age": rng.normal(40 + shift, 10, n).round(1),
                "spend": rng.exponential(50, n).round(2),
                "plan": rng.choice(plans, n),
            }
        )

    ref, fresh, moved = tmp_path / "ref.parquet", tmp_path / "fresh.csv", tmp_path / "moved.csv"
    batch(5_000, 0, ["basic", "pro"]).to_parquet(ref, index=False)
    batch(1_000, 0, ["basic", "pro"]).to_csv(fresh, index=False)
    batch(1_000, 8, ["basic", "pro", "<b>gold</b>"]).to_csv(moved, index=False)
    return ref, fresh, moved


def test_profile_writes_json_and_html(tmp_path: Path, batches: tuple[Path, Path, Path]) -> None:
    ref, _, _ = batches
    out = ok(
        "data",
        "profile",
        str(ref),
        "-o",
        str(tmp_path / "p.json"),
        "--html",
        str(tmp_path / "p.html"),
    )
    assert "5,000 rows, 3 columns" in out and "age" in out and "numeric" in out
    profile = json.loads((tmp_path / "p.json").read_text())
    assert profile["rows"] == 5_000 and [c["name"] for c in profile["columns"]] == [
        "age",
        "spend",
        "plan",
    ]
    assert "<svg" in (tmp_path / "p.html").read_text()
    summary = json.loads(ok("data", "profile", str(ref), "--json"))
    assert summary["columns"]["plan"]["distinct"] == 2


def test_suite_then_validate_exits_one_on_failure(
    tmp_path: Path, batches: tuple[Path, Path, Path]
) -> None:
    ref, fresh, moved = batches
    suite = tmp_path / "suite.yaml"
    result = keel_cli("data", "suite", str(ref), "-o", str(suite))
    assert result.exit_code == 0, result.output
    assert suite.read_text().count("age") >= 1
    assert "passed" in ok("data", "validate", str(fresh), "--suite", str(suite))
    failed = keel_cli(
        "data",
        "validate",
        str(moved),
        "--suite",
        str(suite),
        "--json-out",
        str(tmp_path / "v.json"),
        "--html",
        str(tmp_path / "v.html"),
    )
    assert failed.exit_code == 1, failed.output
    assert "FAILED" in failed.stdout and "<b>gold</b>" in failed.stdout and "age" in failed.stdout
    report = json.loads((tmp_path / "v.json").read_text())
    assert report["passed"] is False
    assert "&lt;b&gt;gold&lt;/b&gt;" in (tmp_path / "v.html").read_text()
    assert "no-such" in fails(
        "data", "validate", str(tmp_path / "no-such.csv"), "--suite", str(suite)
    )


def test_drift_from_files_and_profiles(tmp_path: Path, batches: tuple[Path, Path, Path]) -> None:
    ref, fresh, moved = batches
    assert "No drift" in ok("data", "drift", str(ref), str(fresh))
    out = ok("data", "drift", str(ref), str(moved), "--html", str(tmp_path / "d.html"))
    assert "Drift in" in out and "age" in out and "New categories" in out
    assert "<svg" in (tmp_path / "d.html").read_text()
    ok("data", "profile", str(ref), "-o", str(tmp_path / "ref.json"))
    data = json.loads(ok("data", "drift", str(tmp_path / "ref.json"), str(moved), "--json"))
    assert data["drifted"] is True and "age" in data["drifted_columns"]
    assert keel_cli("data", "drift", str(ref), str(moved), "--fail-on-drift").exit_code == 1
    assert keel_cli("data", "drift", str(ref), str(fresh), "--fail-on-drift").exit_code == 0
    assert "'spend'" in fails("data", "drift", str(ref), str(moved), "-c", "age", "-c", "nope")
