import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from mlops_course import drift
from mlops_course.drift import DriftInputError

CASES = [(0, 40, 60), (1, 700, 2800), (2, 5000, 12000)]


@pytest.mark.parametrize("seed,n,m", CASES)
def test_ks_agrees_with_scipy(seed, n, m):
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=n), rng.normal(0.1, 1.2, size=m)
    ours = drift.ks_test(a, b)
    assert abs(ours.statistic - stats.ks_2samp(a, b).statistic) < 1e-9
    assert abs(ours.p_value - stats.ks_2samp(a, b, method="asymp").pvalue) < 1e-9


def test_ks_agrees_on_discrete_values_with_ties():
    rng = np.random.default_rng(3)
    a, b = rng.integers(0, 24, 900).astype(float), rng.integers(0, 20, 700).astype(float)
    ours, theirs = drift.ks_test(a, b), stats.ks_2samp(a, b, method="asymp")
    assert abs(ours.statistic - theirs.statistic) < 1e-9 and abs(ours.p_value - theirs.pvalue) < 1e-9


@pytest.mark.parametrize("seed,n,m", CASES)
def test_wasserstein_agrees_with_scipy(seed, n, m):
    rng = np.random.default_rng(seed)
    a, b = rng.gamma(2.0, size=n), rng.gamma(2.5, size=m)
    assert abs(drift.wasserstein(a, b) - stats.wasserstein_distance(a, b)) < 1e-9
    normed = stats.wasserstein_distance(a, b) / np.std(a)
    assert abs(drift.wasserstein(a, b, normed=True) - normed) < 1e-9


@pytest.mark.parametrize("seed,n,m", CASES)
@pytest.mark.parametrize("k", [2, 3, 6])
def test_chi2_agrees_with_scipy_contingency(seed, n, m, k):
    rng = np.random.default_rng(seed)
    labels = [f"c{i}" for i in range(k)]
    a = rng.choice(labels, size=n)
    b = rng.choice(labels, size=m, p=np.linspace(1, 2, k) / np.linspace(1, 2, k).sum())
    table = np.array([[np.sum(a == c) for c in labels], [np.sum(b == c) for c in labels]])
    for correction in (True, False):  # Yates' correction only matters for k == 2
        ours = drift.chi2_test(a, b, correction=correction)
        theirs = stats.chi2_contingency(table, correction=correction)
        assert abs(ours.statistic - theirs.statistic) < 1e-9
        assert abs(ours.p_value - theirs.pvalue) < 1e-9
        assert ours.dof == theirs.dof == k - 1


def test_psi_matches_a_hand_computed_categorical_example():
    reference = ["a"] * 50 + ["b"] * 30 + ["c"] * 20     # shares 0.5, 0.3, 0.2
    current = ["a"] * 30 + ["b"] * 30 + ["c"] * 40       # shares 0.3, 0.3, 0.4
    # (0.3 - 0.5) ln(0.3/0.5) + 0 + (0.4 - 0.2) ln(0.4/0.2) = 0.2 * 0.5108 + 0.2 * 0.6931 = 0.2408
    assert drift.psi(reference, current, categorical=True) == pytest.approx(0.2408, abs=1e-4)
    assert drift.psi(reference, current, categorical=True) == pytest.approx(
        0.2 * math.log(0.5 / 0.3) + 0.2 * math.log(2.0), abs=1e-12)
    assert drift.psi_level(0.2408) == "moderate"


def test_psi_of_numbers_bins_at_reference_quartiles():
    reference = np.arange(100.0)                     # quartile edges 24.75, 49.5, 74.25
    current = np.repeat([10.0, 30.0, 60.0, 90.0], [10, 20, 30, 40])
    expected = sum((c - 0.25) * math.log(c / 0.25) for c in (0.1, 0.2, 0.3, 0.4))
    assert drift.psi(reference, current, bins=4) == pytest.approx(expected, abs=1e-12)


def test_psi_replaces_empty_bins_by_a_small_share():
    value = drift.psi_from_shares([0.5, 0.5, 0.0], [0.5, 0.4, 0.1])
    expected = (0.4 - 0.5) * math.log(0.4 / 0.5) + (0.1 - drift.PSI_EPS) * math.log(0.1 / drift.PSI_EPS)
    assert value == pytest.approx(expected, abs=1e-12)
    with pytest.raises(DriftInputError, match="one length"):
        drift.psi_from_shares([0.5, 0.5], [1.0])


