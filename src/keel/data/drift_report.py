"""Drift between a reference dataset and a current one, column by column, with a verdict.

How a column is judged (the report repeats this for every column):

* **Numbers** (more than ``CATEGORICAL_MAX`` distinct values in the reference):
  the two-sample Kolmogorov–Smirnov statistic D gives a p-value; the
  Wasserstein distance divided by the reference's standard deviation gives the
  size of the change in standard deviations.
* **Categories** (strings, booleans, integers with few values): a chi-square
  test of homogeneity gives the p-value (categories with fewer than
  ``POOL_BELOW`` rows in both samples are pooled, so the test stays valid); the
  Jensen–Shannon distance (base 2, 0 = identical, 1 = disjoint) is the size.
  Categories never seen in the reference are always listed.
* **Missing values**: when either side has nulls, a two-proportion z-test on
  the null rate, whose size is the change of the null fraction.

The p-values of every test across all columns are corrected together with
Benjamini–Hochberg at false-discovery rate ``fdr`` (default 0.01), so twenty
unchanged columns do not raise an alarm one time in three as a per-column
p < 0.05 rule does. Then the sample size decides what counts as drift:

* **Small samples** (effective size n·m/(n+m) below ``LARGE_SAMPLE``): a
  column drifts when its corrected p-value is at most ``fdr``. Distances are
  too noisy here to be thresholds of their own.
* **Large samples**: every test becomes significant for changes nobody cares
  about (a 0.02σ shift has p ≈ 1e-6 at 100,000 rows), so a column drifts only
  when it is also significant *and* the change is material: Wasserstein/σ ≥ 0.1,
  Jensen–Shannon ≥ 0.1, or a null fraction that moved by ≥ 0.02. Each distance
  threshold is raised to the distance's own noise level where that is higher
  (its 99.9th percentile between two samples of this size from the same data:
  ``3.4/√n_eff`` for Wasserstein/σ, ``√(χ²₀.₉₉₉(k−1) / (8 ln2 · n_eff))`` for
  Jensen–Shannon over k categories), which matters for columns with hundreds
  of categories.

The dataset drifts when any column does. Timestamps are skipped (they move
forward by design), as are identifier-like strings (nearly one value per row).

Profiles work as inputs too (``drift(profile_a, profile_b)``), so monitoring
can compare sketches without raw rows: D and the Wasserstein distance are then
computed from the quantile sketches, and D is reduced by both sketches' rank
error before the p-value is taken, which keeps the false-alarm rate controlled.

>>> import numpy as np, pandas as pd
>>> rng = np.random.default_rng(0)
>>> ref = pd.DataFrame({"x": rng.normal(0, 1, 20_000), "y": rng.normal(0, 1, 20_000)})
>>> cur = pd.DataFrame({"x": rng.normal(0.5, 1, 20_000), "y": rng.normal(0, 1, 20_000)})
>>> report = drift(ref, cur)
>>> report.drifted, [c.column for c in report.columns if c.drifted]
(True, ['x'])
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from scipy import special, stats

from keel.data.frames import DataError, Kind, describe, kind_of, read_table
from keel.data.profiles import ColumnProfile, Profile, as_float64, profile

FDR = 0.01
LARGE_SAMPLE = 5_000
MIN_SHIFT = 0.1  # Wasserstein / σ_reference
MIN_JS = 0.1
MIN_NULL_CHANGE = 0.02
# The 99.9th percentile of Wasserstein/σ between two same-distribution samples is
# about 3.4/√n_eff (simulated for normal data; rounded up for heavier tails).
WASSERSTEIN_NOISE = 4.0
NOISE_QUANTILE = 0.999
CATEGORICAL_MAX = 10
IDENTIFIER_SHARE = 0.5
POOL_BELOW = 10
SKETCH_GRID = 1001
PLOT_BINS = 30


@dataclass
class ColumnDrift:
    """The verdict on one column, with what decided it and why that test was chosen."""

    column: str
    kind: str
    method: str
    reason: str
    drifted: bool = False
    statistic: float | None = None
    statistic_name: str = ""
    p_value: float | None = None
    p_adjusted: float | None = None
    effect: float | None = None
    effect_name: str = ""
    threshold: float | None = None
    n_reference: int = 0
    n_current: int = 0
    null_reference: float = 0.0
    null_current: float = 0.0
    null_p_value: float | None = None
    null_p_adjusted: float | None = None
    null_drifted: bool = False
    new_categories: list[tuple[str, int]] = field(default_factory=list)
    missing_categories: list[str] = field(default_factory=list)
    plot: dict[str, Any] = field(default_factory=dict)

    @property
    def skipped(self) -> bool:
        return self.method == "skipped"

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["new_categories"] = [[v, n] for v, n in self.new_categories]
        return out


@dataclass
class DriftReport:
    """Per-column drift results and the dataset's verdict."""

    columns: list[ColumnDrift]
    fdr: float
    n_reference: int
    n_current: int
    reference: str = ""
    current: str = ""

    @property
    def drifted(self) -> bool:
        """The dataset verdict: True when any column drifted."""
        return any(c.drifted for c in self.columns)

    @property
    def drifted_columns(self) -> list[str]:
        return [c.column for c in self.columns if c.drifted]

    @property
    def new_categories(self) -> dict[str, list[tuple[str, int]]]:
        """Columns with categories the reference never had, with their counts."""
        return {c.column: c.new_categories for c in self.columns if c.new_categories}

    def __getitem__(self, column: str) -> ColumnDrift:
        for c in self.columns:
            if c.column == column:
                return c
        raise DataError(f"The drift report has no column {column!r}.")

    def summary(self) -> str:
        """One line: the verdict, which columns, and any new categories."""
        tested = [c for c in self.columns if not c.skipped]
        text = (
            f"Drift in {len(self.drifted_columns)} of {len(tested)} columns: "
            + ", ".join(self.drifted_columns)
            if self.drifted
            else f"No drift in {len(tested)} columns"
        )
        if self.new_categories:
            listed = "; ".join(
                f"{col}: {', '.join(v for v, _ in cats[:5])}"
                for col, cats in self.new_categories.items()
            )
            text += f". New categories: {listed}"
        return text + "."

    def to_dict(self) -> dict[str, Any]:
        tested = [c for c in self.columns if not c.skipped]
        return {
            "drifted": self.drifted,
            "summary": self.summary(),
            "drifted_columns": self.drifted_columns,
            "drift_share": len(self.drifted_columns) / len(tested) if tested else 0.0,
            "fdr": self.fdr,
            "reference": {"name": self.reference, "rows": self.n_reference},
            "current": {"name": self.current, "rows": self.n_current},
            "new_categories": {
                k: [[v, n] for v, n in cats] for k, cats in self.new_categories.items()
            },
            "columns": [c.to_dict() for c in self.columns],
        }

    def to_json(self, path: str | Path | None = None) -> str:
        text = json.dumps(_finite(self.to_dict()), indent=1)
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text

    def to_html(self, path: str | Path | None = None, *, title: str = "Drift report") -> str:
        """A self-contained HTML page: verdict, a row per column, overlaid distributions."""
        from keel.data.html import drift_page

        page = drift_page(self, title=title)
        if path is not None:
            Path(path).write_text(page, encoding="utf-8")
        return page


