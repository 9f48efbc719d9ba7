"""Profiling and drift on 1,000,000 rows x 20 mixed columns: Keel vs Evidently vs a ks_2samp loop.

In one run, on the same two frames (the second with two columns shifted by 0.25σ):

* Keel ``keel.data.profile`` of one frame (goal ≤ 2 s on 2 cores), and Evidently's
  ``DataSummaryPreset`` on the same frame for reference;
* Keel ``keel.data.drift`` on the raw frames and on their two profiles;
* Evidently's ``DataDriftPreset`` report (goal: Keel ≥ 10x faster);
* the seed's recipe: ``scipy.stats.ks_2samp`` per numeric column.

Evidently 0.7 needs pandas < 3, so it runs in its own virtualenv, in a
subprocess that reads the same Parquet files (file reading is outside every
timed section, for every contender):

    python3 -m venv /tmp/evid && /tmp/evid/bin/pip install evidently==0.7.23 "pandas<3" pyarrow
    .venv/bin/python benchmarks/data_vs_peers.py --evidently-python /tmp/evid/bin/python

Prints a table and appends JSON lines to ``benchmarks/results/<date>-data.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

RESULTS = Path(__file__).parent / "results"
LEVELS = np.array(["basic", "pro", "team", "enterprise", "trial"], dtype=object)

EVIDENTLY_SCRIPT = r"""
import json, sys, time, warnings
warnings.filterwarnings("ignore")
import pandas as pd
from evidently import Dataset, DataDefinition, Report
from evidently.presets import DataDriftPreset, DataSummaryPreset
ref = pd.read_parquet(sys.argv[1]); cur = pd.read_parquet(sys.argv[2]); what = sys.argv[3]
numeric = [c for c in ref.columns if ref[c].dtype.kind in "if"]
categorical = [c for c in ref.columns if c not in numeric]
definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
times = []
for _ in range(int(sys.argv[4])):
    started = time.perf_counter()
    a = Dataset.from_pandas(ref, data_definition=definition)
    if what == "drift":
        b = Dataset.from_pandas(cur, data_definition=definition)
        snapshot = Report([DataDriftPreset()]).run(b, a)
    else:
        snapshot = Report([DataSummaryPreset()]).run(a, None)
    result = snapshot.dict()
    times.append(time.perf_counter() - started)
drifted = []
for metric in result["metrics"]:
    name = str(metric.get("metric_name", ""))
    if name.startswith("ValueDrift(") and isinstance(metric.get("value"), (int, float)):
        fields = dict(part.split("=", 1) for part in name[11:-1].split(","))
        value, threshold = metric["value"], float(fields["threshold"])
        is_p_value = "p_value" in fields["method"] or "test" in fields["method"].lower()
        if (value < threshold) if is_p_value else (value >= threshold):
            drifted.append(fields["column"])
