"""Scoring servers side by side: ``keel serve`` vs ``mlflow models serve``, same model, one worker.

The model is a scikit-learn pipeline (StandardScaler + LogisticRegression, 8
numeric features), saved once as a Keel package (with its training profile,
so validation runs) and once as an MLflow model. Each server runs alone, in its
own process, with one worker; Keel with validation ``reject`` and the
prediction log on. The load generator is a small asyncio HTTP/1.1 client with
keep-alive connections on 127.0.0.1 (no client library in the timed path), and
every run is bounded in time.

``keel-onnx`` is the same package served with ``--backend onnx`` (its ONNX twin,
which passed parity when saved, answers through onnxruntime).

Reported per server:

* single-row latency p50 / p99 with one client (sequential requests), and
  the model's own ``predict`` of one row in-process, so overhead = p50 - predict;
* throughput (requests/s) and p50 / p99 at 1, 8 and 32 concurrent clients.

    UV_PROJECT_ENVIRONMENT=.venv-bench uv run --group bench python benchmarks/serving_vs_mlflow.py

Prints a table and appends JSON lines to ``benchmarks/results/<date>-serving.jsonl``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).parent / "results"
FEATURES = [f"f{i}" for i in range(8)]


def _model(workdir: Path) -> tuple[Path, Path, Any, Any]:
    import pandas as pd
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    import keel.models

    rng = np.random.default_rng(0)
    x = pd.DataFrame(rng.normal(size=(5_000, len(FEATURES))), columns=FEATURES)
    y = (x["f0"] + x["f1"] > 0).astype(int)
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(x, y)
    keel_path = keel.models.save(model, workdir / "keel-model", training_data=x)  # with its twin
    mlflow_path = workdir / "mlflow-model"
    import mlflow.sklearn

    mlflow.sklearn.save_model(
        model, str(mlflow_path), input_example=x.iloc[:5], serialization_format="pickle"
    )
    return keel_path, mlflow_path, model, x


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start(name: str, path: Path, port: int, workdir: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1"}
    # mlflow models serve starts `uvicorn` through bash: it must be on PATH
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    if name.startswith("keel"):
        code = "from keel.cli.main import main; main()"
        backend = "onnx" if name == "keel-onnx" else "native"
        args = [sys.executable, "-c", code, "serve", str(path), "--port", str(port),
                "--log-dir", str(workdir / f"{name}-log"), "--backend", backend]  # fmt: skip
    else:
        mlflow = shutil.which("mlflow") or str(Path(sys.executable).parent / "mlflow")
        args = [mlflow, "models", "serve", "-m", str(path), "--port", str(port),
                "--env-manager", "local", "--workers", "1"]  # fmt: skip
    return subprocess.Popen(
        args, env=env, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


def _wait(port: int, proc: subprocess.Popen[bytes], timeout: float = 120) -> float:
    import urllib.request

    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if proc.poll() is not None:
            raise RuntimeError(
                f"server exited: {proc.stderr.read().decode()[-2000:] if proc.stderr else ''}"
            )
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=1) as r:
                if r.status == 200:
                    return time.perf_counter() - started
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("server did not become healthy")


def _request(port: int, body: bytes) -> bytes:
    return (
        f"POST /invocations HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


async def _one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> int:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    chunked = False
    for line in head.split(b"\r\n"):
        lower = line.lower()
        if lower.startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
        elif lower.startswith(b"transfer-encoding:") and b"chunked" in lower:
            chunked = True
    if chunked:
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    else:
        await reader.readexactly(length)
    return status


async def _client(
    port: int, request: bytes, until: float, latencies: list[float], errors: list[int]
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.perf_counter() < until:
            started = time.perf_counter()
            status = await _one(reader, writer, request)
            latencies.append(time.perf_counter() - started)
            if status != 200:
                errors.append(status)
    finally:
        writer.close()


async def _load(port: int, request: bytes, clients: int, seconds: float) -> dict[str, float]:
    latencies: list[float] = []
    errors: list[int] = []
    # warm-up, untimed
    await asyncio.gather(
        *(_client(port, request, time.perf_counter() + 0.5, [], []) for _ in range(clients))
    )
    started = time.perf_counter()
    until = started + seconds
    await asyncio.gather(
        *(_client(port, request, until, latencies, errors) for _ in range(clients))
    )
    elapsed = time.perf_counter() - started
    ms = np.asarray(latencies) * 1000
    return {
        "clients": clients,
        "requests": len(latencies),
        "errors": len(errors),
        "rps": len(latencies) / elapsed,
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
    }


def _predict_ms(model: Any, x: Any, repeat: int = 2_000) -> float:
    row = x.iloc[:1]
    model.predict(row)
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        model.predict(row)
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def _line(step: dict[str, Any]) -> str:
    return (
        f"  {step['server']:<7} {step['clients']:>3} clients: {step['rps']:8.0f} req/s  "
        f"p50 {step['p50_ms']:6.2f} ms  p99 {step['p99_ms']:6.2f} ms  errors {step['errors']}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of each load step")
    parser.add_argument("--clients", default="1,8,32")
    parser.add_argument("--servers", default="keel,keel-onnx,mlflow")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="keel-serving-bench-"))
    keel_path, mlflow_path, model, x = _model(workdir)
    predict_ms = _predict_ms(model, x)
    row = {"dataframe_split": {"columns": FEATURES, "data": x.iloc[:1].to_numpy().tolist()}}
    body = json.dumps(row).encode()
    print(f"model predict, one row, in-process: {predict_ms:.3f} ms", file=sys.stderr)
    results: list[dict[str, Any]] = []
    for name in args.servers.split(","):
        port = _free_port()
        proc = _start(name, keel_path if name.startswith("keel") else mlflow_path, port, workdir)
        try:
            ready = _wait(port, proc)
            request = _request(port, body)
            for clients in (int(c) for c in args.clients.split(",")):
                step = asyncio.run(_load(port, request, clients, args.seconds))
                step |= {"server": name, "ready_s": ready, "predict_ms": predict_ms}
                results.append(step)
                print(_line(step), file=sys.stderr)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    print("\n| server | clients | req/s | p50 ms | p99 ms | overhead over predict (p50) |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in results:
        overhead = f"{r['p50_ms'] - predict_ms:.2f} ms" if r["clients"] == 1 else ""
        row = [r["server"], r["clients"], f"{r['rps']:,.0f}", f"{r['p50_ms']:.2f}"]
        print("| " + " | ".join(map(str, [*row, f"{r['p99_ms']:.2f}", overhead])) + " |")
    by = {(r["server"], r["clients"]): r for r in results}
    for keel_name in ("keel", "keel-onnx"):
        for clients in (int(c) for c in args.clients.split(",")):
            if (keel_name, clients) in by and ("mlflow", clients) in by:
                ratio = by[(keel_name, clients)]["rps"] / by[("mlflow", clients)]["rps"]
                print(f"{keel_name} / MLflow throughput at {clients} clients: {ratio:.1f}x")
    RESULTS.mkdir(exist_ok=True)
    meta = {
        "date": date.today().isoformat(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
    }
    with (RESULTS / f"{date.today().isoformat()}-serving.jsonl").open("a") as fh:
        for r in results:
            fh.write(json.dumps({**meta, **r}) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
