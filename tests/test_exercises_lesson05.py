import numpy as np
import pandas as pd
import pytest

from mlops_course import drift, lint
from mlops_course.exercises import evaluate, lesson05


# ------------------------------------------------------------------ 05.1 PSI by hand
@pytest.fixture
def weather():
    reference = pd.Series([1.0] * 500 + [2.0] * 300 + [3.0] * 199 + [4.0])
    current = pd.Series([1.0] * 70 + [2.0] * 20 + [3.0] * 10)
    return reference, current


def shares(reference, current):
    e = reference.value_counts(normalize=True)
    a = current.value_counts(normalize=True).reindex(e.index, fill_value=0.0)
    return e.clip(lower=drift.PSI_EPS).to_numpy(), a.clip(lower=drift.PSI_EPS).to_numpy()


def test_psi_by_hand_accepts_the_formula_and_the_printed_value(weather):
    e, a = shares(*weather)
    exact = float(np.sum((a - e) * np.log(a / e)))
    feedback = evaluate("05.1", exact, *weather)
    assert feedback.ok and "PSI =" in feedback.message
    assert evaluate("05.1", round(exact, 3), *weather).ok  # the value the lesson prints
    assert evaluate("05.1", np.float32(exact), *weather).ok  # a numpy scalar of lower precision
    # the same sum written as the two relative entropies, with SciPy
    from scipy.special import rel_entr

    assert evaluate("05.1", float(np.sum(rel_entr(a, e) + rel_entr(e, a))), *weather).ok


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


@pytest.mark.parametrize("eps", [1e-8, 1e-6, 1e-3])
def test_psi_by_hand_names_another_empty_share(weather, eps):
    e = weather[0].value_counts(normalize=True)
    a = weather[1].value_counts(normalize=True).reindex(e.index, fill_value=0.0).to_numpy()
    e, a = e.to_numpy(), np.where(a > 0, a, eps)  # only the empty share changed
    feedback = evaluate("05.1", float(np.sum((a - e) * np.log(a / e))), *weather)
    assert not feedback.ok and "drift.PSI_EPS" in feedback.hint and f"{eps:g}" in feedback.message


def test_psi_by_hand_refuses_a_sum_without_the_empty_category():
    # In the lesson's July this lands within printing precision of the PSI (0.3984 against 0.3987). Here the
    # empty category has a share of 0.002 in the reference, so no empty-share variant gives the same sum.
    reference = pd.Series([1.0] * 500 + [2.0] * 300 + [3.0] * 198 + [4.0] * 2)
    current = pd.Series([1.0] * 70 + [2.0] * 20 + [3.0] * 10)
    e = reference.value_counts(normalize=True)
    a = current.value_counts(normalize=True).reindex(e.index, fill_value=0.0)
    kept = a > 0
    dropped = float(np.sum((a[kept] - e[kept]) * np.log(a[kept] / e[kept])))
    feedback = evaluate("05.1", dropped, reference, current)
    assert not feedback.ok and "does not have" in feedback.message and "drift.PSI_EPS" in feedback.hint
    assert evaluate("05.1", drift.psi(reference, current, categorical=True), reference, current).ok


def test_psi_by_hand_wants_a_number(weather):
    feedback = evaluate("05.1", "0.3", *weather)
    assert not feedback.ok and "one number" in feedback.message
    assert not evaluate("05.1", True, *weather).ok
    assert "NaN" in evaluate("05.1", float("nan"), *weather).message


# ------------------------------------------------------------------ 05.2 alert on predictions
GOOD_RULE = {"alert": "BikePredictionsHigh",
             "expr": "histogram_quantile(0.5, sum by (le) (rate(bike_prediction_value_bucket[1h]))) > 400",
             "for": "30m", "labels": {"severity": "ticket"}, "annotations": {"summary": "median above 400"}}


def rule(**changes):
    return {**GOOD_RULE, **changes}