print(json.dumps({"seconds": times, "drifted": drifted}))
"""


def frame(rng: np.random.Generator, n: int, shift: float = 0.0) -> pd.DataFrame:
    """14 floats, 3 integer columns, 2 categorical strings, a boolean; shift moves x0 and x7."""
    cols: dict[str, Any] = {}
    for i in range(14):
        sigma = 1.0 + i / 4
        moved = shift * sigma if i in (0, 7) else 0.0
        cols[f"x{i}"] = rng.normal(10.0 * i, sigma, n) + moved
    cols["wide"] = rng.integers(0, 1_000_000, n)
    cols["count"] = rng.poisson(50, n)
    cols["stars"] = rng.integers(1, 6, n)
    cols["plan"] = LEVELS[rng.choice(5, n, p=[0.4, 0.3, 0.15, 0.1, 0.05])]
    cols["region"] = LEVELS[:3][rng.integers(0, 3, n)]
    cols["active"] = rng.random(n) < 0.3
    return pd.DataFrame(cols)


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """Median seconds of ``repeat`` calls after one warm-up, and the last result."""
    result = fn()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def ks_loop(ref: pd.DataFrame, cur: pd.DataFrame) -> int:
    from scipy import stats

    numeric = [c for c in ref.columns if ref[c].dtype.kind in "if"]
    return sum(bool(stats.ks_2samp(ref[c], cur[c]).pvalue < 0.05) for c in numeric)


def evidently(python: str, ref: Path, cur: Path, what: str, repeat: int) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as script:
        script.write(EVIDENTLY_SCRIPT)
    done = subprocess.run(
        [python, script.name, str(ref), str(cur), what, str(repeat)],
        capture_output=True,
        text=True,
        timeout=3600,
    )
    Path(script.name).unlink()
    if done.returncode != 0:
        print(f"Evidently failed: {done.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
        return {"seconds": None}
    out = json.loads(done.stdout.strip().splitlines()[-1])
    return {"seconds": statistics.median(out["seconds"]), "drifted": out["drifted"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--evidently-python", help="python of a venv with evidently installed")
    parser.add_argument("--evidently-repeat", type=int, default=1)
    args = parser.parse_args()

    from keel.data.drift_report import drift
    from keel.data.profiles import profile

    rng = np.random.default_rng(0)
    ref, cur = frame(rng, args.rows), frame(rng, args.rows, shift=0.25)
    tmp = Path(tempfile.mkdtemp(prefix="keel-data-bench-"))
    ref_path, cur_path = tmp / "reference.parquet", tmp / "current.parquet"
    ref.to_parquet(ref_path, index=False)
    cur.to_parquet(cur_path, index=False)
    print(f"{args.rows:,} rows x {ref.shape[1]} columns; files in {tmp}", file=sys.stderr)

    rows: list[dict[str, Any]] = []

    def record(task: str, system: str, seconds: float | None, **extra: Any) -> None:
        rows.append({"task": task, "system": system, "seconds": seconds, **extra})
        shown = "failed" if seconds is None else f"{seconds:.3f} s"
        print(f"  {task:<22} {system:<28} {shown}", file=sys.stderr)

    seconds, ref_profile = timed(lambda: profile(ref), args.repeat)
    record("profile", "keel", seconds)
    cur_profile = profile(cur)
    seconds, report = timed(lambda: drift(ref, cur), args.repeat)
    record("drift", "keel (raw data)", seconds, drifted=report.drifted_columns)
    seconds, report = timed(lambda: drift(ref_profile, cur_profile), args.repeat)
    record("drift", "keel (two profiles)", seconds, drifted=report.drifted_columns)
    seconds, flagged = timed(lambda: ks_loop(ref, cur), args.repeat)
    record("drift", "scipy ks_2samp loop", seconds, flagged_columns=flagged)
    if args.evidently_python:
        ev = args.evidently_python
        summary = evidently(ev, ref_path, cur_path, "summary", args.evidently_repeat)
        record("profile", "evidently DataSummaryPreset", summary["seconds"])
        drift_run = evidently(ev, ref_path, cur_path, "drift", args.evidently_repeat)
        record("drift", "evidently DataDriftPreset", drift_run.pop("seconds"), **drift_run)

    def seconds_of(task: str, system: str) -> float | None:
        found = [r["seconds"] for r in rows if (r["task"], r["system"]) == (task, system)]
        return found[0] if found else None

    keel_profile = seconds_of("profile", "keel")
    keel_drift = seconds_of("drift", "keel (raw data)")
    print("\n| task | system | seconds | vs Keel |\n|---|---|---:|---:|")
    for r in rows:
        base = keel_profile if r["task"] == "profile" else keel_drift
        ratio = f"{r['seconds'] / base:.1f}x" if r["seconds"] and base else "-"
        shown = f"{r['seconds']:.3f}" if r["seconds"] is not None else "failed"
        print(f"| {r['task']} | {r['system']} | {shown} | {ratio} |")

    RESULTS.mkdir(exist_ok=True)
    meta = {
        "date": date.today().isoformat(),
        "rows": args.rows,
        "columns": ref.shape[1],
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
    with (RESULTS / f"{date.today().isoformat()}-data.jsonl").open("a") as fh:
        for r in rows:
            fh.write(json.dumps({**meta, **r}) + "\n")


if __name__ == "__main__":
    main()
