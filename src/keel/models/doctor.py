"""Would this package load here, or in a target environment? Answered without unpickling.

``diagnose`` runs the checks ``load_model`` runs before it unpickles anything
(integrity, safety, environment) and reports each one, instead of stopping at
the first failure. With ``target``/``target_python`` the environment check is
made against a pinned requirements file rather than this interpreter, which
predicts what a production server would do.

>>> import numpy as np, tempfile
>>> from sklearn.tree import DecisionTreeClassifier
>>> from keel.models.package import save_model
>>> x = np.array([[0.0], [1.0]]); path = tempfile.mkdtemp() + "/m"
>>> _ = save_model(DecisionTreeClassifier().fit(x, [0, 1]), path, input_example=x)
>>> diagnose(path).ok
True
>>> diagnose(path, target={"scikit-learn": "1.3.2"}).ok
False
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from keel.errors import KeelError
from keel.models.archive import package_root
from keel.models.environment import EnvironmentLock, check_environment
from keel.models.package import model_file, read_meta, serialization_of, verify_integrity
from keel.models.safety import check_pickle


@dataclass(frozen=True, slots=True)
class Check:
    """One check's outcome: ``ok`` and a human-readable detail."""

    name: str
    ok: bool
    detail: str


@dataclass(frozen=True, slots=True)
class Diagnosis:
    """Every pre-load check of a package, in the order ``load_model`` runs them."""

    path: Path
    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "ok": self.ok,
            "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in self.checks],
        }


def diagnose(
    path: str | os.PathLike[str],
    *,
    policy: str = "compatible",
    target: Mapping[str, str] | None = None,
    target_python: str | None = None,
    trusted: Iterable[str] = (),
) -> Diagnosis:
    """Run integrity, safety and environment checks; never unpickles the model.

    A package archive is extracted (see :mod:`keel.models.archive`) and its
    directory diagnosed.
    """
    root = package_root(path)
    meta = read_meta(root)
    checks = []
    try:
        verify_integrity(root, meta.get("files") or {})
        checks.append(Check("integrity", True, f"{len(meta['files'])} files match their sha256"))
    except KeelError as exc:
        checks.append(Check("integrity", False, exc.message))
    try:
        checks.append(_safety(root, meta, trusted))
    except KeelError as exc:
        checks.append(Check("safety", False, exc.message))
    lock = EnvironmentLock.from_dict(meta["environment"])
    report = check_environment(lock, policy=policy, installed=target, python=target_python)
    where = "the target environment" if target is not None else "this environment"
    detail = report.message() if report.mismatches else f"every package matches {where}"
    checks.append(Check("environment", report.ok, detail))
    golden = meta.get("golden") or {}
    checks.append(
        Check(
            "golden",
            True,
            f"{len(golden.get('outputs', {}))} outputs saved; re-predicted on every load"
            if golden
            else "no golden sample saved",
        )
    )
    checks.append(_twin_check(meta.get("onnx")))
    return Diagnosis(root, tuple(checks))


def _safety(root: Path, meta: Mapping[str, Any], trusted: Iterable[str]) -> Check:
    """The allow-list over the model file's names, read from its bytes without loading it."""
    data = model_file(root, meta).read_bytes()
    if serialization_of(meta) == "skops":
        from keel.models.skops_format import check_skops

        types = check_skops(data, trusted=trusted).names
        return Check("safety", True, f"skops file: {len(types)} types, all on the allow-list")
    scan = check_pickle(data, trusted=trusted)
    return Check("safety", True, f"{len(scan.globals)} globals, all on the allow-list")


def _twin_check(entry: object) -> Check:
    """The ONNX twin, if any, with its measured parity (informative: never fails)."""
    if not isinstance(entry, dict):
        return Check("onnx twin", True, "none (saved without one)")
    if not entry.get("file"):
        return Check("onnx twin", True, f"none: {entry.get('reason', 'unknown reason')}")
    parity = entry.get("parity") or {}
    return Check(
        "onnx twin",
        True,
        f"{entry['file']}: parity on {parity.get('rows', '?')} rows, max |diff| "
        f"{parity.get('max_abs_diff', float('nan')):.2g}, labels "
        f"{100 * parity.get('label_agreement', 0):.0f}% equal; answers if the native "
        "model is refused",
    )
