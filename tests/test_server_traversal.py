"""Hostile artifact paths against a real server: refused everywhere, nothing touched.

One uvicorn server on 127.0.0.1 for the module, over a SQLite file and a local
``--artifacts-destination``; no mocks. Every string of :mod:`traversal_corpus`
is sent to every surface that takes an artifact path:

- the artifact proxy: ``PUT``, ``GET`` and ``DELETE …/mlflow-artifacts/artifacts/<p>``
  and the listing ``GET …/mlflow-artifacts/artifacts?path=<p>``;
- the run-artifact listing ``GET /api/2.0/mlflow/artifacts/list?run_id=…&path=<p>``;
- a model version's ``source`` (``model-versions/create``), in four shapes;
- an experiment's ``artifact_location`` (``experiments/create``), in two.

Each answer must be a 400 or 404 with MLflow's JSON error body, never carry
the canary (a file beside the artifact root, which most strings aim at) or
``/etc/passwd``, and leave every file under the test directory as it was
(type, size, mtime and symlink target), the artifact root included.

Requests go out over raw ``http.client`` with the path as written: httpx
would normalise ``..`` and encode what an attacker sends verbatim.
"""

from __future__ import annotations

import http.client
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

pytest.importorskip("uvicorn")

from keel.server import create_app
from keel.server.config import PROXY_ARTIFACT_ROOT
from keel.store.sql.store import SqlTrackingStore
from live_server import serve
from traversal_corpus import SYMLINK_LOOP, SYMLINK_OUT, TARGET, Hostile, in_scope

PROXY = "/api/2.0/mlflow-artifacts/artifacts"
MLFLOW = "/api/2.0/mlflow"
CANARY = b"keel-traversal-canary-6f1c2b9e"
PASSWD = b"root:x:0:0"
MODEL = "traversal"
ERROR_CODES = {"INVALID_PARAMETER_VALUE", "RESOURCE_DOES_NOT_EXIST", "ENDPOINT_NOT_FOUND"}

PROXY_ITEMS = in_scope("proxy")
URI_ITEMS = in_scope("all")


# -- the server ------------------------------------------------------------------


class Wire:
    """One keep-alive connection; the request target goes out exactly as given."""

    def __init__(self, url: str) -> None:
        self.host = url.removeprefix("http://")
        self.conn = http.client.HTTPConnection(self.host, timeout=10)

    def request(
        self, method: str, target: str, body: bytes | None = None, json_body: Any = None
    ) -> tuple[int, dict[str, str], bytes]:
        headers = {}
        if json_body is not None:
            body = json.dumps(json_body).encode()
            headers["Content-Type"] = "application/json"
        for attempt in range(2):
            try:
                self.conn.request(method, target, body=body, headers=headers)
                response = self.conn.getresponse()
                data = response.read()
                return response.status, {k.lower(): v for k, v in response.getheaders()}, data
            except (ConnectionError, http.client.HTTPException):
                # The server may close a connection whose request body it never
                # read; the retry goes out on a fresh one.
                self.conn.close()
                self.conn = http.client.HTTPConnection(self.host, timeout=10)
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.conn.close()


@dataclass
class Env:
    base: Path  # everything the tests watch: the root, the canary, the symlinks' targets
    root: Path  # the artifacts destination
    canary: Path
    db_dir: Path  # the SQLite file changes with every accepted create: not watched
    wire: Wire
    run_id: str


