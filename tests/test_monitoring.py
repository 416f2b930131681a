import math

import numpy as np
import pandas as pd
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from mlops_course import drift, monitoring
from mlops_course.monitoring import AlertRulesError, should_retrain


# ------------------------------------------------------------------ should_retrain
@pytest.mark.parametrize("drift_value,error,expected", [
    (0.6, 60.0, True),     # both above
    (0.6, 40.0, False),    # drift alone
    (0.2, 60.0, False),    # error alone
    (0.2, 40.0, False),    # neither
    (0.5, 60.0, False),    # exactly on the drift threshold is not above it
    (0.6, 50.0, False),    # exactly on the error threshold is not above it
])
def test_should_retrain_needs_drift_and_error(drift_value, error, expected):
    assert should_retrain(drift_value, error, drift_threshold=0.5, error_threshold=50.0) is expected


def test_should_retrain_refuses_missing_or_odd_values():
    with pytest.raises(ValueError, match="error must be a number"):
        should_retrain(0.6, float("nan"), drift_threshold=0.5, error_threshold=50.0)
    with pytest.raises(ValueError, match="drift_share_or_score must be a number"):
        should_retrain(True, 60.0, drift_threshold=0.5, error_threshold=50.0)
    with pytest.raises(ValueError, match=">= 0"):
        should_retrain(0.6, 60.0, drift_threshold=-0.1, error_threshold=50.0)
    with pytest.raises(TypeError):
        should_retrain(0.6, 60.0, 0.5, 50.0)  # thresholds are keyword-only


# ------------------------------------------------------------------ performance
def test_mae_by_month_keeps_month_order_and_reports_bias():
    months = ["June", "June", "July", "July", "July"]
    table = monitoring.mae_by_month([10, 20, 10, 10, 10], [12, 16, 10, 4, 13], months)
    assert list(table.index) == ["June", "July"]
    assert table.loc["June"].tolist() == [2, 3.0, -1.0]
    assert table.loc["July", "mae"] == pytest.approx(3.0) and table.loc["July", "bias"] == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="missing"):
        monitoring.mae_by_month([1.0, np.nan], [1.0, 2.0], ["June", "June"])
    with pytest.raises(ValueError, match="no predictions"):
        monitoring.mae_by_month([], [], [])


def test_first_crossing():
    errors = pd.Series([47.0, 50.5, 52.8, 50.4], index=["June", "July", "Aug", "Sept"])
    assert monitoring.first_crossing(errors, 46.7, 0.10) == "Aug"
    assert monitoring.first_crossing(errors, 46.7, 0.05) == "July"
    assert monitoring.first_crossing(errors, 46.7, 0.50) is None
    with pytest.raises(ValueError, match="baseline > 0"):
        monitoring.first_crossing(errors, 0.0, 0.1)
    with pytest.raises(ValueError, match="tolerance >= 0"):
        monitoring.first_crossing(errors, 40.0, -0.1)


# ------------------------------------------------------------------ alert rules
def test_generated_rules_validate_and_cover_errors_latency_and_drift():
    text = monitoring.rules_yaml()
    names = monitoring.validate_alert_rules(text)
    assert names == ["BikeServiceDown", "BikeHighErrorRate", "BikeManyRejectedInputs", "BikeSlowPredictions",
                     "BikeFeatureDrift"]
    rules = {r["alert"]: r for g in yaml.safe_load(text)["groups"] for r in g["rules"]}
    assert 'status=~"5.."' in rules["BikeHighErrorRate"]["expr"]
    assert "histogram_quantile(0.99" in rules["BikeSlowPredictions"]["expr"]
    assert "bike_request_latency_seconds_bucket" in rules["BikeSlowPredictions"]["expr"]
    assert rules["BikeFeatureDrift"]["expr"].endswith("> 0.25")
    custom = monitoring.alert_rules(error_rate=0.01, latency_p99=0.1, psi_threshold=0.1)
    custom_rules = {r["alert"]: r["expr"] for g in custom["groups"] for r in g["rules"]}
    assert custom_rules["BikeHighErrorRate"].endswith("> 0.01")
    assert custom_rules["BikeSlowPredictions"].endswith("> 0.1")


def _rules(**changes):
    rule = {"alert": "BikeHighErrorRate", "expr": "sum(rate(bike_requests_total[5m])) > 1", "for": "5m",
            "labels": {"severity": "page"}, "annotations": {"summary": "many errors"}}
    rule.update(changes)
    return yaml.safe_dump({"groups": [{"name": "g", "rules": [rule]}]})


@pytest.mark.parametrize("text,message", [
    (_rules(expr="sum(rate(bike_requests_total[5m]) > 1"), "brackets do not balance"),
    (_rules(expr="rate(bike_requets_total[5m]) > 1"), "unknown metric"),
    (_rules(expr="vector(1) > 0"), "uses no known metric"),
    (_rules(**{"for": "5 minutes"}), "must be a duration"),
    (_rules(labels={}), "labels.severity"),
    (_rules(annotations={}), "annotations.summary"),
    (_rules(alert="high error rate"), "'alert' must be a name"),
    ("groups: [", "not valid YAML"),
    ("rules: []", "list under 'groups'"),
])
def test_broken_rules_are_refused_with_the_reason(text, message):
    with pytest.raises(AlertRulesError, match=message):
        monitoring.validate_alert_rules(text)


