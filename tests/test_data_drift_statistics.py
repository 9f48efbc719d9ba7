"""The drift verdict's error rates, measured on seeded simulations (issue 6's statistical suite).

No drift: the dataset verdict raises a false alarm in at most 5% of 200 pairs
of 20-column frames at n = 100, 1,000 and 100,000. Drift: a 0.25σ shift in one
column of 20 is found in at least 95% of runs at n = 10,000, and a new category
is always reported. The same holds when the inputs are profiles (sketches).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from data_frames import SHIFTED, frame
from keel.data.drift_report import drift
from keel.data.profiles import profile

TRIALS = 200


def _rate(
    n: int, *, shift: float = 0.0, trials: int = TRIALS, seed: int = 6, sketches: bool = False
):
    rng = np.random.default_rng(seed)
    alarms = found = 0
    for _ in range(trials):
        ref, cur = frame(rng, n), frame(rng, n, shift=shift)
        report = drift(profile(ref), profile(cur)) if sketches else drift(ref, cur)
        alarms += report.drifted
        found += SHIFTED in report.drifted_columns
    return alarms / trials, found / trials


@pytest.mark.slow
@pytest.mark.parametrize("n", [100, 1_000, 100_000])
def test_no_drift_false_alarms_at_most_five_percent(n: int) -> None:
    false_alarms, _ = _rate(n)
    print(f"n={n}: false-alarm rate {false_alarms:.3f} over {TRIALS} pairs")
    assert false_alarms <= 0.05


def test_the_seed_rule_would_fail_the_same_check() -> None:
    # the per-column ks_2samp p < 0.05 rule on the same frames: the reason for all this
    rng = np.random.default_rng(7)
    alarms = 0
    for _ in range(100):
        ref, cur = frame(rng, 1_000), frame(rng, 1_000)
        numeric = [c for c in ref.columns if ref[c].dtype.kind == "f"]
        alarms += any(stats.ks_2samp(ref[c], cur[c]).pvalue < 0.05 for c in numeric)
    assert alarms / 100 > 0.3


@pytest.mark.slow
def test_quarter_sigma_shift_in_one_of_twenty_columns_is_found_at_ten_thousand() -> None:
    alarms, found = _rate(10_000, shift=0.25)
    print(f"n=10,000, 0.25σ shift: dataset verdict {alarms:.3f}, column found {found:.3f}")
    assert found >= 0.95
    assert alarms >= 0.95


@pytest.mark.slow
def test_profiles_keep_the_false_alarm_rate_and_find_the_shift() -> None:
    false_alarms, _ = _rate(1_000, sketches=True, seed=8)
    _, found = _rate(10_000, shift=0.25, trials=100, sketches=True, seed=9)
    print(f"profiles: false alarms {false_alarms:.3f} at n=1,000; 0.25σ found {found:.3f}")
    assert false_alarms <= 0.05
    assert found >= 0.95


@pytest.mark.parametrize("n", [100, 1_000, 100_000])
def test_a_new_category_is_always_reported(n: int) -> None:
    rng = np.random.default_rng(n)
    for trial in range(20 if n < 100_000 else 5):
        ref, cur = frame(rng, n), frame(rng, n)
        rows = rng.choice(n, size=1 + trial % 3, replace=False)
        cur.loc[rows, "plan"] = "platinum"
        for report in (drift(ref, cur), drift(profile(ref), profile(cur))):
            assert report.new_categories == {"plan": [("platinum", len(rows))]}
            assert "platinum" in report.summary()