@pytest.mark.parametrize("value,level", [(0.0, "stable"), (0.0999, "stable"), (0.1, "moderate"),
                                         (0.25, "moderate"), (0.2501, "significant"), (float("nan"), "n/a")])
def test_psi_levels(value, level):
    assert drift.psi_level(value) == level


def frame(rng, n, shift=0.0, weather_p=(0.6, 0.3, 0.1)):
    return pd.DataFrame({"temp": rng.normal(0.3 + shift, 0.1, n), "hum": rng.uniform(0.2, 0.9, n),
                         "weather": rng.choice([1.0, 2.0, 3.0], size=n, p=weather_p)})


def test_identical_samples_show_no_drift():
    rng = np.random.default_rng(7)
    ref = frame(rng, 800)
    assert drift.ks_test(ref["temp"], ref["temp"]) == drift.TestResult(0.0, 1.0)
    assert drift.wasserstein(ref["temp"], ref["temp"]) == 0.0
    assert drift.chi2_test(ref["weather"], ref["weather"]).p_value == pytest.approx(1.0)
    assert drift.psi(ref["temp"], ref["temp"]) == 0.0
    for test in drift.NUMERIC_TESTS:
        table = drift.drift_table(ref, ref.copy(), categorical=["weather"], numeric_test=test)
        assert not table["drifted"].any() and drift.drift_share(table) == 0.0
        assert set(table["psi_level"]) == {"stable"}


def test_a_shifted_sample_drifts_and_an_unshifted_one_does_not():
    rng = np.random.default_rng(8)
    ref, same, shifted = frame(rng, 3000), frame(rng, 700), frame(rng, 700, shift=0.08, weather_p=(0.3, 0.4, 0.3))
    for test in drift.NUMERIC_TESTS:
        calm = drift.drift_table(ref, same, categorical=["weather"], numeric_test=test)
        moved = drift.drift_table(ref, shifted, categorical=["weather"], numeric_test=test)
        assert not calm["drifted"].any(), calm
        assert moved["drifted"].to_dict() == {"temp": True, "hum": False, "weather": True}
    assert moved.loc["temp", "psi_level"] == "significant" and moved.loc["hum", "psi_level"] == "stable"
    assert list(moved["test"]) == ["ks", "ks", "chi2"]
    assert drift.drift_share(moved) == pytest.approx(2 / 3)


def test_drift_table_reports_missing_values_and_ignores_them():
    rng = np.random.default_rng(9)
    ref, cur = frame(rng, 500), frame(rng, 200)
    cur.loc[:49, "hum"] = np.nan
    table = drift.drift_table(ref, cur, categorical=["weather"])
    assert table.loc["hum", "missing"] == 0.25 and table.loc["temp", "missing"] == 0.0
    assert table.loc["hum", "statistic"] == pytest.approx(drift.wasserstein(ref["hum"], cur["hum"].dropna(),
                                                                            normed=True))


def test_drift_by_month_builds_a_features_by_months_matrix():
    rng = np.random.default_rng(10)
    ref = frame(rng, 1000)
    batches = [("May", frame(rng, 300)), ("June", frame(rng, 300, shift=0.1))]
    matrix = drift.drift_by_month(ref, batches, categorical=["weather"])
    assert list(matrix.columns) == ["May", "June"] and list(matrix.index) == ["temp", "hum", "weather"]
    assert matrix.loc["temp", "June"] > 0.25 > matrix.loc["temp", "May"]
    flags = drift.drift_by_month(ref, batches, categorical=["weather"], value="drifted")
    assert flags.loc["temp"].tolist() == [False, True]
    with pytest.raises(DriftInputError, match="value must be"):
        drift.drift_by_month(ref, batches, value="colour")
    with pytest.raises(DriftInputError, match="no batches"):
        drift.drift_by_month(ref, [])


@pytest.mark.parametrize("call", [
    lambda: drift.ks_test([], [1.0, 2.0]),
    lambda: drift.wasserstein([1.0], np.array([])),
    lambda: drift.chi2_test([], ["a"]),
    lambda: drift.drift_table(pd.DataFrame({"x": [1.0]}), pd.DataFrame({"x": []})),
])
def test_empty_input_is_refused(call):
    with pytest.raises(DriftInputError, match="empty"):
        call()