def drift(
    reference: Any,
    current: Any,
    *,
    columns: Sequence[str] | None = None,
    fdr: float = FDR,
    categorical: Sequence[str] = (),
) -> DriftReport:
    """Compare ``current`` with ``reference`` (DataFrames, Arrow tables, files or profiles).

    ``columns`` limits the comparison (and is the way to include timestamps);
    ``categorical`` forces columns to be compared as categories.

    >>> import pandas as pd
    >>> ref = pd.DataFrame({"plan": ["a", "b"] * 500})
    >>> drift(ref, pd.DataFrame({"plan": ["a", "b", "c"] * 300})).new_categories
    {'plan': [('c', 300)]}
    """
    if not 0 < fdr < 1:
        raise DataError(f"fdr must be between 0 and 1, got {fdr!r}.")
    if isinstance(reference, Profile) or isinstance(current, Profile):
        ref_side: _Side = _ProfileSide(profile(reference), _name(reference))
        cur_side: _Side = _ProfileSide(profile(current), _name(current))
    else:
        ref_side = _RawSide(_table(reference), _name(reference))
        cur_side = _RawSide(_table(current), _name(current))
    ref_side.role, cur_side.role = "reference", "current data"
    names = _columns(ref_side, cur_side, columns)
    results = [
        _compare(name, ref_side, cur_side, explicit=columns is not None, forced=name in categorical)
        for name in names
    ]
    _decide(results, fdr)
    return DriftReport(results, fdr, ref_side.rows, cur_side.rows, ref_side.name, cur_side.name)


