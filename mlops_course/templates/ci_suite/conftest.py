"""Inputs of the bike model's CI tests. A CI job sets them as environment variables (see the workflow)."""

import os

import pytest

from mlops_course import data, pipeline

TRAIN_MONTHS = os.environ.get("BIKE_TRAIN_MONTHS", "<<train_months>>").split(",")
TEST_MONTH = os.environ.get("BIKE_TEST_MONTH", "<<test_month>>")
MODELS = os.environ.get("BIKE_MODEL", "build/model.skops").split(",")


@pytest.fixture(scope="session")
def bikes():
    """The data this commit trains on (a CSV with the columns of data/Bikeshare.csv)."""
    return data.load_bikeshare(os.environ.get("BIKE_DATA", "data/bikes.csv"), verify=False)


@pytest.fixture(scope="session")
def split(bikes):
    """Train months and the held-out test month, split by time."""
    return pipeline.split_by_month(bikes, TRAIN_MONTHS, [TEST_MONTH])


@pytest.fixture(scope="session", params=MODELS)
def model(request):
    """Each model file named in BIKE_MODEL (skops: loading runs no code); model tests run once per model."""
    return pipeline.load_model(request.param)
