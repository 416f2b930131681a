"""Checks for lesson 06 (CI/CD for ML)."""

from __future__ import annotations

from collections.abc import Mapping

from mlops_course.exercises import correct, exercise, wrong

# Which check of the pipeline stops each problem first.
CATCHES = {
    "the upstream export now gives humidity in percent": "data",
    "yesterday's rows are missing from the data": "data",
    "the new model is worse than same hour last week": "model",
    "someone added registered to the features": "invariance",
    "the model predicts more bikers when it rains": "directional",
    "the service sends weather codes counted from 0": "skew",
    "the retrained model is slightly worse than the champion": "gate",
}
KINDS = sorted(set(CATCHES.values()))


@exercise("06.1", "which check catches it")
def which_check(answer: Mapping) -> object:
    if not isinstance(answer, Mapping):
        return wrong(f"expected a dict of problem -> check, got {type(answer).__name__}.",
                     "copy the dict from the exercise and fill in each value.")
    missing = [p for p in CATCHES if p not in answer]
    if missing:
        return wrong(f"{len(missing)} problem(s) have no answer yet, e.g. {missing[0]!r}.",
                     "keep the keys exactly as given and fill in every value.")
    given = {p: str(answer[p]).strip().lower() for p in CATCHES}
    unknown = sorted({v for v in given.values() if v not in KINDS})
    if unknown:
        return wrong(f"{unknown} are not among the checks.", f"use only these words: {KINDS}.")
    mistakes = [p for p in CATCHES if given[p] != CATCHES[p]]
    if not mistakes:
        return correct("each problem is stopped by the check that was written for it.")
    first = mistakes[0]
    hints = {
        "data": "a problem in the rows themselves is caught before any model sees them: by a data test.",
        "model": "comparing against a naive forecast is a model test of minimum skill.",
        "invariance": "a column that must not matter is changed and the prediction must stay put.",
        "directional": "the prediction must move one way when an input moves: a directional test.",
        "skew": "training used one feature code, serving another: only comparing both paths shows it.",
        "gate": "all tests can pass and the model still be no better than production: the gate decides.",
    }
    return wrong(f"{len(mistakes)} of {len(CATCHES)} are off, e.g. {first!r}.", hints[CATCHES[first]])


class _ColderIsBusier:
    """A model wrapper that lowers demand as the temperature rises: the bad model a test must catch.

    The penalty is centred on the check's own temperatures, so on those hours it predicts the trained model's
    mean: only a test that changes the temperature can tell the two apart, not one that checks a level.
    """

    def __init__(self, model, X):
        self.model = model
        self.feature_names_in_ = getattr(model, "feature_names_in_", None)
        self.centre = {column: float(X[column].mean()) for column in ("temp", "atemp")}

    def predict(self, X):
        penalty = sum(400.0 * (X[column].to_numpy() - centre) for column, centre in self.centre.items())
        return self.model.predict(X) - penalty


def _outcome(test, model, X) -> str:
    try:
        test(model, X.copy())
    except AssertionError:
        return "failed"
    except Exception as exc:  # noqa: BLE001 - a learner's test may break in any way: report it
        return f"crashed ({type(exc).__name__}: {exc})"
    return "passed"


@exercise("06.2", "a directional test that can fail")
def warmer_test(answer, model, X) -> object:
    if not callable(answer):
        return wrong(f"expected a test function, got {type(answer).__name__}.",
                     "define def test_warmer_is_not_emptier(model, X): ... and assign the function itself.")
    good = _outcome(answer, model, X)
    if good != "passed":
        hint = ("compare the mean prediction, not every hour: trees are not monotone, a few hours may dip."
                if good == "failed" else "call model.predict on a DataFrame with the columns of X.")
        return wrong(f"on the trained model your test {good}.", hint)
    bad = _outcome(answer, _ColderIsBusier(model, X), X)
    if bad == "passed":
        return wrong("your test also passes for a model that predicts fewer bikers when it gets warmer.",
                     "raise temp (and atemp) by 0.1, clip to 1, and assert the mean prediction does not drop.")
    if bad != "failed":
        return wrong(f"on a bad model your test {bad} instead of failing with an assertion.",
                     "use assert, so pytest reports a failure, not an error.")
    return correct("it passes for the trained model and fails for a model that dislikes warm weather.")


def _register_condition_problem(condition) -> str | None:
    """What is wrong with the register job's ``if:``, judged by evaluating it; None when it is right."""
    from mlops_course import gha_expr

    if condition is None:
        return "is gone, so it runs whatever the gate decided"

    def runs(promote: str, event: str) -> bool:
        return gha_expr.evaluate(condition, {"needs": {"gate": {"outputs": {"promote": promote}}},
                                             "github": {"event_name": event, "ref": "refs/heads/main"}})

    try:
        if not runs("true", "push"):
            return "stops it even when the gate says promote"
        if runs("false", "push"):
            return "lets it run when the gate says 'false', so it no longer checks the gate's decision"
        if runs("true", "pull_request"):
            return "lets a pull request move the champion"
    except gha_expr.ExpressionError as exc:
        return f"is not an expression GitHub reads ({exc})"
    return None


@exercise("06.3", "manual approval before the champion moves")
def manual_approval(answer) -> object:
    from mlops_course import cicd_workflow

    if not isinstance(answer, (str, Mapping)):
        return wrong(f"expected the workflow as YAML text or a dict, got {type(answer).__name__}.",
                     "start from yaml.safe_load(cicd_workflow.bike_workflow()).")
    try:
        report = cicd_workflow.validate_bike_workflow(answer)
    except cicd_workflow.WorkflowError as exc:
        return wrong(f"the workflow no longer passes the check: {exc.problems[0]}",
                     "change only the register job; keep its steps and needs.")
    doc = cicd_workflow.load_workflow(answer)
    register = doc["jobs"]["register"]
    env = register.get("environment")
    name = env.get("name") if isinstance(env, Mapping) else env
    if not name:
        others = [j for j, job in doc["jobs"].items() if job.get("environment")]
        where = f" (you set it on {others})" if others else ""
        return wrong(f"the register job has no environment{where}.",
                     "add environment: production to the register job: that is the job that moves the alias.")
    if str(name) != "production":
        return wrong(f"the register job waits for environment {name!r}.",
                     "use the environment the reviewers guard: production.")
    problem = _register_condition_problem(register.get("if"))
    if problem:
        return wrong(f"the register job's condition {problem}.",
                     "keep if: needs.gate.outputs.promote == 'true' && github.event_name != 'pull_request'")
    return correct(f"register now waits for approval in 'production' after the gate ({len(report.order)} jobs).")
