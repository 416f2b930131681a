import pytest
import yaml

from mlops_course import cicd_workflow, data, pipeline
from mlops_course.exercises import evaluate
from mlops_course.exercises.lesson06 import CATCHES


# ---------------------------------------------------------------- 06.1
def test_which_check_right_answer():
    assert evaluate("06.1", dict(CATCHES)).ok
    assert evaluate("06.1", {k: f"  {v.upper()} " for k, v in CATCHES.items()}).ok


def test_which_check_typical_mistakes():
    skew_as_data = {**CATCHES, "the service sends weather codes counted from 0": "data"}
    feedback = evaluate("06.1", skew_as_data)
    assert not feedback.ok and "1 of 7" in feedback.message and "both paths" in feedback.hint
    gate_as_model = {**CATCHES, "the retrained model is slightly worse than the champion": "model"}
    assert "the gate decides" in evaluate("06.1", gate_as_model).hint
    leak_as_model = {**CATCHES, "someone added registered to the features": "model"}
    assert "must not matter" in evaluate("06.1", leak_as_model).hint
    assert "only these words" in evaluate("06.1", {**CATCHES, "the model predicts more bikers when it rains":
                                                    "unit"}).hint
    assert "no answer yet" in evaluate("06.1", {"yesterday's rows are missing from the data": "data"}).message
    assert "dict" in evaluate("06.1", ["data"]).message


# ---------------------------------------------------------------- 06.2
@pytest.fixture(scope="module")
def model_and_june():
    bikes = data.load_bikeshare()
    model = pipeline.train(data.select_months(bikes, data.MONTHS[:5]), n_estimators=15)
    return model, pipeline.make_features(data.select_months(bikes, ["June"]))


def good_test(model, X):
    warmer = X.assign(temp=(X["temp"] + 0.1).clip(upper=1.0), atemp=(X["atemp"] + 0.1).clip(upper=1.0))
    assert model.predict(warmer).mean() >= model.predict(X).mean()


def test_warmer_test_that_can_fail_is_correct(model_and_june):
    model, X = model_and_june
    assert evaluate("06.2", good_test, model, X).ok

    def hot_against_cold(model, X):  # another correct test: the same hours on a hot and on a cold day
        hot, cold = X.assign(temp=0.8, atemp=0.75), X.assign(temp=0.2, atemp=0.2)
        assert model.predict(hot).mean() > model.predict(cold).mean()

    assert evaluate("06.2", hot_against_cold, model, X).ok


def test_warmer_test_that_checks_a_level_is_not_directional(model_and_june):
    model, X = model_and_june

    def plausible_level(model, X):  # fails for a model that lowers every prediction, not for a backwards one
        assert model.predict(X).mean() > 100  # June's hours average about 240 bikes

    feedback = evaluate("06.2", plausible_level, model, X)
    assert not feedback.ok and "also passes" in feedback.message


def test_warmer_test_typical_mistakes(model_and_june):
    model, X = model_and_june

    def always_passes(model, X):
        assert len(model.predict(X)) == len(X)

    def every_hour(model, X):  # too strict: trees are not monotone
        warmer = X.assign(temp=(X["temp"] + 0.1).clip(upper=1.0))
        assert (model.predict(warmer) >= model.predict(X)).all()

    def wrong_column(model, X):
        model.predict(X.assign(temperature=X["temp"]).drop(columns="temp"))

    feedback = evaluate("06.2", always_passes, model, X)
    assert not feedback.ok and "also passes" in feedback.message and "clip" in feedback.hint
    feedback = evaluate("06.2", every_hour, model, X)
    assert not feedback.ok and "failed" in feedback.message and "mean prediction" in feedback.hint
    feedback = evaluate("06.2", wrong_column, model, X)
    assert not feedback.ok and "crashed" in feedback.message
    assert "test function" in evaluate("06.2", "test_warmer", model, X).message


def test_warmer_test_that_raises_instead_of_asserting(model_and_june):
    model, X = model_and_june

    def raises_error(model, X):
        warmer = X.assign(temp=(X["temp"] + 0.1).clip(upper=1.0), atemp=(X["atemp"] + 0.1).clip(upper=1.0))
        if model.predict(warmer).mean() < model.predict(X).mean():
            raise RuntimeError("colder")

    feedback = evaluate("06.2", raises_error, model, X)
    assert not feedback.ok and "instead of failing" in feedback.message and "assert" in feedback.hint


# ---------------------------------------------------------------- 06.3
def workflow():
    return yaml.safe_load(cicd_workflow.bike_workflow())


def test_manual_approval_right_answers():
    doc = workflow()
    doc["jobs"]["register"]["environment"] = "production"
    assert evaluate("06.3", doc).ok
    doc["jobs"]["register"]["environment"] = {"name": "production", "url": "https://example.org"}
    assert evaluate("06.3", doc).ok
    assert evaluate("06.3", cicd_workflow.bike_workflow(environment="production")).ok
    for condition in ("${{ fromJSON(needs.gate.outputs.promote) && github.event_name == 'push' }}",
                      "github.event_name != 'pull_request' && 'TRUE' == needs.gate.outputs.promote",
                      "success() && needs.gate.outputs.promote == 'true' && !startsWith(github.event_name, 'pull')"):
        doc["jobs"]["register"]["if"] = condition
        assert evaluate("06.3", doc).ok, condition


def test_manual_approval_typical_mistakes():
    assert "has no environment" in evaluate("06.3", workflow()).message
    on_build = workflow()
    on_build["jobs"]["build"]["environment"] = "production"
    assert "you set it on ['build']" in evaluate("06.3", on_build).message
    staging = workflow()
    staging["jobs"]["register"]["environment"] = "staging"
    assert "'staging'" in evaluate("06.3", staging).message
    no_gate = workflow()
    no_gate["jobs"]["register"].update(environment="production", **{"if": "always()"})
    assert "gate's decision" in evaluate("06.3", no_gate).message
    spelled_not_checked = workflow()  # names the output, but runs whatever its value
    spelled_not_checked["jobs"]["register"].update(
        environment="production", **{"if": "needs.gate.outputs.promote != '' && github.event_name != 'pull_request'"})
    feedback = evaluate("06.3", spelled_not_checked)
    assert not feedback.ok and "'false'" in feedback.message and "promote == 'true'" in feedback.hint
    from_pull_requests = workflow()
    from_pull_requests["jobs"]["register"].update(environment="production",
                                                  **{"if": "needs.gate.outputs.promote == 'true'"})
    assert "pull request" in evaluate("06.3", from_pull_requests).message
    broken = workflow()
    broken["jobs"]["register"]["environment"] = "production"
    broken["jobs"]["register"]["needs"] = "evaluate"
    feedback = evaluate("06.3", broken)
    assert not feedback.ok and "should need 'gate'" in feedback.message
    assert "YAML text or a dict" in evaluate("06.3", 42).message
