"""The web UI at 100,000 runs: Keel's pages vs what ``mlflow ui`` answers, on the same data.

Data: 100,000 runs × 10 params × 10 metrics × 3 tags, written with plain SQL
``executemany`` into each system's own tables (a Keel database migrated by Keel,
an MLflow database migrated by MLflow), the same rows for both. One extra Keel
run holds a 1,000,000-point metric history for the chart measurement.

Measured, each server alone in its own process (``keel server`` / ``mlflow
server``, one worker), over HTTP on 127.0.0.1 with a keep-alive client:

* **Runs page with a filter and a sort** (``metrics.m0 > 0.9 AND params.p0 = 'rf'``,
  sorted by ``metrics.m1`` descending): Keel's whole HTML page, its htmx fragment
  and its JSON twin; for MLflow the ``runs/search`` call its UI makes for the same
  view (``max_results=100``), which is the server work behind MLflow's table.
  The first request (cold caches) and the median of the next ones.
* **1,000,000-point chart in Chromium** (Debian's chromium, headless, driven by
  Playwright, already running, a fresh browser context each time: no browser cache): from
  ``page.goto`` of the run's charts tab until the chart's canvas has ink. The
  first load downsamples in SQL; later ones get the server's cached answer
  (kept until the metric gets a new point). And the chart-data request alone,
  uncached (cold) and cached (median).
* **JavaScript shipped**: every script the pages load, gzipped (-9).

    UV_PROJECT_ENVIRONMENT=.venv-bench uv run --group bench python benchmarks/ui_vs_mlflow.py

Prints a table and appends JSON lines to ``benchmarks/results/<date>-ui.jsonl``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import random
import re
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import httpx

from tracking_vs_mlflow import _SQL_LAYOUT

RESULTS = Path(__file__).parent / "results"
STATIC = Path(__file__).parents[1] / "src" / "keel" / "server" / "ui" / "static"
FILTER = "metrics.m0 > 0.9 AND params.p0 = 'rf'"
MODELS = ("rf", "gbm", "lr", "svm", "knn")
BASE_TIME_MS = 1_700_000_000_000


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---------------------------------------------------------------------------
# Data


def synth(
    n: int, seed: int = 8
) -> Iterator[tuple[str, str, int, dict[str, str], dict[str, float]]]:
    rng = random.Random(seed)
    for i in range(n):
        run_id = f"{rng.getrandbits(128):032x}"
        params = {"p0": MODELS[rng.randrange(5)]}
        params.update({f"p{k}": str(round(rng.random(), 6)) for k in range(1, 10)})
        metrics = {f"m{k}": rng.random() for k in range(10)}
        yield run_id, f"run-{i:06d}", BASE_TIME_MS + i * 1_000, params, metrics


def fill(db: Path, system: str, exp_id: int, n: int, art: str) -> float:
    """Insert the runs with each system's column layout (checked against the live schema)."""
    # The runs columns each system's own writes fill, from the tracking benchmark's layout.
    runs_cols = tuple(c for c in _SQL_LAYOUT[system]["runs"] if c != "deleted_time")
    con = sqlite3.connect(db, isolation_level=None)
    t0 = time.perf_counter()
    try:
        for table in ("runs", "params", "tags", "metrics", "latest_metrics"):
            info = con.execute(f"PRAGMA table_info({table})").fetchall()
            missing = [
                r[1]
                for r in info
                if r[3]
                and r[4] is None
                and r[1]
                not in {*runs_cols, "key", "value", "run_uuid", "step", "timestamp", "is_nan"}
            ]
            if missing:
                raise RuntimeError(f"{system}.{table}: columns not filled: {missing}")
        runs, params, tags, metrics = [], [], [], []
        for i, (run_id, name, start, ps, ms) in enumerate(synth(n), 1):
            row = {
                "run_uuid": run_id,
                "experiment_id": exp_id,
                "name": name,
                "user_id": "bench",
                "status": "FINISHED",
                "start_time": start,
                "end_time": start + 60_000,
                "artifact_uri": f"{art}/{run_id}/artifacts",
                "lifecycle_stage": "active",
                "source_type": "UNKNOWN",
                "source_name": "",
                "entry_point_name": "",
                "source_version": "",
            }
            runs.append(tuple(row[c] for c in runs_cols))
            params.extend((run_id, k, v) for k, v in ps.items())
            tg = {"mlflow.runName": name, "mlflow.user": "bench", "team": f"t{i % 7}"}
            tags.extend((run_id, k, v) for k, v in tg.items())
            metrics.extend((run_id, k, 0, start, v, 0) for k, v in ms.items())
            if i % 10_000 == 0 or i == n:
                con.execute("BEGIN")
                con.executemany(
                    f"INSERT INTO runs ({', '.join(runs_cols)}) VALUES "
                    f"({', '.join('?' * len(runs_cols))})",
                    runs,
                )
                for table, rows in (("params", params), ("tags", tags)):
                    con.executemany(
                        f"INSERT INTO {table} (run_uuid, key, value) VALUES (?,?,?)", rows
                    )
                for table in ("metrics", "latest_metrics"):
                    con.executemany(
                        f"INSERT INTO {table} (run_uuid, key, step, timestamp, value, is_nan) "
                        "VALUES (?,?,?,?,?,?)",
                        metrics,
                    )
                con.execute("COMMIT")
                runs, params, tags, metrics = [], [], [], []
        if con.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
            con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        con.close()
    return time.perf_counter() - t0