# -- the two kinds of input -------------------------------------------------------


class _Side:
    name: str
    rows: int
    role: str = ""

    def kind(self, column: str) -> Kind:
        raise NotImplementedError

    def numbers(self, column: str) -> _Numbers:
        raise NotImplementedError

    def counts(self, column: str) -> tuple[dict[str, int], int]:
        """Counts per category, and the largest possible error of any count."""
        raise NotImplementedError

    def nulls(self, column: str) -> tuple[int, int]:
        """(nulls, rows)."""
        raise NotImplementedError

    def distinct(self, column: str) -> int:
        raise NotImplementedError

    def names(self) -> list[str]:
        raise NotImplementedError


@dataclass
class _Numbers:
    """A numeric sample as a CDF: exact (sorted values) or from a quantile sketch."""

    support: np.ndarray  # points where the CDF may jump (raw) or a quantile grid (sketch)
    n: int
    std: float
    rank_error: float
    sorted_values: np.ndarray | None = None
    sketch: ColumnProfile | None = None

    def cdf(self, x: np.ndarray) -> np.ndarray:
        if self.sorted_values is not None:
            return np.searchsorted(self.sorted_values, x, side="right") / max(self.n, 1)
        assert self.sketch is not None
        return self.sketch.cdf(x)


class _RawSide(_Side):
    def __init__(self, table: pa.Table, name: str) -> None:
        self.table = table
        self.name = name
        self.rows = table.num_rows
        self._numbers: dict[str, _Numbers] = {}

    def names(self) -> list[str]:
        return list(self.table.column_names)

    def kind(self, column: str) -> Kind:
        return kind_of(self.table.schema.field(column).type)

    def _column(self, column: str) -> pa.Array:
        col = self.table.column(column).combine_chunks()
        if pa.types.is_dictionary(col.type):
            col = col.dictionary_decode()
        return col

    def numbers(self, column: str) -> _Numbers:
        if column not in self._numbers:
            values = as_float64(self._column(column), column)
            values = np.sort(values[np.isfinite(values)])
            std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
            self._numbers[column] = _Numbers(values, len(values), std, 0.0, sorted_values=values)
        return self._numbers[column]

    def counts(self, column: str) -> tuple[dict[str, int], int]:
        col = self._column(column)
        if kind_of(col.type) is Kind.NUMERIC:
            values = as_float64(col, column)
            values = values[~np.isnan(values)]
            uniq, n = np.unique(values, return_counts=True)
            integral = bool(np.all(uniq == np.floor(uniq)))
            labels = [str(int(v)) if integral else repr(float(v)) for v in uniq]
            return dict(zip(labels, (int(c) for c in n), strict=True)), 0
        if pa.types.is_boolean(col.type):
            col = col.cast(pa.string())
        vc = pa.compute.value_counts(col.drop_null())
        return dict(
            zip(
                (str(v) for v in vc.field("values").to_pylist()),
                (int(c) for c in vc.field("counts").to_pylist()),
                strict=True,
            )
        ), 0

    def nulls(self, column: str) -> tuple[int, int]:
        col = self._column(column)
        nulls = col.null_count
        if pa.types.is_floating(col.type):
            nulls += int(pa.compute.sum(pa.compute.is_nan(col.drop_null())).as_py() or 0)
        return nulls, len(col)

    def distinct(self, column: str) -> int:
        if self.kind(column) is Kind.NUMERIC:  # sorted once anyway, and counted faster so
            v = self.numbers(column).sorted_values
            assert v is not None
            return int(np.count_nonzero(v[1:] != v[:-1])) + (len(v) > 0)
        return int(pa.compute.count_distinct(self._column(column)).as_py())


