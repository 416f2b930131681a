"""Monitoring a deployed model: drift heat map, error per month with its uncertainty, Evidently side by side,
the monitoring job's Prometheus metrics, and the retrain rule.

The drift statistics live in :mod:`mlops_course.drift`, the alerting rules and their promtool tests in
:mod:`mlops_course.alerts` (``alert_rules``, ``rules_yaml`` and ``validate_alert_rules`` are importable from
here too). The retraining decision used by lesson 05
and again by the capstone (lesson 08) is::

    should_retrain(drift_share_or_score: float, error: float, *,
                   drift_threshold: float, error_threshold: float) -> bool

It returns ``True`` only when the drift measure is above ``drift_threshold`` AND the error (e.g. the month's
MAE, once labels arrived) is above ``error_threshold``: drift alone may be harmless (the model copes), error
alone may be noise or a labelling problem; both together say the model no longer fits the world.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from mlops_course.alerts import (  # noqa: F401 (the rules' public names stay importable from here)
    DRIFT_METRICS,
    DRIFT_SHARE_THRESHOLD,
    ERROR_BUCKETS,
    ERROR_METRIC,
    SERVICE_METRICS,
    SEVERITIES,
    AlertRulesError,
    alert_rules,
    rules_yaml,
    validate_alert_rules,
)
from mlops_course.drift import PSI_SIGNIFICANT, PSI_STABLE


class LessonStateError(RuntimeError):
    """A lesson cell needs something an earlier cell makes (e.g. a registered model); says which cell."""


# ------------------------------------------------------------------ the retraining decision
def should_retrain(drift_share_or_score: float, error: float, *, drift_threshold: float,
                   error_threshold: float) -> bool:
    """Retrain when the drift measure AND the error both cross (are strictly above) their thresholds."""
    values = {"drift_share_or_score": drift_share_or_score, "error": error,
              "drift_threshold": drift_threshold, "error_threshold": error_threshold}
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or math.isnan(value):
            raise ValueError(f"{name} must be a number, got {value!r}; compute drift and error for the "
                             f"period first (a month without labels has no error yet)")
    if drift_threshold < 0 or error_threshold < 0:
        raise ValueError(f"thresholds must be >= 0; got drift_threshold={drift_threshold}, "
                         f"error_threshold={error_threshold}")
    return bool(drift_share_or_score > drift_threshold and error > error_threshold)


# ------------------------------------------------------------------ drift heat map
def plot_drift_heatmap(matrix: pd.DataFrame, *, title: str = "PSI per feature and month",
                       levels: Sequence[float] = (PSI_STABLE, PSI_SIGNIFICANT)):
    """Features x months heat map in three colours (stable / moderate / significant), values written in."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import BoundaryNorm, ListedColormap

    if matrix.empty:
        raise ValueError("the drift matrix is empty: build it with drift.drift_by_month first")
    values = matrix.to_numpy(dtype=float)
    cmap = ListedColormap(["#cfe8cf", "#f6d58e", "#e8897f"])
    norm = BoundaryNorm([0.0, *levels, max(float(np.nanmax(values)), levels[-1]) + 1.0], cmap.N)
    fig, ax = plt.subplots(figsize=(1.0 + 0.75 * matrix.shape[1], 0.8 + 0.38 * matrix.shape[0]))
    ax.imshow(values, cmap=cmap, norm=norm, aspect="auto")
    for (i, j), v in np.ndenumerate(values):
        ax.text(j, i, "" if math.isnan(v) else f"{v:.2f}", ha="center", va="center", fontsize=8)
    ax.set_xticks(range(matrix.shape[1]), [str(c) for c in matrix.columns])
    ax.set_yticks(range(matrix.shape[0]), [str(r) for r in matrix.index])
    ax.grid(False)
    ax.set_title(f"{title}  (green < {levels[0]}, amber <= {levels[1]}, red above)", fontsize=10)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------ performance once labels arrive