@pytest.mark.parametrize("answer", [
    GOOD_RULE,
    rule(expr="histogram_quantile(0.5, rate(bike_prediction_value_bucket[1h])) > 400"),
    rule(expr="histogram_quantile(0.50, sum by (le) (rate(bike_prediction_value_bucket[60m]))) > 400.0"),
    rule(expr='400 < histogram_quantile(0.5, sum(rate(bike_prediction_value_bucket{job="bike-demand"}[3600s])) by (le))'),
    rule(expr="histogram_quantile(0.5, sum without (instance) (increase(bike_prediction_value_bucket[1h]))) > 4e2"),
    rule(expr="histogram_quantile(0.5, sum by (le, job) (rate(bike_prediction_value_bucket[1h]))) > 400",
         **{"for": "1800s"}, labels={"severity": "page", "team": "bikes"}),
], ids=["sum by le", "no aggregation", "60m and 400.0", "reversed, by after", "increase, without", "1800s, job kept"])
def test_prediction_alert_accepts_equivalent_correct_rules(answer):
    feedback = evaluate("05.2", answer)
    assert feedback.ok, feedback
    assert "promtool confirms" in feedback.message  # the rule really ran on synthetic series


@pytest.mark.parametrize("answer,hint", [
    (rule(expr="histogram_quantile(0.5, sum(rate(bike_prediction_value_bucket[1h]))) > 400"), "sum by (le)"),
    (rule(expr="histogram_quantile(0.5, sum by (job) (rate(bike_prediction_value_bucket[1h]))) > 400"),
     "sum by (le)"),
    (rule(expr="histogram_quantile(0.5, sum without (le) (rate(bike_prediction_value_bucket[1h]))) > 400"),
     "sum by (le)"),
    (rule(expr="histogram_quantile(0.5, rate(bike_prediction_value[1h])) > 400"), "_bucket"),
    (rule(expr="histogram_quantile(0.99, rate(bike_prediction_value_bucket[1h])) > 400"), "histogram_quantile(0.5"),
    (rule(expr="histogram_quantile(50, rate(bike_prediction_value_bucket[1h])) > 400"), "histogram_quantile(0.5"),
    (rule(expr="histogram_quantile(0.5, bike_prediction_value_bucket) > 400"), "rate("),
    (rule(expr="histogram_quantile(0.5, rate(bike_prediction_value_bucket[5m])) > 400"), "[1h]"),
    (rule(expr="histogram_quantile(0.5, irate(bike_prediction_value_bucket[1h])) > 400"), "rate(bike_prediction"),
    (rule(expr="histogram_quantile(0.5, rate(bike_prediction_value_bucket[1h])) > 300"), "> 400"),
    (rule(expr="histogram_quantile(0.5, rate(bike_prediction_value_bucket[1h])) >= 400"), "> 400"),
    (rule(expr="histogram_quantile(0.5, rate(bike_prediction_value_bucket[1h])) > bool 400"), "drop bool"),
    (rule(expr="histogram_quantile(0.5, rate(bike_prediction_value_bucket[1h])) < 400"), "> 400"),
    (rule(expr="histogram_quantile(0.5, rate(bike_prediction_value_bucket[1h] offset 1d)) > 400"), "offset"),
    (rule(expr='histogram_quantile(0.5, rate(bike_prediction_value_bucket{le="400"}[1h])) > 400'), "le"),
    (rule(expr="rate(bike_prediction_value_sum[1h]) / rate(bike_prediction_value_count[1h]) > 400"),
     "histogram_quantile(0.5"),
    (rule(expr="histogram_quantile(0.5, max by (le) (rate(bike_prediction_value_bucket[1h]))) > 400"), "sum by (le)"),
    (rule(**{"for": "5m"}), "30m"),
    ({k: v for k, v in GOOD_RULE.items() if k != "for"}, "30m"),
    (rule(alert="HighPredictions"), "BikePredictionsHigh"),
    (rule(labels={"severity": "urgent"}), "field named"),
    (rule(expr="histogram_quantile(0.5, rate(bike_predictions_bucket[1h])) > 400"), "field named"),
    (rule(expr="histogram_quantile(0.5, rate(bike_prediction_value_bucket[1h]) > 400"), "field named"),
    (["BikePredictionsHigh"], "shape of a rule"),
])
def test_prediction_alert_names_the_typical_mistakes(answer, hint):
    feedback = evaluate("05.2", answer)
    assert not feedback.ok and hint in feedback.hint, feedback


