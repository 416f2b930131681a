"""Drift statistics with NumPy and SciPy: is this batch of inputs still like the data the model learned from?

Each function compares a *reference* sample (the training data) with a *current* sample (one month of
traffic) of one feature:

- :func:`ks_test`: Kolmogorov-Smirnov, the largest gap between the two empirical CDFs (numeric features).
- :func:`wasserstein`: the area between the two CDFs, in the feature's units (numeric features).
- :func:`chi2_test`: chi-squared test of homogeneity on the category counts (categorical features).
- :func:`jensen_shannon`: the Jensen-Shannon distance between the category shares (categorical features).
- :func:`psi`: Population Stability Index over bins or categories (both kinds).

:func:`drift_table` runs them on every column of a batch and decides per column; :func:`drift_by_month`
does that for a sequence of batches. Tests assume independent rows, which hourly rows are not:
:func:`daily` turns hours into one row per day, and :func:`holm` corrects p-values for testing many
columns and months at once. NaNs are dropped (their share is reported); empty or all-NaN samples,
categories the reference never had, and mismatched columns raise :class:`DriftInputError`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

# Rules of thumb from credit-scorecard monitoring (e.g. N. Siddiqi, "Credit Risk Scorecards", Wiley 2006);
# Yurdakul & Naranjo, "Statistical properties of the population stability index" (J. Risk Model Validation,
# 2020) note they are used without reference to error rates: read them as conventions, not as tests.
PSI_STABLE, PSI_SIGNIFICANT = 0.1, 0.25
PSI_EPS = 1e-4  # an empty bin's share, so log(0) never happens (Evidently also uses 1e-4 unless a bin is smaller)
NUMERIC_TESTS = ("wasserstein", "ks")
CATEGORICAL_TESTS = ("chi2", "jensenshannon")


class DriftInputError(ValueError):
    """A sample or table that the drift statistics cannot compare; the message says what to fix."""


@dataclass(frozen=True)
class TestResult:
    """A test statistic with its p-value (and degrees of freedom for chi-squared)."""

    statistic: float
    p_value: float
    dof: int | None = None


def _numeric(values, name: str) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype="float64").ravel()
    except (TypeError, ValueError):
        raise DriftInputError(f"{name}: values must be numbers; treat the column as categorical "
                              f"(drift_table(..., categorical=[...])) if they are labels") from None
    if arr.size == 0:
        raise DriftInputError(f"{name}: the sample is empty; compare batches that have rows")
    arr = arr[~np.isnan(arr)]
    if arr.size == 0:
        raise DriftInputError(f"{name}: every value is NaN; this is a data-quality failure upstream, "
                              f"not drift: fix the feed before measuring drift")
    return arr


def _labels(values, name: str) -> pd.Series:
    """How often each category occurs (missing values left out)."""
    series = values if isinstance(values, pd.Series) else pd.Series(np.asarray(values, dtype=object).ravel())
    if series.empty:
        raise DriftInputError(f"{name}: the sample is empty; compare batches that have rows")
    counts = series.value_counts(dropna=True, sort=False)
    counts = counts[counts > 0]
    if counts.empty:
        raise DriftInputError(f"{name}: every value is missing; this is a data-quality failure upstream, "
                              f"not drift: fix the feed before measuring drift")
    return counts


def ks_test(reference, current) -> TestResult:
    """Two-sample Kolmogorov-Smirnov test.

    D is the largest vertical gap between the empirical CDFs F_ref and F_cur, looked at on every observed
    value. Under "same distribution", sqrt(n*m/(n+m)) * D follows Kolmogorov's law; the p-value uses
    SciPy's distribution of D (``kstwo``) with that effective size, as ``ks_2samp(method="asymp")`` does.
    """
    ref, cur = np.sort(_numeric(reference, "reference")), np.sort(_numeric(current, "current"))
    return _ks_sorted(ref, cur)


def _cdf_gaps(ref: np.ndarray, cur: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pooled values in order, and F_ref - F_cur just after each of them (inputs sorted).

    A stable merge of the two sorted samples: the running count of reference (current) values divided by
    its size is F_ref (F_cur). Inside a run of equal values only the last position has the full count,
    which is where the statistics below read it.
    """
    pooled = np.concatenate([ref, cur])
    order = np.argsort(pooled, kind="stable")
    from_ref = order < ref.size
    return pooled[order], np.cumsum(from_ref) / ref.size - np.cumsum(~from_ref) / cur.size


