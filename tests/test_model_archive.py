"""Package archives: pack a package into one file, load it as the directory, refuse crafted ones.

Every archive here is a real zip file on disk. The malicious ones are built
from a real packed package plus one crafted member (or header), so they are
recognised as package archives and reach the extraction checks; each test
then proves nothing was written, in the cache or anywhere else.
"""

from __future__ import annotations

import json
import os
import stat
import struct
import threading
import time
import uuid
import warnings
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import keel
from keel.cli.main import app
from keel.errors import InvalidParameter, NotFound
from keel.models import verified
from keel.models.archive import (
    ARCHIVE_SUFFIX,
    DEFAULT_MAX_BYTES,
    MAX_MEMBERS,
    extract_package,
    is_package_archive,
    max_archive_bytes,
    pack,
)
from keel.models.bare_file import load_bare_file
from keel.models.package import KEEL_FILE, ModelRefused, load_model, read_meta

np = pytest.importorskip("numpy")
pytest.importorskip("sklearn")

from sklearn.ensemble import RandomForestClassifier  # noqa: E402

runner = CliRunner()


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private cache, so extractions and verified records land under tmp_path."""
    monkeypatch.setenv("KEEL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("KEEL_VERIFIED_CACHE", raising=False)
    monkeypatch.delenv("KEEL_MAX_ARCHIVE_BYTES", raising=False)
    return tmp_path / "cache" / "packages"


def _data() -> tuple[Any, Any]:
    x = np.random.default_rng(0).normal(size=(200, 4))
    return x, (x[:, 0] + x[:, 1] > 0).astype(int)


@pytest.fixture
def package(tmp_path: Path) -> Path:
    x, y = _data()
    model = RandomForestClassifier(n_estimators=5, random_state=0).fit(x, y)
    return keel.models.save(model, tmp_path / "model", input_example=x[:20], onnx=False)


@pytest.fixture
def archive(package: Path) -> Path:
    return pack(package)


def _members(archive: Path) -> list[tuple[zipfile.ZipInfo, bytes]]:
    with zipfile.ZipFile(archive) as zf:
        return [(info, zf.read(info)) for info in zf.infolist()]


def _rezip(
    archive: Path,
    out: Path,
    extra: Sequence[tuple[zipfile.ZipInfo | str, bytes]] = (),
    change: Callable[[str, bytes], bytes] = lambda name, data: data,
) -> Path:
    """A copy of ``archive`` with members changed by ``change`` and ``extra`` appended."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate names we write
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
            for info, data in _members(archive):
                zf.writestr(info, change(info.filename, data))
            for entry, data in extra:
                zf.writestr(entry, data)
    return out


def _nothing_extracted(cache: Path) -> None:
    leftovers = list(cache.rglob("*")) if cache.exists() else []
    assert leftovers == [], f"extraction left {leftovers}"


# ---------------------------------------------------------------------------
# pack and load


def test_pack_then_load_answers_as_the_directory(package: Path, cache: Path) -> None:
    x, _ = _data()
    archive = keel.models.pack(package)
    assert archive == package.with_name("model" + ARCHIVE_SUFFIX)
    assert is_package_archive(archive) and not is_package_archive(package / "model.pkl")
    # Exactly keel.json and the files it checksums, flat.
    meta = json.loads((package / KEEL_FILE).read_text())
    assert sorted(i.filename for i, _ in _members(archive)) == sorted({*meta["files"], KEEL_FILE})

    loaded = keel.models.load(archive)
    assert loaded.backend == "native" and loaded.flavor == "sklearn"
    assert loaded.predict(x).tolist() == load_model(package).predict(x).tolist()
    # Extracted into the cache, under the archive's sha256.
    import hashlib

    assert loaded.path == cache / hashlib.sha256(archive.read_bytes()).hexdigest()
    assert read_meta(loaded.path) == meta


