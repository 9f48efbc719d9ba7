"""Seeded synthetic frames for the data tests: 20 columns of every kind the drift tests judge."""

from __future__ import annotations

import numpy as np
import pandas as pd

LEVELS = np.array(["basic", "pro", "team", "enterprise", "trial"], dtype=object)
SHIFTED = "x0"  # the column a shift is applied to


def frame(rng: np.random.Generator, n: int, *, shift: float = 0.0) -> pd.DataFrame:
    """14 normal columns of varied mean and spread, 2 wide integer columns, a 5-valued
    integer, 2 categorical strings and a boolean; ``shift`` moves ``x0`` by that many σ."""
    cols: dict[str, np.ndarray] = {}
    for i in range(14):
        sigma = 1.0 + i / 4
        cols[f"x{i}"] = rng.normal(10.0 * i, sigma, n) + (shift * sigma if i == 0 else 0.0)
    cols["wide0"] = rng.integers(0, 1_000_000, n)
    cols["wide1"] = rng.poisson(50, n)
    cols["stars"] = rng.integers(1, 6, n)
    cols["plan"] = LEVELS[rng.choice(5, n, p=[0.4, 0.3, 0.15, 0.1, 0.05])]
    cols["region"] = LEVELS[:3][rng.integers(0, 3, n)]
    cols["active"] = rng.random(n) < 0.3
    return pd.DataFrame(cols)
