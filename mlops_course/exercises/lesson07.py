"""Checks for lesson 07 (Workflow orchestration with Prefect)."""

from __future__ import annotations

from datetime import UTC, datetime

from mlops_course.exercises import correct, exercise, wrong

RETRAIN_MONTHS = ["Jan", "Feb", "March", "April", "May"]
RETRAIN_HOLDOUT = "June"


@exercise("07.1", "retrain on one more month")
def retrain(answer) -> object:
    needed = ("train_months", "holdout_month", "model_version", "metrics")
    if not all(hasattr(answer, name) for name in needed):
        return wrong(f"expected the object training_flow returns, got {type(answer).__name__}.",
                     "assign the flow's return value: retrained = orchestration.training_flow(...).")
    months = list(answer.train_months)
    if months != RETRAIN_MONTHS:
        return wrong(f"the flow trained on {months}, not on {RETRAIN_MONTHS}.",
                     "pass train_months=['Jan', 'Feb', 'March', 'April', 'May'] (month names as in the data).")
    if answer.holdout_month != RETRAIN_HOLDOUT:
        return wrong(f"the holdout month is {answer.holdout_month!r}, not 'June'.",
                     "evaluate on the month after the training months: holdout_month='June'.")
    if answer.model_version is None:
        return wrong("the model was logged but not registered.", "call the flow with register=True.")
    import mlflow

    from mlops_course import registry

    version = mlflow.MlflowClient().get_model_version(registry.MODEL_NAME, str(answer.model_version))
    if version.tags.get("train_months") != str(RETRAIN_MONTHS):
        return wrong(f"version {answer.model_version} in the registry was not trained on {RETRAIN_MONTHS}.",
                     "run the flow again with the months above and use its result.")
    verdict = "promoted to champion" if answer.promoted else "the champion was kept"
    return correct(f"version {answer.model_version} trained on Jan-May scores MAE {answer.metrics['mae']:.2f} "
                   f"on June; {verdict}.")


CACHE_CASES = {
    "same call again": set(),
    "more trees": set(),
    "holdout June": {"prepare"},
    "edited data file": {"validate", "prepare"},
}
CACHE_HINTS = {
    "same call again": "with identical inputs both keys are the same as last time: nothing re-runs.",
    "more trees": "model settings are inputs of train only; validate and prepare never see them.",
    "holdout June": "holdout_month is an input of prepare (part of its key) but not of validate, whose key is "
                    "(data_path, data_sha256).",
    "edited data file": "editing the file changes its SHA-256, and the checksum is in the key of both tasks.",
}


@exercise("07.2", "predict the cache")
def predict_cache(answer: dict) -> object:
    if not isinstance(answer, dict):
        return wrong(f"expected a dict of change -> tasks that run again, got {type(answer).__name__}.",
                     "write it like {'same call again': [], 'more trees': [...], ...}.")
    missing = [case for case in CACHE_CASES if case not in answer]
    if missing:
        return wrong(f"no prediction yet for {missing}.", f"use exactly these keys: {list(CACHE_CASES)}.")
    wrong_cases = []
    for case, expected in CACHE_CASES.items():
        given = answer[case]
        given = {given} if isinstance(given, str) else set(given or [])
        given = {str(name).strip().lower() for name in given}
        if given - {"validate", "prepare"}:
            extra = sorted(given - {"validate", "prepare"})
            return wrong(f"{case!r}: {extra} are not cached tasks.",
                         "only validate and prepare have a cache policy; train, evaluate and register use "
                         "NO_CACHE and always run, so leave them out.")
        if given != expected:
            wrong_cases.append(case)
    if wrong_cases:
        first = wrong_cases[0]
        return wrong(f"{len(wrong_cases)} of {len(CACHE_CASES)} predictions are off: {wrong_cases}.",
                     CACHE_HINTS[first])
    return correct("you read the cache keys right: a key holds exactly the inputs it names.")


