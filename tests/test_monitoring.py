import math

import numpy as np
import pandas as pd
import pytest
from conftest import module_lesson, small_champion
from prometheus_client.parser import text_string_to_metric_families

from mlops_course import alerts, drift, monitoring
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
def test_mae_by_month_keeps_month_order_and_reports_bias_and_relative_error():
    months = ["June", "June", "July", "July", "July"]
    table = monitoring.mae_by_month([10, 20, 10, 10, 10], [12, 16, 10, 4, 13], months)
    assert list(table.index) == ["June", "July"] and list(table.columns) == ["rows", "mae", "bias", "relative"]
    assert table.loc["June"].tolist() == [2, 3.0, -1.0, 0.2]
    assert table.loc["July", "mae"] == pytest.approx(3.0) and table.loc["July", "bias"] == pytest.approx(-1.0)
    assert table.loc["July", "relative"] == pytest.approx(0.3)
    with pytest.raises(ValueError, match="missing"):
        monitoring.mae_by_month([1.0, np.nan], [1.0, 2.0], ["June", "June"])
    with pytest.raises(ValueError, match="no predictions"):
        monitoring.mae_by_month([], [], [])
    with pytest.raises(ValueError, match="one day label per row"):
        monitoring.mae_by_month([1.0, 2.0], [1.0, 2.0], ["June", "June"], days=[1])


def correlated_days(n_days=60, hours=24, seed=0):
    """Absolute errors whose level is set per day (as weather sets them), plus a little hourly noise."""
    rng = np.random.default_rng(seed)
    level = rng.gamma(4.0, 12.0, n_days)
    errors = np.repeat(level, hours) + rng.normal(0.0, 2.0, n_days * hours)
    return np.abs(errors), np.repeat(np.arange(n_days), hours)


def test_bootstrap_by_day_is_wider_than_resampling_hours_and_covers_the_mean():
    errors, days = correlated_days()
    low, high = monitoring.bootstrap_by_day(errors, days, n_boot=2000, seed=1)
    assert low < errors.mean() < high
    # the day-level spread of the mean: sd of day means / sqrt(days), times about 2 x 1.96
    day_means = errors.reshape(60, 24).mean(axis=1)
    expected = 2 * 1.96 * day_means.std(ddof=1) / np.sqrt(60)
    assert high - low == pytest.approx(expected, rel=0.15)
    h_low, h_high = monitoring.bootstrap_by_day(errors, np.arange(errors.size), n_boot=2000, seed=1)
    assert (h_high - h_low) < 0.5 * (high - low)  # hours pretend to be independent: far too narrow
    assert monitoring.bootstrap_by_day(errors, days, seed=1) == (low, high)  # a seed gives one answer


def test_bootstrap_by_day_weights_days_by_their_hours():
    # one long day of error 10 and one short day of error 100: the MAE of all hours is 25 when both are drawn
    errors = np.array([10.0] * 20 + [100.0] * 4)
    days = np.array([1] * 20 + [2] * 4)
    low, high = monitoring.bootstrap_by_day(errors, days, n_boot=4000, seed=3)
    assert low == pytest.approx(10.0) and high == pytest.approx(100.0)
    table = monitoring.mae_by_month(np.zeros(24), errors, ["June"] * 24, days=days, n_boot=4000, seed=3)
    assert table.loc["June", "mae"] == pytest.approx(25.0)
    assert (table.loc["June", "low"], table.loc["June", "high"]) == (low, high)


@pytest.mark.parametrize("values,days,options,message", [
    ([], [], {}, "at least one value"),
    ([1.0, 2.0], [1], {}, "one day label per value"),
    ([1.0, np.nan], [1, 2], {}, "NaN"),
    ([1.0, 2.0], [1, 2], {"level": 1.5}, "level"),
    ([1.0, 2.0], [1, 2], {"n_boot": 10}, "n_boot"),
])
def test_bootstrap_by_day_refuses_bad_input(values, days, options, message):
    with pytest.raises(ValueError, match=message):
        monitoring.bootstrap_by_day(values, days, **options)


def test_first_crossing():
    errors = pd.Series([47.0, 50.5, 52.8, 50.4], index=["June", "July", "Aug", "Sept"])
    assert monitoring.first_crossing(errors, 46.7, 0.10) == "Aug"
    assert monitoring.first_crossing(errors, 46.7, 0.05) == "July"
    assert monitoring.first_crossing(errors, 46.7, 0.50) is None
    with pytest.raises(ValueError, match="baseline > 0"):
        monitoring.first_crossing(errors, 0.0, 0.1)
    with pytest.raises(ValueError, match="tolerance >= 0"):
        monitoring.first_crossing(errors, 40.0, -0.1)


