import os
import shutil
import time

import mlflow
import pytest
from mlflow.tracking import fluent
from sklearn.metrics import mean_absolute_error

from mlops_course import data, pipeline
from mlops_course.exercises import evaluate

EXPERIMENT = "bike-demand"
TRAIN_MONTHS = ["Jan"]
CANDIDATES = [("rf-max_depth=6", "random_forest", 54.3), ("rf-max_depth=14", "random_forest", 46.5),
              ("gb-learning_rate=0.2", "gradient_boosting", 45.3), ("gb-learning_rate=0.1", "gradient_boosting", 45.6),
              ("ridge-alpha=10.0", "ridge", 94.8)]


def train_months_frame():
    return data.select_months(data.load_bikeshare(), TRAIN_MONTHS)


def baseline_model():
    return pipeline.train(train_months_frame(), "random_forest", n_estimators=5, max_depth=6)


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """A tracking store shaped like the lesson's (baseline, a search with nested children, an autolog run),
    built once; each test gets a copy of its database file."""
    folder = tmp_path_factory.mktemp("template")
    path = folder / "mlflow.db"
    client = mlflow.MlflowClient(f"sqlite:///{path}")
    experiment_id = client.create_experiment(EXPERIMENT, artifact_location=(folder / "artifacts").as_uri())

    def run(name, params=None, metrics=None, parent=None):
        tags = {"mlflow.parentRunId": parent} if parent else None
        created = client.create_run(experiment_id, run_name=name, tags=tags)
        for key, value in (params or {}).items():
            client.log_param(created.info.run_id, key, value)
        for key, value in (metrics or {}).items():
            client.log_metric(created.info.run_id, key, value)
        client.set_terminated(created.info.run_id)
        return created.info.run_id

    ids = {"baseline": run("rf-baseline", {"model_kind": "random_forest"}, {"valid_mae": 46.7})}
    client.set_tag(ids["baseline"], "train_months", ",".join(TRAIN_MONTHS))
    saved_uri, saved_experiment = mlflow.get_tracking_uri(), fluent._active_experiment_id
    mlflow.set_tracking_uri(f"sqlite:///{path}")
    # start_run(run_id=...) refuses a run outside the active experiment, and an earlier test file in this
    # worker may have left another store's experiment active: make this store's experiment the active one.
    mlflow.set_experiment(experiment_id=experiment_id)
    try:
        with mlflow.start_run(run_id=ids["baseline"]):  # the baseline's model, as section 2 logs it
            mlflow.sklearn.log_model(baseline_model(), name="model", pip_requirements=["scikit-learn", "skops"],
                                     skops_trusted_types=pipeline.SKOPS_TRUSTED["random_forest"])
    finally:
        mlflow.set_tracking_uri(saved_uri)
        fluent._active_experiment_id = saved_experiment
    parent = run("search", {"families": "random_forest,gradient_boosting,ridge"})
    for name, kind, mae in CANDIDATES:
        ids[name] = run(name, {"model_kind": kind}, {"valid_mae": mae}, parent=parent)
    run("ridge-autolog", {"alpha": 10.0}, {"training_mean_absolute_error": 51.4})
    return path, ids


@pytest.fixture
def store(lesson_env, template):
    """A fresh copy of the template store, made the current tracking store."""
    path, ids = template
    db = lesson_env / "mlflow.db"
    shutil.copyfile(path, db)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{db}"
    mlflow.set_tracking_uri(f"sqlite:///{db}")
    mlflow.set_experiment(EXPERIMENT)
    yield ids
    # mlflow remembers the active experiment id across stores: point it at "Default" (id 0, in every store),
    # so later tests that start runs without set_experiment do not look for this store's experiment.
    mlflow.set_experiment(experiment_id="0")


# ---------------------------------------------------------------- 02.1 log a missing metric
def logged_model():
    found = mlflow.search_logged_models(output_format="list")
    return mlflow.sklearn.load_model(found[0].model_uri)