def test_a_skops_package_packs_and_loads(tmp_path: Path) -> None:
    pytest.importorskip("skops")
    x, y = _data()
    model = RandomForestClassifier(n_estimators=3, random_state=0).fit(x, y)
    path = keel.models.save(
        model, tmp_path / "sk", input_example=x[:10], onnx=False, serialization="skops"
    )
    archive = pack(path, tmp_path / "out" / "sk.keel")
    assert keel.models.load(archive).predict(x).tolist() == model.predict(x).tolist()


def test_packing_is_deterministic(package: Path, tmp_path: Path) -> None:
    first = pack(package, tmp_path / "a.keel")
    # Other timestamps on the files, a later time: the same bytes regardless.
    for file in package.iterdir():
        os.utime(file, (1_000_000_000, 1_000_000_000))
    time.sleep(0.01)
    second = pack(package, tmp_path / "b.keel")
    assert first.read_bytes() == second.read_bytes()
    infos = [info for info, _ in _members(first)]
    assert [i.filename for i in infos] == sorted(i.filename for i in infos)
    assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
    assert {i.external_attr >> 16 for i in infos} == {stat.S_IFREG | 0o644}


def test_pack_refuses_what_is_not_a_package(package: Path, archive: Path, tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="No model package"):
        pack(tmp_path / "missing")
    mlflow_dir = tmp_path / "mlflow"
    mlflow_dir.mkdir()
    (mlflow_dir / "MLmodel").write_text("flavors: {}\n")
    with pytest.raises(ModelRefused, match=r"MLflow model without Keel's keel\.json"):
        pack(mlflow_dir)
    with pytest.raises(ModelRefused, match="is a file, not a model package"):
        pack(package / "model.pkl")
    with pytest.raises(InvalidParameter, match="already a package archive"):
        pack(archive)
    with pytest.raises(InvalidParameter, match=r"already exists.*overwrite=True"):
        pack(package, archive)
    assert pack(package, archive, overwrite=True) == archive
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temp file left"


def test_a_damaged_package_is_never_packed(package: Path, tmp_path: Path) -> None:
    with (package / "requirements.txt").open("a") as fh:
        fh.write("evil==1.0\n")
    target = tmp_path / "out.keel"
    with pytest.raises(ModelRefused, match=r"requirements\.txt was changed.*Nothing was packed"):
        pack(package, target)
    (package / "input_example.json").unlink()
    with pytest.raises(ModelRefused, match=r"input_example\.json is missing"):
        pack(package, target)
    assert not target.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temp file left"


def test_a_tampered_member_is_refused_by_the_integrity_check(archive: Path, tmp_path: Path) -> None:
    def tamper(name: str, data: bytes) -> bytes:
        return data + b"evil==1.0\n" if name == "requirements.txt" else data

    tampered = _rezip(archive, tmp_path / "tampered.keel", change=tamper)
    with pytest.raises(ModelRefused, match=r"requirements\.txt was changed after the package"):
        keel.models.load(tampered)
    doctor = runner.invoke(app, ["models", "doctor", str(tampered)])
    assert doctor.exit_code == 1 and "requirements.txt was changed" in doctor.output


# ---------------------------------------------------------------------------
# Crafted archives


