"""Tests for the bike model as a CI job runs them: a naive baseline, a pytest suite written to disk, a runner.

Lesson 06 writes the suite into its workspace with :func:`write_test_suite` (real ``test_*.py`` files that read
their inputs from environment variables, as a CI job passes them), then runs it with :func:`run_pytest` in a
subprocess and shows pytest's final counts line. The workflow that runs the same suite in GitHub Actions is
in ``cicd_workflow.py``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

YEAR = 2011  # the year of data/Bikeshare.csv: its "day" column counts days from 1 January 2011
SUITE_FILES = ("pytest.ini", "conftest.py", "test_data.py", "test_model.py", "test_serving.py")


# ---------------------------------------------------------------- baseline and time stamps
def _need(df: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise KeyError(f"{what} needs the column(s) {missing}; got {list(df.columns)}")


def hour_stamps(df: pd.DataFrame, year: int = YEAR) -> pd.Series:
    """The date and hour of every row, from the day-of-year column ``day`` (1 = 1 January) and ``hr``."""
    _need(df, ["day", "hr"], "hour_stamps")
    start = pd.Timestamp(year=year, month=1, day=1)
    days = pd.to_timedelta(df["day"].astype("int64") - 1, unit="D")
    return start + days + pd.to_timedelta(df["hr"].astype("int64"), unit="h")


def same_hour_last_week(df: pd.DataFrame, lag_days: int = 7) -> pd.Series:
    """The naive forecast "as many bikers as in the same hour ``lag_days`` days earlier", for every row.

    Looks the earlier hour up in ``df`` itself, so pass the history too (e.g. the whole table, then select the
    test month). Rows whose earlier hour is not in ``df`` (the first week, hours missing from the data) get NaN.
    """
    _need(df, ["day", "hr", "bikers"], "same_hour_last_week")
    if lag_days < 1:
        raise ValueError(f"lag_days must be at least 1; got {lag_days}")
    if df.duplicated(["day", "hr"]).any():
        raise ValueError("same_hour_last_week needs one row per hour: some (day, hr) pairs appear twice")
    counts = df.set_index(["day", "hr"])["bikers"].astype("float64")
    earlier = pd.MultiIndex.from_arrays([df["day"] - lag_days, df["hr"]])
    return pd.Series(counts.reindex(earlier).to_numpy(), index=df.index, name="same_hour_last_week")


# ---------------------------------------------------------------- the suite, as files
PYTEST_INI = """\
[pytest]
# The bike model's CI tests. This file makes this folder pytest's rootdir.
addopts = -p no:cacheprovider
filterwarnings =
    ignore::DeprecationWarning
    ignore:Using .httpx. with .starlette.testclient. is deprecated:UserWarning
"""

CONFTEST = '''\
"""Inputs of the bike model's CI tests. A CI job sets them as environment variables (see the workflow)."""

import os

import pytest

from mlops_course import data, pipeline

TRAIN_MONTHS = os.environ.get("BIKE_TRAIN_MONTHS", "Jan,Feb,March,April,May").split(",")
TEST_MONTH = os.environ.get("BIKE_TEST_MONTH", "June")
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
'''

TEST_DATA = '''\
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
'''

TEST_MODEL = '''\
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
'''

TEST_SERVING = '''\
"""Training-serving skew: the REST service and the batch path must give the same predictions.

With SERVICE_URL set (the workflow's build job) the test calls that running service, the image just built;
without it, the same app in-process through FastAPI's TestClient.
"""

import os
import time

import httpx
import numpy as np
from fastapi.testclient import TestClient

from mlops_course import pipeline, registry
from mlops_course.serving import create_app


def wait_healthy(url, timeout=None):
    """Wait until the service at ``url`` answers 200 on /health (a container takes a while to start).

    ``timeout`` defaults to $SERVICE_WAIT seconds (120), read when the wait starts.
    """
    if timeout is None:
        timeout = float(os.environ.get("SERVICE_WAIT", "120"))
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=5.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"no healthy service at {url} after {timeout:.0f} s")
        time.sleep(1.0)


def test_service_matches_batch_path(split, tmp_path):
    _, test = split
    rows = test.head(48)  # the first two days of the test month
    batch = registry.load_sklearn("champion").predict(pipeline.make_features(rows))
    payload = {"rows": pipeline.make_features(rows).to_dict(orient="records")}
    if os.environ.get("SERVICE_URL"):
        wait_healthy(os.environ["SERVICE_URL"])
        response = httpx.post(f"{os.environ['SERVICE_URL']}/predict", json=payload, timeout=30.0)
    else:
        app = create_app(model_name=registry.MODEL_NAME, alias="champion",
                         tracking_uri=os.environ["MLFLOW_TRACKING_URI"],
                         request_log=tmp_path / "requests.jsonl", backend="auto")
        with TestClient(app) as client:
            response = client.post("/predict", json=payload)
    assert response.status_code == 200, response.text
    served = np.asarray(response.json()["predictions"])
    gap = float(np.max(np.abs(served - batch)))
    assert gap < 0.01, f"service and batch path differ by up to {gap:.3f} bikers"
