import numpy as np
import pandas as pd
import pytest

from mlops_course import data, pipeline


@pytest.fixture(scope="module")
def bikes():
    return data.load_bikeshare()


def test_shipped_data_passes_validation(bikes):
    assert pipeline.check_schema(bikes) == []
    assert pipeline.validate(bikes) is bikes


def test_validation_names_column_and_rows(bikes):
    bad = bikes.copy()
    bad.loc[[3, 7], "hum"] = 1.7
    bad.loc[11, "hr"] = 25
    with pytest.raises(pipeline.ValidationError) as err:
        pipeline.validate(bad)
    text = str(err.value)
    assert "'hum'" in text and "[3, 7]" in text and "'hr'" in text and "[11]" in text


def test_validation_finds_duplicated_hours_and_missing_columns(bikes):
    dup = pd.concat([bikes.head(3), bikes.head(1)], ignore_index=True)
    assert any("duplicated hours" in p for p in pipeline.check_schema(dup))
    assert pipeline.check_schema(bikes.drop(columns=["temp"])) == ["missing column(s) ['temp']"]
    assert pipeline.check_schema(bikes.head(0)) == ["the table has no rows"]
    wrong_type = bikes.head(5).assign(temp="warm")
    assert "dtype" in pipeline.check_schema(wrong_type)[0]


def test_features_are_numeric_and_ordered(bikes):
    X = pipeline.make_features(bikes)
    assert list(X.columns) == pipeline.FEATURES
    assert all(X.dtypes == "float64")
    assert X["weather"].between(1, 4).all()
    assert "casual" not in X and "registered" not in X
    with pytest.raises(KeyError, match="hr"):
        pipeline.make_features(bikes.drop(columns=["hr"]))


def test_time_split_keeps_months_apart(bikes):
    train, test = pipeline.split_by_month(bikes, ["Jan", "Feb"], ["March"])
    assert set(train["mnth"]) == {"Jan", "Feb"} and set(test["mnth"]) == {"March"}
    with pytest.raises(ValueError, match="both train and test"):
        pipeline.split_by_month(bikes, ["Jan"], ["Jan"])
    with pytest.raises(ValueError, match="empty"):
        pipeline.split_by_month(bikes[bikes["mnth"] == "Jan"], ["Jan"], ["Feb"])


@pytest.mark.parametrize("kind", pipeline.MODEL_KINDS)
def test_each_family_beats_the_mean(bikes, kind):
    train, test = pipeline.split_by_month(bikes, ["Jan", "Feb", "March"], ["April"])
    model = pipeline.train(train, kind)
    scores = pipeline.evaluate(model, test)
    mean_mae = float(np.abs(test["bikers"] - train["bikers"].mean()).mean())
    assert scores["mae"] < mean_mae
    assert set(scores) == {"mae", "rmse", "r2"}


def test_training_is_deterministic(bikes):
    train, test = pipeline.split_by_month(bikes, ["Jan"], ["Feb"])
    a = pipeline.train(train, n_estimators=5).predict(pipeline.make_features(test))
    b = pipeline.train(train, n_estimators=5).predict(pipeline.make_features(test))
    assert np.array_equal(a, b)


def test_metrics_by_hand():
    m = pipeline.metrics([1, 2, 3], [2, 2, 5])
    assert m["mae"] == pytest.approx(1.0)
    assert m["rmse"] == pytest.approx(np.sqrt(5 / 3))
    with pytest.raises(ValueError):
        pipeline.metrics([], [])


def test_unknown_kind_and_setting():
    with pytest.raises(ValueError, match="unknown model kind"):
        pipeline.build_model("svm")
    with pytest.raises(ValueError, match="not a setting"):
        pipeline.as_params({"depth": 3}, "random_forest")
    assert pipeline.as_params({"max_depth": 3}, "random_forest")["max_depth"] == 3


def test_evaluate_by_month(bikes):
    train, _ = pipeline.split_by_month(bikes, ["Jan"], ["Feb"])
    model = pipeline.train(train, "ridge")
    table = pipeline.evaluate_by_month(model, data.select_months(bikes, ["Feb", "March"]))
    assert list(table.index) == ["Feb", "March"] and (table["mae"] > 0).all()


def test_skops_round_trip_and_refusal(bikes, tmp_path):
    train, test = pipeline.split_by_month(bikes, ["Jan"], ["Feb"])
    model = pipeline.train(train, n_estimators=3)
    path = pipeline.save_model(model, tmp_path / "m.skops")
    again = pipeline.load_model(path)
    X = pipeline.make_features(test)
    assert np.array_equal(again.predict(X), model.predict(X))
    with pytest.raises(ValueError, match="not trusted"):
        pipeline.load_model(path, trusted=[])
    with pytest.raises(FileNotFoundError):
        pipeline.load_model(tmp_path / "missing.skops")
    assert pipeline.model_kind(again) == "random_forest"


def test_saved_bytes_are_reproducible(bikes, tmp_path):
    # Same data, same seed: the same file, byte for byte (DVC hashes it into dvc.lock).
    train, _ = pipeline.split_by_month(bikes, ["Jan"], ["Feb"])
    first = pipeline.save_model(pipeline.train(train, n_estimators=4), tmp_path / "a.skops").read_bytes()
    second = pipeline.save_model(pipeline.train(train, n_estimators=4), tmp_path / "b.skops").read_bytes()
    assert first == second
    other = pipeline.save_model(pipeline.train(train, n_estimators=5), tmp_path / "c.skops").read_bytes()
    assert other != first


def test_the_seed_is_fixed_unless_given():
    assert pipeline.build_model().random_state == pipeline.SEED
    assert pipeline.build_model(random_state=3).random_state == 3
    assert pipeline.build_model("gradient_boosting", random_state=4).random_state == 4
