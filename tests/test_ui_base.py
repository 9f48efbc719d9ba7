"""The web UI's shell: page / fragment / JSON twin, escaping, Host and CSRF checks, static files."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from keel.server.ui import security
from keel.server.ui.render import STATIC
from keel.store import open_store
from keel.store.base import TrackingStore
from ui_support import fragment, ui_client

EVIL = "<script>alert(1)</script>"


@pytest.fixture
def ui_store(tmp_path: Path) -> TrackingStore:
    return open_store(f"sqlite:///{tmp_path / 'ui.db'}", str(tmp_path / "artifacts"))


def test_same_url_answers_page_fragment_and_json(ui_store: TrackingStore) -> None:
    ui_store.create_experiment("churn")
    with ui_client(ui_store) as client:
        page = client.get("/")
        assert page.status_code == 200
        assert page.text.startswith("<!doctype html>")
        assert "/static/htmx.min.js" in page.text and ">churn</a>" in page.text
        assert "HX-Request" in page.headers["vary"]
        assert "script-src 'self'" in page.headers["content-security-policy"]

        part = fragment(client, "/")
        assert not part.text.startswith("<!doctype") and "<header" not in part.text
        assert part.text.startswith("<title>Experiments · Keel</title>")
        assert ">churn</a>" in part.text

        twin = client.get("/", params={"format": "json"})
        assert twin.headers["content-type"] == "application/json"
        names = [e["name"] for e in twin.json()["experiments"]]
        assert names == ["churn", "Default"] or sorted(names) == ["Default", "churn"]
        accept = client.get("/", headers={"Accept": "application/json"})
        assert accept.json() == twin.json()


def test_history_restore_gets_the_whole_page(ui_store: TrackingStore) -> None:
    with ui_client(ui_store) as client:
        restore = client.get(
            "/", headers={"HX-Request": "true", "HX-History-Restore-Request": "true"}
        )
        assert restore.text.startswith("<!doctype html>")


def test_user_text_is_escaped(ui_store: TrackingStore) -> None:
    exp = ui_store.create_experiment(EVIL)
    ui_store.set_experiment_tag(exp, _tag("owner", EVIL))
    with ui_client(ui_store) as client:
        for text in (client.get("/").text, fragment(client, "/").text):
            assert EVIL not in text
            assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text


def test_unknown_host_is_refused_with_the_fix(ui_store: TrackingStore) -> None:
    with ui_client(ui_store) as client:
        refused = client.get("/", headers={"Host": "rebound.example:5000"})
        assert refused.status_code == 403
        assert "--allowed-hosts rebound.example" in refused.text
        assert client.get("/", headers={"Host": "localhost:5000"}).status_code == 200
    allowed = security.parse_allowed_hosts("rebound.example")
    with ui_client(ui_store, allowed_hosts=allowed) as client:
        assert client.get("/", headers={"Host": "rebound.example:5000"}).status_code == 200


def test_csrf_cookie_is_strict_and_reused(ui_store: TrackingStore) -> None:
    with ui_client(ui_store) as client:
        first = client.get("/")
        cookie = first.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie
        token = client.cookies[security.CSRF_COOKIE]
        assert f'<meta name="keel-csrf" content="{token}">' in first.text
        again = client.get("/")
        assert "set-cookie" not in again.headers
        assert f'content="{token}"' in again.text


@pytest.mark.parametrize(
    ("content_type", "header", "status"),
    [
        ("application/x-www-form-urlencoded", "same", 415),
        ("application/json", "", 403),
        ("application/json", "wrong", 403),
    ],
)
def test_changes_need_json_and_the_token(content_type: str, header: str, status: int) -> None:
    from starlette.requests import Request

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/x",
        "headers": [
            (b"content-type", content_type.encode()),
            (b"cookie", b"keel_csrf=" + b"t" * 43),
            (b"x-keel-csrf", ("t" * 43 if header == "same" else header).encode()),
        ],
    }
    with pytest.raises(security.Refused) as refused:
        security.check_change(Request(scope))
    assert refused.value.status == status


def test_static_files_match_their_pinned_checksums() -> None:
    manifest = json.loads((STATIC / "VENDORED.json").read_text())
    files = {k: v for k, v in manifest.items() if not k.startswith("_")}
    assert {"htmx.min.js", "uPlot.iife.min.js", "uPlot.min.css"} <= files.keys()
    for name, entry in files.items():
        assert hashlib.sha256((STATIC / name).read_bytes()).hexdigest() == entry["sha256"], name
        assert (STATIC / entry["license_file"]).is_file()


def test_static_route_serves_only_its_own_files(ui_store: TrackingStore) -> None:
    with ui_client(ui_store) as client:
        js = client.get("/static/htmx.min.js")
        assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
        for probe in ("/static/..%2Frender.py", "/static/VENDORED.json", "/static/nothing.js"):
            assert client.get(probe).status_code == 404, probe


def test_ui_errors_are_pages_for_browsers_and_json_for_clients(ui_store: TrackingStore) -> None:
    with ui_client(ui_store) as client:
        page = client.get("/no/such/page", headers={"Accept": "text/html,*/*"})
        assert page.status_code == 404
        assert "text/html" in page.headers["content-type"]
        assert "/no/such/page" in page.text and "<header" in page.text
        api = client.get("/api/2.0/mlflow/nothing", headers={"Accept": "text/html"})
        assert api.status_code == 404 and api.json()["error_code"] == "ENDPOINT_NOT_FOUND"


def _tag(key: str, value: str):  # type: ignore[no-untyped-def]
    from keel.entities import ExperimentTag

    return ExperimentTag(key, value)


def test_json_twin_of_a_refusal(ui_store: TrackingStore) -> None:
    with ui_client(ui_store) as client:
        refused = client.get("/", params={"format": "json"}, headers={"Host": "evil.test"})
        assert refused.status_code == 403
        assert "evil.test" in refused.json()["error"]["message"]


def test_static_files_are_gzipped_and_revalidated(ui_store: TrackingStore) -> None:
    with ui_client(ui_store) as client:
        plain = (STATIC / "uPlot.iife.min.js").read_bytes()
        zipped = client.get("/static/uPlot.iife.min.js", headers={"Accept-Encoding": "gzip"})
        assert zipped.headers["content-encoding"] == "gzip"
        assert zipped.content == plain  # httpx inflates it
        assert int(zipped.headers["content-length"]) < len(plain) / 2
        raw = client.get("/static/uPlot.iife.min.js", headers={"Accept-Encoding": "identity"})
        assert "content-encoding" not in raw.headers and raw.content == plain
        again = client.get(
            "/static/uPlot.iife.min.js", headers={"If-None-Match": raw.headers["etag"]}
        )
        assert again.status_code == 304 and again.content == b""


def test_the_api_refuses_rebound_host_names_too(ui_store: TrackingStore) -> None:
    with ui_client(ui_store) as client:
        rebound = {"Host": "attacker.example:5000"}
        search = client.post("/api/2.0/mlflow/experiments/search", json={}, headers=rebound)
        assert search.status_code == 403
        assert search.json()["error_code"] == "PERMISSION_DENIED"
        assert "--allowed-hosts attacker.example" in search.json()["message"]
        created = client.post(
            "/api/2.0/mlflow/experiments/create", json={"name": "x"}, headers=rebound
        )
        assert created.status_code == 403
        assert ui_store.get_experiment_by_name("x") is None  # nothing was written
        artifacts = client.get("/api/2.0/mlflow-artifacts/artifacts", headers=rebound)
        assert artifacts.status_code == 403
        # Health probes and plain IP addresses (which rebinding cannot use) still work.
        assert client.get("/health", headers=rebound).status_code == 200
        by_ip = {"Host": "10.1.2.3:5000"}
        assert client.post("/api/2.0/mlflow/experiments/search", json={}, headers=by_ip).is_success