@exercise("07.3", "find the retried task")
def retried_task(answer, tasks=None, flow_run_name: str = "first-run") -> object:
    """``tasks``: the flow run's task-run table; read from the Prefect API (by flow run name) when omitted."""
    if not isinstance(answer, (tuple, list)) or len(answer) != 2:
        return wrong(f"expected a pair (task name, attempts), got {answer!r}.", "write it like ('train', 3).")
    name, attempts = str(answer[0]).strip(), answer[1]
    if tasks is None:
        from mlops_course import orchestration

        runs = orchestration.flow_runs()
        match = runs[runs["flow_run"] == flow_run_name]
        if match.empty:
            return wrong(f"there is no flow run named {flow_run_name!r}.", "run section 2 of the lesson first.")
        tasks = orchestration.task_runs(match["id"].iloc[0])
    retried = tasks[tasks["attempts"] > 1]
    if retried.empty:
        return wrong(f"no task of {flow_run_name!r} needed a retry.", "simulate the outage before the first run.")
    truth_name, truth_attempts = retried["task"].iloc[0], int(retried["attempts"].iloc[0])
    if name not in set(tasks["task"]):
        return wrong(f"{name!r} is not a task of the flow; its tasks are {list(tasks['task'])}.",
                     "use the task names from the task-run table.")
    if name != truth_name:
        return wrong(f"{name!r} ran once without trouble.",
                     "look for the task whose state history contains 'Retrying'.")
    if attempts != truth_attempts:
        hint = ("the first attempt counts too: run_count is the number of attempts, retries included."
                if attempts == truth_attempts - 1 else "read the 'attempts' column (the task run's run_count).")
        return wrong(f"{name!r} is right, but it took {truth_attempts} attempts, not {attempts!r}.", hint)
    return correct(f"{name!r} failed once on the outage and succeeded on attempt {truth_attempts}.")


@exercise("07.4", "declare retries and caching")
def declare_task(answer) -> object:
    from prefect import Task
    from prefect.cache_policies import Inputs

    if not isinstance(answer, Task):
        return wrong(f"expected a Prefect task, got {type(answer).__name__}.",
                     "decorate the function with @task(...) and assign the decorated function.")
    if answer.retries != 3:
        return wrong(f"the task retries {answer.retries} time(s), not 3.", "pass retries=3 to @task.")
    delay = answer.retry_delay_seconds
    if delay != 10 and delay != [10]:
        return wrong(f"the delay between attempts is {delay!r}, not 10 seconds.",
                     "pass retry_delay_seconds=10 to @task.")
    policy = answer.cache_policy
    if not isinstance(policy, Inputs):
        return wrong(f"the cache policy is {type(policy).__name__}, not INPUTS.",
                     "Prefect's DEFAULT policy also hashes the flow run id, so a new run never reuses it: "
                     "use cache_policy=INPUTS from prefect.cache_policies.")
    if policy.exclude:
        return wrong(f"the key leaves out {policy.exclude}, so different stations or days would share a result.",
                     "use INPUTS as it is: both station and day belong in the key.")
    return correct("three retries ten seconds apart, and one cached result per station and day.")


CRON_START = datetime(2011, 12, 31, tzinfo=UTC)  # a Saturday


@exercise("07.5", "write a cron schedule")
def monday_cron(answer: str) -> object:
    from mlops_course import orchestration

    if not isinstance(answer, str) or len(answer.split()) != 5:
        return wrong(f"expected a cron string with five fields, got {answer!r}.",
                     "five fields: minute hour day-of-month month day-of-week, e.g. '0 6 1 * *'.")
    try:
        got = orchestration.next_run_times(answer, CRON_START, n=3)
    except ValueError:
        minute, hour = answer.split()[:2]
        if minute.isdigit() and hour.isdigit() and int(hour) > 23:
            return wrong(f"{answer!r} is not a valid schedule: hour {hour} does not exist.",
                         "the minute comes first, then the hour: '30 6 ...'.")
        return wrong(f"{answer!r} is not a valid cron string.",
                     "five fields: minute hour day-of-month month day-of-week.")
    expected = orchestration.next_run_times("30 6 * * 1", CRON_START, n=3)
    if got == expected:
        return correct("fires " + ", ".join(d.strftime("%a %Y-%m-%d %H:%M") for d in got) + " UTC.")
    if all(d.strftime("%H:%M") == "06:30" for d in got):
        if all(d.weekday() == 6 for d in got):
            return wrong(f"{answer!r} fires on Sundays.", "in cron, day-of-week 0 is Sunday and 1 is Monday.")
        return wrong(f"{answer!r} fires at 06:30 but not only on Mondays: {[d.strftime('%a') for d in got]}.",
                     "restrict the fifth field (day of week) to 1 and leave day-of-month as '*'.")
    shown = ", ".join(d.strftime("%a %H:%M") for d in got)
    return wrong(f"{answer!r} fires at {shown}.", "minute first, then hour: 06:30 is '30 6'.")
