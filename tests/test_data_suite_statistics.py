"""Statistical quality of learned suites: fresh samples pass, real changes fail.

A 20-column reference (14 normal columns with varied means and spreads, one
with 10% nulls; three integer columns; three categorical columns with 3-8
levels) of 5,000 rows; new batches of 1,000 rows. All draws are seeded, and
each scenario draws every trial's data in one vectorised call.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from keel.data.suite import Suite, suite_from

MUS = np.array([0, 10, -5, 100, 3, 50, 0.5, -20, 7, 1000, 2, 30, -1, 15], float)
SIGMAS = np.array([1, 2, 0.5, 15, 1, 10, 0.1, 4, 3, 200, 0.7, 5, 2, 6], float)
NUMERIC = [f"num{i}" for i in range(len(MUS))]
PLANS, PLAN_P = ["basic", "pro", "team"], [0.6, 0.3, 0.1]
REGIONS, REGION_P = list("ABCDEFGH"), [0.3, 0.2, 0.15, 0.1, 0.1, 0.05, 0.05, 0.05]
CHANNELS, CHANNEL_P = ["web", "app", "store", "phone"], [0.4, 0.3, 0.2, 0.1]
REF_ROWS, NEW_ROWS, TRIALS = 5_000, 1_000, 200


def draw(rng: np.random.Generator, trials: int, n: int) -> list[pd.DataFrame]:
    """``trials`` frames of ``n`` rows from the reference distribution, drawn at once."""
    shape = (trials, n)
    numbers = rng.normal(MUS, SIGMAS, size=(*shape, len(MUS)))
    numbers[..., 3][rng.random(shape) < 0.1] = np.nan
    age = np.clip(np.round(rng.normal(45, 12, shape)), 18, 95).astype(np.int64)
    visits = rng.poisson(40, shape).astype(np.int64)
    products = rng.binomial(4, 0.4, shape).astype(np.int64)
    plan = np.asarray(PLANS)[rng.choice(3, shape, p=PLAN_P)]
    region = np.asarray(REGIONS)[rng.choice(8, shape, p=REGION_P)]
    channel = np.asarray(CHANNELS)[rng.choice(4, shape, p=CHANNEL_P)]
    frames = []
    for t in range(trials):
        columns: dict[str, np.ndarray] = {name: numbers[t, :, i] for i, name in enumerate(NUMERIC)}
        columns |= {"age": age[t], "visits": visits[t], "products": products[t]}
        columns |= {"plan": plan[t], "region": region[t], "channel": channel[t]}
        frames.append(pd.DataFrame(columns))
    return frames


@pytest.fixture(scope="module")
def suite() -> Suite:
    (reference,) = draw(np.random.default_rng(20240), 1, REF_ROWS)
    return suite_from(reference, name="statistics")


def test_reference_shape(suite: Suite) -> None:
    kinds = {name: rules.kind for name, rules in suite.columns.items()}
    assert len(kinds) == 20
    assert all(kinds[name] == "numeric" for name in NUMERIC)
    assert kinds["age"] == kinds["visits"] == "numeric"  # many distinct values
    assert kinds["products"] == kinds["plan"] == kinds["region"] == "categorical"
    assert "reference" in suite.columns["num3"].checks["nulls"].to_yaml()
    z = suite.reference["z"]
    assert 3.7 < z < 4.1  # Bonferroni over ~100 band checks at alpha = 0.01


def test_fresh_samples_pass(suite: Suite) -> None:
    frames = draw(np.random.default_rng(1), TRIALS, NEW_ROWS)
    reports = [suite.validate(frame) for frame in frames]
    rate = sum(r.passed for r in reports) / len(reports)
    failing = sorted({(f.expectation, f.column) for r in reports for f in r.failures})
    print(f"\nfresh samples: pass rate {rate:.3f} over {len(reports)} trials; failed: {failing}")
    assert rate >= 0.95


def test_half_sigma_shift_fails_and_names_the_column(suite: Suite) -> None:
    frames = draw(np.random.default_rng(2), TRIALS, NEW_ROWS)
    caught = 0
    for t, frame in enumerate(frames):
        i = t % len(NUMERIC)
        column = NUMERIC[i]
        sign = 1 if t % 2 else -1
        frame[column] = frame[column] + sign * 0.5 * SIGMAS[i]
        report = suite.validate(frame)
        failed = {(f.expectation, f.column) for f in report.failures}
        caught += ("quantiles", column) in failed
    rate = caught / len(frames)
    print(f"\n0.5 sigma shift: detected (failing quantiles of that column) in {rate:.3f}")
    assert rate >= 0.95


def test_new_category_always_fails_and_names_it(suite: Suite) -> None:
    frames = draw(np.random.default_rng(3), 60, NEW_ROWS)
    rng = np.random.default_rng(4)
    for t, frame in enumerate(frames):
        column = ("plan", "region", "channel")[t % 3]
        rows = rng.choice(NEW_ROWS, size=1 + t % 4, replace=False)
        frame.loc[rows, column] = "brand-new"
        report = suite.validate(frame)
        (failure,) = [f for f in report.failures if f.expectation == "categories"]
        assert failure.column == column
        assert "'brand-new'" in failure.message
        assert failure.observed == {"new_values": [["brand-new", len(rows)]]}
        assert [e["row"] for e in failure.examples] == sorted(int(r) for r in rows)


def test_category_mix_change_fails(suite: Suite) -> None:
    frames = draw(np.random.default_rng(5), 20, NEW_ROWS)
    rng = np.random.default_rng(6)
    for frame in frames:
        # A 15-point swing from basic to team: a different customer mix.
        frame["plan"] = np.asarray(PLANS)[rng.choice(3, NEW_ROWS, p=[0.45, 0.3, 0.25])]
        failed = {(f.expectation, f.column) for f in suite.validate(frame).failures}
        assert ("shares", "plan") in failed


def test_validation_is_fast(suite: Suite) -> None:
    import time

    frames = draw(np.random.default_rng(7), 50, NEW_ROWS)
    start = time.perf_counter()
    for frame in frames:
        suite.validate(frame)
    per_frame = (time.perf_counter() - start) / len(frames)
    assert per_frame < 0.05, f"{per_frame * 1000:.1f} ms per 1,000 x 20 frame"
