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
