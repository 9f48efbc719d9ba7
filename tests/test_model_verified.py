"""The verified-package cache: a package that passed is recognised, a changed one never is."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path
from typing import Any

import pytest

from keel.models import verified
from keel.models.package import KEEL_FILE, ModelRefused, load_model, save_model
from keel.models.verified import VerifiedCache

np = pytest.importorskip("numpy")
pytest.importorskip("sklearn")

from sklearn.ensemble import RandomForestClassifier  # noqa: E402


@pytest.fixture(autouse=True)
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KEEL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("KEEL_VERIFIED_CACHE", raising=False)
    return tmp_path / "cache" / "verified"


@pytest.fixture
def settle_now(monkeypatch: pytest.MonkeyPatch) -> None:
    # Files written a moment ago count as settled; each test then waits past
    # the file system's timestamp granularity before changing anything.
    monkeypatch.setattr(verified, "SETTLE_SECONDS", 0.0)


def _package(tmp_path: Path, name: str = "pkg") -> tuple[Path, Any]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 4))
    y = (x[:, 0] > 0).astype(int)
    model = RandomForestClassifier(n_estimators=5, random_state=0).fit(x, y)
    return save_model(model, tmp_path / name, input_example=x[:20], onnx=False), x


def _rewrite_in_place(path: Path, data: bytes) -> None:
    """Same size, same mtime: only the kernel-kept ctime shows the change."""
    before = path.stat()
    assert len(data) == before.st_size
    with path.open("r+b") as fh:
        fh.write(data)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


def test_a_package_that_passed_loads_from_the_cache(tmp_path: Path, settle_now: None) -> None:
    path, x = _package(tmp_path)
    first = load_model(path)
    assert not first.from_cache
    second = load_model(path)
    assert second.from_cache
    assert second.predict(x[:5]).tolist() == first.predict(x[:5]).tolist()
    assert not load_model(path, cache=False).from_cache


def test_freshly_written_files_are_not_remembered(tmp_path: Path) -> None:
    # Without settling, a write in the same timestamp tick as the check could hide.
    path, _ = _package(tmp_path)
    load_model(path)
    assert not load_model(path).from_cache


def test_a_file_changed_in_place_with_its_mtime_restored_is_checked_again(
    tmp_path: Path,
) -> None:
    path, _ = _package(tmp_path)
    time.sleep(verified.SETTLE_SECONDS + 0.1)  # the real rule, no shortcut
    load_model(path)
    assert load_model(path).from_cache
    pickle_file = path / "model.pkl"
    data = bytearray(pickle_file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    _rewrite_in_place(pickle_file, bytes(data))
    with pytest.raises(ModelRefused, match="integrity"):
        load_model(path)


def test_a_replaced_file_is_checked_again(tmp_path: Path, settle_now: None) -> None:
    path, _ = _package(tmp_path)
    load_model(path)
    time.sleep(0.05)
    example = path / "input_example.json"
    replacement = tmp_path / "replacement"
    replacement.write_text(example.read_text().replace("[", "[ ", 1))
    replacement.replace(example)
    with pytest.raises(ModelRefused, match=r"input_example\.json was changed"):
        load_model(path)


def test_a_refused_package_is_never_remembered(tmp_path: Path, settle_now: None) -> None:
    path, _ = _package(tmp_path)
    meta = json.loads((path / KEEL_FILE).read_text())
    labels = meta["golden"]["outputs"]["predict"]["data"]
    labels[0] = 1 - labels[0]
    (path / KEEL_FILE).write_text(json.dumps(meta))
    for _ in range(2):
        with pytest.raises(ModelRefused, match="does not answer as it did"):
            load_model(path)


def test_keel_json_edits_after_a_pass_are_seen(tmp_path: Path, settle_now: None) -> None:
    path, _ = _package(tmp_path)
    load_model(path)
    time.sleep(0.05)
    meta = json.loads((path / KEEL_FILE).read_text())
    meta["golden"]["outputs"]["predict"]["data"][0] ^= 1
    (path / KEEL_FILE).write_text(json.dumps(meta))
    with pytest.raises(ModelRefused, match="does not answer as it did"):
        load_model(path)


def test_other_library_versions_miss(tmp_path: Path, settle_now: None) -> None:
    path, _ = _package(tmp_path)
    load_model(path)
    meta = json.loads((path / KEEL_FILE).read_text())
    files = {k: v for k, v in meta["files"].items()}
    installed = dict.fromkeys(meta["environment"]["packages"], None)
    cache = VerifiedCache()
    real = {name: version for name, version in meta["environment"]["packages"].items()}
    assert cache.lookup(path, files, real) is not None
    assert cache.lookup(path, files, installed) is None
    assert cache.lookup(path, files, real | {"numpy": "1.24.4"}) is None


def test_the_cache_can_be_turned_off(
    tmp_path: Path, settle_now: None, monkeypatch: pytest.MonkeyPatch, cache_dir: Path
) -> None:
    monkeypatch.setenv("KEEL_VERIFIED_CACHE", "0")
    path, _ = _package(tmp_path)
    load_model(path)
    assert not load_model(path).from_cache
    assert not cache_dir.exists()


def test_records_are_private_to_the_user(tmp_path: Path, settle_now: None, cache_dir: Path) -> None:
    path, _ = _package(tmp_path)
    load_model(path)
    (record,) = cache_dir.iterdir()
    assert stat.S_IMODE(record.stat().st_mode) == 0o600
    assert json.loads(record.read_text())["root"] == str(path.resolve())
