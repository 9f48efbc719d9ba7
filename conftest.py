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