def test_repeated_alert_names_are_refused():
    doc = monitoring.alert_rules()
    doc["groups"][1]["rules"].append(dict(doc["groups"][1]["rules"][0]))
    with pytest.raises(AlertRulesError, match="repeat"):
        monitoring.validate_alert_rules(monitoring.rules_yaml(doc))


def test_drift_gauges_export_psi_per_feature():
    table = pd.DataFrame({"psi": [0.01234567, 0.5]}, index=pd.Index(["hr", "temp"], name="feature"))
    text = monitoring.drift_gauges(table, share=0.5)
    values = {(s.name, s.labels.get("feature")): s.value
              for f in text_string_to_metric_families(text) for s in f.samples}
    assert values == {("bike_feature_drift_psi", "hr"): 0.0123, ("bike_feature_drift_psi", "temp"): 0.5,
                      ("bike_drift_share", None): 0.5}
    text_again = monitoring.drift_gauges(table, share=0.5)  # a fresh registry each time: no duplicate error
    assert text_again == text


# ------------------------------------------------------------------ heat map
def test_heatmap_draws_every_cell():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    matrix = pd.DataFrame({"June": [0.01, 0.3], "July": [0.12, float("nan")]}, index=["hr", "temp"])
    fig = monitoring.plot_drift_heatmap(matrix)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["June", "July"]
    assert sorted(t.get_text() for t in ax.texts) == ["", "0.01", "0.12", "0.30"]
    plt.close(fig)
    with pytest.raises(ValueError, match="empty"):
        monitoring.plot_drift_heatmap(pd.DataFrame())


# ------------------------------------------------------------------ Evidently side by side
def _snapshot(columns):
    metrics = [{"metric_name": "DriftedColumnsCount(drift_share=0.5)",
                "config": {"type": "evidently:metric_v2:DriftedColumnsCount"}, "value": {"count": 1, "share": 0.5}}]
    tests = []
    for column, method, score, status in columns:
        metrics.append({"config": {"type": "evidently:metric_v2:ValueDrift", "column": column, "method": method,
                                   "threshold": 0.1}, "value": score})
        tests.append({"name": f"Value Drift for column {column}", "status": status})
    return {"metrics": metrics, "tests": tests}


def test_evidently_drift_reads_methods_scores_and_verdicts():
    snap = _snapshot([("temp", "Wasserstein distance (normed)", 3.0, "FAIL"),
                      ("weather", "Jensen-Shannon distance", 0.02, "SUCCESS")])
    table = monitoring.evidently_drift(snap)
    assert table.loc["temp"].tolist() == ["Wasserstein distance (normed)", 3.0, 0.1, True]
    assert not table.loc["weather", "drifted"]
    with pytest.raises(ValueError, match="include_tests"):
        monitoring.evidently_drift({"metrics": snap["metrics"], "tests": []})
    with pytest.raises(ValueError, match="no ValueDrift"):
        monitoring.evidently_drift({"metrics": [], "tests": []})


def test_compare_drift_marks_same_tests_and_agreement():
    ours = pd.DataFrame({"test": ["wasserstein", "chi2", "ks", "ks", "wasserstein"],
                         "drifted": [True, True, False, True, False]},
                        index=["temp", "weather", "hum", "wind", "hr"])
    theirs = monitoring.evidently_drift(_snapshot([
        ("temp", "Wasserstein distance (normed)", 3.0, "FAIL"), ("weather", "Jensen-Shannon distance", 0.02, "SUCCESS"),
        ("hum", "K-S p_value", 0.01, "FAIL"), ("wind", "ks", 0.01, "FAIL"), ("hr", "K-S p_value", 0.5, "SUCCESS")]))
    table = monitoring.compare_drift(ours, theirs)
    assert table["same_test"].tolist() == [True, False, True, True, False]
    assert table["agree"].tolist() == [True, False, False, True, True]
    with pytest.raises(ValueError, match="different columns"):
        monitoring.compare_drift(ours.drop(index="hum"), theirs)


@pytest.mark.filterwarnings("ignore")  # deprecation notices inside evidently and its dependencies
def test_real_evidently_report_agrees_where_the_test_is_the_same():
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    rng = np.random.default_rng(11)
    def batch(n, shift):
        return pd.DataFrame({"temp": rng.normal(0.3 + shift, 0.1, n), "hum": rng.uniform(0.2, 0.9, n),
                             "wind": rng.gamma(2.0, 0.05 + shift / 4, n),
                             "weather": rng.choice(["1", "2", "3"], size=n)})
    ref, cur = batch(1500, 0.0), batch(600, 0.05)
    definition = DataDefinition(numerical_columns=["temp", "hum", "wind"], categorical_columns=["weather"])
    snapshot = Report([DataDriftPreset()], include_tests=True).run(
        current_data=Dataset.from_pandas(cur, data_definition=definition),
        reference_data=Dataset.from_pandas(ref, data_definition=definition))
    theirs = monitoring.evidently_drift(snapshot.dict())
    ours = drift.drift_table(ref, cur, categorical=["weather"])
    table = monitoring.compare_drift(ours, theirs)
    assert table.loc[["temp", "hum", "wind"], "same_test"].all()
    assert table.loc[table["same_test"], "agree"].all(), table
    for column in ("temp", "hum", "wind"):
        assert math.isclose(theirs.loc[column, "score"], ours.loc[column, "statistic"], abs_tol=1e-9)
    assert table.loc["temp", "ours_drifted"] and not table.loc["hum", "ours_drifted"]