def _ks_sorted(ref: np.ndarray, cur: np.ndarray) -> TestResult:
    values, gap = _cdf_gaps(ref, cur)
    last_of_run = np.append(values[1:] != values[:-1], True)
    d = float(np.max(np.abs(gap[last_of_run])))
    n, m = sorted([float(ref.size), float(cur.size)], reverse=True)
    p = float(np.clip(stats.kstwo.sf(d, np.round(n * m / (n + m))), 0.0, 1.0))
    return TestResult(d, p)


def wasserstein(reference, current, *, normed: bool = False) -> float:
    """First Wasserstein ("earth mover's") distance: the integral of |F_ref(x) - F_cur(x)| dx.

    It is in the feature's units (how far, on average, values moved). ``normed=True`` divides by the
    reference's standard deviation (at least 0.001), which makes one threshold (0.1) fit every feature;
    Evidently's default test for numeric columns of more than 1,000 reference rows does the same.
    """
    ref, cur = np.sort(_numeric(reference, "reference")), np.sort(_numeric(current, "current"))
    return _wasserstein_sorted(ref, cur, normed)


def _wasserstein_sorted(ref: np.ndarray, cur: np.ndarray, normed: bool) -> float:
    values, gap = _cdf_gaps(ref, cur)
    distance = float(np.sum(np.abs(gap[:-1]) * np.diff(values)))  # equal values: width 0, no contribution
    return distance / max(float(np.std(ref)), 0.001) if normed else distance


def _counts(ref: pd.Series, cur: pd.Series, categories: Sequence | None, name: str):
    """The two samples' counts aligned on one list of categories (from :func:`_labels`)."""
    known = list(categories) if categories is not None else list(ref.index)
    for label, sample in (("reference", ref), ("current", cur)):
        unseen = sorted({str(v) for v in sample.index} - {str(k) for k in known})
        if unseen:
            where = "the declared categories" if categories is not None else "the reference"
            raise DriftInputError(f"{name}: {label} has categories {unseen[:5]} that {where} never had; a "
                                  f"new value is a schema or data-quality change: fix the data, or pass "
                                  f"categories=[...] listing every valid value")
    keys = pd.Index(known)
    ref_counts = ref.reindex(keys, fill_value=0).to_numpy(dtype=float)
    cur_counts = cur.reindex(keys, fill_value=0).to_numpy(dtype=float)
    keep = (ref_counts + cur_counts) > 0  # a category neither sample has carries no information
    return ref_counts[keep], cur_counts[keep]


def chi2_test(reference, current, *, categories: Sequence | None = None, correction: bool = True) -> TestResult:
    """Chi-squared test of homogeneity: do both samples share one distribution over the categories?

    The 2 x k table of counts is compared with the counts expected if both rows had the pooled shares:
    chi2 = sum((observed - expected)**2 / expected), with k - 1 degrees of freedom. With one degree of
    freedom (two categories) Yates' correction moves each count up to 0.5 towards its expectation, as
    ``scipy.stats.chi2_contingency`` does by default.
    """
    ref_counts, cur_counts = _counts(_labels(reference, "reference"), _labels(current, "current"),
                                     categories, "chi2_test")
    return _chi2_counts(ref_counts, cur_counts, correction)


def _chi2_counts(ref_counts: np.ndarray, cur_counts: np.ndarray, correction: bool) -> TestResult:
    observed = np.vstack([ref_counts, cur_counts])
    dof = observed.shape[1] - 1
    if dof == 0:
        return TestResult(0.0, 1.0, 0)
    expected = np.outer(observed.sum(axis=1), observed.sum(axis=0)) / observed.sum()
    if dof == 1 and correction:
        diff = expected - observed
        observed = observed + np.minimum(0.5, np.abs(diff)) * np.sign(diff)
    statistic = float(np.sum((observed - expected) ** 2 / expected))
    return TestResult(statistic, float(stats.chi2.sf(statistic, dof)), dof)


