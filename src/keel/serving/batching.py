"""Micro-batching: requests that arrive while the model is busy are scored in one call.

No timer and no batch size to tune: the first request is scored at once; the
requests that arrive while it runs wait for it (they would wait anyway, one
model thread is busy) and are then scored together, up to ``max_rows`` rows.
At low load every request is scored alone, as fast as it can be; under load,
per-call overhead (scikit-learn's input validation, numpy dispatch) is paid
once per batch instead of once per request.

Inputs of different shapes or columns are not mixed: they go in separate calls.
If a combined call fails, each input of that batch is scored alone, so one
input the model refuses fails only its own request.

>>> import asyncio, numpy as np
>>> from concurrent.futures import ThreadPoolExecutor
>>> batcher = MicroBatcher(lambda x: x.sum(axis=1), ThreadPoolExecutor(1))
>>> async def two():
...     return await asyncio.gather(
...         batcher.predict(np.ones((1, 2))), batcher.predict(np.ones((2, 2)))
...     )
>>> [p.tolist() for p in asyncio.run(two())]
[[2.0], [2.0, 2.0]]
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

import numpy as np
import pandas as pd

MAX_ROWS = 4_096


class MicroBatcher:
    """Scores inputs through ``predict`` on ``executor``, batching those that queue up."""

    def __init__(self, predict: Callable[[Any], Any], executor: Executor, max_rows: int = MAX_ROWS):
        self._predict = predict
        self._executor = executor
        self.max_rows = max_rows
        self._waiting: list[tuple[Any, asyncio.Future[Any]]] = []
        self._running = False
        self._task: asyncio.Task[None] | None = None
        self.calls = 0  # model calls made, for /metrics and tests
        self.batched = 0  # requests that shared a call with another

    async def predict(self, model_input: Any) -> Any:
        """The model's predictions for ``model_input`` (alone, or as part of a batch)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._waiting.append((model_input, future))
        if not self._running:
            self._running = True
            # kept: the event loop holds tasks only weakly
            self._task = loop.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._waiting:
                batch = self._take()
                await self._score(loop, batch)
        finally:
            self._running = False

    def _take(self) -> list[tuple[Any, asyncio.Future[Any]]]:
        if len(self._waiting) == 1:  # the usual case at low load: nothing to compare
            alone, self._waiting = self._waiting, []
            return alone
        first_input, _ = self._waiting[0]
        key = _shape_key(first_input)
        rows = 0
        batch: list[tuple[Any, asyncio.Future[Any]]] = []
        rest: list[tuple[Any, asyncio.Future[Any]]] = []
        for item in self._waiting:
            n = len(item[0])
            if (
                key is not None
                and _shape_key(item[0]) == key
                and (not batch or rows + n <= self.max_rows)
            ):
                batch.append(item)
                rows += n
            elif not batch:
                batch.append(item)
            else:
                rest.append(item)
        self._waiting = rest
        return batch

    async def _score(
        self, loop: asyncio.AbstractEventLoop, batch: list[tuple[Any, asyncio.Future[Any]]]
    ) -> None:
        self.calls += 1
        if len(batch) == 1:
            model_input, future = batch[0]
            try:
                result = await loop.run_in_executor(self._executor, self._predict, model_input)
            except Exception as exc:
                _settle(future, exc=exc)
            else:
                _settle(future, result=result)
            return
        self.batched += len(batch)
        inputs = [i for i, _ in batch]
        try:
            combined = _concat(inputs)
            result = await loop.run_in_executor(self._executor, self._predict, combined)
            parts = _split(result, [len(i) for i in inputs])
        except Exception:
            for item in batch:  # alone, so a bad input fails only its own request
                await self._score(loop, [item])
            return
        for (_, future), part in zip(batch, parts, strict=True):
            _settle(future, result=part)


def _shape_key(model_input: Any) -> Any:
    if isinstance(model_input, np.ndarray):
        return ("array", model_input.dtype.str, model_input.shape[1:])
    if isinstance(model_input, pd.DataFrame):
        return ("frame", tuple(model_input.columns), tuple(model_input.dtypes))
    return None  # anything else is scored alone


def _concat(inputs: list[Any]) -> Any:
    if isinstance(inputs[0], np.ndarray):
        return np.concatenate(inputs)
    return pd.concat(inputs, ignore_index=True)


def _split(result: Any, lengths: list[int]) -> list[Any]:
    values = result if isinstance(result, np.ndarray) else np.asarray(result)
    if len(values) != sum(lengths):
        raise ValueError("the model returned a different number of rows than it was given")
    bounds = np.cumsum(lengths)[:-1]
    return np.split(values, bounds)


def _settle(
    future: asyncio.Future[Any], *, result: Any = None, exc: BaseException | None = None
) -> None:
    if future.done():  # the request went away
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)