def _symlink(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


def _absolute(tmp_path: Path) -> str:
    return str(tmp_path / f"evil-{uuid.uuid4().hex}")


CRAFTED: dict[str, tuple[Callable[[Path], list[tuple[zipfile.ZipInfo | str, bytes]]], str]] = {
    "parent": (lambda t: [("../x", b"evil")], "'../x' is a path leaving the directory"),
    "etc": (lambda t: [("/etc/x", b"evil")], "'/etc/x' is an absolute path"),
    "absolute": (lambda t: [(_absolute(t), b"evil")], "is an absolute path"),
    "nested": (lambda t: [("a/b", b"evil")], "'a/b' is a path into a subdirectory"),
    "directory": (lambda t: [("a/", b"")], "'a/' is a directory"),
    "dotdot": (lambda t: [("..", b"evil")], "'..' is a path leaving the directory"),
    "hidden": (lambda t: [(".bashrc", b"evil")], "'.bashrc' is not a plain file name"),
    "backslash": (lambda t: [("..\\x", b"evil")], "is a path leaving the directory"),
    "symlink": (lambda t: [(_symlink("link"), b"/etc/passwd")], "'link' is a symbolic link"),
    "duplicate": (lambda t: [("model.pkl", b"evil")], "'model.pkl' appears twice"),
    "case": (lambda t: [("mlmodel", b"evil")], "'mlmodel' appears twice (as 'MLmodel', ignoring"),
}


@pytest.mark.parametrize("kind", list(CRAFTED))
def test_crafted_members_are_refused_before_anything_is_written(
    kind: str, archive: Path, tmp_path: Path, cache: Path
) -> None:
    make, message = CRAFTED[kind]
    extra = make(tmp_path)
    crafted = _rezip(archive, tmp_path / f"{kind}.keel", extra=extra)
    assert is_package_archive(crafted)  # it reaches the extraction checks
    before = sorted(tmp_path.iterdir())
    with pytest.raises(ModelRefused) as err:
        keel.models.load(crafted)
    assert message in err.value.message
    assert "not a safe package archive, so nothing was extracted" in err.value.message
    _nothing_extracted(cache)
    assert sorted(tmp_path.iterdir()) == before
    for entry, _ in extra:
        name = entry.filename if isinstance(entry, zipfile.ZipInfo) else entry
        if name.startswith("/") and name != "/etc/x":
            assert not Path(name).exists()


def test_every_problem_is_listed(archive: Path, tmp_path: Path) -> None:
    crafted = _rezip(
        archive, tmp_path / "many.keel", extra=[("../x", b""), (_symlink("link"), b"/")]
    )
    with pytest.raises(ModelRefused, match=r"'\.\./x' is a path.*'link' is a symbolic link"):
        extract_package(crafted)


def _patch_declared_size(data: bytes, name: str, size: int) -> bytes:
    """Rewrite a member's uncompressed size in its local and central headers."""
    raw = bytearray(data)
    encoded = name.encode()
    # Local file header: size at 22, name length at 26, name at 30.
    # Central directory header: size at 24, name length at 28, name at 46.
    for signature, size_at, name_at in ((b"PK\x03\x04", 22, 30), (b"PK\x01\x02", 24, 46)):
        start = 0
        while (start := raw.find(signature, start)) >= 0:
            if raw[start + name_at : start + name_at + len(encoded)] == encoded:
                struct.pack_into("<I", raw, start + size_at, size)
                break
            start += 1
        else:
            raise AssertionError(f"no {signature!r} header for {name}")
    return bytes(raw)


@pytest.mark.parametrize(
    ("delta", "message"),
    [
        (+100, r"member 'model.pkl' declares \d+ bytes but holds \d+"),
        (-100, "not a readable zip archive .*Bad CRC-32"),
    ],
    ids=["declares-more", "declares-less"],
)
def test_a_member_whose_declared_size_lies_is_refused(
    delta: int, message: str, archive: Path, tmp_path: Path, cache: Path
) -> None:
    size = next(i.file_size for i, _ in _members(archive) if i.filename == "model.pkl")
    lying = tmp_path / "lying.keel"
    lying.write_bytes(_patch_declared_size(archive.read_bytes(), "model.pkl", size + delta))
    with pytest.raises(ModelRefused, match=message):
        keel.models.load(lying)
    _nothing_extracted(cache)


def test_a_zip_bomb_over_the_cap_is_refused(
    archive: Path, tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 64 MiB of zeros deflates to about 64 KiB; the cap is set low to keep the test fast.
    bomb = _rezip(archive, tmp_path / "bomb.keel", extra=[("padding.bin", bytes(64 << 20))])
    assert bomb.stat().st_size < 1 << 20
    monkeypatch.setenv("KEEL_MAX_ARCHIVE_BYTES", str(1 << 20))
    with pytest.raises(ModelRefused) as err:
        keel.models.load(bomb)
    assert "over the limit of 1 MiB (1048576 bytes)" in err.value.message
    assert "KEEL_MAX_ARCHIVE_BYTES" in err.value.message
    _nothing_extracted(cache)
    # The same cap passed directly; the package alone fits under it.
    with pytest.raises(ModelRefused, match="would extract to 64"):
        extract_package(bomb, max_bytes=1 << 20)
    assert keel.models.load(archive).predict(_data()[0][:3]) is not None


def test_a_bomb_that_understates_its_size_is_cut_off(
    archive: Path, tmp_path: Path, cache: Path
) -> None:
    """Declared sizes under the cap, real data far over it: reading stops at the declared size."""
    bomb = _rezip(archive, tmp_path / "bomb.keel", extra=[("padding.bin", bytes(64 << 20))])
    lying = tmp_path / "lying-bomb.keel"
    lying.write_bytes(_patch_declared_size(bomb.read_bytes(), "padding.bin", 1000))
    with pytest.raises(ModelRefused, match="not a readable zip archive"):
        extract_package(lying, max_bytes=1 << 20)
    _nothing_extracted(cache)


def test_too_many_members_are_refused(archive: Path, tmp_path: Path, cache: Path) -> None:
    extra: list[tuple[zipfile.ZipInfo | str, bytes]] = [
        (f"f{i}.txt", b"") for i in range(MAX_MEMBERS)
    ]
    crowded = _rezip(archive, tmp_path / "crowded.keel", extra=extra)
    count = len(_members(archive)) + MAX_MEMBERS
    with pytest.raises(ModelRefused, match=f"holds {count} members.*at most {MAX_MEMBERS}"):
        keel.models.load(crowded)
    _nothing_extracted(cache)


def test_the_cap_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert max_archive_bytes() == DEFAULT_MAX_BYTES == 4 << 30
    monkeypatch.setenv("KEEL_MAX_ARCHIVE_BYTES", "123")
    assert max_archive_bytes() == 123
    for bad in ("4GiB", "-1", "0"):
        monkeypatch.setenv("KEEL_MAX_ARCHIVE_BYTES", bad)
        with pytest.raises(InvalidParameter, match="not a positive number of bytes"):
            max_archive_bytes()


def test_a_zip_without_the_package_files_is_not_an_archive(archive: Path, tmp_path: Path) -> None:
    plain = tmp_path / "plain.zip"
    with zipfile.ZipFile(plain, "w") as zf:
        zf.writestr("MLmodel", "flavors: {}\n")
    assert not is_package_archive(plain)
    with pytest.raises(ModelRefused, match=r"has no keel\.json at its root"):
        extract_package(plain)


# ---------------------------------------------------------------------------
# Zip files that are not package archives


def test_a_bare_skops_file_still_loads_as_skops(tmp_path: Path) -> None:
    skops_io = pytest.importorskip("skops.io")
    x, y = _data()
    model = RandomForestClassifier(n_estimators=3, random_state=0).fit(x, y)
    # Named like an archive on purpose: the bytes decide.
    path = tmp_path / "model.keel"
    path.write_bytes(skops_io.dumps(model))
    assert not is_package_archive(path)
    loaded = keel.models.load(path)
    assert loaded.predict(x).tolist() == model.predict(x).tolist()
    assert "bare skops file" in loaded.warnings[0]


def test_the_bare_file_loader_and_read_meta_point_archives_to_load(archive: Path) -> None:
    with pytest.raises(ModelRefused, match="is a Keel package archive, not a bare skops"):
        load_bare_file(archive)
    with pytest.raises(ModelRefused, match="is a Keel package archive, not a package directory"):
        read_meta(archive)


# ---------------------------------------------------------------------------
# The extraction cache


def test_loading_again_reuses_the_extraction_and_the_verified_cache(
    archive: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(verified, "SETTLE_SECONDS", 0.0)
    first = keel.models.load(archive)
    inode = (first.path / "model.pkl").stat().st_ino
    second = keel.models.load(archive)
    assert second.path == first.path and (second.path / "model.pkl").stat().st_ino == inode
    assert not first.from_cache and second.from_cache
    assert [p.name for p in cache.iterdir()] == [first.path.name], "one extraction, no leftovers"


def test_a_damaged_extraction_is_replaced(archive: Path, cache: Path) -> None:
    x, _ = _data()
    root = extract_package(archive)
    (root / "model.pkl").unlink()
    assert keel.models.load(archive).predict(x[:3]) is not None
    assert (root / "model.pkl").is_file()
    (root / "requirements.txt").write_text("")  # cut short, as by a crash
    assert extract_package(archive) == root
    assert (root / "requirements.txt").read_text()
    assert [p.name for p in cache.iterdir()] == [root.name]


def test_concurrent_loaders_share_one_extraction(archive: Path, cache: Path) -> None:
    results: list[Path] = []
    errors: list[BaseException] = []

    def extract() -> None:
        try:
            results.append(extract_package(archive))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=extract) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(set(results)) == 1
    assert [p.name for p in cache.iterdir()] == [results[0].name], "no staging left behind"
    assert load_model(results[0]).predict(_data()[0][:3]) is not None


# ---------------------------------------------------------------------------
# CLI


def test_cli_pack_then_inspect_doctor_lock(package: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["models", "pack", str(package)])
    assert result.exit_code == 0, result.output
    archive = package.with_name("model.keel")
    assert f"Packed {package} into {archive} (6 files" in result.stdout  # no ONNX twin
    assert "sha256 " in result.stdout

    again = runner.invoke(app, ["models", "pack", str(package)])
    assert again.exit_code == 2 and "already exists" in again.output
    other = tmp_path / "dist" / "m.keel"
    forced = runner.invoke(app, ["models", "pack", str(package), "-o", str(other)])
    assert forced.exit_code == 0 and other.read_bytes() == archive.read_bytes()
    assert runner.invoke(app, ["models", "pack", str(package), "--force"]).exit_code == 0

    from_dir = json.loads(runner.invoke(app, ["models", "inspect", str(package), "--json"]).stdout)
    inspected = runner.invoke(app, ["models", "inspect", str(archive), "--json"])
    assert inspected.exit_code == 0, inspected.output
    from_archive = json.loads(inspected.stdout)
    assert from_archive.pop("archive") == str(archive)
    assert from_archive.pop("path") != from_dir.pop("path")
    assert from_archive == from_dir
    table = runner.invoke(app, ["models", "inspect", str(archive)])
    assert table.exit_code == 0 and "extracted to" in table.output

    doctor = runner.invoke(app, ["models", "doctor", str(archive)])
    assert doctor.exit_code == 0, doctor.output
    assert f"{archive} (extracted to" in doctor.output and "would load" in doctor.output

    lock_dir = runner.invoke(app, ["models", "lock", str(package)])
    lock_archive = runner.invoke(app, ["models", "lock", str(archive)])
    assert lock_archive.exit_code == 0 and lock_archive.stdout == lock_dir.stdout


def test_cli_pack_refusals(package: Path, tmp_path: Path) -> None:
    missing = runner.invoke(app, ["models", "pack", str(tmp_path / "none")])
    assert missing.exit_code == 2 and "No model package" in missing.output
    (package / "MLmodel").write_text("changed\n")
    damaged = runner.invoke(app, ["models", "pack", str(package)])
    assert damaged.exit_code == 2 and "MLmodel was changed" in damaged.output
    assert not package.with_name("model.keel").exists()
