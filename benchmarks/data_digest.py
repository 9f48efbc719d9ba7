"""Time Keel's dataset content digest against md5 of the same Parquet file.

Writes (once, cached under /tmp) a Parquet file of about ``--gb`` gigabytes
with float, int, string and timestamp columns, then times in one run:
``keel.data.digest.content_digest`` of it, ``md5sum`` of the file, hashlib's
md5 of the file bytes, and MLflow's pandas dataset digest when MLflow is
importable (it reads the whole file into memory, so only up to 2 GB).

    .venv/bin/python benchmarks/data_digest.py --gb 1 [--json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import time
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from keel.data.digest import content_digest

ROWS_PER_GROUP = 1_000_000
RESULTS = Path(__file__).parent / "results"


def make_file(gb: float) -> Path:
    """The cached benchmark file, written a million-row group at a time."""
    path = Path(f"/tmp/keel-bench-digest-{gb:g}gb.parquet")
    if path.exists():
        return path
    rng = np.random.default_rng(0)
    tmp = path.with_suffix(".tmp")
    group = 0
    with pq.ParquetWriter(tmp, _group(rng, 0).schema) as writer:
        # Row groups are flushed as they are written, so the file size is current.
        while tmp.stat().st_size < gb * 1e9:
            writer.write_table(_group(rng, group))
            group += 1
    tmp.rename(path)
    return path


def _group(rng: np.random.Generator, group: int) -> pa.Table:
    n = ROWS_PER_GROUP
    start = np.datetime64("2020-01-01T00:00:00") + np.timedelta64(group * n, "s")
    return pa.table(
        {
            "value": rng.normal(size=n),
            "count": rng.integers(0, 1 << 40, n),
            "user": pa.array(np.char.add("user-", rng.integers(0, 10**8, n).astype(str))),
            "at": pa.array(start + rng.integers(0, 10**6, n).astype("timedelta64[s]")),
        }
    )


def timed(fn: Any, repeat: int = 1) -> tuple[float, Any]:
    """Median seconds over ``repeat`` calls, and the last result."""
    times, out = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def md5_python(path: Path) -> str:
    h = hashlib.md5()
    with path.open("rb") as fh:
        while chunk := fh.read(16 << 20):
            h.update(chunk)
    return h.hexdigest()


def mlflow_digest(path: Path) -> str | None:
    try:
        from mlflow.data.pandas_dataset import from_pandas
    except ImportError:
        return None
    return str(from_pandas(pq.read_table(path).to_pandas()).digest)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=float, default=1.0, help="size of the Parquet file")
    parser.add_argument("--json", action="store_true", help="also print a JSON line")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs (median) per contender")
    args = parser.parse_args()
    path = make_file(args.gb)
    size = path.stat().st_size
    md5_python(path)  # warm the page cache so every contender reads from memory
    results: dict[str, float] = {}
    results["md5sum"], _ = timed(
        lambda: subprocess.run(["md5sum", str(path)], check=True, capture_output=True),
        args.repeat,
    )
    results["hashlib.md5"], _ = timed(lambda: md5_python(path), args.repeat)
    results["keel content_digest"], digest = timed(lambda: content_digest(path), args.repeat)
    if size < 2e9:
        seconds, found = timed(lambda: mlflow_digest(path))
        if found is not None:
            results["mlflow digest"] = seconds
    print(f"file {path} ({size / 1e6:.0f} MB, {digest.rows} rows, cpus {os.cpu_count()})")
    print(f"{'what':<22}{'seconds':>9}{'MB/s':>9}")
    for name, seconds in results.items():
        print(f"{name:<22}{seconds:>9.2f}{size / 1e6 / seconds:>9.0f}")
    ratio = results["keel content_digest"] / results["md5sum"]
    print(f"keel / md5sum: {ratio:.2f}x")
    line = json.dumps(
        {
            "date": date.today().isoformat(),
            "task": "digest",
            "file_bytes": size,
            "rows": digest.rows,
            "seconds": results,
            "keel_over_md5sum": ratio,
        }
    )
    if args.json:
        print(line)
    RESULTS.mkdir(exist_ok=True)
    with (RESULTS / f"{date.today().isoformat()}-data.jsonl").open("a") as fh:
        fh.write(line + "\n")


if __name__ == "__main__":
    main()
