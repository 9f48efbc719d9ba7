"""Fuzzing the server against its own ``/openapi.json``: no request makes it answer 5xx.

A 5xx is a promise that the server, not the client, is at fault, and the MLflow
client retries 5xx answers, so a client mistake answered with 500 can repeat a
write. Every operation in the document is fuzzed with schemathesis (its
examples, coverage and fuzzing phases; valid and invalid bodies, queries and
path parameters) over a real app on a SQLite file with the registry and the
artifact proxy on. Only ``not_a_server_error`` is checked: the document's
response schemas are deliberately loose (MLflow's JSON), so conformance would
test the document, not the server.

Random identifiers only ever reach the "does not exist" branch, so in every
other case the generated ``run_id``, ``experiment_id``, ``name``, ``version``
and ``model_id`` values are swapped for ones that exist: the other fuzzed
fields then reach the handlers' and the stores' real work.

The run is derandomized (same cases on every CI run) and bounded by
MAX_EXAMPLES per operation.
"""

from __future__ import annotations

import contextlib
import itertools
import traceback
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")
pytest.importorskip("fastapi")

from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402

from keel.entities import RunTag  # noqa: E402
from keel.errors import KeelError  # noqa: E402
from keel.server import create_app  # noqa: E402
from keel.server.config import PROXY_ARTIFACT_ROOT  # noqa: E402
from keel.store.sql.registry import SqlRegistryStore  # noqa: E402
from keel.store.sql.store import SqlTrackingStore  # noqa: E402

# ~60 operations × (MAX_EXAMPLES + the coverage phase's cases): about a minute
# on a busy two-core machine.
MAX_EXAMPLES = 25
MODEL = "fuzz-model"

# Answers that are 5xx on purpose, as MLflow's server gives them: the artifact
# proxy has neither multipart uploads nor presigned downloads, and says so with
# 501 NOT_IMPLEMENTED, which the MLflow client reads as "use the plain PUT/GET".
DELIBERATE_501 = ("/mpu/create/", "/mpu/complete/", "/mpu/abort/", "/presigned/")

ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]


@dataclass
class Fuzzed:
    """The app under test, what exists in its database, and the server's last tracebacks."""

    app: ASGIApp
    tracking: SqlTrackingStore
    registry: SqlRegistryStore
    seeds: dict[str, str]
    tracebacks: list[str]
    cases: Iterator[int] = field(default_factory=itertools.count)

    def ensure_seeds(self) -> None:
        """Recreate the registered model a fuzzed delete or rename took away."""
        with contextlib.suppress(KeelError):
            self.registry.get_model_version(MODEL, 1)
            return
        with contextlib.suppress(KeelError):
            self.registry.create_registered_model(MODEL)
        with contextlib.suppress(KeelError):
            self.registry.create_model_version(MODEL, "runs:/x/model", self.seeds["run_id"])


def _recording(app: ASGIApp, tracebacks: list[str]) -> ASGIApp:
    """``app``, keeping the traceback of any exception it lets out.

    Starlette answers 500 for an unhandled exception and then re-raises it to
    the server, which logs it; here the "server log" is this list, so a 5xx
    failure can show where it came from.
    """

    async def wrapped(scope: Any, receive: Any, send: Any) -> None:
        try:
            await app(scope, receive, send)
        except Exception:
            tracebacks.append(traceback.format_exc())

    return wrapped


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzed]:
    root = tmp_path_factory.mktemp("schemathesis")
    # As `keel server --artifacts-destination` opens its store: proxied artifact locations.
    tracking = SqlTrackingStore(f"sqlite:///{root / 'keel.db'}", PROXY_ARTIFACT_ROOT)
    registry = SqlRegistryStore.from_tracking_store(tracking)
    experiment_id = tracking.create_experiment("fuzz")
    run = tracking.create_run(experiment_id, "fuzz", 0, [RunTag("t", "v")], "fuzz-run")
    seeds = {"experiment_id": experiment_id, "run_id": run.info.run_id, "version": "1"}
    create_logged_model = getattr(tracking, "create_logged_model", None)
    if create_logged_model is not None:  # MLflow 3 logged models, where the store has them
        seeds["model_id"] = create_logged_model(experiment_id, "fuzz-logged").model_id
    tracebacks: list[str] = []
    app = create_app(
        tracking,
        registry,
        artifacts_destination=str(root / "destination"),
        max_artifact_bytes=1024 * 1024,
        allowed_hosts=IN_PROCESS_HOSTS,
    )
    fuzzed = Fuzzed(_recording(app, tracebacks), tracking, registry, seeds, tracebacks)
    fuzzed.ensure_seeds()
    try:
        yield fuzzed
    finally:
        tracking.close()


# In-process ASGI clients send ``Host: testserver`` (or localhost).
IN_PROCESS_HOSTS = frozenset({"testserver", "localhost"})


def _document() -> Any:
    """The schema, read from an app like the fuzzed one but over an in-memory database.

    Loaded at import so that each operation is its own test item (the lazy,
    fixture-based loader does not work with pytest 9); the requests go to the
    fixture's app, built per run on a real file.
    """
    store = SqlTrackingStore("sqlite:///:memory:", PROXY_ARTIFACT_ROOT)
    app = create_app(
        store, artifacts_destination="unused-destination", allowed_hosts=IN_PROCESS_HOSTS
    )
    try:
        return schemathesis.openapi.from_asgi("/openapi.json", app)
    finally:
        store.close()


schema = _document()


def _swap_in_seeds(values: Any, seeds: dict[str, str]) -> None:
    """Replace the identifier fields with ones that exist."""
    if not isinstance(values, MutableMapping):
        return
    for key in list(values):
        seed = MODEL if key == "name" else seeds.get("run_id" if key == "run_uuid" else key)
        if seed is not None:
            values[key] = seed


def _deliberate(case: Any, response: Any) -> bool:
    return response.status_code == 501 and any(p in case.operation.path for p in DELIBERATE_501)


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,  # a busy CI machine is slow, not wrong
    derandomize=True,
    database=None,  # no example database: CI must not depend on earlier runs
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_no_request_makes_the_server_answer_5xx(case: Any, fuzzed: Fuzzed) -> None:
    fuzzed.ensure_seeds()
    # Every other case, not a choice by value: the coverage phase repeats values
    # ("", "null"), which a value-based choice would never swap. The order of
    # cases is fixed (derandomized), so the choice is too.
    if next(fuzzed.cases) % 2 == 0:
        for values in (case.body, case.query, case.path_parameters):
            _swap_in_seeds(values, fuzzed.seeds)
    fuzzed.tracebacks.clear()
    response = case.call(app=fuzzed.app)
    if _deliberate(case, response):
        return
    try:
        case.validate_response(
            response, checks=[not_a_server_error], transport_kwargs={"app": fuzzed.app}
        )
    except Exception as failure:
        server_log = "\n".join(fuzzed.tracebacks) or "(no exception escaped the app)"
        raise AssertionError(
            f"{case.operation.method.upper()} {case.operation.path} answered "
            f"{response.status_code}: {response.text[:500]}\n"
            f"request: {case.as_curl_command()}\nserver traceback:\n{server_log}"
        ) from failure