class _ProfileSide(_Side):
    def __init__(self, prof: Profile, name: str) -> None:
        self.profile = prof
        self.name = name or prof.source
        self.rows = prof.rows

    def names(self) -> list[str]:
        return list(self.profile.columns)

    def kind(self, column: str) -> Kind:
        return self.profile[column].kind

    def numbers(self, column: str) -> _Numbers:
        col = self.profile[column]
        ranks = np.linspace(0, 1, SKETCH_GRID)
        grid = np.unique(np.asarray(col.quantiles(ranks.tolist()), dtype=np.float64))
        exact = col.kll is None or not col.kll.is_estimation_mode()
        error = 0.0 if exact else float(col.kll.normalized_rank_error(False))
        return _Numbers(grid, col.n, col.std or 0.0, error, sketch=col)

    def counts(self, column: str) -> tuple[dict[str, int], int]:
        col = self.profile[column]
        return col.counts(), col.frequent_error

    def nulls(self, column: str) -> tuple[int, int]:
        col = self.profile[column]
        return col.nulls, col.count

    def distinct(self, column: str) -> int:
        return self.profile[column].distinct


# -- comparing one column ---------------------------------------------------------


def _compare(name: str, ref: _Side, cur: _Side, *, explicit: bool, forced: bool) -> ColumnDrift:
    kind = ref.kind(name)
    null_r, rows_r = ref.nulls(name)
    null_c, rows_c = cur.nulls(name)
    result = ColumnDrift(
        name,
        kind.value,
        "skipped",
        "",
        n_reference=rows_r - null_r,
        n_current=rows_c - null_c,
        null_reference=null_r / rows_r if rows_r else 0.0,
        null_current=null_c / rows_c if rows_c else 0.0,
    )
    if null_r or null_c:
        result.null_p_value = _two_proportions(null_r, rows_r, null_c, rows_c)
    if result.n_reference == 0 or result.n_current == 0:
        side = "reference" if result.n_reference == 0 else "current data"
        result.reason = f"the {side} has no values in this column"
        return result
    if kind is Kind.OTHER:
        result.reason = "nested or binary values: no distribution test applies"
        return result
    if kind is Kind.DATETIME and not explicit:
        result.reason = (
            "timestamps move forward by design; name the column in columns= to compare it"
        )
        return result
    distinct = ref.distinct(name)
    if kind is Kind.STRING and not forced and distinct > IDENTIFIER_SHARE * result.n_reference:
        result.reason = (
            f"identifier-like: {distinct:,} distinct values in {result.n_reference:,} rows"
        )
        return result
    categorical = (
        forced
        or kind in (Kind.STRING, Kind.BOOLEAN)
        or (kind is Kind.NUMERIC and distinct <= CATEGORICAL_MAX and _integral(ref, name))
    )
    if categorical:
        _compare_categories(result, ref, cur, distinct)
    else:
        _compare_numbers(result, ref.numbers(name), cur.numbers(name))
    return result


def _integral(side: _Side, name: str) -> bool:
    if isinstance(side, _ProfileSide):
        return side.profile[name].integral
    assert isinstance(side, _RawSide)
    return bool(pa.types.is_integer(side.table.schema.field(name).type))


