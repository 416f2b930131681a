"""Lesson 00's checkers: each accepts different right answers and names the mistake in plausible wrong ones."""

import mlflow
import pytest
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import train_test_split

from mlops_course.exercises import evaluate
from mlops_course.exercises.lesson00 import TOOL_STAGES


def test_tools_to_stages_accepts_any_spelling_of_the_right_stages():
    assert evaluate("00.1", dict(TOOL_STAGES)).ok
    assert evaluate("00.1", {tool.lower(): f" {stage.upper()} " for tool, stage in TOOL_STAGES.items()}).ok
    # The tool table's own names ("Evidently AI") and section 2's name for Prefect's stage ("feedback").
    assert evaluate("00.1", {**{t: s for t, s in TOOL_STAGES.items() if t != "Evidently"},
                             "Evidently AI": "monitoring", "Prefect": "feedback"}).ok
    assert not evaluate("00.1", {**TOOL_STAGES, "Prefect": "monitoring"}).ok
    assert not evaluate("00.1", {**{t: s for t, s in TOOL_STAGES.items() if t != "DVC"}, "DVCX": "data"}).ok


@pytest.mark.parametrize(("change", "in_message", "in_hint"), [
    ({"DVC": "model"}, "DVC", "which lesson uses the tool"),
    ({"MLflow": "deployment"}, "MLflow", "track experiments"),
    ({"Prefect": "data"}, "Prefect", "orchestrates"),
    ({"Prometheus": "alerting"}, "alerting", "use one of"),
])
def test_tools_to_stages_names_the_mistake(change, in_message, in_hint):
    feedback = evaluate("00.1", {**TOOL_STAGES, **change})
    assert not feedback.ok and in_message in feedback.message and in_hint in feedback.hint


def test_tools_to_stages_incomplete_or_not_a_dict():
    assert "no stage" in evaluate("00.1", {"DVC": "data"}).message
    assert "dict" in evaluate("00.1", ["DVC"]).message


@pytest.fixture
def iris_split():
    X, y = load_iris(return_X_y=True, as_frame=True)
    return train_test_split(X, y, test_size=0.5, random_state=42, stratify=y)


def log_forest(name, depth, split, *, seed=42, metric="test", model_depth=None, log_model=True):
    """A run like the exercise's, with the metric computed on the test or train split (or given)."""
    X_train, X_test, y_train, y_test = split
    forest = RandomForestClassifier(n_estimators=20, max_depth=model_depth or depth, random_state=seed)
    forest.fit(X_train, y_train)
    scored = {"test": (X_test, y_test), "train": (X_train, y_train)}
    with mlflow.start_run(run_name=name):
        mlflow.log_param("max_depth", depth)
        if isinstance(metric, float):
            value = metric
        else:
            X, y = scored[metric]
            value = float((forest.predict(X) == y).mean())
        mlflow.log_metric("accuracy", value)
        if log_model:
            mlflow.sklearn.log_model(forest, name="model", pip_requirements=["scikit-learn", "skops"],
                                     skops_trusted_types=["sklearn.tree._tree.Tree"])
    return value


@pytest.fixture
def iris_store(lesson_env):
    from mlops_course import setup_lesson

    setup_lesson("00", quiet=True)
    mlflow.set_experiment("iris-intro")


def check_second(name, split):
    X_train, X_test, y_train, y_test = split
    return evaluate("00.2", name, X_test, y_test, X_train, y_train)


def test_second_run_accepts_its_own_models_test_accuracy(iris_store, iris_split):
    log_forest("forest-stumps", 1, iris_split)
    assert check_second("forest-stumps", iris_split).ok
    # another forest seed, and the metric rounded to the three decimals the lesson prints
    X_train, X_test, y_train, y_test = iris_split
    forest = RandomForestClassifier(n_estimators=30, max_depth=1, random_state=7).fit(X_train, y_train)
    with mlflow.start_run(run_name="my-stumps"):
        mlflow.log_param("max_depth", 1)
        mlflow.log_metric("accuracy", round(float((forest.predict(X_test) == y_test).mean()), 3))
        mlflow.sklearn.log_model(forest, name="model", skops_trusted_types=["sklearn.tree._tree.Tree"],
                                 pip_requirements=["scikit-learn", "skops"])
    assert check_second("my-stumps", iris_split).ok


def test_second_run_rejects_the_training_accuracy(iris_store, iris_split):
    log_forest("stumps-train", 1, iris_split, metric="train")
    feedback = check_second("stumps-train", iris_split)
    assert not feedback.ok and "training flowers" in feedback.message and "X_test" in feedback.hint


def test_second_run_rejects_the_baseline_model_under_the_stumps_name(iris_store, iris_split):
    log_forest("stumps-deep-model", 1, iris_split, model_depth=4)
    feedback = check_second("stumps-deep-model", iris_split)
    assert not feedback.ok and "max_depth=4" in feedback.message and "stumps" in feedback.hint


def test_second_run_rejects_a_made_up_number_and_a_percentage(iris_store, iris_split):
    log_forest("stumps-guess", 1, iris_split, metric=0.5)
    feedback = check_second("stumps-guess", iris_split)
    assert not feedback.ok and "scores" in feedback.message
    log_forest("stumps-percent", 1, iris_split, metric=97.3)
    feedback = check_second("stumps-percent", iris_split)
    assert not feedback.ok and "not a fraction" in feedback.message


def test_second_run_needs_the_run_depth_metric_and_model(iris_store, iris_split):
    log_forest("deep", 4, iris_split)
    assert "max_depth=" in check_second("deep", iris_split).message
    assert "no run named" in check_second("ghost", iris_split).message
    log_forest("stumps-no-model", 1, iris_split, log_model=False)
    feedback = check_second("stumps-no-model", iris_split)
    assert not feedback.ok and "logged no model" in feedback.message and "log_model" in feedback.hint
    with mlflow.start_run(run_name="no-metric"):
        mlflow.log_param("max_depth", 1)
    assert "no 'accuracy'" in check_second("no-metric", iris_split).message


def test_best_run_accepts_every_top_run_and_rejects_others(iris_store):
    for name, acc in [("deep", 0.9), ("stumps", 0.95), ("stumps-again", 0.95), ("bad", 0.5)]:
        with mlflow.start_run(run_name=name):
            mlflow.log_metric("accuracy", acc)
    assert evaluate("00.3", "stumps").ok and evaluate("00.3", "stumps-again").ok
    feedback = evaluate("00.3", "deep")
    assert not feedback.ok and "order_by" in feedback.hint
    assert not evaluate("00.3", "bad").ok
    assert "not a run name" in evaluate("00.3", "ghost").message