def test_prediction_alert_explains_why_a_dropped_le_never_fires():
    feedback = evaluate("05.2", rule(expr="histogram_quantile(0.5, sum(rate(bike_prediction_value_bucket[1h]))) > 400"))
    assert "never fires" in feedback.message


def test_prediction_alert_reports_what_the_course_check_refuses():
    feedback = evaluate("05.2", rule(labels={"severity": "urgent"}))
    assert "labels.severity" in feedback.message


def test_promtool_is_the_last_word(monkeypatch):
    # the synthetic series themselves: a rule on the 0.99 quantile fires where the median stays low
    assert lesson05._promtool_says(GOOD_RULE) == (True, "")
    p99 = rule(expr="histogram_quantile(0.99, sum by (le) (rate(bike_prediction_value_bucket[1h]))) > 400")
    assert lesson05._promtool_says(p99) == (False, ("it fired on series whose median is 280 (but whose 99th "
                                                   "percentile is 960)"))
    never = rule(expr="histogram_quantile(0.5, sum(rate(bike_prediction_value_bucket[1h]))) > 400")
    assert lesson05._promtool_says(never)[1].startswith("it did not fire")
    # a rule the parsed expression accepts is still wrong when promtool's unit test says so
    monkeypatch.setattr(lesson05, "_promtool_says", lambda r: (False, "it did not fire as expected"))
    feedback = evaluate("05.2", GOOD_RULE)
    assert not feedback.ok and "promtool's unit test: it did not fire" in feedback.message


def test_without_promtool_the_rule_is_judged_by_its_parsed_expression(monkeypatch):
    def missing(name):
        raise lint.ToolMissing(f"{name} not found")

    monkeypatch.setattr(lint, "find_tool", missing)
    feedback = evaluate("05.2", GOOD_RULE)
    assert feedback.ok and "promtool is not installed" in feedback.message
    assert not evaluate("05.2", rule(**{"for": "5m"})).ok


# ------------------------------------------------------------------ 05.3 retraining months
@pytest.fixture
def monthly():
    return pd.DataFrame({"drift_share": [0.56, 0.56, 0.56, 0.44, 0.44], "mae": [50.5, 52.8, 50.4, 52.1, 50.0]},
                        index=["June", "July", "Aug", "Nov", "Dec"])


@pytest.mark.parametrize("answer", [
    ["July", "Nov"], ("Nov", "July"), {"July", "Nov"}, pd.Index(["July", "Nov"]), np.array(["July", "Nov"]),
    ["july", "November"],
])
def test_retrain_months_accepts_the_months_in_any_form(monthly, answer):
    feedback = evaluate("05.3", answer, monthly, 0.4, 51.4)
    assert feedback.ok, feedback
    assert "['July', 'Nov']" in feedback.message  # reported in calendar order


def test_retrain_months_follows_the_thresholds_it_is_given(monthly):
    assert evaluate("05.3", ["July"], monthly, 0.5, 51.4).ok
    assert "no month" in evaluate("05.3", [], monthly, 0.95, 51.4).message


@pytest.mark.parametrize("answer,hint", [
    (["June", "July", "Aug", "Nov"], "AND"),
    (["June", "July", "Aug"], "mae > error_threshold"),
    (["July", "Nov"], "drift_share > drift_threshold"),
    (["Dec"], "should_retrain(row.drift_share"),
])
def test_retrain_months_names_the_typical_mistakes(monthly, answer, hint):
    feedback = evaluate("05.3", answer, monthly, 0.5, 51.4)
    assert not feedback.ok and hint in feedback.hint, feedback


def test_retrain_months_with_ties_names_strictly_above():
    table = pd.DataFrame({"drift_share": [0.5, 0.6], "mae": [60.0, 60.0]}, index=["June", "July"])
    feedback = evaluate("05.3", ["June", "July"], table, 0.5, 51.4)
    assert not feedback.ok and "strictly above" in feedback.hint


def test_retrain_months_checks_the_shape_of_the_answer(monthly):
    assert "list of month names" in evaluate("05.3", "Nov", monthly, 0.4, 51.4).message
    assert "list of month names" in evaluate("05.3", 3, monthly, 0.4, 51.4).message
    assert "not months of the table" in evaluate("05.3", ["Nov", "Smarch"], monthly, 0.4, 51.4).message
