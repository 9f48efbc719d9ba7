"""Profile `keel server` under py-spy on the tracking benchmark's hot workloads.

Starts a fresh `keel server` (new SQLite file) as a child of `py-spy record`,
drives one workload over raw HTTP (http.client, one keep-alive connection, so
the client costs little CPU), stops the server and prints the top functions by
self and by inclusive share of the server's samples.

    python3 -m venv /tmp/pyspy && /tmp/pyspy/bin/pip install py-spy
    .venv/bin/python benchmarks/profile_server.py --workload W2raw --py-spy /tmp/pyspy/bin/py-spy

Workloads (as in ../shared/bench/tracking_bench.py):
  W1     runs/create (5 tags) + runs/log-batch (10 params, 2 metrics) + runs/update, N runs
  W2raw  runs/log-metric one value per POST
  W3     runs/log-batch of 1000 metrics
  W4     runs/search with a metric and a param filter, ordered by a metric, over 200 runs
  W4b    runs/search listing the same 200 runs in pages of 100
  W5raw  metrics/get-history of a 10,000-step metric
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import http.client
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


class Client:
    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        full = f"/api/2.0/mlflow/{path}"
        if method == "GET" and body:
            full += "?" + urllib.parse.urlencode(body)
            body = None
        data = json.dumps(body) if body is not None else None
        headers = {"Content-Type": "application/json"} if data else {}
        self.conn.request(method, full, body=data, headers=headers)
        r = self.conn.getresponse()
        raw = r.read()
        if r.status != 200:
            raise RuntimeError(f"{method} {path}: HTTP {r.status} {raw[:200]!r}")
        return json.loads(raw) if raw else {}


def _now() -> int:
    return int(time.time() * 1000)


def w1(c: Client, n: int) -> int:
    exp = c.call("POST", "experiments/create", {"name": f"w1-{time.time()}"})["experiment_id"]
    for i in range(n):
        tags = [{"key": f"tag{j}", "value": f"value-{j}-{i % 7}"} for j in range(5)]
        run = c.call(
            "POST",
            "runs/create",
            {
                "experiment_id": exp,
                "user_id": "bench",
                "start_time": _now(),
                "tags": [*tags, {"key": "mlflow.runName", "value": f"run-{i:05d}"}],
                "run_name": f"run-{i:05d}",
            },
        )["run"]["info"]["run_id"]
        ts = _now()
        c.call(
            "POST",
            "runs/log-batch",
            {
                "run_id": run,
                "metrics": [
                    {"key": "acc", "value": 0.5, "timestamp": ts, "step": 0},
                    {"key": "loss", "value": 0.25, "timestamp": ts, "step": 0},
                ],
                "params": [{"key": f"p{j}", "value": str(j * 1000 + i)} for j in range(10)],
            },
        )
        c.call(
            "POST",
            "runs/update",
            {"run_id": run, "run_uuid": run, "status": "FINISHED", "end_time": _now()},
        )
    return n


def _searchable(c: Client, runs: int) -> str:
    """An experiment of ``runs`` runs shaped like the benchmark's W1 runs."""
    exp = c.call("POST", "experiments/create", {"name": f"w4-{time.time()}"})["experiment_id"]
    for i in range(runs):
        run = c.call("POST", "runs/create", {"experiment_id": exp, "start_time": _now()})
        ts = _now()
        c.call(
            "POST",
            "runs/log-batch",
            {
                "run_id": run["run"]["info"]["run_id"],
                "metrics": [
                    {"key": "acc", "value": (i * 37 % 100) / 100, "timestamp": ts, "step": 0},
                    {"key": "loss", "value": (i * 53 % 100) / 100, "timestamp": ts, "step": 0},
                ],
                "params": [{"key": "p0", "value": "abc"[i % 3]}]
                + [{"key": f"p{j}", "value": str(j * 1000 + i)} for j in range(1, 10)],
                "tags": [{"key": f"tag{j}", "value": f"value-{j}-{i % 7}"} for j in range(5)],
            },
        )
    return str(exp)


def w4(c: Client, n: int) -> int:
    exp = _searchable(c, 200)
    for q in range(n):
        body = {
            "experiment_ids": [exp],
            "filter": f"metrics.acc > {0.9 * (q % 50) / 50:.3f} and params.p0 = '{'abc'[q % 3]}'",
            "order_by": ["metrics.loss ASC"],
            "max_results": 100,
        }
        c.call("POST", "runs/search", body)
    return n


def w4b(c: Client, n: int) -> int:
    exp = _searchable(c, 200)
    for _ in range(n):
        token = None
        while True:
            body = {"experiment_ids": [exp], "max_results": 100, "page_token": token}
            token = c.call("POST", "runs/search", body).get("next_page_token")
            if not token:
                break
    return n


def _run(c: Client, name: str) -> str:
    exp = c.call("POST", "experiments/create", {"name": f"{name}-{time.time()}"})["experiment_id"]
    body = {"experiment_id": exp, "start_time": _now(), "run_name": name}
    return str(c.call("POST", "runs/create", body)["run"]["info"]["run_id"])


def w2raw(c: Client, n: int) -> int:
    run = _run(c, "w2raw")
    for i in range(n):
        body = {"run_id": run, "key": "raw", "value": float(i), "timestamp": _now(), "step": i}
        c.call("POST", "runs/log-metric", body)
    return n


def w3(c: Client, n: int) -> int:
    run = _run(c, "w3")
    for call in range(n):
        ts = _now()
        metrics = [
            {"key": f"m{k}", "value": (k * 100 + s) / 1000, "timestamp": ts, "step": call * 100 + s}
            for k in range(10)
            for s in range(100)
        ]
        c.call("POST", "runs/log-batch", {"run_id": run, "metrics": metrics})
    return n