def _compare_numbers(result: ColumnDrift, ref: _Numbers, cur: _Numbers) -> None:
    if ref.sorted_values is not None and cur.sorted_values is not None:
        grid, f_ref, f_cur = _merged_cdfs(ref.sorted_values, cur.sorted_values)
    else:
        grid = np.union1d(ref.support, cur.support)
        f_ref, f_cur = ref.cdf(grid), cur.cdf(grid)
    gap = np.abs(f_ref - f_cur)
    d = float(gap.max()) if len(gap) else 0.0
    # Wasserstein-1 is the area between the CDFs (exact for step functions on the union grid)
    w = float(np.sum(gap[:-1] * np.diff(grid))) if len(grid) > 1 else 0.0
    scale = ref.std if ref.std > 0 else max(abs(float(np.median(ref.support))) * 1e-9, 1e-12)
    n_eff = ref.n * cur.n / (ref.n + cur.n)
    # a sketch's CDF is off by up to its rank error: only the gap beyond that is evidence
    d_evidence = max(0.0, d - ref.rank_error - cur.rank_error)
    result.statistic, result.statistic_name = d, "Kolmogorov–Smirnov D"
    result.p_value = _ks_p(d_evidence, n_eff)
    result.effect, result.effect_name = w / scale, "Wasserstein distance / reference std"
    if n_eff < LARGE_SAMPLE:
        result.method = "ks"
        result.reason = (
            f"numeric column, effective sample {n_eff:,.0f} < {LARGE_SAMPLE:,}: the "
            "Kolmogorov–Smirnov p-value decides (distances are noise at this size)"
        )
    else:
        result.method = "wasserstein"
        result.threshold = max(MIN_SHIFT, WASSERSTEIN_NOISE / math.sqrt(n_eff))
        result.reason = (
            f"numeric column, effective sample {n_eff:,.0f} ≥ {LARGE_SAMPLE:,}: any tiny "
            "shift is significant here, so the shift must also reach "
            f"{result.threshold:.3g} reference standard deviations"
        )
    result.plot = _numeric_plot(ref, cur)


