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
