"""Data tests: run before training, so bad data never reaches a model."""

import os

import pandas as pd

from mlops_course import cicd, data, pipeline

AS_OF = pd.Timestamp(os.environ.get("BIKE_AS_OF", "2011-07-01"))
MAX_AGE = pd.Timedelta(days=int(os.environ.get("BIKE_MAX_AGE_DAYS", "2")))


def test_schema(bikes):
    assert list(bikes.columns) == data.COLUMNS
    features = pipeline.make_features(bikes)
    assert list(features.columns) == pipeline.FEATURES
    assert (features.dtypes == "float64").all(), features.dtypes.to_dict()
    assert not features.isna().any().any(), "missing feature values"


def test_feature_ranges(bikes):
    features = pipeline.make_features(bikes)
    problems = []
    for column, (low, high, meaning) in pipeline.FEATURE_RANGES.items():
        outside = features[column].lt(low) | features[column].gt(high)
        if outside.any():
            example = features.loc[outside, column].iloc[0]
            problems.append(f"{column} ({meaning}): {int(outside.sum())} values outside [{low}, {high}], "
                            f"e.g. {example}")
    assert not problems, "; ".join(problems)
    assert (bikes["bikers"] == bikes["casual"] + bikes["registered"]).all()


def test_data_is_fresh(bikes):
    newest = cicd.hour_stamps(bikes).max()
    assert newest <= AS_OF, f"rows from the future: newest hour {newest} is after {AS_OF}"
    assert AS_OF - newest <= MAX_AGE, f"stale data: newest hour {newest}, {AS_OF - newest} before {AS_OF}"


def test_no_leakage_between_train_and_test(split):
    train, test = split
    train_hours, test_hours = cicd.hour_stamps(train), cicd.hour_stamps(test)
    assert train_hours.max() < test_hours.min(), "the model would train on hours after the test month"
    shared = set(zip(train["day"], train["hr"])) & set(zip(test["day"], test["hr"]))
    assert not shared, f"{len(shared)} hours are in both train and test"
