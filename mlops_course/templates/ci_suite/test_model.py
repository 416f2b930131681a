"""Model tests: run on the trained model before it may be registered."""

import os

import numpy as np

from mlops_course import cicd, pipeline

MIN_SKILL = float(os.environ.get("BIKE_MIN_SKILL", "0.05"))  # share of the baseline's error to beat


def test_beats_same_hour_last_week(model, bikes, split):
    _, test = split
    naive = cicd.same_hour_last_week(bikes).loc[bikes["mnth"] == test["mnth"].iloc[0]].to_numpy()
    known = ~np.isnan(naive)  # the first week has no week before it
    X, y = pipeline.xy(test)
    model_mae = pipeline.metrics(y[known], model.predict(X)[known])["mae"]
    naive_mae = pipeline.metrics(y[known], naive[known])["mae"]
    needed = (1 - MIN_SKILL) * naive_mae
    assert model_mae < needed, (f"model MAE {model_mae:.1f} is not below {needed:.1f} "
                                f"(same hour last week: {naive_mae:.1f}, minus {MIN_SKILL:.0%})")


def test_ignores_casual_and_registered(model, split):
    _, test = split
    changed = test.assign(casual=0, registered=test["registered"] * 3)
    before = model.predict(pipeline.make_features(test))
    after = model.predict(pipeline.make_features(changed))
    assert (before == after).all(), "predictions depend on casual/registered, which are parts of the target"
    assert not {"casual", "registered", "bikers"} & set(model.feature_names_in_)


def test_more_rain_does_not_raise_demand(model, split):
    _, test = split
    dry = pipeline.make_features(test).query("weather == 1")
    wet = dry.assign(weather=3.0)  # light rain or snow
    change = model.predict(wet) - model.predict(dry)
    assert change.mean() < 0, f"rain raises the average prediction by {change.mean():.1f} bikers"
    assert (change > 10).mean() <= 0.05, f"rain adds over 10 bikers in {(change > 10).mean():.0%} of hours"