def _merged_cdfs(r: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Both empirical CDFs at every distinct value of either sorted sample.

    Equivalent to evaluating both CDFs on ``union1d(r, c)``, with two searches of
    the distinct values instead of four searches of every value: the searches
    are most of a large comparison's time.
    """
    ur, fr = _distinct_cdf(r)
    uc, fc = _distinct_cdf(c)
    below_r = np.searchsorted(uc, ur, side="left")  # distinct c values < each r value
    upto_c = np.searchsorted(ur, uc, side="right")  # distinct r values <= each c value
    size = len(ur) + len(uc)
    grid, f_ref, f_cur = np.empty(size), np.empty(size), np.empty(size)
    at_r = np.arange(len(ur)) + below_r
    at_c = np.arange(len(uc)) + upto_c
    grid[at_r], grid[at_c] = ur, uc
    # each CDF at the other sample's points: its value at the last own point at or below
    f_ref[at_r] = fr
    f_ref[at_c] = np.concatenate(([0.0], fr))[upto_c]
    f_cur[at_c] = fc
    clipped = np.minimum(below_r, len(uc) - 1)
    at_or_below = below_r + (uc[clipped] == ur) if len(uc) else below_r
    f_cur[at_r] = np.concatenate(([0.0], fc))[at_or_below]
    return grid, f_ref, f_cur


def _distinct_cdf(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct values of a sorted array and the empirical CDF at each."""
    last = np.flatnonzero(np.append(values[1:] != values[:-1], True))
    return values[last], (last + 1) / len(values)


def _compare_categories(result: ColumnDrift, ref: _Side, cur: _Side, distinct: int) -> None:
    name = result.column
    counts_r, err_r = ref.counts(name)
    counts_c, err_c = cur.counts(name)
    result.kind = "categorical" if result.kind == Kind.NUMERIC.value else result.kind
    labels = sorted(set(counts_r) | set(counts_c), key=lambda k: -(counts_r.get(k, 0)))
    r = np.array([counts_r.get(k, 0) for k in labels], dtype=float)
    c = np.array([counts_c.get(k, 0) for k in labels], dtype=float)
    if err_r == 0 and err_c == 0:
        result.new_categories = [
            (k, int(n)) for k, n in zip(labels, c, strict=True) if counts_r.get(k, 0) == 0
        ]
        result.new_categories.sort(key=lambda kv: -kv[1])
        result.missing_categories = [k for k in labels if counts_c.get(k, 0) == 0]
    chi2, dof = _chi2_homogeneity(r, c)
    n_eff = r.sum() * c.sum() / (r.sum() + c.sum())
    result.statistic, result.statistic_name = chi2, f"chi-square ({dof} degrees of freedom)"
    result.p_value = float(stats.chi2.sf(chi2, dof)) if dof > 0 else 1.0
    result.effect = _jensen_shannon(r / r.sum(), c / c.sum())
    result.effect_name = "Jensen–Shannon distance"
    if n_eff < LARGE_SAMPLE:
        result.method = "chi2"
        result.reason = (
            f"categorical column ({distinct} values), effective sample {n_eff:,.0f} < "
            f"{LARGE_SAMPLE:,}: the chi-square p-value decides"
        )
    else:
        result.method = "jensen_shannon"
        # the squared JS distance (bits) of two same-distribution samples is about
        # chi-square(k-1) / (8 ln2 n_eff): its upper quantile is the noise floor
        noise = math.sqrt(stats.chi2.ppf(NOISE_QUANTILE, max(dof, 1)) / (8 * math.log(2) * n_eff))
        result.threshold = max(MIN_JS, noise)
        result.reason = (
            f"categorical column ({distinct} values), effective sample {n_eff:,.0f} ≥ "
            f"{LARGE_SAMPLE:,}: the mix of categories must also move by a Jensen–Shannon "
            f"distance of {result.threshold:.3g}"
        )
    shown = labels[:20]
    result.plot = {
        "type": "bars",
        "labels": shown,
        "reference": (r[: len(shown)] / r.sum()).tolist(),
        "current": (c[: len(shown)] / c.sum()).tolist(),
        "other": [float(r[len(shown) :].sum() / r.sum()), float(c[len(shown) :].sum() / c.sum())],
    }


def _decide(results: list[ColumnDrift], fdr: float) -> None:
    """Benjamini–Hochberg across every test of every column, then each column's rule."""
    tests: list[tuple[ColumnDrift, str, float]] = []
    for r in results:
        if not r.skipped and r.p_value is not None:
            tests.append((r, "values", r.p_value))
        if r.null_p_value is not None:
            tests.append((r, "nulls", r.null_p_value))
    adjusted = _benjamini_hochberg([p for _, _, p in tests])
    for (r, which, _), q in zip(tests, adjusted, strict=True):
        if which == "nulls":
            r.null_p_adjusted = q
            n_eff = _harmonic(r.n_reference, r.n_current)
            material = n_eff < LARGE_SAMPLE or (
                abs(r.null_current - r.null_reference) >= MIN_NULL_CHANGE
            )
            r.null_drifted = q <= fdr and material
        else:
            r.p_adjusted = q
            material = r.threshold is None or (r.effect or 0.0) >= r.threshold
            r.drifted = q <= fdr and material
    for r in results:
        r.drifted = r.drifted or r.null_drifted


def _benjamini_hochberg(p: Sequence[float]) -> list[float]:
    """BH-adjusted p-values (the smallest FDR at which each test would be rejected)."""
    m = len(p)
    if not m:
        return []
    order = np.argsort(p)
    scaled = np.asarray(p, dtype=float)[order] * m / np.arange(1, m + 1)
    adjusted = np.minimum.accumulate(scaled[::-1])[::-1].clip(max=1.0)
    out = np.empty(m)
    out[order] = adjusted
    return [float(v) for v in out]


def _ks_p(d: float, n_eff: float) -> float:
    if d <= 0:
        return 1.0
    if n_eff >= LARGE_SAMPLE:
        # the limiting (Kolmogorov) law: accurate at this size, and scipy's exact
        # tail takes up to half a second per column here
        return float(special.kolmogorov(math.sqrt(n_eff) * d))
    # the one-sample law at the effective size approximates the two-sample one
    # closely, and better than the limiting law at small sizes
    return float(stats.kstwo.sf(d, max(1, round(n_eff))))


def _chi2_homogeneity(r: np.ndarray, c: np.ndarray) -> tuple[float, int]:
    rare = (r + c) < POOL_BELOW
    if rare.any() and (~rare).any():
        r = np.append(r[~rare], r[rare].sum())
        c = np.append(c[~rare], c[rare].sum())
    keep = (r + c) > 0
    r, c = r[keep], c[keep]
    if len(r) < 2:
        return 0.0, 0
    table = np.vstack([r, c])
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0) / table.sum()
    return float(((table - expected) ** 2 / expected).sum()), len(r) - 1


