"""`keel ui` and `keel server --allowed-hosts` as users start them: a real process on loopback."""

from __future__ import annotations

from pathlib import Path

import httpx

import keel
from cli_runner import ok
from live_server import keel_process


def test_keel_ui_serves_the_embedded_store(tmp_path: Path) -> None:
    db = tmp_path / "keel.db"
    keel.set_tracking_uri(f"sqlite:///{db}")
    try:
        keel.set_experiment("from-a-script")
        with keel.start_run(run_name="first"):
            keel.log_metric("acc", 0.9)
    finally:
        keel.set_tracking_uri(None)
    with keel_process(["ui", "--backend-store-uri", f"sqlite:///{db}"], tmp_path) as (url, port):
        home = httpx.get(f"{url}/")
        assert home.status_code == 200 and ">from-a-script</a>" in home.text
        refused = httpx.get(f"{url}/", headers={"Host": "attacker.example"})
        assert refused.status_code == 403
        assert httpx.get(f"http://localhost:{port}/").status_code == 200


def test_keel_server_answers_the_hosts_it_is_told(tmp_path: Path) -> None:
    args = [
        "server",
        "--backend-store-uri",
        f"sqlite:///{tmp_path / 'k.db'}",
        "--allowed-hosts",
        "ml.internal",
    ]
    with keel_process(args, tmp_path) as (url, _port):
        assert httpx.get(f"{url}/", headers={"Host": "ml.internal:5000"}).status_code == 200
        assert httpx.get(f"{url}/", headers={"Host": "other.internal"}).status_code == 403


def test_keel_ui_has_help() -> None:
    shown = ok("ui", "--help")
    assert "web UI" in shown and "--open" in shown
