"""Micro-batching: concurrent requests share model calls and still get their own answers."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from keel.serving.batching import MicroBatcher

httpx = pytest.importorskip("httpx")


def _slow_sum(x: Any) -> np.ndarray:
    values = x.to_numpy() if isinstance(x, pd.DataFrame) else x
    if (values < 0).any():
        raise ValueError("negative input")
    time.sleep(0.01)  # a model that takes a while: requests pile up behind it
    return values.sum(axis=1)


def _run(batcher: MicroBatcher, inputs: list[Any]) -> list[Any]:
    async def all_of() -> list[Any]:
        return await asyncio.gather(*(batcher.predict(i) for i in inputs), return_exceptions=True)

    return asyncio.run(all_of())


def test_queued_requests_share_calls_and_keep_their_own_rows() -> None:
    rng = np.random.default_rng(0)
    inputs = [rng.random((int(rng.integers(1, 5)), 3)) for _ in range(40)]
    batcher = MicroBatcher(_slow_sum, ThreadPoolExecutor(1))
    results = _run(batcher, inputs)
    for x, got in zip(inputs, results, strict=True):
        assert got.tolist() == pytest.approx(x.sum(axis=1).tolist())
    assert batcher.calls < 10 and batcher.batched >= 30


def test_shapes_and_columns_are_never_mixed() -> None:
    inputs: list[Any] = [
        np.ones((1, 3)),
        np.ones((2, 4)),
        pd.DataFrame({"a": [1.0], "b": [2.0]}),
        pd.DataFrame({"b": [1.0], "a": [5.0]}),
        np.ones((1, 3)),
    ]
    results = _run(MicroBatcher(_slow_sum, ThreadPoolExecutor(1)), inputs)
    assert [r.tolist() for r in results] == [[3.0], [4.0, 4.0], [3.0], [6.0], [3.0]]


def test_a_bad_input_fails_only_its_own_request() -> None:
    inputs = [np.ones((1, 2)), -np.ones((1, 2)), np.ones((2, 2)) * 2]
    results = _run(MicroBatcher(_slow_sum, ThreadPoolExecutor(1)), [np.ones((1, 2)), *inputs])
    assert results[1].tolist() == [2.0]
    assert isinstance(results[2], ValueError)
    assert results[3].tolist() == [4.0, 4.0]


def test_batches_stay_under_max_rows() -> None:
    seen: list[int] = []

    def record(x: np.ndarray) -> np.ndarray:
        seen.append(len(x))
        time.sleep(0.005)
        return x[:, 0]

    _run(MicroBatcher(record, ThreadPoolExecutor(1), max_rows=10), [np.ones((3, 1))] * 20)
    assert max(seen) <= 10 and sum(seen) == 60


def test_concurrent_http_requests_are_batched(tmp_path: Path) -> None:
    pytest.importorskip("sklearn")
    from sklearn.linear_model import LogisticRegression

    import keel.models
    from keel.serving import ScoringApp, ServedModel
    from live_server import serve

    rng = np.random.default_rng(2)
    x = rng.normal(size=(500, 4))
    model = LogisticRegression().fit(x, (x[:, 0] > 0).astype(int))
    package = keel.models.save(model, tmp_path / "m", training_data=x, onnx=False)
    app = ScoringApp(ServedModel.load(str(package)))

    async def many(base: str) -> list[Any]:
        async with httpx.AsyncClient(base_url=base) as client:
            bodies = [{"instances": x[i : i + 2].tolist()} for i in range(0, 200, 2)]
            return await asyncio.gather(*(client.post("/invocations", json=b) for b in bodies))

    with serve(app) as base:
        responses = asyncio.run(many(base))
    got = [p for r in responses for p in r.json()["predictions"]]
    assert got == model.predict(x[:200]).tolist()
    assert app.batcher.calls < 100  # some of the 100 requests shared a model call
