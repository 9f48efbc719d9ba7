"""Root pytest configuration: every test and doctest leaves Keel's process state clean."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import settings

import keel
from keel.store import clear_store_cache
from keel.tracking import fluent, writer

collect_ignore = ["src/keel/store/sql/migrations"]

# CI replays the same examples every run, so a submission lands or fails on its
# own merits; locally, every run explores new ones.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture(autouse=True, scope="session")
def _private_verified_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    # Records of verified packages go to a throwaway directory, not the user's
    # ~/.cache/keel; tests that study the cache point it elsewhere themselves.
    saved = os.environ.get("KEEL_CACHE_DIR")
    os.environ["KEEL_CACHE_DIR"] = str(tmp_path_factory.mktemp("keel-cache"))
    yield
    if saved is None:
        os.environ.pop("KEEL_CACHE_DIR", None)
    else:
        os.environ["KEEL_CACHE_DIR"] = saved


@pytest.fixture(autouse=True)
def _reset_keel_state() -> Iterator[None]:
    yield
    while keel.active_run():
        keel.end_run()
    writer.close_all()
    keel.set_tracking_uri(None)
    fluent._active_experiment_id = None
    fluent._clients.clear()
    clear_store_cache()
    # mlflow.set_experiment (the server's tests drive the mlflow client) exports the
    # experiment id, which Keel's fluent API would then read as MLFLOW_EXPERIMENT_ID.
    for var in ("MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"):
        os.environ.pop(var, None)
