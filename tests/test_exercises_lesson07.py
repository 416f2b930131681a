"""Checks of lesson 07: right answers pass, typical wrong answers get the matching hint (no Prefect server)."""

from types import SimpleNamespace

import mlflow
import pandas as pd
import pytest

from mlops_course import data, pipeline, registry
from mlops_course.exercises import evaluate
from mlops_course.exercises.lesson07 import CACHE_CASES, RETRAIN_MONTHS


# ---------------------------------------------------------------- 07.1 retrain
@pytest.fixture
def registered(lesson_env):
    from mlops_course import setup_lesson

    setup_lesson("96", quiet=True)
    mlflow.set_experiment(experiment_id="0")  # the new store's Default, whatever an earlier test left active
    bikes = data.load_bikeshare()
    model = pipeline.train(data.select_months(bikes, ["Jan"]), n_estimators=3, max_depth=3)
    versions = {}
    for months in (RETRAIN_MONTHS, ["Jan"]):
        with mlflow.start_run():
            logged = registry.log_bike_model(model, pipeline.make_features(bikes.head(5)), onnx=False)
        versions[tuple(months)] = registry.register(logged, tags={"train_months": months})
    return versions


def result(version, months=RETRAIN_MONTHS, holdout="June", promoted=True):
    return SimpleNamespace(train_months=tuple(months), holdout_month=holdout, model_version=version,
                           metrics={"mae": 31.5}, promoted=promoted)


def test_retrain_right_answer(registered):
    feedback = evaluate("07.1", result(registered[tuple(RETRAIN_MONTHS)]))
    assert feedback.ok and "promoted" in feedback.message and "31.50" in feedback.message


def test_retrain_typical_mistakes(registered):
    good = registered[tuple(RETRAIN_MONTHS)]
    assert "object training_flow returns" in evaluate("07.1", {"train_months": RETRAIN_MONTHS}).message
    assert "train_months=" in evaluate("07.1", result(good, months=["Jan", "Feb", "March", "April"])).hint
    assert "holdout_month='June'" in evaluate("07.1", result(good, holdout="May")).hint
    assert "register=True" in evaluate("07.1", result(None)).hint
    other = evaluate("07.1", result(registered[("Jan",)]))
    assert not other.ok and "was not trained on" in other.message


# ---------------------------------------------------------------- 07.2 cache prediction
def test_cache_prediction_right_answer():
    answer = {case: sorted(tasks) for case, tasks in CACHE_CASES.items()}
    assert evaluate("07.2", answer).ok
    assert evaluate("07.2", {**answer, "holdout June": "prepare"}).ok  # a single name as a string is fine


@pytest.mark.parametrize("case,given,hint", [
    ("holdout June", ["validate", "prepare"], "holdout_month is an input of prepare"),
    ("more trees", ["prepare"], "model settings are inputs of train only"),
    ("edited data file", [], "changes its SHA-256"),
    ("same call again", ["validate"], "identical inputs"),
])
def test_cache_prediction_mistakes_get_the_matching_hint(case, given, hint):
    answer = {c: sorted(t) for c, t in CACHE_CASES.items()}
    answer[case] = given
    feedback = evaluate("07.2", answer)
    assert not feedback.ok and case in feedback.message and hint in feedback.hint


def test_cache_prediction_shape_errors():
    assert "dict" in evaluate("07.2", ["validate"]).message
    assert "no prediction yet" in evaluate("07.2", {"more trees": []}).message
    answer = {c: sorted(t) for c, t in CACHE_CASES.items()}
    answer["more trees"] = ["train"]
    assert "NO_CACHE" in evaluate("07.2", answer).hint


# ---------------------------------------------------------------- 07.3 retried task
TASKS = pd.DataFrame({"task": ["validate", "prepare", "train"], "state": ["Completed"] * 3,
                      "attempts": [2, 1, 1]})


def test_retried_task_from_a_table():
    assert evaluate("07.3", ("validate", 2), TASKS).ok
    assert "run_count" in evaluate("07.3", ("validate", 1), TASKS).hint
    assert "Retrying" in evaluate("07.3", ("train", 2), TASKS).hint
    assert "not a task of the flow" in evaluate("07.3", ("fetch", 2), TASKS).message
    assert "pair" in evaluate("07.3", "validate", TASKS).message
    calm = TASKS.assign(attempts=1)
    assert "needed a retry" in evaluate("07.3", ("validate", 2), calm).message


# ---------------------------------------------------------------- 07.4 task declaration
def test_task_declaration():
    from prefect import task
    from prefect.cache_policies import DEFAULT, INPUTS

    def fetch(station: str, day: str) -> dict:
        return {}

    assert evaluate("07.4", task(retries=3, retry_delay_seconds=10, cache_policy=INPUTS)(fetch)).ok
    assert "@task" in evaluate("07.4", fetch).hint
    assert "retries=3" in evaluate("07.4", task(retries=1, retry_delay_seconds=10, cache_policy=INPUTS)(fetch)).hint
    assert "retry_delay_seconds=10" in evaluate("07.4", task(retries=3, cache_policy=INPUTS)(fetch)).hint
    assert "flow run id" in evaluate("07.4", task(retries=3, retry_delay_seconds=10, cache_policy=DEFAULT)(fetch)).hint
    partial = task(retries=3, retry_delay_seconds=10, cache_policy=INPUTS - "day")(fetch)
    assert "both station and day" in evaluate("07.4", partial).hint


# ---------------------------------------------------------------- 07.5 cron
def test_cron_right_answers():
    assert evaluate("07.5", "30 6 * * 1").ok
    assert evaluate("07.5", "30 6 * * mon").ok


@pytest.mark.parametrize("cron,hint", [
    ("6 30 * * 1", "minute comes first"),
    ("30 6 * * *", "day of week"),
    ("30 6 * * 0", "0 is Sunday"),
    ("0 6 * * 1", "minute first"),
    ("30 6 * *", "five fields"),
    ("every monday", "five fields"),
])
def test_cron_mistakes_get_the_matching_hint(cron, hint):
    feedback = evaluate("07.5", cron)
    assert not feedback.ok and hint in feedback.hint