def test_missing_metric_right_answer(store):
    train_mae = pipeline.evaluate(logged_model(), train_months_frame())["mae"]
    with mlflow.start_run(run_id=store["baseline"]):
        mlflow.log_metric("train_mae", train_mae)
    feedback = evaluate("02.1", "rf-baseline")
    assert feedback.ok and f"{train_mae:.2f}" in feedback.message and "46.70" in feedback.message


def test_missing_metric_another_right_answer_sklearn_and_rounded(store):
    frame = train_months_frame()
    X, y = pipeline.xy(frame)
    with mlflow.start_run(run_id=store["baseline"]):
        mlflow.log_metric("train_mae", round(mean_absolute_error(y, logged_model().predict(X)), 2))
    assert evaluate("02.1", "rf-baseline").ok


def test_missing_metric_a_plausible_made_up_number(store):
    train_mae = pipeline.evaluate(logged_model(), train_months_frame())["mae"]
    with mlflow.start_run(run_id=store["baseline"]):
        mlflow.log_metric("train_mae", train_mae + 3)
    feedback = evaluate("02.1", "rf-baseline")
    assert not feedback.ok and "the run's model has MAE" in feedback.message and "train_df" in feedback.hint


def test_missing_metric_not_logged_yet(store):
    feedback = evaluate("02.1", "rf-baseline")
    assert not feedback.ok and "no metric 'train_mae'" in feedback.message and "log_metric" in feedback.hint


def test_missing_metric_wrong_key(store):
    with mlflow.start_run(run_id=store["baseline"]):
        mlflow.log_metric("training_mae", 13.4)
    feedback = evaluate("02.1", "rf-baseline")
    assert not feedback.ok and "training_mae" in feedback.hint and "'train_mae' exactly" in feedback.hint


def test_missing_metric_in_a_new_run(store):
    with mlflow.start_run(run_name="rf-baseline"):
        mlflow.log_metric("train_mae", 13.4)
    feedback = evaluate("02.1", "rf-baseline")
    assert not feedback.ok and "new run" in feedback.message and "run_id" in feedback.hint


def test_missing_metric_validation_error_logged_again(store):
    with mlflow.start_run(run_id=store["baseline"]):
        mlflow.log_metric("train_mae", 46.7)
    feedback = evaluate("02.1", "rf-baseline")
    assert not feedback.ok and "equals valid_mae" in feedback.message and "train_df" in feedback.hint


def test_missing_metric_implausible_value(store):
    with mlflow.start_run(run_id=store["baseline"]):
        mlflow.log_metric("train_mae", 80.0)
    assert "looks like another number" in evaluate("02.1", "rf-baseline").message


def test_missing_metric_bad_answers(store):
    assert "as a string" in evaluate("02.1", 42).message
    feedback = evaluate("02.1", "ghost")
    assert "no run named 'ghost'" in feedback.message and "rf-baseline" in feedback.message
    assert "no experiment" in evaluate("02.1", "rf-baseline", experiment="nope").message


# ---------------------------------------------------------------- 02.2 best random forest by filter
def test_best_forest_right_answer(store):
    feedback = evaluate("02.2", "rf-max_depth=14")
    assert feedback.ok and "46.50" in feedback.message


def test_best_forest_accepts_either_of_two_tied_forests(store):
    client = mlflow.MlflowClient()
    experiment = mlflow.get_experiment_by_name(EXPERIMENT).experiment_id
    tied = client.create_run(experiment, run_name="rf-max_depth=16")
    client.log_param(tied.info.run_id, "model_kind", "random_forest")
    client.log_metric(tied.info.run_id, "valid_mae", 46.5)
    assert evaluate("02.2", "rf-max_depth=14").ok and evaluate("02.2", "rf-max_depth=16").ok


def test_best_forest_overall_best_of_another_family(store):
    feedback = evaluate("02.2", "gb-learning_rate=0.2")
    assert not feedback.ok and "gradient_boosting" in feedback.message and "best run overall" in feedback.message
    assert "params.model_kind = 'random_forest'" in feedback.hint