def _snapshot(base: Path, skip: Path) -> dict[str, tuple[int, int, int, str]]:
    """Every entry under ``base`` but ``skip``: mode, size, mtime, symlink target.

    Symlinks are recorded, never followed, so the planted ``escape`` link does
    not loop the walk back into ``base``.
    """
    out = {}
    for dirpath, dirnames, filenames in os.walk(base):
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames if here / d != skip]
        for name in [*dirnames, *filenames]:
            path = here / name
            st = path.lstat()
            link = str(path.readlink()) if path.is_symlink() else ""
            out[path.relative_to(base).as_posix()] = (st.st_mode, st.st_size, st.st_mtime_ns, link)
    return out


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    base = tmp_path_factory.mktemp("traversal")
    canary = base / TARGET
    canary.write_bytes(CANARY)
    root = base / "destination"
    (root / "a").mkdir(parents=True)  # so "a/../../canary.txt" walks through a real directory
    (root / "a" / "keep.txt").write_bytes(b"inside")
    (root / SYMLINK_OUT).symlink_to(base, target_is_directory=True)
    (root / SYMLINK_LOOP).symlink_to(root / SYMLINK_LOOP)
    # The corpus aims right: two levels up from "a", and through "escape", is the canary.
    assert (root / "a" / ".." / ".." / TARGET).resolve() == canary.resolve()
    assert (root / SYMLINK_OUT / TARGET).read_bytes() == CANARY
    db_dir = base / "db"
    db_dir.mkdir()
    store = SqlTrackingStore(f"sqlite:///{db_dir / 'server.db'}", PROXY_ARTIFACT_ROOT)
    app = create_app(store, artifacts_destination=str(root))
    try:
        with serve(app) as url:
            wire = Wire(url)
            try:
                status, _, body = wire.request(
                    "POST", f"{MLFLOW}/runs/create", json_body={"experiment_id": "0"}
                )
                assert status == 200, body
                run_id = json.loads(body)["run"]["info"]["run_id"]
                status, _, body = wire.request(
                    "POST", f"{MLFLOW}/registered-models/create", json_body={"name": MODEL}
                )
                assert status == 200, body
                yield Env(base, root, canary, db_dir, wire, run_id)
            finally:
                wire.close()
    finally:
        store.close()


# -- checks ----------------------------------------------------------------------


def _assert_refused(
    env: Env,
    before: dict[str, tuple[int, int, int, str]],
    answer: tuple[int, dict[str, str], bytes],
    what: str,
    statuses: tuple[int, ...] = (400, 404),
    code: str | None = None,
) -> None:
    status, headers, body = answer
    # What must hold even for an answer with the wrong status: nothing leaked,
    # nothing outside (or inside) the root touched.
    assert CANARY not in body and PASSWD not in body, (what, body[:300])
    assert env.canary.read_bytes() == CANARY
    after = _snapshot(env.base, env.db_dir)
    assert after == before, f"{what} changed files on disk: {_diff(before, after)}"
    if status not in statuses:
        # pytrace=False: the message says it all, and formatting a traceback for
        # each of the ~1000 expected failures (xfail) would double the runtime.
        pytest.fail(f"{what}: answered {status} {body[:300]!r}", pytrace=False)
    assert headers.get("content-type", "").startswith("application/json"), (what, headers)
    error = json.loads(body)
    assert isinstance(error, dict) and set(error) == {"error_code", "message"}, (what, error)
    assert error["error_code"] in ERROR_CODES, (what, error)
    assert isinstance(error["message"], str), (what, error)
    if code is not None:
        assert error["error_code"] == code, (what, error)


def _diff(
    before: dict[str, tuple[int, int, int, str]], after: dict[str, tuple[int, int, int, str]]
) -> list[str]:
    return sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))


def _wire_path(raw: str) -> str:
    """``raw`` as it can travel in a request target, otherwise verbatim.

    Only what HTTP cannot carry there is percent-encoded: controls, space and
    non-ASCII (http.client and h11 refuse them), and ``?``, which would end the
    path (the query surfaces send it as part of the value). ``%``, ``\\``,
    ``#``, ``;`` and ``..`` go out as written.
    """
    return "".join(
        quote(ch, safe="") if ch == "?" or ord(ch) <= 0x20 or ord(ch) >= 0x7F else ch for ch in raw
    )


def _ids(items: list[Hostile]) -> list[str]:
    return [i.id for i in items]


# -- the artifact proxy and the run-artifact listing ------------------------------