'''

SUITE = {"pytest.ini": PYTEST_INI, "conftest.py": CONFTEST, "test_data.py": TEST_DATA,
         "test_model.py": TEST_MODEL, "test_serving.py": TEST_SERVING}


def write_test_suite(folder: os.PathLike | str, files: Iterable[str] = SUITE_FILES) -> list[Path]:
    """Write the bike model's pytest suite into ``folder`` (created if needed) and return the file paths."""
    folder = Path(folder)
    unknown = [name for name in files if name not in SUITE]
    if unknown:
        raise ValueError(f"no suite file(s) {unknown}; choose from {list(SUITE)}")
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name in files:
        (folder / name).write_text(SUITE[name])
        written.append(folder / name)
    return written


def suite_env(*, data_file: str, model_file: str | Sequence[str], train_months: Sequence[str], test_month: str,
              as_of: str, min_skill: float = 0.05, max_age_days: int = 2) -> dict[str, str]:
    """The environment variables the suite reads, as a CI job's ``env:`` block would set them.

    ``model_file`` may name several models (a list, or paths joined by commas): the model tests then run once
    for each, e.g. for the new candidate and for the champion in production.
    """
    from mlops_course import data

    months = [*train_months, test_month]
    unknown = [m for m in months if m not in data.MONTHS]
    if unknown:
        raise ValueError(f"unknown month name(s) {unknown}; use {data.MONTHS}")
    pd.Timestamp(as_of)  # raises on a date pandas cannot read
    models = str(model_file) if isinstance(model_file, (str, os.PathLike)) else ",".join(map(str, model_file))
    if not models or "" in models.split(","):
        raise ValueError(f"model_file names no model file: {model_file!r}")
    return {"BIKE_DATA": str(data_file), "BIKE_MODEL": models,
            "BIKE_TRAIN_MONTHS": ",".join(train_months), "BIKE_TEST_MONTH": test_month,
            "BIKE_AS_OF": str(as_of), "BIKE_MIN_SKILL": str(min_skill), "BIKE_MAX_AGE_DAYS": str(max_age_days)}


# ---------------------------------------------------------------- running pytest
_FINAL = re.compile(r"^=*\s*(?P<counts>.+?) in [\d.]+s(?: \([\d:]+\))?\s*=*$")
_COUNT = re.compile(r"(\d+) (passed|failed|errors?|skipped|deselected|xfailed|xpassed|warnings?)")


@dataclass(frozen=True)
class PytestResult:
    """What a pytest run reported: return code, the final counts line without its duration, failures."""

    command: list[str]
    returncode: int
    summary: str
    failures: list[str] = field(default_factory=list)
    output: str = ""

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def count(self, outcome: str) -> int:
        """How many tests ended with ``outcome`` ("passed", "failed", "error", "skipped", ...)."""
        singular = {"errors": "error", "warnings": "warning"}
        found = {singular.get(kind, kind): int(n) for n, kind in _COUNT.findall(self.summary)}
        return found.get(singular.get(outcome, outcome), 0)

    def __str__(self) -> str:
        lines = [self.summary, *self.failures]
        if self.returncode not in (0, 1):  # usage error, interrupted, nothing collected: show why
            lines.append("\n".join(self.output.strip().splitlines()[-15:]))
        return "\n".join(lines)


def _clean_env(extra: Mapping[str, str] | None) -> dict[str, str]:
    # Jupyter kernels set FORCE_COLOR: drop it, or pytest's lines arrive wrapped in colour codes.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTEST_", "COV_CORE")) and k not in ("FORCE_COLOR", "CLICOLOR_FORCE", "PY_COLORS")}
    # No third-party plugins (faster start, same output everywhere); wide lines so messages are not cut.
    env.update({"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1", "COLUMNS": "240", "PYTHONDONTWRITEBYTECODE": "1",
                "NO_COLOR": "1"})
    env.update({k: str(v) for k, v in (extra or {}).items()})
    return env


def run_pytest(*targets: str, cwd: os.PathLike | str | None = None, env: Mapping[str, str] | None = None,
               timeout: float = 300) -> PytestResult:
    """Run ``python -m pytest -q -p no:cacheprovider -rfE <targets>`` in a subprocess; never raises on failures.

    ``env`` adds variables (the suite's inputs). The result keeps pytest's final counts line with the
    duration removed ("7 passed") and the one-line reason of each failed test.
    """
    if not targets:
        raise ValueError("name at least one test file or folder to run, e.g. run_pytest('ci_tests')")
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfE", "--tb=no", *targets]
    try:
        proc = subprocess.run(command, cwd=cwd, env=_clean_env(env), capture_output=True, text=True,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return PytestResult(command, -1, f"pytest did not finish within {timeout:.0f} s")
    output = proc.stdout + proc.stderr
    lines = [line.strip() for line in proc.stdout.splitlines() if line.strip()]
    final = next((m.group("counts") for m in map(_FINAL.match, reversed(lines)) if m), None)
    summary = final or f"pytest exited with code {proc.returncode} and no summary line"
    failures = [line for line in lines if line.startswith(("FAILED ", "ERROR "))]
    return PytestResult(command, proc.returncode, summary, failures, output)