def test_best_forest_worst_instead_of_best(store):
    feedback = evaluate("02.2", "rf-max_depth=6")
    assert not feedback.ok and "worst" in feedback.message and "ASC" in feedback.hint


def test_best_forest_a_middle_forest(store):
    feedback = evaluate("02.2", "rf-baseline")
    assert not feedback.ok and "not the one with the lowest" in feedback.message


def test_best_forest_run_without_kind_and_bad_answers(store):
    feedback = evaluate("02.2", "ridge-autolog")
    assert not feedback.ok and "without model_kind" in feedback.message
    assert "not a run name" in evaluate("02.2", "ghost").message
    assert "as a string" in evaluate("02.2", ["rf-max_depth=14"]).message


# ---------------------------------------------------------------- 02.3 tag a shortlist, query by tag
TOP3 = ["gb-learning_rate=0.2", "gb-learning_rate=0.1", "rf-max_depth=14"]


def tag(store, names, value="shortlist"):
    client = mlflow.MlflowClient()
    for name in names:
        client.set_tag(store[name], "review", value)


def test_shortlist_right_answer(store):
    tag(store, TOP3)
    feedback = evaluate("02.3", list(TOP3))
    assert feedback.ok and str(TOP3) in feedback.message
    assert evaluate("02.3", tuple(TOP3)).ok


def test_shortlist_after_the_search_ran_twice(store):
    # A second search (the cell run again) has children with the same names: the newest search is judged.
    client = mlflow.MlflowClient()
    experiment_id = mlflow.get_experiment_by_name(EXPERIMENT).experiment_id
    time.sleep(0.01)  # a later start time than the first search
    second = client.create_run(experiment_id, run_name="search").info.run_id
    newest = {}
    for name, kind, mae in CANDIDATES:
        child = client.create_run(experiment_id, run_name=name, tags={"mlflow.parentRunId": second})
        client.log_metric(child.info.run_id, "valid_mae", mae)
        newest[name] = child.info.run_id
    for name in TOP3:
        client.set_tag(newest[name], "review", "shortlist")
    assert evaluate("02.3", list(TOP3)).ok
    client.set_tag(newest["rf-max_depth=6"], "review", "shortlist")  # a fourth, wrong one is still refused
    feedback = evaluate("02.3", [*TOP3, "rf-max_depth=6"])
    assert not feedback.ok and "rf-max_depth=6" in feedback.message


def test_shortlist_nothing_tagged(store):
    feedback = evaluate("02.3", list(TOP3))
    assert not feedback.ok and "no run carries the tag" in feedback.message and "set_tag" in feedback.hint


def test_shortlist_wrong_runs_tagged(store):
    tag(store, ["gb-learning_rate=0.2", "gb-learning_rate=0.1", "rf-max_depth=6"])
    feedback = evaluate("02.3", ["gb-learning_rate=0.2", "gb-learning_rate=0.1", "rf-max_depth=6"])
    assert not feedback.ok and "rf-max_depth=6" in feedback.message and "1 of the 3 best" in feedback.message
    assert "delete_tag" in feedback.hint


def test_shortlist_answer_differs_from_tagged_runs(store):
    tag(store, TOP3)
    feedback = evaluate("02.3", TOP3[:2])
    assert not feedback.ok and "not the set of runs" in feedback.message and "tags.review" in feedback.hint


def test_shortlist_wrong_order(store):
    tag(store, TOP3)
    feedback = evaluate("02.3", list(reversed(TOP3)))
    assert not feedback.ok and "wrong order" in feedback.message and "ASC" in feedback.hint


def test_shortlist_bad_answer_types(store):
    runs = mlflow.search_runs(experiment_names=[EXPERIMENT])
    assert "DataFrame" in evaluate("02.3", runs).message
    assert "list of run names" in evaluate("02.3", "gb-learning_rate=0.2").message
    assert "no parent run named 'grid'" in evaluate("02.3", list(TOP3), parent="grid").message