def long_history(db: Path, run_id: str, points: int) -> None:
    """A million points of one metric in one Keel run (plus its latest_metrics row)."""
    con = sqlite3.connect(db, isolation_level=None)
    rng = random.Random(3)
    try:
        con.execute("BEGIN")
        value = 1.0
        rows = []
        for step in range(points):
            value = max(1e-6, value * 0.999995 + rng.gauss(0, 0.002))
            rows.append((run_id, "loss", step, BASE_TIME_MS + step * 10, value, 0))
            if len(rows) == 100_000:
                con.executemany("INSERT INTO metrics VALUES (?,?,?,?,?,?)", rows)
                rows = []
        con.executemany("INSERT INTO metrics VALUES (?,?,?,?,?,?)", rows)
        con.execute(
            "INSERT OR REPLACE INTO latest_metrics VALUES (?,?,?,?,?,?)",
            (run_id, "loss", points - 1, BASE_TIME_MS + (points - 1) * 10, value, 0),
        )
        con.execute("COMMIT")
    finally:
        con.close()


# ---------------------------------------------------------------------------
# Servers


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(command: list[str], port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(proc.stderr.read().decode() if proc.stderr else command[0])
        time.sleep(0.3)
    proc.kill()
    raise RuntimeError(f"{command[0]} did not start")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


def timed(client: httpx.Client, method: str, url: str, repeat: int, **kw: Any) -> dict[str, Any]:
    """First request (cold) and the median of ``repeat`` more, in ms; checks the status."""
    times = []
    size = 0
    for _ in range(repeat + 1):
        t0 = time.perf_counter()
        response = client.request(method, url, **kw)
        times.append((time.perf_counter() - t0) * 1000)
        if response.status_code != 200:
            raise RuntimeError(f"{url}: {response.status_code} {response.text[:300]}")
        size = len(response.content)
    return {"cold_ms": times[0], "median_ms": statistics.median(times[1:]), "bytes": size}


def keel_pages(port: int, exp_id: str, repeat: int) -> dict[str, Any]:
    q = {"q": FILTER, "sort": "metrics.m1", "dir": "desc"}
    base = f"http://127.0.0.1:{port}"
    out = {}
    with httpx.Client(base_url=base, timeout=60) as client:
        out["page, filter + sort"] = timed(
            client, "GET", f"/experiments/{exp_id}", repeat, params=q
        )
        out["fragment, filter + sort"] = timed(
            client,
            "GET",
            f"/experiments/{exp_id}",
            repeat,
            params=q,
            headers={"HX-Request": "true"},
        )
        out["json twin, filter + sort"] = timed(
            client, "GET", f"/experiments/{exp_id}", repeat, params={**q, "format": "json"}
        )
        out["page, no filter (newest first)"] = timed(
            client, "GET", f"/experiments/{exp_id}", repeat
        )
        out["experiments list"] = timed(client, "GET", "/", repeat)
        twin = client.get(f"/experiments/{exp_id}", params={**q, "format": "json"}).json()
        out["matches"] = twin["total"]
    return out


def mlflow_search(port: int, exp_id: str, repeat: int) -> dict[str, Any]:
    body = {
        "experiment_ids": [exp_id],
        "filter": FILTER,
        "order_by": ["metrics.`m1` DESC"],
        "max_results": 100,
        "run_view_type": "ACTIVE_ONLY",
    }
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:
        out = {
            "runs/search (its runs table)": timed(
                client, "POST", "/ajax-api/2.0/mlflow/runs/search", repeat, json=body
            )
        }
        home = timed(client, "GET", "/", repeat)
        out["UI shell (index.html)"] = home
    return out


# ---------------------------------------------------------------------------
# Chromium


def chart_in_chromium(port: int, run_id: str, repeat: int) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    path = os.environ.get("KEEL_CHROMIUM") or shutil.which("chromium")
    if path is None:
        return {"skipped": "no chromium on PATH"}
    args = [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ]
    url = f"http://127.0.0.1:{port}/runs/{run_id}?tab=charts"
    times = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=path, args=args)
        # A browser that is already running, as a user's is: its first page pays
        # Chromium's own start-up (about 0.5 s here), not Keel's. The chart is
        # still uncached on the server for the first timed load.
        warm = browser.new_context()
        warm.new_page().goto(f"http://127.0.0.1:{port}/")
        warm.close()
        for _ in range(repeat + 1):
            context = browser.new_context(viewport={"width": 1400, "height": 900})
            page = context.new_page()
            t0 = time.perf_counter()
            page.goto(url)
            page.wait_for_function(
                """() => { const c = document.querySelector('[data-chart-src] canvas');
                if (!c) return false; const d = c.getContext('2d')
                  .getImageData(0, 0, c.width, c.height).data;
                let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i]) n++;
                return n > 500; }""",
                timeout=30_000,
                polling=16,
            )
            times.append((time.perf_counter() - t0) * 1000)
            context.close()
        browser.close()
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
        # Another point budget than the page's: the first request is not served from
        # the server's chart cache (cold_ms), the next ones are (median_ms).
        data = timed(
            client,
            "GET",
            "/charts/metric",
            repeat,
            params={"run": run_id, "key": "loss", "x": "step", "points": 1999},
        )
        points = sum(
            len(s["x"])
            for s in client.get("/charts/metric", params={"run": run_id, "key": "loss"}).json()[
                "series"
            ]
        )
    return {
        "first_ms": times[0],
        "median_ms": statistics.median(times[1:]),
        "chart_data": data,
        "points_drawn": points,
    }