# ------------------------------------------------------------------ the rules stay importable from monitoring
def test_the_rules_are_importable_from_monitoring_as_before():
    assert monitoring.alert_rules is alerts.alert_rules and monitoring.rules_yaml is alerts.rules_yaml
    assert monitoring.validate_alert_rules(monitoring.rules_yaml())[0] == "BikeServiceDown"
    with pytest.raises(AlertRulesError):
        monitoring.validate_alert_rules("groups: []")


# ------------------------------------------------------------------ the monitoring job's metrics
def test_drift_gauges_export_psi_per_feature():
    table = pd.DataFrame({"psi": [0.01234567, 0.5]}, index=pd.Index(["hr", "temp"], name="feature"))
    text = monitoring.drift_gauges(table, share=0.5)
    values = {(s.name, s.labels.get("feature")): s.value
              for f in text_string_to_metric_families(text) for s in f.samples}
    assert values == {("bike_feature_drift_psi", "hr"): 0.0123, ("bike_feature_drift_psi", "temp"): 0.5,
                      ("bike_drift_share", None): 0.5}
    text_again = monitoring.drift_gauges(table, share=0.5)  # a fresh registry each time: no duplicate error
    assert text_again == text


def test_drift_gauges_export_the_error_histogram_the_rules_read():
    table = pd.DataFrame({"psi": [0.1]}, index=pd.Index(["temp"], name="feature"))
    text = monitoring.drift_gauges(table, share=0.0, errors=[5.0, 30.0, 30.0, 500.0])
    values = {(s.name, s.labels.get("le")): s.value for f in text_string_to_metric_families(text) for s in f.samples}
    assert values[("bike_prediction_abs_error_bucket", "10.0")] == 1
    assert values[("bike_prediction_abs_error_bucket", "50.0")] == 3
    assert values[("bike_prediction_abs_error_bucket", "400.0")] == 3
    assert values[("bike_prediction_abs_error_bucket", "+Inf")] == 4
    assert values[("bike_prediction_abs_error_sum", None)] / values[("bike_prediction_abs_error_count", None)] == 141.25
    families = {f.name for f in text_string_to_metric_families(text) if not f.name.endswith("_created")}
    assert families == set(alerts.JOB_METRICS)


@pytest.mark.parametrize("table,share,message", [
    (pd.DataFrame({"statistic": [0.1]}, index=["temp"]), 0.5, "'psi' column"),
    (pd.DataFrame({"psi": [0.1, 0.2]}, index=["temp", "temp"]), 0.5, "repeat"),
    (pd.DataFrame({"psi": [0.1]}, index=["temp"]), 5.0, "between 0 and 1"),
])
def test_drift_gauges_refuse_tables_they_cannot_export(table, share, message):
    with pytest.raises(ValueError, match=message):
        monitoring.drift_gauges(table, share)


@pytest.fixture(scope="module")
def champion_lesson(tmp_path_factory):
    """A lesson store with bike-demand@champion (version 1)."""
    with module_lesson(tmp_path_factory, "94", "monitoring-tests") as lesson:
        small_champion()
        yield lesson


def test_require_champion_names_the_cell_to_run_first(champion_lesson, capsys):
    assert monitoring.require_champion("section 2") == "1"
    with pytest.raises(monitoring.LessonStateError, match="Run section 2 first") as caught:
        monitoring.require_champion("section 2", alias="nobody")
    first_line = capsys.readouterr().err.splitlines()[0]
    assert "no alias 'nobody'" in first_line and "Run section 2 first" in first_line
    assert str(caught.value) == first_line
    with pytest.raises(monitoring.LessonStateError, match="no registered model named 'other'.*Run section 2"):
        monitoring.require_champion("section 2", name="other")  # e.g. a fresh store after the setup cell


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
    assert table["evidently_test"].tolist() == ["wasserstein", "jensenshannon", "ks", "ks", "ks"]
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
    assert table.loc[["temp", "hum", "wind"], "score_gap"].max() < 1e-9
    assert np.isnan(table.loc["weather", "score_gap"])  # chi2 vs Jensen-Shannon: different quantities
    # with Jensen-Shannon for categories too, every column runs Evidently's test and gets its score
    js = monitoring.compare_drift(drift.drift_table(ref, cur, categorical=["weather"], categorical_test="jensenshannon"),
                                  theirs)
    assert js["same_test"].all() and js["agree"].all() and js["score_gap"].max() < 1e-9
    assert table.loc["temp", "ours_drifted"] and not table.loc["hum", "ours_drifted"]
