"""Checks for lesson 00 (Introduction to MLOps)."""

from __future__ import annotations

import math

from mlops_course.exercises import correct, exercise, wrong

TOOL_STAGES = {"DVC": "data", "MLflow": "model", "FastAPI": "deployment", "Evidently": "monitoring",
               "Prometheus": "monitoring", "Prefect": "orchestration"}


STAGES = ("data", "model", "deployment", "monitoring", "orchestration")
# Section 2's fifth stage is the feedback that retrains; the tool that runs it orchestrates.
SAME_STAGE = {"feedback": "orchestration"}
# Why a tempting second stage is not the main one, for the hint.
NEAR_MISSES = {
    ("MLflow", "deployment"): "MLflow has a registry and a model server too, but this course uses it mainly to "
                              "track experiments and models: the model stage.",
    ("Prometheus", "deployment"): "Prometheus runs next to the service, but it collects and alerts on metrics.",
    ("Prefect", "data"): "Prefect moves data through steps, but it schedules and retries them: it orchestrates.",
    ("Evidently", "model"): "Evidently compares data, but after release: it watches for drift.",
}


def _tool_key(name) -> str:
    """A tool's name as the check knows it: any case, and a known name with words after it ("Evidently AI")."""
    text = " ".join(str(name).split()).lower()
    for tool in TOOL_STAGES:
        if text == tool.lower() or text.startswith(tool.lower() + " "):
            return tool.lower()
    return text


@exercise("00.1", "match tools to lifecycle stages")
def tools_to_stages(answer: dict) -> object:
    if not isinstance(answer, dict):
        return wrong(f"expected a dict of tool -> stage, got {type(answer).__name__}.",
                     "write it like {'DVC': 'data', ...}.")
    given = {_tool_key(tool): SAME_STAGE.get(str(stage).strip().lower(), str(stage).strip().lower())
             for tool, stage in answer.items()}
    missing = [tool for tool in TOOL_STAGES if tool.lower() not in given]
    if missing:
        return wrong(f"these tools have no stage yet: {missing}.", "give every tool in the dict a stage.")
    unknown = sorted({stage for tool, stage in given.items() if tool in {t.lower() for t in TOOL_STAGES}
                      and stage not in STAGES})
    if unknown:
        return wrong(f"{unknown} is not one of the stages.", f"use one of {list(STAGES)} for each tool.")
    mistakes = [tool for tool, stage in TOOL_STAGES.items() if given[tool.lower()] != stage]
    if mistakes:
        near = [NEAR_MISSES[(tool, given[tool.lower()])] for tool in mistakes
                if (tool, given[tool.lower()]) in NEAR_MISSES]
        return wrong(f"{len(mistakes)} of {len(TOOL_STAGES)} are off: {mistakes}.",
                     near[0] if near else "look at the tools table above: which lesson uses the tool, and for what?")
    return correct("every tool sits in its stage.")


def _runs(experiment: str):
    import mlflow

    return mlflow.search_runs(experiment_names=[experiment], output_format="pandas")


def _logged_model(run_id: str):
    """The model a run logged (MLflow 3 logged models), or None."""
    import mlflow

    found = mlflow.search_logged_models(filter_string=f"source_run_id = '{run_id}'", output_format="list")
    return mlflow.sklearn.load_model(found[0].model_uri) if found else None


def _accuracy(model, X, y) -> float:
    return float((model.predict(X) == y).mean())


@exercise("00.2", "log a second run")
def second_run(answer: str, X_test=None, y_test=None, X_train=None, y_train=None,
               experiment: str = "iris-intro") -> object:
    """The run exists with max_depth=1, and its ``accuracy`` is its own model's accuracy on the test split."""
    if not isinstance(answer, str):
        return wrong(f"expected the run's name as a string, got {type(answer).__name__}.",
                     "answer with the name you passed to mlflow.start_run(run_name=...).")
    runs = _runs(experiment)
    match = runs[runs["tags.mlflow.runName"] == answer] if "tags.mlflow.runName" in runs else runs
    if match.empty:
        names = sorted(runs["tags.mlflow.runName"].dropna()) if "tags.mlflow.runName" in runs else []
        return wrong(f"no run named {answer!r} in experiment {experiment!r}; runs there: {names}.",
                     "pass run_name=... to mlflow.start_run and use the same name here.")
    run = match.sort_values("start_time").iloc[-1]  # the newest, if the cell ran twice
    if str(run.get("params.max_depth")) != "1":
        return wrong(f"run {answer!r} logged max_depth={run.get('params.max_depth')!r}, not 1.",
                     "train with max_depth=1 and log it with mlflow.log_param('max_depth', 1).")
    logged = run.get("metrics.accuracy")
    if logged is None or math.isnan(logged):
        return wrong(f"run {answer!r} has no 'accuracy' metric.", "call mlflow.log_metric('accuracy', ...).")
    if not 0 <= logged <= 1:
        return wrong(f"accuracy {logged:g} is not a fraction.", "log the fraction of correct flowers (0 to 1), "
                     "as accuracy_score returns it, not a percentage.")
    if X_test is None or y_test is None:
        return correct(f"run {answer!r} is tracked with max_depth=1 and accuracy {logged:.3f}.")
    model = _logged_model(run["run_id"])
    if model is None:
        return wrong(f"run {answer!r} logged no model, so nothing shows which model the accuracy belongs to.",
                     "log the stumps inside the run with mlflow.sklearn.log_model, as in section 5.")
    if getattr(model, "max_depth", None) != 1:
        return wrong(f"the model logged in {answer!r} has max_depth={getattr(model, 'max_depth', None)}.",
                     "log the forest of stumps you trained in this run, not the baseline model.")
    on_test = _accuracy(model, X_test, y_test)
    if abs(logged - on_test) <= 0.0005:
        return correct(f"run {answer!r} is tracked with max_depth=1, and its accuracy {logged:.3f} is its "
                       f"model's accuracy on the {len(y_test)} test flowers.")
    if X_train is not None and y_train is not None and abs(logged - _accuracy(model, X_train, y_train)) <= 0.0005:
        return wrong(f"accuracy {logged:.3f} is the model's accuracy on the training flowers.",
                     "score the model on X_test and y_test: it has seen the training flowers.")
    return wrong(f"the run logged accuracy {logged:.3f}, but its model scores {on_test:.3f} on the test split.",
                 "log accuracy_score(y_test, stumps.predict(X_test)) for the model you logged.")


@exercise("00.3", "find the most accurate run")
def best_run(answer: str, experiment: str = "iris-intro") -> object:
    runs = _runs(experiment).dropna(subset=["metrics.accuracy"])
    best = runs.sort_values(["metrics.accuracy", "tags.mlflow.runName"], ascending=[False, True])
    top = best["metrics.accuracy"].iloc[0]
    winners = set(best.loc[best["metrics.accuracy"] == top, "tags.mlflow.runName"])
    if answer in winners:
        return correct(f"{answer!r} has the highest accuracy ({top:.3f}).")
    if answer not in set(runs["tags.mlflow.runName"]):
        return wrong(f"{answer!r} is not a run name in {experiment!r}.",
                     "read the name from the 'tags.mlflow.runName' column.")
    return wrong(f"{answer!r} is not the most accurate run.",
                 "use order_by=['metrics.accuracy DESC'] in mlflow.search_runs and take the first row.")
