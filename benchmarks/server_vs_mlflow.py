"""`keel server` vs `mlflow server`, side by side in one run, driven by the same MLflow client.

Each server starts fresh (new SQLite file, new artifact directory) in its own
process group, is polled until /health answers, then the shared tracking
benchmark (`../shared/bench/tracking_bench.py`, which uses only the MLflow
client) runs against it; servers alternate order between repeats so machine
drift hits both. Prints each workload's throughput and p50 latency per server
and the ratio Keel / MLflow, and appends every JSON line to
benchmarks/results/<date>-server.jsonl.

    UV_PROJECT_ENVIRONMENT=.venv-bench uv run --group bench python benchmarks/server_vs_mlflow.py \
        --only W1,W3,W4,W4b,W5,W2raw,W5raw,W7

The MLflow server runs with `--workers 1` (as Keel does): uvicorn's multi-worker
mode leaves TCP_NODELAY off and adds ~40 ms per keep-alive request
(../shared/research/tracking-bench.md), which would flatter Keel.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import date
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
DEFAULT_BENCH = ROOT.parent / "shared" / "bench" / "tracking_bench.py"


def _start(name: str, work: Path, port: int) -> subprocess.Popen[bytes]:
    bin_dir = Path(sys.executable).parent
    db = work / f"{name}.db"
    if name == "keel":
        keel = ROOT / ".venv" / "bin" / "keel"
        cmd = [
            str(keel if keel.exists() else bin_dir / "keel"),
            "server",
            "--backend-store-uri",
            f"sqlite:///{db}",
            "--artifacts-destination",
            str(work / "artifacts"),
            "--port",
            str(port),
        ]
    else:
        cmd = [
            str(bin_dir / "mlflow"),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{db}",
            "--artifacts-destination",
            str(work / "artifacts"),
        ]
    log = (work / f"{name}.log").open("wb")
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    return subprocess.Popen(cmd, stdout=log, stderr=log, start_new_session=True, env=env)


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout: float = 180) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode} before answering")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2):
                return time.monotonic() - started
        except OSError:
            time.sleep(0.25)
    raise RuntimeError(f"{url} did not answer /health within {timeout:.0f} s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bench", type=Path, default=DEFAULT_BENCH)
    parser.add_argument("--only", default="W1,W3,W4,W4b,W5,W2raw,W5raw,W7")
    parser.add_argument("--scale", default="small")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--servers", default="keel,mlflow")
    args = parser.parse_args()
    if not args.bench.is_file():
        print(f"No benchmark driver at {args.bench}; pass --bench PATH.", file=sys.stderr)
        return 2
    servers = args.servers.split(",")
    lines: list[dict[str, Any]] = []
    for repeat in range(1, args.repeats + 1):
        order = servers if repeat % 2 else list(reversed(servers))
        for i, name in enumerate(order):
            work = Path(tempfile.mkdtemp(prefix=f"keel-server-bench-{name}-"))
            port = 5201 + i
            url = f"http://127.0.0.1:{port}"
            proc = _start(name, work, port)
            try:
                startup = _wait_healthy(url, proc)
                note = f"[{name}] healthy after {startup:.1f}s; running {args.only}"
                print(note, file=sys.stderr)
                out = subprocess.run(
                    [
                        sys.executable,
                        str(args.bench),
                        "--uri",
                        url,
                        "--scale",
                        args.scale,
                        "--label",
                        name,
                        "--server-pid",
                        str(proc.pid),
                        "--only",
                        args.only,
                        "--tag",
                        f"repeat={repeat}",
                    ],
                    capture_output=True,
                    text=True,
                    timeout=3600,
                    check=True,
                )
            finally:
                _stop(proc)
            for raw in out.stdout.splitlines():
                record = json.loads(raw)
                record.setdefault("server", name)
                lines.append(record | {"startup_s": round(startup, 2)})
    RESULTS.mkdir(exist_ok=True)
    with (RESULTS / f"{date.today().isoformat()}-server.jsonl").open("a") as fh:
        for record in lines:
            fh.write(json.dumps(record) + "\n")
    _report(lines, servers)
    return 0


def _report(lines: list[dict[str, Any]], servers: list[str]) -> None:
    by: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in lines:
        if "ops_per_s" in r and r.get("status") == "ok":
            by.setdefault((r["workload"], r["server"]), []).append(r)
    workloads = sorted({w for w, _ in by})
    print(f"{'workload':8s} " + " ".join(f"{s + ' ops/s':>14s} {s + ' p50':>12s}" for s in servers))
    for w in workloads:
        cells = []
        rates = {}
        for s in servers:
            runs = by.get((w, s), [])
            rate = statistics.median(r["ops_per_s"] for r in runs) if runs else float("nan")
            p50 = statistics.median(r["p50_ms"] for r in runs) if runs else float("nan")
            rates[s] = rate
            cells.append(f"{rate:14.1f} {p50:10.2f}ms")
        ratio = rates[servers[0]] / rates[servers[1]] if len(servers) == 2 else float("nan")
        print(f"{w:8s} " + " ".join(cells) + f"   {servers[0]}/{servers[1]} {ratio:6.2f}x")


if __name__ == "__main__":
    raise SystemExit(main())