def psi_from_shares(expected, actual, *, eps: float = PSI_EPS) -> float:
    """PSI of two vectors of shares (each summing to 1): sum((actual - expected) * ln(actual / expected)).

    Shares of 0 are replaced by ``eps``. The sum is symmetric in the two samples (it is the Jeffreys
    divergence, the two Kullback-Leibler divergences added up).
    """
    e, a = np.asarray(expected, float), np.asarray(actual, float)
    if e.shape != a.shape or e.size == 0:
        raise DriftInputError(f"need two non-empty share vectors of one length; got {e.shape} and {a.shape}")
    e, a = np.where(e > 0, e, eps), np.where(a > 0, a, eps)
    return float(np.sum((a - e) * np.log(a / e)))


def psi(reference, current, *, categorical: bool = False, bins: int = 10,
        categories: Sequence | None = None, eps: float = PSI_EPS) -> float:
    """Population Stability Index of a feature.

    Numeric features are cut into ``bins`` bins at the reference's quantiles (equal shares of the
    reference; repeated edges of discrete features merge), categorical ones use their categories. Then
    :func:`psi_from_shares`. Below 0.1 reads "stable", 0.1-0.25 "moderate", above 0.25 "significant".
    An empty bin counts as a share of ``eps``: when the two samples hardly overlap, that choice sets the
    size of the PSI (each empty bin of share e in the reference adds about e * ln(e / eps)).
    """
    if categorical:
        ref_counts, cur_counts = _counts(_labels(reference, "reference"), _labels(current, "current"),
                                         categories, "psi")
        return psi_from_shares(ref_counts / ref_counts.sum(), cur_counts / cur_counts.sum(), eps=eps)
    ref, cur = _numeric(reference, "reference"), _numeric(current, "current")
    return psi_from_shares(*bin_shares(ref, cur, bins), eps=eps)