def test_all_nan_columns_are_refused_as_data_quality_failures():
    with pytest.raises(DriftInputError, match="every value is NaN"):
        drift.ks_test([1.0, 2.0], [np.nan, np.nan])
    ref = pd.DataFrame({"temp": [0.1, 0.2, 0.3], "weather": [1.0, 2.0, 1.0]})
    cur = pd.DataFrame({"temp": [np.nan] * 3, "weather": [1.0, 1.0, 2.0]})
    with pytest.raises(DriftInputError, match="column 'temp' of current: every value is NaN"):
        drift.drift_table(ref, cur, categorical=["weather"])
    cur = pd.DataFrame({"temp": [0.1, 0.2, 0.3], "weather": [None, None, None]})
    with pytest.raises(DriftInputError, match="column 'weather' of current: every value is missing"):
        drift.drift_table(ref, cur, categorical=["weather"])


def test_unseen_categories_are_refused():
    with pytest.raises(DriftInputError, match=r"current has categories \['snow'\] that the reference never had"):
        drift.chi2_test(["sun", "rain"], ["sun", "snow"])
    with pytest.raises(DriftInputError, match="never had"):
        drift.psi(["sun", "rain"], ["sun", "snow"], categorical=True)
    # Declared categories allow a valid value that the reference happens to lack.
    result = drift.chi2_test(["sun", "rain"] * 20, ["sun", "snow"] * 20, categories=["sun", "rain", "snow"])
    assert result.dof == 2 and result.p_value < 0.05
    with pytest.raises(DriftInputError, match="declared categories"):
        drift.chi2_test(["sun"], ["hail"], categories=["sun", "rain"])


def test_mismatched_columns_are_refused():
    ref = pd.DataFrame({"temp": [0.1, 0.2], "hum": [0.5, 0.6]})
    with pytest.raises(DriftInputError, match=r"current lacks \['hum'\], has extra \['wind'\]"):
        drift.drift_table(ref, pd.DataFrame({"temp": [0.1], "wind": [0.2]}))
    with pytest.raises(DriftInputError, match="different order"):
        drift.drift_table(ref, ref[["hum", "temp"]])
    with pytest.raises(DriftInputError, match=r"categorical column\(s\) \['weather'\]"):
        drift.drift_table(ref, ref, categorical=["weather"])


def test_bad_options_and_labels_as_numbers_are_refused():
    ref = pd.DataFrame({"city": ["a", "b", "a"]})
    with pytest.raises(DriftInputError, match="must be numbers"):
        drift.drift_table(ref, ref)
    with pytest.raises(DriftInputError, match="numeric_test"):
        drift.drift_table(ref, ref, categorical=["city"], numeric_test="t-test")
    with pytest.raises(DriftInputError, match="at least 2 bins"):
        drift.psi([1.0, 2.0], [1.0, 2.0], bins=1)
    with pytest.raises(DriftInputError, match="categorical_test"):
        drift.drift_table(ref, ref, categorical=["city"], categorical_test="g-test")


# ------------------------------------------------------------------ Jensen-Shannon, empty bins, Holm, days
@pytest.mark.parametrize("seed,n,m", CASES)
def test_jensen_shannon_agrees_with_scipy(seed, n, m):
    from scipy.spatial import distance

    rng = np.random.default_rng(seed)
    labels = ["sun", "cloud", "rain", "snow"]
    a = rng.choice(labels, size=n, p=[0.5, 0.3, 0.15, 0.05])
    b = rng.choice(labels, size=m, p=[0.3, 0.3, 0.3, 0.1])
    shares = [pd.Series(x).value_counts(normalize=True).reindex(labels, fill_value=0.0) for x in (a, b)]
    assert abs(drift.jensen_shannon(a, b) - distance.jensenshannon(*shares)) < 1e-12


def test_jensen_shannon_bounds_and_its_verdict_in_the_table():
    assert drift.jensen_shannon(["a", "b"] * 10, ["a", "b"] * 30) == 0.0
    disjoint = drift.jensen_shannon(["a"] * 10, ["b"] * 10, categories=["a", "b"])
    assert disjoint == pytest.approx(math.sqrt(math.log(2)))
    ref = pd.DataFrame({"weather": [1.0] * 60 + [2.0] * 40})
    cur = pd.DataFrame({"weather": [1.0] * 30 + [2.0] * 70})
    table = drift.drift_table(ref, cur, categorical=["weather"], categorical_test="jensenshannon")
    row = table.loc["weather"]
    assert row["test"] == "jensenshannon" and math.isnan(row["p_value"])
    assert row["statistic"] == pytest.approx(drift.jensen_shannon(ref["weather"], cur["weather"]))
    assert bool(row["drifted"]) is bool(row["statistic"] >= 0.1) is True
    # the same distance does not grow with the number of rows, unlike the chi-squared p-value
    ten_times = drift.drift_table(pd.concat([ref] * 10), pd.concat([cur] * 10), categorical=["weather"],
                                  categorical_test="jensenshannon")
    assert ten_times.loc["weather", "statistic"] == pytest.approx(row["statistic"])