def javascript_shipped() -> dict[str, int]:
    base = (STATIC.parent / "templates" / "base.html").read_text()
    names = re.findall(r'<script src="/static/([^"]+)"', base)
    sizes = {n: len(gzip.compress((STATIC / n).read_bytes(), 9)) for n in names}
    sizes["total"] = sum(sizes.values())
    return sizes


# ---------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument(
        "--mlflow-repeat", type=int, default=3, help="MLflow's search takes seconds at 100k runs"
    )
    parser.add_argument(
        "--mlflow-python",
        default=sys.executable,
        help="a Python with mlflow (the bench environment)",
    )
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="keel-ui-bench-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KEEL_", "MLFLOW_"))}
    env.update(MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="1")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    results: dict[str, Any] = {"runs": args.runs, "points": args.points, "filter": FILTER}
    try:
        import keel
        from keel.store import open_store

        keel_db = work / "keel.db"
        store = open_store(f"sqlite:///{keel_db}", str(work / "keel-art"))
        exp = store.create_experiment("bench", artifact_location=str(work / "keel-art" / "bench"))
        long_run = store.create_run(
            exp, user_id="bench", start_time=BASE_TIME_MS, tags=[], run_name="long-history"
        ).info.run_id
        keel.set_tracking_uri(None)
        log(f"keel: inserting {args.runs:,} runs")
        results["keel_fill_s"] = fill(keel_db, "keel", int(exp), args.runs, str(work / "keel-art"))
        log(f"keel: {args.points:,}-point history")
        long_history(keel_db, long_run, args.points)

        mlflow_db = work / "mlflow.db"
        log("mlflow: creating its schema")
        created = subprocess.run(
            [
                args.mlflow_python,
                "-c",
                "import sys, mlflow; c = mlflow.MlflowClient(sys.argv[1]); "
                "print(c.create_experiment('bench', artifact_location=sys.argv[2]))",
                f"sqlite:///{mlflow_db}",
                str(work / "mlflow-art"),
            ],
            check=True,
            env=env,
            capture_output=True,
            text=True,
        )
        mlflow_exp = created.stdout.strip().splitlines()[-1]
        log(f"mlflow: inserting {args.runs:,} runs")
        results["mlflow_fill_s"] = fill(
            mlflow_db, "mlflow", int(mlflow_exp), args.runs, str(work / "mlflow-art")
        )

        port = free_port()
        keel_cmd = [
            sys.executable,
            "-c",
            "from keel.cli.main import main; main()",
            "server",
            "--backend-store-uri",
            f"sqlite:///{keel_db}",
            "--port",
            str(port),
        ]
        log("keel server: runs page")
        proc = start(keel_cmd, port, env)
        try:
            results["keel"] = keel_pages(port, exp, args.repeat)
            log("chromium: 1M-point chart")
            results["chart"] = chart_in_chromium(port, long_run, max(3, args.repeat // 2))
        finally:
            stop(proc)

        port = free_port()
        mlflow_cmd = [
            args.mlflow_python,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            f"sqlite:///{mlflow_db}",
            "--port",
            str(port),
            "--workers",
            "1",
        ]
        log("mlflow server: runs/search")
        proc = start(mlflow_cmd, port, env)
        try:
            results["mlflow"] = mlflow_search(port, mlflow_exp, args.mlflow_repeat)
        finally:
            stop(proc)
        results["javascript_gzip_bytes"] = javascript_shipped()
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    report(results)
    RESULTS.mkdir(exist_ok=True)
    record = {
        "date": date.today().isoformat(),
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        **results,
    }
    with (RESULTS / f"{date.today().isoformat()}-ui.jsonl").open("a") as out:
        out.write(json.dumps(record) + "\n")
    return 0


def report(r: dict[str, Any]) -> None:
    print(
        f"\n{r['runs']:,} runs × 10 params × 10 metrics; filter {r['filter']!r}, "
        f"sort metrics.m1 DESC; {r['keel']['matches']:,} runs match\n"
    )
    print(f"{'request':46} {'cold ms':>9} {'median ms':>10} {'KB':>8}")
    for system in ("keel", "mlflow"):
        for name, t in r[system].items():
            if isinstance(t, dict):
                print(
                    f"{system + ': ' + name:46} {t['cold_ms']:9.1f} {t['median_ms']:10.1f} "
                    f"{t['bytes'] / 1024:8.1f}"
                )
    keel_page = r["keel"]["page, filter + sort"]["median_ms"]
    ml = r["mlflow"]["runs/search (its runs table)"]["median_ms"]
    print(f"\nMLflow's search / Keel's whole page (median): {ml / keel_page:.1f}×")
    chart = r["chart"]
    if "skipped" not in chart:
        print(
            f"1M-point chart in Chromium: first {chart['first_ms']:.0f} ms, median "
            f"{chart['median_ms']:.0f} ms ({chart['points_drawn']:,} points drawn after "
            f"downsampling; chart data {chart['chart_data']['cold_ms']:.0f} ms uncached, "
            f"{chart['chart_data']['median_ms']:.0f} ms cached)"
        )
    js = r["javascript_gzip_bytes"]
    print(
        "JavaScript shipped (gzip -9): "
        + ", ".join(f"{k} {v / 1024:.1f} KB" for k, v in js.items())
    )


if __name__ == "__main__":
    raise SystemExit(main())
