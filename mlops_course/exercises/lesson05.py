"""Checks for lesson 05 (Model monitoring and drift)."""

from __future__ import annotations

import math
import numbers

import numpy as np
import pandas as pd

from mlops_course import drift, monitoring
from mlops_course.exercises import correct, exercise, wrong


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)


@exercise("05.1", "PSI of a categorical feature by hand")
def psi_by_hand(answer, reference, current) -> object:
    if isinstance(answer, bool) or not isinstance(answer, numbers.Real):
        return wrong(f"expected one number (the PSI), got {type(answer).__name__}.",
                     "sum the per-category terms into one float, e.g. with float(np.sum(...)).")
    expected = drift.psi(reference, current, categorical=True)
    if _close(answer, expected):
        return correct(f"PSI = {expected:.3f}: {drift.psi_level(expected)} by the usual rule of thumb.")
    ref = pd.Series(reference).value_counts(normalize=True)
    cur = pd.Series(current).value_counts(normalize=True).reindex(ref.index, fill_value=0.0)
    e = np.where(ref.to_numpy() > 0, ref.to_numpy(), drift.PSI_EPS)
    a = np.where(cur.to_numpy() > 0, cur.to_numpy(), drift.PSI_EPS)
    one_way = {float(np.sum(a * np.log(a / e))), float(np.sum(e * np.log(e / a)))}
    if any(_close(answer, v) for v in one_way):
        return wrong(f"{answer:.4f} is one Kullback-Leibler direction only.",
                     "PSI adds both directions: sum((actual - expected) * ln(actual / expected)).")
    if _close(answer, expected / math.log(10)):
        return wrong(f"{answer:.4f} uses the base-10 logarithm.", "use the natural logarithm, np.log.")
    if _close(answer, expected * 100) or _close(answer, expected * 10_000):
        return wrong(f"{answer:.4f} is 100 times too large or more: percentages instead of shares?",
                     "divide the counts by the number of rows so each sample's shares sum to 1.")
    if answer < 0:
        return wrong(f"{answer:.4f} is negative, and every PSI term is >= 0.",
                     "(a - e) and ln(a / e) always have the same sign; check the order inside each factor.")
    return wrong(f"{answer:.4f} is not the PSI of these samples.",
                 "take each category's share in the reference (e) and in July (a), then "
                 "sum((a - e) * np.log(a / e)) over the categories.")


@exercise("05.2", "an alert on the predictions")
def prediction_alert(answer) -> object:
    if not isinstance(answer, dict):
        return wrong(f"expected one rule as a dict, got {type(answer).__name__}.",
                     "copy the shape of a rule from the rules printed above: alert, expr, for, labels, annotations.")
    try:
        monitoring.validate_alert_rules(monitoring.rules_yaml({"groups": [{"name": "exercise", "rules": [answer]}]}))
    except monitoring.AlertRulesError as exc:
        return wrong(f"Prometheus would not accept this rule: {str(exc).splitlines()[-1].lstrip('- ')}.",
                     "fix the field named in the message.")
    expr = " ".join(str(answer["expr"]).split())
    if answer["alert"] != "BikePredictionsHigh":
        return wrong(f"the rule is called {answer['alert']!r}.", "name it BikePredictionsHigh.")
    if "bike_prediction_value_bucket" not in expr:
        return wrong("the expression does not read the prediction histogram's buckets.",
                     "a histogram is stored as bike_prediction_value_bucket series, one per upper bound 'le'.")
    if "histogram_quantile(0.5" not in expr.replace(" ", ""):
        return wrong("the expression does not compute the median.",
                     "the median is histogram_quantile(0.5, ...); 0.99 would be the 99th percentile.")
    if "rate(" not in expr:
        return wrong("the quantile is taken over counts since the service started, not the last hour.",
                     "take rate(bike_prediction_value_bucket[1h]) inside histogram_quantile.")
    if "[1h]" not in expr.replace(" ", ""):
        return wrong("the rate is not taken over the last hour.", "use a [1h] range.")
    if not expr.replace(" ", "").endswith(">400"):
        return wrong("the rule does not compare the median with 400.", "end the expression with > 400.")
    if str(answer.get("for")) != "30m":
        return wrong(f"'for' is {answer.get('for')!r}.", "the condition must hold 30 minutes: for: 30m.")
    return correct("the rule is valid and fires when the median prediction of the last hour stays above 400.")


@exercise("05.3", "months that trigger retraining")
def retrain_months(answer, monthly: pd.DataFrame, drift_threshold: float, error_threshold: float) -> object:
    if isinstance(answer, str) or not isinstance(answer, (list, tuple)):
        return wrong(f"expected a list of month names, got {type(answer).__name__}.", "for example ['July', 'Nov'].")
    answer = [str(m) for m in answer]
    unknown = [m for m in answer if m not in monthly.index]
    if unknown:
        return wrong(f"{unknown} are not months of the table; its months are {list(monthly.index)}.",
                     "use the names exactly as in the table's index.")

    def months(rule) -> list[str]:
        return [m for m, row in monthly.iterrows() if rule(row["drift_share"], row["mae"])]

    expected = months(lambda d, e: monitoring.should_retrain(d, e, drift_threshold=drift_threshold,
                                                             error_threshold=error_threshold))
    if answer == expected:
        return correct(f"retraining fires in {expected or 'no month'}.")
    if sorted(answer) == sorted(expected):
        return wrong("the right months, in another order.", "list them in calendar order, as in the table.")
    if answer == months(lambda d, e: d > drift_threshold or e > error_threshold):
        return wrong("these are the months where drift OR error cross.",
                     "the rule needs both: drift above its threshold AND error above its threshold.")
    if answer == months(lambda d, e: d > drift_threshold):
        return wrong("these are the months with drift only.", "also require mae > error_threshold.")
    if answer == months(lambda d, e: e > error_threshold):
        return wrong("these are the months with a high error only.",
                     "also require drift_share > drift_threshold.")
    return wrong(f"{answer} is not the set of months where the rule fires.",
                 "call should_retrain(row.drift_share, row.mae, drift_threshold=..., error_threshold=...) per row.")
