import numpy as np
import pandas as pd
import pytest

from mlops_course import drift
from mlops_course.exercises import evaluate


# ------------------------------------------------------------------ 05.1 PSI by hand
@pytest.fixture
def weather():
    reference = pd.Series([1.0] * 50 + [2.0] * 30 + [3.0] * 19 + [4.0])
    current = pd.Series([1.0] * 70 + [2.0] * 20 + [3.0] * 10)
    return reference, current


def shares(reference, current):
    e = reference.value_counts(normalize=True)
    a = current.value_counts(normalize=True).reindex(e.index, fill_value=0.0)
    return e.clip(lower=drift.PSI_EPS).to_numpy(), a.clip(lower=drift.PSI_EPS).to_numpy()


def test_psi_by_hand_accepts_the_formula(weather):
    e, a = shares(*weather)
    feedback = evaluate("05.1", float(np.sum((a - e) * np.log(a / e))), *weather)
    assert feedback.ok and "PSI =" in feedback.message


@pytest.mark.parametrize("mistake,hint", [
    (lambda e, a: np.sum(a * np.log(a / e)), "both directions"),
    (lambda e, a: np.sum(e * np.log(e / a)), "both directions"),
    (lambda e, a: np.sum((a - e) * np.log10(a / e)), "natural logarithm"),
    (lambda e, a: np.sum((100 * a - 100 * e) * np.log(a / e)), "shares sum to 1"),
    (lambda e, a: -np.sum((a - e) * np.log(a / e)), "same sign"),
    (lambda e, a: np.sum(np.abs(a - e)), "sum((a - e) * np.log(a / e))"),
])
def test_psi_by_hand_names_the_typical_mistakes(weather, mistake, hint):
    e, a = shares(*weather)
    feedback = evaluate("05.1", float(mistake(e, a)), *weather)
    assert not feedback.ok and hint in feedback.hint


def test_psi_by_hand_wants_a_number(weather):
    feedback = evaluate("05.1", "0.3", *weather)
    assert not feedback.ok and "one number" in feedback.message
    assert not evaluate("05.1", True, *weather).ok


# ------------------------------------------------------------------ 05.2 alert on predictions
GOOD_RULE = {"alert": "BikePredictionsHigh",
             "expr": "histogram_quantile(0.5, sum by (le) (rate(bike_prediction_value_bucket[1h]))) > 400",
             "for": "30m", "labels": {"severity": "ticket"}, "annotations": {"summary": "median above 400"}}


def rule(**changes):
    return {**GOOD_RULE, **changes}


def test_prediction_alert_accepts_a_correct_rule():
    assert evaluate("05.2", GOOD_RULE).ok
    simple = rule(expr="histogram_quantile(0.5, rate(bike_prediction_value_bucket[1h])) > 400")
    assert evaluate("05.2", simple).ok


@pytest.mark.parametrize("answer,hint", [
    (rule(expr="histogram_quantile(0.5, rate(bike_prediction_value[1h])) > 400"), "_bucket"),
    (rule(expr="histogram_quantile(0.99, rate(bike_prediction_value_bucket[1h])) > 400"), "histogram_quantile(0.5"),
    (rule(expr="histogram_quantile(0.5, bike_prediction_value_bucket) > 400"), "rate("),
    (rule(expr="histogram_quantile(0.5, rate(bike_prediction_value_bucket[5m])) > 400"), "[1h]"),
    (rule(expr="histogram_quantile(0.5, rate(bike_prediction_value_bucket[1h])) > 300"), "> 400"),
    (rule(**{"for": "5m"}), "30m"),
    (rule(alert="HighPredictions"), "BikePredictionsHigh"),
    (rule(labels={"severity": "urgent"}), "field named"),
    (rule(expr="histogram_quantile(0.5, rate(bike_predictions_bucket[1h])) > 400"), "field named"),
    (["BikePredictionsHigh"], "shape of a rule"),
])
def test_prediction_alert_names_the_typical_mistakes(answer, hint):
    feedback = evaluate("05.2", answer)
    assert not feedback.ok and hint in feedback.hint, feedback


def test_prediction_alert_reports_what_prometheus_would_refuse():
    feedback = evaluate("05.2", rule(labels={"severity": "urgent"}))
    assert "labels.severity" in feedback.message


# ------------------------------------------------------------------ 05.3 retraining months
@pytest.fixture
def monthly():
    return pd.DataFrame({"drift_share": [0.78, 0.56, 0.89, 0.67, 0.56], "mae": [50.5, 52.8, 50.4, 52.1, 50.0]},
                        index=["June", "July", "Aug", "Nov", "Dec"])


def test_retrain_months_accepts_the_rule(monthly):
    assert evaluate("05.3", ["Nov"], monthly, 0.6, 51.4).ok
    assert evaluate("05.3", ["July", "Nov"], monthly, 0.5, 51.4).ok
    assert "no month" in evaluate("05.3", [], monthly, 0.95, 51.4).message


@pytest.mark.parametrize("answer,hint", [
    (["June", "July", "Aug", "Nov"], "AND"),
    (["June", "Aug", "Nov"], "mae > error_threshold"),
    (["July", "Nov"], "drift_share > drift_threshold"),
    (["Dec"], "should_retrain(row.drift_share"),
])
def test_retrain_months_names_the_typical_mistakes(monthly, answer, hint):
    feedback = evaluate("05.3", answer, monthly, 0.6, 51.4)
    assert not feedback.ok and hint in feedback.hint


def test_retrain_months_checks_the_shape_of_the_answer(monthly):
    assert "list of month names" in evaluate("05.3", "Nov", monthly, 0.6, 51.4).message
    assert "not months of the table" in evaluate("05.3", ["November"], monthly, 0.6, 51.4).message
    both = pd.DataFrame({"drift_share": [0.9, 0.9], "mae": [60.0, 60.0]}, index=["June", "July"])
    assert "calendar order" in evaluate("05.3", ["July", "June"], both, 0.6, 51.4).hint
