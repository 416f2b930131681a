import pytest

from mlops_course import stages, train_config
from mlops_course.train_config import CI, EXAMPLE, TrainConfig


def test_the_two_windows_of_the_course():
    assert EXAMPLE.train_months == ("Jan", "Feb", "March", "April") and EXAMPLE.test_month == "May"
    assert CI == EXAMPLE.next() and CI.train_months[-1] == "May" and CI.test_month == "June"
    assert stages.DEFAULT_PARAMS["prepare"] == EXAMPLE.as_params()  # lesson 01's params.yaml


def test_from_params_reads_a_params_file(tmp_path):
    stages.write_pipeline(tmp_path, {"prepare": {"train_months": ["Feb", "March"], "test_months": ["April"]}})
    assert TrainConfig.from_params(tmp_path / "params.yaml") == TrainConfig(("Feb", "March"), ("April",))
    (tmp_path / "other.yaml").write_text("train:\n  n_estimators: 5\n")
    with pytest.raises(ValueError, match="needs prepare: with train_months and test_months"):
        TrainConfig.from_params(tmp_path / "other.yaml")


def test_from_env_falls_back_to_the_default_window():
    assert TrainConfig.from_env({}) == CI
    assert TrainConfig.from_env({"BIKE_TRAIN_MONTHS": "Jan, Feb", "BIKE_TEST_MONTH": "March"}) == \
        TrainConfig(("Jan", "Feb"), ("March",))
    assert TrainConfig.from_env({"BIKE_TEST_MONTH": "July"}, default=EXAMPLE).train_months == EXAMPLE.train_months


@pytest.mark.parametrize(("train", "test", "message"), [
    (("Jan", "Mai"), ("June",), r"unknown month name\(s\) \['Mai'\]"),
    ("Jan", ("June",), "non-empty list of month names"),
    ((), ("June",), "non-empty list of month names"),
])
def test_a_bad_window_is_refused_with_what_is_wrong(train, test, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(train, test)


def test_next_and_test_month_say_when_they_cannot():
    with pytest.raises(ValueError, match="reaches December"):
        TrainConfig(("Nov",), ("Dec",)).next()
    with pytest.raises(ValueError, match="not on one month"):
        _ = TrainConfig(("Jan",), ("Feb", "March")).test_month


def test_month_problem_is_the_one_month_check():
    assert train_config.month_problem(["Jan", "Sept"]) is None
    assert train_config.month_problem(["January"]).startswith("unknown month name(s) ['January']; use ['Jan',")
