"""The bad-input battery: 10,000 generated requests, never a 5xx, every refusal coded.

Requests are generated from a seed: valid bodies with values swapped for wrong
types, nulls, NaN and infinities, huge numbers, nested structures, unknown
columns and categories; bodies cut off mid-way, deeply nested, non-UTF-8 or
random bytes; wrong content types; CSV with broken quoting; oversized bodies.
The server's resident memory must stay flat over the run.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")

from keel.serving import ScoringApp, ServedModel  # noqa: E402
from live_server import serve  # noqa: E402
from test_serving import PLANS, package  # noqa: E402, F401  (the fixture, shared)

REQUESTS = 10_000
CODES = {
    "MALFORMED_JSON",
    "MALFORMED_CSV",
    "EMPTY_INPUT",
    "BAD_FORMAT",
    "UNSUPPORTED_CONTENT_TYPE",
    "PAYLOAD_TOO_LARGE",
    "INVALID_INPUT",
}
COLUMNS = ["age", "spend", "plan"]
LIMIT = 64 * 1024


def _value(rng: random.Random, depth: int = 0) -> Any:
    choice = rng.randrange(14)
    if choice == 0:
        return None
    if choice == 1:
        return rng.choice([float("nan"), float("inf"), -float("inf")])
    if choice == 2:
        return rng.choice([1e308, -1e308, 10**30, -(10**19), 2**63])
    if choice == 3:
        return rng.choice(["", "abc", "41", "1e3", "NaN", "null", "\u00e9\u4e2d", "\x00"])
    if choice == 4:
        return rng.choice([True, False])
    if choice == 5 and depth < 4:
        return [_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    if choice == 6 and depth < 4:
        return {rng.choice([*COLUMNS, "x"]): _value(rng, depth + 1)}
    if choice == 7:
        return rng.choice([*PLANS, "gold", "PRO", " basic"])
    return rng.uniform(-100, 200)


def _row(rng: random.Random) -> dict[str, Any]:
    row = {"age": rng.uniform(20, 60), "spend": rng.uniform(0, 100), "plan": rng.choice(PLANS)}
    for _ in range(rng.randrange(3)):
        action = rng.randrange(4)
        column = rng.choice(COLUMNS)
        if action == 0:
            row.pop(column, None)
        elif action == 1:
            row[rng.choice(["zip", "", "age ", "0"])] = _value(rng)
        else:
            row[column] = _value(rng)
    return row


def _json_body(rng: random.Random) -> bytes:
    rows = [_row(rng) for _ in range(rng.randrange(0, 6))]
    shape = rng.randrange(7)
    if shape == 0:
        doc: Any = {"dataframe_records": rows}
    elif shape == 1:
        columns = sorted({k for r in rows for k in r}) or COLUMNS
        data = [[r.get(c) for c in columns] for r in rows]
        if data and rng.random() < 0.2:
            data[0] = data[0][:-1]  # a short row
        doc = {"dataframe_split": {"columns": columns, "data": data}}
    elif shape == 2:
        doc = {"instances": rows if rng.random() < 0.5 else [list(r.values()) for r in rows]}
    elif shape == 3:
        doc = {"inputs": {c: [r.get(c) for r in rows] for c in COLUMNS}}
    elif shape == 4:
        doc = {rng.choice(["instances", "inputs", "data", "dataframe_split"]): _value(rng)}
    elif shape == 5:
        doc = {"instances": rows, "inputs": rows}
    else:
        doc = _value(rng)
    text = json.dumps(doc)  # NaN and Infinity as Python writes them: MLflow's parser accepts them
    mutate = rng.randrange(10)
    if mutate == 0 and len(text) > 2:
        text = text[: rng.randrange(1, len(text))]
    elif mutate == 1:
        text = "[" * rng.randrange(100, 3000) + text
    return text.encode()


def _other_body(rng: random.Random) -> tuple[bytes, str]:
    kind = rng.randrange(6)
    if kind == 0:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200))), "application/json"
    if kind == 1:
        return b"\xff\xfe" + _json_body(rng), "application/json"
    if kind == 2:
        rows = "\n".join(",".join(str(_value(rng)) for _ in COLUMNS) for _ in range(3))
        header = ",".join(rng.sample([*COLUMNS, "zip"], 3))
        return f"{header}\n{rows}".encode(), "text/csv"
    if kind == 3:
        return b'age,spend,plan\n"1,2,3\n', "text/csv"
    if kind == 4:
        return b'{"instances": [' + b"1," * (LIMIT // 2) + b"1]}", "application/json"
    return _json_body(rng), rng.choice(["text/plain", "application/xml", "multipart/form-data", ""])


def _requests(seed: int, count: int) -> Iterator[tuple[bytes, str]]:
    rng = random.Random(seed)
    for _ in range(count):
        if rng.random() < 0.8:
            yield _json_body(rng), "application/json"
        else:
            yield _other_body(rng)


def _rss_mb() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * 4096 / 2**20


@pytest.mark.slow
def test_ten_thousand_bad_requests_never_get_a_5xx(package: Path) -> None:  # noqa: F811
    served = ServedModel.load(str(package))
    statuses: dict[int, int] = {}
    codes: dict[str, int] = {}
    with (
        serve(ScoringApp(served, max_body_bytes=LIMIT)) as base,
        httpx.Client(base_url=base) as client,
    ):

        def run(seed: int, count: int, check: Callable[[httpx.Response], None]) -> None:
            for body, content_type in _requests(seed, count):
                response = client.post(
                    "/invocations", content=body, headers={"content-type": content_type}
                )
                check(response)

        def check(response: httpx.Response) -> None:
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            assert response.status_code < 500, response.text
            payload = response.json()
            if response.status_code == 200:
                assert isinstance(payload["predictions"], list) and payload["predictions"]
            else:
                assert payload["error_code"] in CODES, payload
                codes[payload["error_code"]] = codes.get(payload["error_code"], 0) + 1

        run(1, 1_000, check)  # warm-up: imports, caches, the first allocations
        before = _rss_mb()
        run(2, REQUESTS - 1_000, check)
        after = _rss_mb()
    print(f"statuses {dict(sorted(statuses.items()))}; codes {dict(sorted(codes.items()))}")
    print(f"RSS {before:.0f} MB -> {after:.0f} MB over {REQUESTS - 1_000} requests")
    assert sum(statuses.values()) == REQUESTS
    assert (
        len(codes) >= 6 and statuses.get(200, 0) > 100
    )  # the battery reaches every refusal, and valid rows
    assert after - before < 40


@pytest.mark.parametrize("policy", ["warn", "off"])
def test_without_rejection_bad_input_is_still_never_a_5xx(package: Path, policy: str) -> None:  # noqa: F811
    served = ServedModel.load(str(package))
    seen: set[int] = set()
    with (
        serve(ScoringApp(served, validation=policy, max_body_bytes=LIMIT)) as base,
        httpx.Client(base_url=base) as client,
    ):
        for body, content_type in _requests(3, 2_000):
            response = client.post(
                "/invocations", content=body, headers={"content-type": content_type}
            )
            seen.add(response.status_code)
            assert response.status_code < 500, response.text
            if response.status_code != 200:
                assert response.json()["error_code"] in CODES | {"PREDICTION_FAILED"}
    assert 200 in seen and 422 in seen  # the model itself refused some inputs: 422, not 500
