"""Loading a 100-tree RandomForest: Keel's verified load vs plain joblib.load vs MLflow.

Same model, same process, same disk. Keel's load is timed twice:

* cold (``cache=False``): every check runs (sha256 of every file, the
  environment lock, the pickle's globals against the allow-list while
  unpickling, tree bounds, the golden sample re-predicted);
* warm: the package passed before in this environment, so its files are
  recognised by inode and timestamps and only the environment and allow-list
  checks run again (see ``keel.models.verified``).

Prints the medians and the ratios the issue sets goals for: Keel / joblib
(goal ≤ 1.5) and MLflow / Keel (goal > 1), for both.

    UV_PROJECT_ENVIRONMENT=.venv-bench uv run --group bench python benchmarks/model_load.py
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"


def _fit(trees: int) -> tuple[Any, Any]:
    import numpy as np
    from sklearn.ensemble import RandomForestClassifier

    rng = np.random.default_rng(0)
    x = rng.normal(size=(5000, 20))
    y = (x[:, 0] + x[:, 1] * x[:, 2] > 0).astype(int)
    return RandomForestClassifier(n_estimators=trees, random_state=0).fit(x, y), x


def _time(fn: Callable[[], Any], repeat: int) -> list[float]:
    fn()  # warm-up: imports, first-touch of the files
    out = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        out.append(time.perf_counter() - started)
    return out


def _steps(trees: int, repeat: int) -> int:
    """Each step of a cold load, timed alone on the same package (no MLflow needed)."""
    import pickle

    from keel.models.environment import EnvironmentLock, check_environment
    from keel.models.golden import GoldenSample, compare_golden
    from keel.models.package import read_meta, save_model, verify_integrity
    from keel.models.safety import check_pickle, safe_loads
    from keel.models.tree_check import tree_problems

    model, x = _fit(trees)
    root = save_model(
        model, Path(tempfile.mkdtemp(prefix="keel-steps-")) / "m", input_example=x[:20]
    )
    meta = read_meta(root)
    payload = (root / meta["model_file"]).read_bytes()
    lock = EnvironmentLock.from_dict(meta["environment"])
    loaded = pickle.loads(payload)
    golden = GoldenSample.from_dict(meta["golden"])
    twin = (meta.get("onnx") or {}).get("file")
    steps: dict[str, Callable[[], Any]] = {
        "read keel.json": lambda: read_meta(root),
        "sha256 of every file but the twin": lambda: verify_integrity(
            root, meta["files"], skip=[twin] if twin else []
        ),
        "environment check": lambda: check_environment(lock),
        "unpickling with the allow-list (safe_loads)": lambda: safe_loads(payload),
        "plain pickle.loads, for comparison": lambda: pickle.loads(payload),
        "tree bounds check": lambda: tree_problems(loaded),
        "golden check": lambda: compare_golden(loaded, golden),
        "opcode walk (keel models doctor only)": lambda: check_pickle(payload),
    }
    for name, fn in steps.items():
        print(f"  {name:45s} {statistics.median(_time(fn, repeat)) * 1e3:8.1f} ms")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trees", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument(
        "--steps", action="store_true", help="Time each step of a cold load alone, then stop."
    )
    args = parser.parse_args()
    if args.steps:
        return _steps(args.trees, args.repeat)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    warnings.simplefilter("ignore")  # MLflow's start-up chatter is not under test

    import joblib
    import mlflow.pyfunc
    import mlflow.sklearn

    import keel
    from keel.models import verified
    from keel.models.package import load_model, save_model

    model, x = _fit(args.trees)
    work = Path(tempfile.mkdtemp(prefix="keel-load-bench-"))
    joblib_file = work / "model.joblib"
    joblib.dump(model, joblib_file)
    keel_dir = save_model(model, work / "keel-model", input_example=x[:20])
    # cloudpickle: the format MLflow 2.x wrote by default, what most existing
    # MLflow models are. (MLflow 3's new default, skops, refuses tree models
    # unless their Tree class is explicitly trusted at save and load.)
    mlflow_dir = work / "mlflow-model"
    mlflow.sklearn.save_model(
        model, str(mlflow_dir), input_example=x[:5], serialization_format="cloudpickle"
    )
    # MLflow 3's default format, with the Tree class trusted as its error asks.
    skops_dir = work / "mlflow-skops"
    mlflow.sklearn.save_model(
        model,
        str(skops_dir),
        input_example=x[:5],
        serialization_format="skops",
        skops_trusted_types=["sklearn.tree._tree.Tree"],
    )
    # Files younger than the cache's settle time are never remembered.
    time.sleep(verified.SETTLE_SECONDS + 0.1)
    assert not load_model(keel_dir).from_cache and load_model(keel_dir).from_cache
    sizes = {
        "joblib": joblib_file.stat().st_size,
        "keel_pickle": (keel_dir / "model.pkl").stat().st_size,
    }

    timings = {
        "joblib.load": _time(lambda: joblib.load(joblib_file), args.repeat),
        "keel.models.load, cold (every check)": _time(
            lambda: load_model(keel_dir, cache=False), args.repeat
        ),
        "keel.models.load, warm (verified before)": _time(
            lambda: load_model(keel_dir), args.repeat
        ),
        "mlflow.sklearn.load_model": _time(
            lambda: mlflow.sklearn.load_model(str(mlflow_dir)), args.repeat
        ),
        "mlflow.sklearn.load_model (skops)": _time(
            lambda: mlflow.sklearn.load_model(str(skops_dir)), args.repeat
        ),
        "mlflow.pyfunc.load_model": _time(
            lambda: mlflow.pyfunc.load_model(str(mlflow_dir)), args.repeat
        ),
    }
    med = {k: statistics.median(v) for k, v in timings.items()}
    ratios = {}
    for kind in ("cold", "warm"):
        keel_t = next(v for k, v in med.items() if k.startswith(f"keel.models.load, {kind}"))
        ratios |= {
            f"keel {kind} / joblib (goal <= 1.5)": keel_t / med["joblib.load"],
            f"mlflow / keel {kind} (goal > 1)": med["mlflow.sklearn.load_model"] / keel_t,
            f"mlflow skops / keel {kind}": med["mlflow.sklearn.load_model (skops)"] / keel_t,
            f"mlflow pyfunc / keel {kind}": med["mlflow.pyfunc.load_model"] / keel_t,
        }
    print(f"RandomForest, {args.trees} trees; medians of {args.repeat}")
    for name, seconds in med.items():
        print(f"  {name:42s} {seconds * 1e3:8.1f} ms")
    for name, value in ratios.items():
        print(f"  {name:42s} {value:8.2f}x")
    record = {
        "benchmark": "model_load",
        "date": date.today().isoformat(),
        "trees": args.trees,
        "repeat": args.repeat,
        "median_seconds": med,
        "ratios": ratios,
        "sizes": sizes,
        "python": platform.python_version(),
        "keel": keel.__version__,
        "mlflow": mlflow.__version__,
    }
    RESULTS.mkdir(exist_ok=True)
    with (RESULTS / f"{date.today().isoformat()}-model-load.jsonl").open("a") as fh:
        fh.write(json.dumps(record) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
