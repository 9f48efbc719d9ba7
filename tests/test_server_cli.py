"""`keel server` as users start it: a subprocess with worker processes, on loopback."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_keel_server_with_two_workers_serves_the_api(tmp_path: Path) -> None:
    port = _free_port()
    keel = Path(sys.executable).parent / "keel"
    command = [
        *(str(keel), "server", "--backend-store-uri", f"sqlite:///{tmp_path / 'k.db'}"),
        *("--artifacts-destination", str(tmp_path / "artifacts")),
        *("--port", str(port), "--workers", "2"),
    ]
    proc = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        env={k: v for k, v in os.environ.items() if not k.startswith(("KEEL_", "MLFLOW_"))},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=2).text == "OK":
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, "keel server did not answer within 60 s"
            time.sleep(0.2)
        with httpx.Client(base_url=f"{url}/api/2.0/mlflow", timeout=10) as http:
            created = http.post("/experiments/create", json={"name": "cli"}).json()
            got = http.get("/experiments/get", params=created).json()["experiment"]
            assert got["name"] == "cli"
            assert got["artifact_location"] == f"mlflow-artifacts:/{created['experiment_id']}"
            # Both workers share the database: every request sees every write.
            names = {
                e["name"]
                for _ in range(6)
                for e in http.post("/experiments/search", json={}).json()["experiments"]
            }
            assert "cli" in names
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