def test_honest_paths_still_work(env: Env) -> None:
    # The control: refusals below come from the checks, not from a broken server.
    name = "honest/dir/ok.txt"
    assert env.wire.request("PUT", f"{PROXY}/{name}", body=b"fine")[0] == 200
    status, _, body = env.wire.request("GET", f"{PROXY}/{name}")
    assert (status, body) == (200, b"fine")
    status, _, body = env.wire.request("GET", f"{PROXY}?path=honest/dir")
    assert json.loads(body) == {"files": [{"path": "ok.txt", "is_dir": False, "file_size": 4}]}
    assert env.wire.request("DELETE", f"{PROXY}/honest")[0] == 200
    assert not (env.root / "honest").exists()


PATH_SURFACES = ("put", "get", "delete", "list", "run-list")


def _proxy_request(env: Env, surface: str, raw: str) -> tuple[int, dict[str, str], bytes]:
    value = quote(raw, safe="")  # the server decodes the query back to ``raw`` exactly
    if surface == "put":
        return env.wire.request("PUT", f"{PROXY}/{_wire_path(raw)}", body=b"pwned")
    if surface == "get":
        return env.wire.request("GET", f"{PROXY}/{_wire_path(raw)}")
    if surface == "delete":
        return env.wire.request("DELETE", f"{PROXY}/{_wire_path(raw)}")
    if surface == "list":
        return env.wire.request("GET", f"{PROXY}?path={value}")
    assert surface == "run-list"
    # Keel serves no such endpoint yet (404 ENDPOINT_NOT_FOUND, as the router
    # answers): these cases hold whoever adds it to the same rules.
    return env.wire.request("GET", f"{MLFLOW}/artifacts/list?run_id={env.run_id}&path={value}")


@pytest.mark.parametrize("surface", PATH_SURFACES)
@pytest.mark.parametrize("item", PROXY_ITEMS, ids=_ids(PROXY_ITEMS))
def test_artifact_paths_are_refused(env: Env, item: Hostile, surface: str) -> None:
    before = _snapshot(env.base, env.db_dir)
    answer = _proxy_request(env, surface, item.raw)
    _assert_refused(env, before, answer, f"{surface} {item.raw!r}")


# -- model-version source ----------------------------------------------------------

SOURCE_FORMS = ("raw", "runs", "proxy", "file")


def _source(env: Env, form: str, raw: str) -> str:
    if form == "raw":
        return raw
    if form == "runs":
        return f"runs:/{env.run_id}/{raw}"
    if form == "proxy":
        return f"mlflow-artifacts:/0/{env.run_id}/artifacts/{raw}"
    assert form == "file"
    return f"file://{raw}"


@pytest.mark.parametrize("form", SOURCE_FORMS)
@pytest.mark.parametrize("item", URI_ITEMS, ids=_ids(URI_ITEMS))
def test_model_version_sources_are_refused(env: Env, item: Hostile, form: str) -> None:
    source = _source(env, form, item.raw)
    request = {"name": MODEL, "source": source, "run_id": env.run_id}
    before = _snapshot(env.base, env.db_dir)
    answer = env.wire.request("POST", f"{MLFLOW}/model-versions/create", json_body=request)
    _assert_refused(env, before, answer, f"source {source!r}", (400,), "INVALID_PARAMETER_VALUE")


# -- experiment artifact_location -------------------------------------------------

LOCATION_FORMS = ("raw", "proxy")


@pytest.mark.parametrize("form", LOCATION_FORMS)
@pytest.mark.parametrize("item", URI_ITEMS, ids=_ids(URI_ITEMS))
def test_experiment_artifact_locations_are_refused(env: Env, item: Hostile, form: str) -> None:
    location = item.raw if form == "raw" else f"mlflow-artifacts:/{item.raw}"
    request = {"name": f"traversal-{form}-{item.id}", "artifact_location": location}
    before = _snapshot(env.base, env.db_dir)
    answer = env.wire.request("POST", f"{MLFLOW}/experiments/create", json_body=request)
    _assert_refused(
        env, before, answer, f"artifact_location {location!r}", (400,), "INVALID_PARAMETER_VALUE"
    )