def _jensen_shannon(p: np.ndarray, q: np.ndarray) -> float:
    m = (p + q) / 2

    def kl(a: np.ndarray) -> float:
        mask = a > 0
        return float(np.sum(a[mask] * np.log2(a[mask] / m[mask])))

    return math.sqrt(max(0.0, (kl(p) + kl(q)) / 2))


def _two_proportions(x1: int, n1: int, x2: int, n2: int) -> float:
    if not n1 or not n2:
        return 1.0
    pooled = (x1 + x2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return 1.0
    z = abs(x1 / n1 - x2 / n2) / se
    return float(2 * stats.norm.sf(z))


def _harmonic(n: int, m: int) -> float:
    return n * m / (n + m) if n + m else 0.0


def _numeric_plot(ref: _Numbers, cur: _Numbers) -> dict[str, Any]:
    """Shared bins over the bulk of both samples, and each side's share per bin."""
    lo_hi = np.concatenate([_bulk(ref), _bulk(cur)])
    lo, hi = float(lo_hi.min()), float(lo_hi.max())
    if hi <= lo:
        hi = lo + 1.0
    edges = np.linspace(lo, hi, PLOT_BINS + 1)
    shares = []
    for side in (ref, cur):
        cdf = side.cdf(edges)
        share = np.diff(cdf)
        share[0] += cdf[0]  # everything below the first edge goes in the first bin
        share[-1] += 1.0 - cdf[-1]
        shares.append(share.tolist())
    return {
        "type": "histogram",
        "edges": edges.tolist(),
        "reference": shares[0],
        "current": shares[1],
    }


def _bulk(side: _Numbers) -> np.ndarray:
    if side.sorted_values is not None and len(side.sorted_values):
        v = side.sorted_values
        return np.array([v[int(0.005 * (len(v) - 1))], v[int(0.995 * (len(v) - 1))]])
    if side.sketch is not None:
        return np.asarray(side.sketch.quantiles([0.005, 0.995]), dtype=float)
    return np.array([0.0, 1.0])


# -- inputs -----------------------------------------------------------------------


def _table(data: Any) -> pa.Table:
    table = read_table(data)
    if table.num_rows == 0:
        raise DataError(f"{describe(data).capitalize()} has no rows: there is nothing to compare.")
    return table


def _name(data: Any) -> str:
    if isinstance(data, str | Path):
        return str(data)
    if isinstance(data, Profile):
        return data.source
    return ""


def _columns(ref: _Side, cur: _Side, wanted: Sequence[str] | None) -> list[str]:
    ref_names, cur_names = ref.names(), cur.names()
    if wanted is not None:
        for side, names in ((ref, ref_names), (cur, cur_names)):
            missing = [c for c in wanted if c not in names]
            if missing:
                raise DataError(f"Column(s) {missing} are not in {_label(side)}; it has {names}.")
        return list(wanted)
    missing = [c for c in ref_names if c not in cur_names]
    extra = [c for c in cur_names if c not in ref_names]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing from {_label(cur)}: {missing}")
        if extra:
            parts.append(f"not in {_label(ref)}: {extra}")
        raise DataError(
            "The reference and current data have different columns ("
            + "; ".join(parts)
            + "). Pass columns=[...] to compare the shared ones."
        )
    for name in ref_names:
        k_ref, k_cur = ref.kind(name), cur.kind(name)
        if k_ref is not k_cur:
            raise DataError(
                f"Column {name!r} holds {k_ref.value} values in {_label(ref)} but "
                f"{k_cur.value} values in {_label(cur)}; convert one side so they match."
            )
    return ref_names


def _label(side: _Side) -> str:
    return f"the {side.role} ({side.name})" if side.name else f"the {side.role}"


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity: such values become null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