def bootstrap_by_day(values: Sequence[float], days: Sequence, *, n_boot: int = 2000, seed: int = 42,
                     level: float = 0.95) -> tuple[float, float]:
    """A percentile bootstrap interval for the mean of hourly values (e.g. absolute errors: the MAE) that
    resamples whole days, not hours.

    Hours of one day share their weather and their errors, so resampling hours pretends there are up to 24
    times more independent observations than there are and gives too narrow an interval. Each of ``n_boot``
    resamples draws as many days as there are, with replacement, and takes the mean over all their hours.
    Vectorised: one (n_boot x days) index matrix, no Python loop over resamples. Pass one label per hour
    as ``days`` to get the (too narrow) interval of resampled hours.
    """
    errors = np.asarray(values, dtype="float64")
    labels = np.asarray(days)
    if errors.size == 0 or errors.shape != labels.shape:
        raise ValueError(f"need one day label per value and at least one value; got {errors.shape} values "
                         f"and {labels.shape} day labels")
    if np.isnan(errors).any():
        raise ValueError("some values are NaN: drop the hours whose label has not arrived")
    if not 0 < level < 1 or n_boot < 100:
        raise ValueError(f"need 0 < level < 1 and n_boot >= 100; got level={level}, n_boot={n_boot}")
    _, day = np.unique(labels, return_inverse=True)
    sums, counts = np.bincount(day, weights=errors), np.bincount(day)
    picks = np.random.default_rng(seed).integers(0, sums.size, size=(n_boot, sums.size))
    resampled = sums[picks].sum(axis=1) / counts[picks].sum(axis=1)
    low, high = np.quantile(resampled, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def mae_by_month(y_true: Sequence[float], y_pred: Sequence[float], months: Sequence[str], *,
                 days: Sequence | None = None, n_boot: int = 2000, seed: int = 42) -> pd.DataFrame:
    """Per month: rows, MAE, bias (mean of prediction - truth) and the MAE relative to the mean demand.

    With ``days`` (one day label per row) also ``low`` and ``high``, a 95 % interval for the MAE from
    :func:`bootstrap_by_day` (whole days resampled). Months in order of first appearance.
    """
    frame = pd.DataFrame({"month": list(months), "truth": np.asarray(y_true, float),
                          "err": np.asarray(y_pred, float) - np.asarray(y_true, float)})
    if frame.empty:
        raise ValueError("no predictions to score")
    if frame["err"].isna().any():
        raise ValueError(f"{int(frame['err'].isna().sum())} prediction(s) or label(s) are missing: join the "
                         f"request log with the labels first and drop the rows whose label has not arrived")
    if days is not None:
        if len(days) != len(frame):
            raise ValueError(f"need one day label per row; got {len(days)} for {len(frame)} rows")
        frame["day"] = np.asarray(days)
    grouped = frame.groupby("month", sort=False)
    table = pd.DataFrame({"rows": grouped.size(), "mae": grouped["err"].apply(lambda e: e.abs().mean())})
    if days is not None:
        bounds = {m: bootstrap_by_day(g["err"].abs(), g["day"], n_boot=n_boot, seed=seed) for m, g in grouped}
        table["low"] = [bounds[m][0] for m in table.index]
        table["high"] = [bounds[m][1] for m in table.index]
    table["bias"] = grouped["err"].mean()
    table["relative"] = table["mae"] / grouped["truth"].mean()
    return table


def first_crossing(errors: pd.Series, baseline: float, tolerance: float) -> str | None:
    """The first month whose error is above ``baseline * (1 + tolerance)``, or ``None`` if none is."""
    if baseline <= 0 or tolerance < 0:
        raise ValueError(f"need baseline > 0 and tolerance >= 0 (a fraction, 0.1 = 10 %); "
                         f"got {baseline}, {tolerance}")
    over = errors[errors > baseline * (1 + tolerance)]
    return None if over.empty else str(over.index[0])


# ------------------------------------------------------------------ Evidently's verdicts, side by side
def evidently_drift(report: Mapping[str, Any]) -> pd.DataFrame:
    """Per-column method, score, threshold and verdict from an Evidently 0.7 snapshot's ``dict()``/JSON.

    Reads the ``ValueDrift`` metrics and, for the verdict, the "Value Drift for column ..." tests
    (``Report(..., include_tests=True)``): FAIL means Evidently calls the column drifted.
    """
    rows = {}
    for metric in report.get("metrics", []):
        config = metric.get("config", {})
        if config.get("type", "").endswith("ValueDrift"):
            rows[config["column"]] = {"method": config["method"], "score": float(metric["value"]),
                                      "threshold": float(config["threshold"]), "drifted": None}
    prefix = "Value Drift for column "
    for test in report.get("tests", []):
        column = test.get("name", "").removeprefix(prefix)
        if test.get("name", "").startswith(prefix) and column in rows:
            rows[column]["drifted"] = test["status"] == "FAIL"
    if not rows:
        raise ValueError("no ValueDrift metrics in this report: run Report([DataDriftPreset()]) and pass "
                         "snapshot.dict() (or the parsed snapshot.json())")
    if any(r["drifted"] is None for r in rows.values()):
        raise ValueError("the report has no per-column drift tests: build it with Report([...], include_tests=True)")
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "feature"
    table["drifted"] = table["drifted"].astype(bool)
    return table


_EVIDENTLY_TESTS = {"wasserstein distance (normed)": "wasserstein", "k-s p_value": "ks", "ks": "ks",
                    "jensen-shannon distance": "jensenshannon", "chi-square p_value": "chi2",
                    "psi": "psi", "z-test p_value": "z"}


def evidently_test(method: str) -> str:
    """Evidently's method name as the course's short test name (``"Wasserstein distance (normed)"`` ->
    ``"wasserstein"``); an unknown name comes back unchanged."""
    return _EVIDENTLY_TESTS.get(str(method).strip().lower(), str(method))


def compare_drift(ours: pd.DataFrame, theirs: pd.DataFrame) -> pd.DataFrame:
    """Our :func:`drift.drift_table` next to :func:`evidently_drift`: tests, verdicts, agreement per column.

    ``evidently_test`` is Evidently's method in the course's short names; ``same_test`` is true where both
    ran the same test: the normed Wasserstein distance or Kolmogorov-Smirnov for numbers (Evidently's
    choice above / up to 1,000 reference rows), the Jensen-Shannon distance or chi-squared for categories.
    ``score_gap`` is how far the two scores are apart where both report the same distance (NaN elsewhere).
    """
    missing = sorted(set(ours.index) ^ set(theirs.index))
    if missing:
        raise ValueError(f"the two tables cover different columns: {missing}")
    theirs = theirs.loc[ours.index]
    their_tests = [evidently_test(m) for m in theirs["method"]]
    same = [a == b for a, b in zip(ours["test"], their_tests)]
    out = pd.DataFrame({"ours_test": ours["test"], "ours_drifted": ours["drifted"],
                        "evidently_test": their_tests, "evidently_drifted": theirs["drifted"], "same_test": same})
    out["agree"] = out["ours_drifted"] == out["evidently_drifted"]
    distance = out["same_test"] & out["ours_test"].isin(["wasserstein", "jensenshannon"])
    if "statistic" in ours.columns:
        gap = (ours["statistic"].astype(float) - theirs["score"].astype(float)).abs()
        out["score_gap"] = gap.where(distance)
    else:
        out["score_gap"] = float("nan")
    return out


def drift_gauges(table: pd.DataFrame, share: float, registry=None, *, errors: Sequence[float] | None = None) -> str:
    """The monitoring job's metrics for one window, as the Prometheus text exposition it would serve.

    ``bike_feature_drift_psi{feature}`` from the table's ``psi`` column and ``bike_drift_share`` (both
    rounded to 4 decimals), and with ``errors`` (absolute errors of labelled predictions) the histogram
    ``bike_prediction_abs_error`` with :data:`alerts.ERROR_BUCKETS`. A fresh registry each call (unless
    ``registry`` is given), so calling it again never raises "Duplicated timeseries".
    """
    from prometheus_client import CollectorRegistry, Gauge, Histogram, generate_latest

    if "psi" not in table.columns or table.empty:
        raise ValueError("need a drift table with a 'psi' column and one row per feature (drift.drift_table)")
    if table.index.has_duplicates:
        raise ValueError(f"features repeat in the table: {sorted(set(table.index[table.index.duplicated()]))}")
    if not 0.0 <= float(share) <= 1.0:
        raise ValueError(f"share must be between 0 and 1 (a share of features); got {share}")
    registry = registry or CollectorRegistry()
    psi_name, share_name = DRIFT_METRICS
    psi = Gauge(psi_name, "PSI of a feature against the training data", ["feature"], registry=registry)
    for feature, value in table["psi"].items():
        psi.labels(feature=str(feature)).set(round(float(value), 4))
    Gauge(share_name, "Share of features that drifted", registry=registry).set(round(float(share), 4))
    if errors is not None:
        histogram = Histogram(ERROR_METRIC, "Absolute error of a labelled prediction, bikes per hour",
                              buckets=ERROR_BUCKETS, registry=registry)
        for value in np.asarray(errors, dtype="float64"):
            histogram.observe(float(value))
    return generate_latest(registry).decode()


def require_champion(run_first: str, name: str | None = None, alias: str = "champion") -> str:
    """The version ``models:/<name>@<alias>`` points at in the current MLflow store, checked before a
    service is started on it. When there is none (e.g. the setup cell ran again and made a fresh store),
    one line names the cell to run first, then :class:`LessonStateError` is raised."""
    from mlops_course import registry

    name = name or registry.MODEL_NAME
    try:
        return str(registry.version_by_alias(alias, name).version)
    except registry.AliasError as exc:
        message = f"{exc}. Run {run_first} first, then this cell again."
        print(message, file=sys.stderr, flush=True)
        raise LessonStateError(message) from None