def test_the_empty_bin_value_sets_the_size_of_the_psi_of_non_overlapping_samples():
    reference, current = np.linspace(0.0, 1.0, 1000), np.linspace(2.0, 3.0, 300)
    ref_share, cur_share = drift.bin_shares(reference, current)
    assert ref_share.tolist() == pytest.approx([0.1] * 10) and cur_share.tolist() == [0.0] * 9 + [1.0]
    small, usual, large = (drift.psi(reference, current, eps=eps) for eps in (1e-6, drift.PSI_EPS, 1e-2))
    assert small > usual > large > drift.PSI_SIGNIFICANT  # the size moves with eps, the level does not
    # 9 empty bins of share 0.1 each add (0.1 - eps) * ln(0.1 / eps)
    expected = 9 * (0.1 - 1e-6) * math.log(0.1 / 1e-6) + (1 - 0.1) * math.log(1 / 0.1)
    assert small == pytest.approx(expected)
    table = drift.drift_table(pd.DataFrame({"x": reference}), pd.DataFrame({"x": current}), psi_eps=1e-6)
    assert table.loc["x", "psi"] == pytest.approx(small)


def test_holm_matches_the_step_down_rule_and_keeps_shape_and_nan():
    p = np.array([0.01, 0.04, 0.03, 0.005])
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> monotone: 0.02, 0.03, 0.06, 0.06
    assert drift.holm(p).tolist() == pytest.approx([0.03, 0.06, 0.06, 0.02])
    frame = pd.DataFrame({"June": [0.01, np.nan], "July": [0.04, 0.5]}, index=["temp", "hr"])
    adjusted = drift.holm(frame)
    assert list(adjusted.index) == ["temp", "hr"] and list(adjusted.columns) == ["June", "July"]
    assert math.isnan(adjusted.loc["hr", "June"])
    assert adjusted.loc["temp", "June"] == pytest.approx(0.03) and adjusted.loc["hr", "July"] == pytest.approx(0.5)
    assert drift.holm(pd.Series([0.2, 0.9], name="p")).tolist() == [0.4, 0.9]
    with pytest.raises(DriftInputError, match="between 0 and 1"):
        drift.holm([0.5, 1.5])


def test_holm_keeps_false_alarms_rare_where_raw_p_values_do_not():
    rng = np.random.default_rng(7)
    p = np.array([drift.ks_test(rng.normal(size=200), rng.normal(size=200)).p_value for _ in range(60)])
    assert (p < 0.05).sum() >= 1  # about 3 of 60 identical-distribution tests look "significant"
    assert (drift.holm(p) < 0.05).sum() == 0


def test_daily_averages_numbers_and_takes_the_most_frequent_category():
    hours = pd.DataFrame({"temp": [0.2, 0.4, 0.6, 0.1], "weather": [2.0, 1.0, 2.0, 3.0],
                          "holiday": [0.0, 0.0, 0.0, 1.0]})
    days = drift.daily(hours, [5, 5, 5, 6], categorical=["weather", "holiday"])
    assert days.to_dict("list") == {"temp": [pytest.approx(0.4), 0.1], "weather": [2.0, 3.0], "holiday": [0.0, 1.0]}
    tie = drift.daily(pd.DataFrame({"weather": [3.0, 1.0]}), [1, 1], categorical=["weather"])
    assert tie["weather"].tolist() == [1.0]  # a tie goes to the smaller code
    named = drift.daily(hours.assign(day=[5, 5, 5, 6]), "day", categorical=["weather"])
    assert list(named.columns) == ["temp", "weather", "holiday"] and len(named) == 2
    with pytest.raises(DriftInputError, match="one day label per row"):
        drift.daily(hours, [1, 2])


def test_a_calendar_code_repeated_24_times_looks_significant_on_hours_but_not_on_days():
    rng = np.random.default_rng(11)
    ref_days, cur_days = rng.choice([0.0, 1.0], 120, p=[0.97, 0.03]), np.array([0.0] * 28 + [1.0] * 2)
    hourly = drift.chi2_test(np.repeat(ref_days, 24), np.repeat(cur_days, 24), categories=[0.0, 1.0])
    on_days = drift.chi2_test(ref_days, cur_days, categories=[0.0, 1.0])
    assert on_days.p_value > 0.05 and hourly.p_value < on_days.p_value / 10
