import mlflow
import pytest

from mlops_course import exercises
from mlops_course.exercises import check, evaluate


def test_unanswered_and_unknown(capsys):
    assert "not answered yet" in str(evaluate("00.1", None))
    assert "not answered yet" in str(evaluate("00.1", ...))
    assert "no exercise" in str(evaluate("99.9", 1))
    check("00.1", None)
    assert capsys.readouterr().out.startswith("Exercise 00.1: [not yet]")


def test_a_crashing_checker_becomes_feedback():
    @exercises.exercise("zz.1", "explodes")
    def explode(answer):
        raise RuntimeError("kaboom")

    feedback = evaluate("zz.1", 1)
    assert not feedback.ok and "kaboom" in feedback.message


def test_lesson00_tools_to_stages():
    from mlops_course.exercises.lesson00 import TOOL_STAGES

    assert evaluate("00.1", dict(TOOL_STAGES)).ok
    wrong = {**TOOL_STAGES, "DVC": "model"}
    feedback = evaluate("00.1", wrong)
    assert not feedback.ok and "DVC" in feedback.message and feedback.hint
    assert "no stage" in evaluate("00.1", {"DVC": "data"}).message
    assert "dict" in evaluate("00.1", ["DVC"]).message


@pytest.fixture
def iris_runs(lesson_env):
    from mlops_course import setup_lesson

    setup_lesson("00", quiet=True)
    mlflow.set_experiment("iris-intro")
    for name, depth, acc in [("deep", 4, 0.9), ("stumps", 1, 0.95), ("nodepth", None, 0.8)]:
        with mlflow.start_run(run_name=name):
            if depth is not None:
                mlflow.log_param("max_depth", depth)
                mlflow.log_metric("accuracy", acc)
    yield


def test_lesson00_second_run(iris_runs):
    assert evaluate("00.2", "stumps").ok
    assert "max_depth=" in evaluate("00.2", "deep").message
    assert "no run named" in evaluate("00.2", "ghost").message
    assert "no 'accuracy'" in evaluate("00.2", "nodepth").message or "max_depth" in evaluate("00.2", "nodepth").message


def test_lesson00_best_run(iris_runs):
    assert evaluate("00.3", "stumps").ok
    feedback = evaluate("00.3", "deep")
    assert not feedback.ok and "order_by" in feedback.hint
    assert "not a run name" in evaluate("00.3", "ghost").message