def bin_shares(reference, current, bins: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Each sample's share in the bins cut at the reference's quantiles (the bins :func:`psi` uses)."""
    if bins < 2:
        raise DriftInputError(f"psi needs at least 2 bins; got {bins}")
    ref, cur = _numeric(reference, "reference"), _numeric(current, "current")
    inner = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)[1:-1]))
    ref_share = np.bincount(np.searchsorted(inner, ref, side="right"), minlength=inner.size + 1) / ref.size
    cur_share = np.bincount(np.searchsorted(inner, cur, side="right"), minlength=inner.size + 1) / cur.size
    return ref_share, cur_share


def jensen_shannon(reference, current, *, categories: Sequence | None = None) -> float:
    """Jensen-Shannon distance between the category shares of two samples (natural logarithm).

    The square root of the mean Kullback-Leibler divergence of each share vector from their average: 0 for
    identical shares, at most sqrt(ln 2) = 0.83 for disjoint ones. Unlike a p-value it does not grow with
    the number of rows. Evidently's default for categorical columns above 1,000 reference rows (drift
    from 0.1 on); equal to ``scipy.spatial.distance.jensenshannon`` of the shares.
    """
    ref_counts, cur_counts = _counts(_labels(reference, "reference"), _labels(current, "current"),
                                     categories, "jensen_shannon")
    return _jensen_shannon_counts(ref_counts, cur_counts)


def _jensen_shannon_counts(ref_counts: np.ndarray, cur_counts: np.ndarray) -> float:
    p, q = ref_counts / ref_counts.sum(), cur_counts / cur_counts.sum()
    m = (p + q) / 2

    def kl(a: np.ndarray) -> float:
        inside = a > 0
        return float(np.sum(a[inside] * np.log(a[inside] / m[inside])))

    return math.sqrt(max((kl(p) + kl(q)) / 2, 0.0))


def psi_level(value: float) -> str:
    """``"stable"`` (< 0.1), ``"moderate"`` (0.1-0.25) or ``"significant"`` (> 0.25)."""
    if math.isnan(value):
        return "n/a"
    return "stable" if value < PSI_STABLE else "moderate" if value <= PSI_SIGNIFICANT else "significant"


def _check_columns(reference: pd.DataFrame, current: pd.DataFrame, categorical: Iterable[str]) -> list[str]:
    if list(reference.columns) != list(current.columns):
        missing = [c for c in reference.columns if c not in current.columns]
        extra = [c for c in current.columns if c not in reference.columns]
        raise DriftInputError(f"columns differ: current lacks {missing}, has extra {extra}"
                              + ("" if missing or extra else " (same names, different order)")
                              + "; select the same columns in the same order from both tables")
    unknown = [c for c in categorical if c not in reference.columns]
    if unknown:
        raise DriftInputError(f"categorical column(s) {unknown} are not in the tables {list(reference.columns)}")
    return list(reference.columns)


def drift_table(reference: pd.DataFrame, current: pd.DataFrame, *, categorical: Iterable[str] = (),
                numeric_test: str = "wasserstein", categorical_test: str = "chi2", alpha: float = 0.05,
                distance_threshold: float = 0.1, psi_bins: int = 10, psi_eps: float = PSI_EPS) -> pd.DataFrame:
    """One row per column: the test used, its statistic and p-value, PSI and its level, and the decision.

    Numeric columns drift when the normed Wasserstein distance is at least ``distance_threshold``
    (``numeric_test="wasserstein"``) or when the KS p-value is below ``alpha`` (``"ks"``); categorical
    columns when the chi-squared p-value is below ``alpha`` (``categorical_test="chi2"``) or when the
    Jensen-Shannon distance is at least ``distance_threshold`` (``"jensenshannon"``). The distances are
    Evidently's defaults above 1,000 reference rows. ``missing`` is the share of NaN in current.
    """
    if numeric_test not in NUMERIC_TESTS:
        raise DriftInputError(f"numeric_test must be one of {NUMERIC_TESTS}; got {numeric_test!r}")
    if categorical_test not in CATEGORICAL_TESTS:
        raise DriftInputError(f"categorical_test must be one of {CATEGORICAL_TESTS}; got {categorical_test!r}")
    categorical = list(categorical)
    columns = _check_columns(reference, current, categorical)
    rows = []
    for col in columns:
        where = f"column {col!r}"
        if col in categorical:
            ref, cur = _labels(reference[col], f"{where} of reference"), _labels(current[col], f"{where} of current")
            ref_counts, cur_counts = _counts(ref, cur, None, where)
            value = psi_from_shares(ref_counts / ref_counts.sum(), cur_counts / cur_counts.sum(), eps=psi_eps)
            if categorical_test == "chi2":
                result = _chi2_counts(ref_counts, cur_counts, True)
                row = {"kind": "categorical", "test": "chi2", "statistic": result.statistic,
                       "p_value": result.p_value, "drifted": result.p_value < alpha}
            else:
                distance = _jensen_shannon_counts(ref_counts, cur_counts)
                row = {"kind": "categorical", "test": "jensenshannon", "statistic": distance,
                       "p_value": float("nan"), "drifted": distance >= distance_threshold}
            present = int(cur.sum())
        else:
            ref = np.sort(_numeric(reference[col], f"{where} of reference"))
            cur = np.sort(_numeric(current[col], f"{where} of current"))
            value, present = psi_from_shares(*bin_shares(ref, cur, psi_bins), eps=psi_eps), cur.size
            if numeric_test == "ks":
                result = _ks_sorted(ref, cur)
                row = {"kind": "numeric", "test": "ks", "statistic": result.statistic,
                       "p_value": result.p_value, "drifted": result.p_value < alpha}
            else:
                distance = _wasserstein_sorted(ref, cur, normed=True)
                row = {"kind": "numeric", "test": "wasserstein", "statistic": distance,
                       "p_value": float("nan"), "drifted": distance >= distance_threshold}
        row.update(psi=value, psi_level=psi_level(value), missing=1.0 - present / len(current))
        rows.append({"feature": col, **row})
    table = pd.DataFrame(rows).set_index("feature")
    table["drifted"] = table["drifted"].astype(bool)
    return table[["kind", "test", "statistic", "p_value", "psi", "psi_level", "missing", "drifted"]]


def drift_share(table: pd.DataFrame) -> float:
    """The share of columns of a :func:`drift_table` that drifted (0.0-1.0)."""
    if table.empty:
        raise DriftInputError("the drift table is empty")
    return float(table["drifted"].mean())


def drift_by_month(reference: pd.DataFrame, batches: Iterable[tuple[str, pd.DataFrame]], *,
                   value: str = "psi", **options) -> pd.DataFrame:
    """A features x months table of one field of :func:`drift_table` (``"psi"``, ``"statistic"``,
    ``"p_value"`` or ``"drifted"``) for ``(month, batch)`` pairs, e.g. from ``data.monthly_batches``."""
    columns = {}
    for month, batch in batches:
        table = drift_table(reference, batch, **options)
        if value not in table.columns:
            raise DriftInputError(f"value must be a column of the drift table {list(table.columns)}; got {value!r}")
        columns[month] = table[value]
    if not columns:
        raise DriftInputError("no batches to compare: pass (month, rows) pairs")
    matrix = pd.DataFrame(columns)
    matrix.columns.name, matrix.index.name = "month", "feature"
    return matrix


def holm(p_values):
    """Holm-Bonferroni adjusted p-values, same shape (and index, for pandas input) as ``p_values``.

    Testing k hypotheses at level alpha each, about alpha * k of them come out "significant" by chance
    alone. Holm's step-down method sorts the p-values, multiplies the i-th smallest by (k - i + 1), and
    keeps the result monotone; an adjusted p below alpha then keeps the chance of even one false alarm
    among all k tests below alpha. NaNs (columns without a p-value) are left out and stay NaN.
    """
    values = np.asarray(p_values, dtype="float64")
    flat = values.ravel()
    known = ~np.isnan(flat)
    if np.any((flat[known] < 0) | (flat[known] > 1)):
        raise DriftInputError("p-values must lie between 0 and 1")
    p = flat[known]
    order = np.argsort(p, kind="stable")
    steps = (p.size - np.arange(p.size)) * p[order]
    adjusted = np.empty_like(p)
    adjusted[order] = np.minimum(np.maximum.accumulate(steps), 1.0)
    out = np.full(flat.shape, np.nan)
    out[known] = adjusted
    out = out.reshape(values.shape)
    if isinstance(p_values, pd.DataFrame):
        return pd.DataFrame(out, index=p_values.index, columns=p_values.columns)
    if isinstance(p_values, pd.Series):
        return pd.Series(out, index=p_values.index, name=p_values.name)
    return out


def daily(rows: pd.DataFrame, day, *, categorical: Iterable[str] = ()) -> pd.DataFrame:
    """One row per day: numeric columns averaged, categorical ones at their most frequent value that day.

    ``day`` labels each row (a column name or one value per row). Hourly rows of one day share their
    calendar codes and mostly their weather, so a test on hours counts each day up to 24 times; on days
    each row is one more independent-ish observation. Ties between categories go to the smaller code.
    """
    if not isinstance(day, str) and len(day) != len(rows):
        raise DriftInputError(f"need one day label per row; got {len(day)} for {len(rows)} rows")
    keys = rows[day] if isinstance(day, str) else pd.Series(np.asarray(day), index=rows.index)
    categorical = [c for c in categorical if c in rows.columns]
    numeric = [c for c in rows.columns if c not in categorical and not (isinstance(day, str) and c == day)]
    grouped = rows.groupby(keys.to_numpy(), sort=False)
    out = grouped[numeric].mean() if numeric else pd.DataFrame(index=grouped.size().index)
    for col in categorical:
        counts = rows.groupby([keys.to_numpy(), rows[col].to_numpy()], sort=True).size()
        frame = counts.rename("n").reset_index()
        frame.columns = ["day", "value", "n"]
        best = frame.sort_values(["n", "value"], ascending=[False, True]).drop_duplicates("day")
        out[col] = best.set_index("day")["value"].reindex(out.index).to_numpy()
    out.index.name = "day"
    return out[[c for c in rows.columns if c in out.columns]].reset_index(drop=True)