def w5raw(c: Client, n: int) -> int:
    run = _run(c, "w5")
    ts = _now()
    for start in range(0, 10_000, 1000):
        metrics = [
            {"key": "long", "value": s / 7, "timestamp": ts + s, "step": s}
            for s in range(start, start + 1000)
        ]
        c.call("POST", "runs/log-batch", {"run_id": run, "metrics": metrics})
    for _ in range(n):
        c.call("GET", "metrics/get-history", {"run_id": run, "metric_key": "long"})
    return n


WORKLOADS = {
    "W1": (w1, 300),
    "W2raw": (w2raw, 4000),
    "W3": (w3, 60),
    "W4": (w4, 300),
    "W4b": (w4b, 100),
    "W5raw": (w5raw, 40),
}


# Leaves where a thread waits rather than works (py-spy without --idle still
# samples them when it cannot tell): the idle threadpool and the event loop's poll.
IDLE_LEAVES = ("Condition.wait (threading.py", "EpollSelector.select (selectors.py")


def _package(frame: str) -> str:
    """'func (path/to/mod.py:12)' -> a coarse bucket for the leaf's code."""
    path = frame.rpartition("(")[2]
    for bucket in (
        "keel/",
        "sqlalchemy/",
        "starlette/",
        "fastapi/",
        "uvicorn/",
        "h11/",
        "anyio/",
        "asyncio/",
        "json/",
        "pydantic",
    ):
        if bucket in path:
            return bucket.rstrip("/")
    return path.split(":")[0].rsplit("/", 1)[-1] or "?"


def _summarise(collapsed: Path, top: int) -> None:
    """Self and inclusive shares of busy samples per function, from collapsed stacks."""
    self_n: collections.Counter[str] = collections.Counter()
    incl_n: collections.Counter[str] = collections.Counter()
    pkg_n: collections.Counter[str] = collections.Counter()
    total = idle = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        frames = [f for f in stack.split(";") if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        if frames[-1].startswith(IDLE_LEAVES):
            idle += n
            continue
        total += n
        self_n[frames[-1]] += n
        pkg_n[_package(frames[-1])] += n
        for f in set(frames):
            incl_n[f] += n
    print(f"{total} busy samples ({idle} idle samples dropped)")
    print("\n-- self time by package of the leaf frame --")
    for pkg, n in pkg_n.most_common(15):
        print(f"{100 * n / total:6.1f}%  {pkg}")
    for title, counter in (("self", self_n), ("inclusive", incl_n)):
        print(f"\n-- top {top} by {title} --")
        for frame, n in counter.most_common(top):
            print(f"{100 * n / total:6.1f}%  {frame}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workload", choices=sorted(WORKLOADS), required=True)
    ap.add_argument("-n", type=int, default=None, help="ops (default per workload)")
    ap.add_argument("--py-spy", default="/tmp/pyspy/bin/py-spy")
    ap.add_argument("--rate", type=int, default=400, help="samples per second")
    ap.add_argument("--out", type=Path, default=None, help="collapsed stacks file")
    ap.add_argument("--top", type=int, default=30)
    ap.add_argument("--src", type=Path, default=None, help="import keel from this src directory")
    ap.add_argument(
        "--all-threads",
        action="store_true",
        help="sample every thread (wall time) instead of only the GIL holder (py-spy --gil: "
        "where the server's Python CPU goes)",
    )
    ap.add_argument("--native", action="store_true", help="py-spy --native (C frames)")
    args = ap.parse_args()
    fn, default_n = WORKLOADS[args.workload]
    n = args.n or default_n
    work = Path(tempfile.mkdtemp(prefix=f"keel-profile-{args.workload}-"))
    out = args.out or work / f"{args.workload}.collapsed"
    port = 5301 + os.getpid() % 500
    keel = ROOT / ".venv" / "bin" / "keel"
    server_cmd = [
        str(keel),
        "server",
        "--backend-store-uri",
        f"sqlite:///{work / 'keel.db'}",
        "--artifacts-destination",
        str(work / "artifacts"),
        "--port",
        str(port),
    ]
    log = (work / "server.log").open("wb")
    env = dict(os.environ)
    if args.src:  # e.g. a `git archive HEAD src` copy while the working tree is mid-edit
        env["PYTHONPATH"] = str(args.src.resolve())
    server = subprocess.Popen(server_cmd, stdout=log, stderr=log, start_new_session=True, env=env)
    spy = None
    try:
        for _ in range(600):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                    break
            except OSError:
                if server.poll() is not None:
                    raise RuntimeError((work / "server.log").read_text()) from None
                time.sleep(0.1)
        c = Client(port)
        c.call("POST", "experiments/search", {"max_results": 10})  # warm the code paths
        # Attach after start-up so imports and migrations stay out of the profile.
        spy_cmd = [args.py_spy, "record", "--format", "raw", "--rate", str(args.rate)]
        spy_cmd += ["-o", str(out), "--pid", str(server.pid)]
        spy_cmd += ["--native"] if args.native else []
        spy_cmd += [] if args.all_threads else ["--gil"]
        spy = subprocess.Popen(spy_cmd, stdout=log, stderr=log)
        time.sleep(1.0)
        t0 = time.perf_counter()
        ops = fn(c, n)
        wall = time.perf_counter() - t0
        print(f"{args.workload}: {ops} ops in {wall:.2f}s = {ops / wall:.1f} ops/s (under py-spy)")
    finally:
        if spy is not None:
            spy.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
            spy.wait(timeout=60)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
    _summarise(out, args.top)
    print(f"\ncollapsed stacks: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
