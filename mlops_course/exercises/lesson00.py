"""Checks for lesson 00 (Introduction to MLOps)."""

from __future__ import annotations

from mlops_course.exercises import correct, exercise, wrong

TOOL_STAGES = {"DVC": "data", "MLflow": "model", "FastAPI": "deployment", "Evidently": "monitoring",
               "Prometheus": "monitoring", "Prefect": "orchestration"}


@exercise("00.1", "match tools to lifecycle stages")
def tools_to_stages(answer: dict) -> object:
    if not isinstance(answer, dict):
        return wrong(f"expected a dict of tool -> stage, got {type(answer).__name__}.",
                     "write it like {'DVC': 'data', ...}.")
    missing = [tool for tool in TOOL_STAGES if tool not in answer]
    if missing:
        return wrong(f"these tools have no stage yet: {missing}.", "give every tool in the dict a stage.")
    mistakes = [tool for tool, stage in TOOL_STAGES.items() if str(answer[tool]).strip().lower() != stage]
    if mistakes:
        return wrong(f"{len(mistakes)} of {len(TOOL_STAGES)} are off: {mistakes}.",
                     "look at the tools table above: which lesson uses the tool, and for what?")
    return correct("every tool sits in its stage.")


def _runs(experiment: str):
    import mlflow

    return mlflow.search_runs(experiment_names=[experiment], output_format="pandas")


@exercise("00.2", "log a second run")
def second_run(answer: str, experiment: str = "iris-intro") -> object:
    runs = _runs(experiment)
    match = runs[runs["tags.mlflow.runName"] == answer]
    if match.empty:
        names = sorted(runs["tags.mlflow.runName"].dropna())
        return wrong(f"no run named {answer!r} in experiment {experiment!r}; runs there: {names}.",
                     "pass run_name=... to mlflow.start_run and use the same name here.")
    run = match.iloc[0]
    if str(run.get("params.max_depth")) != "1":
        return wrong(f"run {answer!r} logged max_depth={run.get('params.max_depth')!r}, not 1.",
                     "train with max_depth=1 and log it with mlflow.log_param('max_depth', 1).")
    if "metrics.accuracy" not in run or run["metrics.accuracy"] != run["metrics.accuracy"]:
        return wrong(f"run {answer!r} has no 'accuracy' metric.", "call mlflow.log_metric('accuracy', ...).")
    return correct(f"run {answer!r} is tracked with max_depth=1 and accuracy {run['metrics.accuracy']:.3f}.")


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
