"""Monitoring a deployed model: drift heat map, error per month, Prometheus alert rules, the retrain rule.

The drift statistics themselves live in :mod:`mlops_course.drift`. The retraining decision used by lesson 05
and again by the capstone (lesson 08) is::

    should_retrain(drift_share_or_score: float, error: float, *,
                   drift_threshold: float, error_threshold: float) -> bool

It returns ``True`` only when the drift measure is above ``drift_threshold`` AND the error (e.g. the month's
MAE, once labels arrived) is above ``error_threshold``: drift alone may be harmless (the model copes), error
alone may be noise or a labelling problem; both together say the model no longer fits the world.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from mlops_course.drift import PSI_SIGNIFICANT, PSI_STABLE

# Metric names fixed by the service contract (serving.py) and the monitoring job's drift gauges.
SERVICE_METRICS = ("bike_requests_total", "bike_request_latency_seconds", "bike_prediction_value",
                   "bike_model_info")
DRIFT_METRICS = ("bike_feature_drift_psi", "bike_drift_share")
SEVERITIES = ("page", "ticket")
_DURATION = re.compile(r"^(\d+(ms|s|m|h|d|w|y))+$")


class AlertRulesError(ValueError):
    """A Prometheus rules file that Prometheus would refuse or that would never fire; lists every problem."""


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
def mae_by_month(y_true: Sequence[float], y_pred: Sequence[float], months: Sequence[str]) -> pd.DataFrame:
    """Rows, MAE and bias (mean of prediction - truth) per month, months in order of first appearance."""
    frame = pd.DataFrame({"month": list(months), "err": np.asarray(y_pred, float) - np.asarray(y_true, float)})
    if frame.empty:
        raise ValueError("no predictions to score")
    if frame["err"].isna().any():
        raise ValueError(f"{int(frame['err'].isna().sum())} prediction(s) or label(s) are missing: join the "
                         f"request log with the labels first and drop the rows whose label has not arrived")
    grouped = frame.groupby("month", sort=False)["err"]
    return pd.DataFrame({"rows": grouped.size(), "mae": grouped.apply(lambda e: e.abs().mean()),
                         "bias": grouped.mean()})


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


def compare_drift(ours: pd.DataFrame, theirs: pd.DataFrame) -> pd.DataFrame:
    """Our :func:`drift.drift_table` next to :func:`evidently_drift`: tests, verdicts, agreement per column.

    ``same_test`` is true where both used the normed Wasserstein distance (Evidently's choice for numeric
    columns with more than 1,000 reference rows) or both used Kolmogorov-Smirnov (Evidently's choice up to
    1,000 rows, or ``DataDriftPreset(num_method="ks")``, whose method is then reported as ``"ks"``).
    """
    missing = sorted(set(ours.index) ^ set(theirs.index))
    if missing:
        raise ValueError(f"the two tables cover different columns: {missing}")
    names = {"wasserstein": ("wasserstein", "wasserstein distance (normed)"), "ks": ("ks", "k-s p_value")}
    same = [str(m).lower() in names.get(t, ()) for t, m in zip(ours["test"], theirs.loc[ours.index, "method"])]
    out = pd.DataFrame({"ours_test": ours["test"], "ours_drifted": ours["drifted"],
                        "evidently_method": theirs.loc[ours.index, "method"],
                        "evidently_drifted": theirs.loc[ours.index, "drifted"], "same_test": same})
    out["agree"] = out["ours_drifted"] == out["evidently_drifted"]
    return out


# ------------------------------------------------------------------ Prometheus alerting rules
def alert_rules(*, error_rate: float = 0.05, rejected_rate: float = 0.2, latency_p99: float = 0.25,
                psi_threshold: float = PSI_SIGNIFICANT, job: str = "bike-demand") -> dict:
    """Prometheus alerting rules for the bike service (as a dict; :func:`rules_yaml` writes the file).

    Service errors (5xx share), rejected inputs (4xx share: often a client sending a new schema), p99
    latency of ``/predict`` from the histogram, the scrape target being down, and a drift gauge that the
    monitoring job exports per feature (``bike_feature_drift_psi``).
    """
    def rule(name, expr, wait, severity, summary):
        return {"alert": name, "expr": expr, "for": wait, "labels": {"severity": severity},
                "annotations": {"summary": summary}}

    rate = 'sum(rate(bike_requests_total{route="/predict",status=~"%s"}[5m]))'
    total = 'sum(rate(bike_requests_total{route="/predict"}[5m]))'
    p99 = ('histogram_quantile(0.99, sum by (le) '
           '(rate(bike_request_latency_seconds_bucket{route="/predict"}[5m])))')
    service = [
        rule("BikeServiceDown", f'up{{job="{job}"}} == 0', "2m", "page", "The bike service is not scraped"),
        rule("BikeHighErrorRate", f"{rate % '5..'} / {total} > {error_rate}", "5m", "page",
             f"More than {error_rate:.0%} of /predict requests fail (5xx)"),
        rule("BikeManyRejectedInputs", f"{rate % '4..'} / {total} > {rejected_rate}", "15m", "ticket",
             f"More than {rejected_rate:.0%} of /predict inputs are rejected (4xx): a client or schema change?"),
        rule("BikeSlowPredictions", f"{p99} > {latency_p99}", "10m", "page",
             f"p99 latency of /predict above {latency_p99} s"),
    ]
    drift = [rule("BikeFeatureDrift", f"max by (feature) (bike_feature_drift_psi) > {psi_threshold}", "0m",
                  "ticket", f"A feature's PSI against the training data is above {psi_threshold}")]
    return {"groups": [{"name": "bike-service", "rules": service},
                       {"name": "bike-model-drift", "interval": "1h", "rules": drift}]}


def rules_yaml(rules: Mapping | None = None) -> str:
    """The rules as the YAML text of a Prometheus ``rule_files`` entry."""
    import yaml

    return yaml.safe_dump(dict(rules or alert_rules()), sort_keys=False, width=140)


def _balanced(expr: str) -> bool:
    depth = {"(": 0, "[": 0, "{": 0}
    closing = {")": "(", "]": "[", "}": "{"}
    for ch in re.sub(r'"[^"]*"', "", expr):
        if ch in depth:
            depth[ch] += 1
        elif ch in closing:
            depth[closing[ch]] -= 1
            if depth[closing[ch]] < 0:
                return False
    return not any(depth.values())


def validate_alert_rules(text: str, known_metrics: Sequence[str] = SERVICE_METRICS + DRIFT_METRICS + ("up",)
                         ) -> list[str]:
    """Check a rules file's structure (what ``promtool check rules`` checks first) and that every
    expression uses metrics that exist; return the alert names or raise :class:`AlertRulesError`."""
    import yaml

    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise AlertRulesError(f"not valid YAML: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("groups"), list) or not doc["groups"]:
        raise AlertRulesError("a rules file is a mapping with a non-empty list under 'groups'")
    problems, names, groups = [], [], set()
    for g, group in enumerate(doc["groups"]):
        gname = group.get("name") if isinstance(group, dict) else None
        if not gname or gname in groups:
            problems.append(f"group {g}: needs a unique 'name'")
        groups.add(gname)
        for r, item in enumerate(group.get("rules") or [] if isinstance(group, dict) else []):
            where = f"group {gname!r} rule {r}"
            if not isinstance(item, dict) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", str(item.get("alert", ""))):
                problems.append(f"{where}: 'alert' must be a name like BikeHighErrorRate")
                continue
            where, expr = f"alert {item['alert']}", str(item.get("expr", "")).strip()
            names.append(item["alert"])
            if not expr or not _balanced(expr):
                problems.append(f"{where}: 'expr' is empty or its brackets do not balance")
            tokens = re.findall(r"\b(bike_[a-z0-9_]+|up)\b", re.sub(r'"[^"]*"', "", expr))
            used = {re.sub(r"_(bucket|count|sum)$", "", t) for t in tokens}
            if expr and not used:
                problems.append(f"{where}: 'expr' uses no known metric")
            unknown = sorted(m for m in used if m not in known_metrics)
            if unknown:
                problems.append(f"{where}: unknown metric(s) {unknown}; known: {list(known_metrics)}")
            if "for" in item and not _DURATION.match(str(item["for"])):
                problems.append(f"{where}: 'for' must be a duration like 5m, got {item['for']!r}")
            if (item.get("labels") or {}).get("severity") not in SEVERITIES:
                problems.append(f"{where}: labels.severity must be one of {SEVERITIES}")
            if not (item.get("annotations") or {}).get("summary"):
                problems.append(f"{where}: annotations.summary is missing (it is what the on-call person reads)")
    if names and len(set(names)) != len(names):
        problems.append(f"alert names repeat: {sorted(n for n in set(names) if names.count(n) > 1)}")
    if not names and not problems:
        problems.append("no alerting rules at all")
    if problems:
        raise AlertRulesError("invalid alerting rules:\n- " + "\n- ".join(problems))
    return names


def drift_gauges(table: pd.DataFrame, share: float, registry=None) -> str:
    """Export a drift table as Prometheus gauges (``bike_feature_drift_psi{feature}``, ``bike_drift_share``)
    in a fresh registry and return the exposition text the monitoring job would serve."""
    from prometheus_client import CollectorRegistry, Gauge, generate_latest

    registry = registry or CollectorRegistry()
    psi = Gauge("bike_feature_drift_psi", "PSI of a feature vs the training data", ["feature"], registry=registry)
    for feature, value in table["psi"].items():
        psi.labels(feature=str(feature)).set(round(float(value), 4))
    Gauge("bike_drift_share", "Share of features that drifted", registry=registry).set(round(float(share), 4))
    return generate_latest(registry).decode()
