"""Checks for lesson 07 (Workflow orchestration with Prefect).

07.4 and 07.6 judge code by running it against the lesson's Prefect server: 07.4 calls the learner's task in
two flow runs and reads which calls came from the cache; 07.6 runs the learner's flow on months of its own and
reads the flow run and its task runs (states, attempts, start and end times) back from the Prefect API.
"""

from __future__ import annotations

import ast
import inspect
import numbers
import os
import textwrap
from collections.abc import Mapping
from datetime import UTC, datetime

from mlops_course import train_config
from mlops_course.exercises import correct, exercise, wrong

# The lesson's window (the running example) one month on: what "retrain with one more month" trains on.
RETRAIN_MONTHS = list(train_config.EXAMPLE.next().train_months)
RETRAIN_HOLDOUT = train_config.EXAMPLE.next().test_month


def _server_missing():
    """Feedback when no Prefect server is configured (the setup cell was not run, or Clean up stopped it)."""
    if os.environ.get("PREFECT_API_URL"):
        return None
    return wrong("no Prefect server is running for this kernel, so the check cannot run your code.",
                 "run the lesson's setup cell (it starts the server), then this check again.")


@exercise("07.1", "retrain on one more month")
def retrain(answer, model_params: Mapping | None = None) -> object:
    needed = ("train_months", "holdout_month", "model_version", "metrics")
    if not all(hasattr(answer, name) for name in needed):
        return wrong(f"expected the object training_flow returns, got {type(answer).__name__}.",
                     "assign the flow's return value: retrained = orchestration.training_flow(...).")
    months = list(answer.train_months)
    if sorted(months) != sorted(RETRAIN_MONTHS) or len(months) != len(RETRAIN_MONTHS):
        return wrong(f"the flow trained on {months}, not on {RETRAIN_MONTHS}.",
                     "pass train_months=['Jan', 'Feb', 'March', 'April', 'May'] (month names as in the data).")
    if answer.holdout_month != RETRAIN_HOLDOUT:
        return wrong(f"the holdout month is {answer.holdout_month!r}, not 'June'.",
                     "evaluate on the month after the training months: holdout_month='June'.")
    if model_params is not None:  # the same recipe as the champion, so only the extra month differs
        from mlops_course import pipeline

        kind = getattr(answer, "model_kind", "random_forest")
        used = dict(getattr(answer, "model_params", {}) or {})
        expected = pipeline.as_params(model_params, kind)
        changed = {k: (used.get(k), v) for k, v in expected.items() if used.get(k) != v}
        if changed:
            key, (got, want) = next(iter(changed.items()))
            return wrong(f"the flow trained with {key}={got!r}, the lesson's model_params say {want!r}: the new "
                         f"version differs from the champion in more than its months.",
                         "pass model_params=model_params, the settings the champion was trained with.")
    if answer.model_version is None:
        return wrong("the model was logged but not registered.", "call the flow with register=True.")
    import mlflow

    from mlops_course import registry

    version = mlflow.MlflowClient().get_model_version(registry.MODEL_NAME, str(answer.model_version))
    try:
        tagged = sorted(ast.literal_eval(version.tags.get("train_months", "[]")))
    except (ValueError, SyntaxError):
        tagged = []
    if tagged != sorted(RETRAIN_MONTHS):
        return wrong(f"version {answer.model_version} in the registry was not trained on {RETRAIN_MONTHS}.",
                     "run the flow again with the months above and use its result.")
    verdict = "promoted to champion" if answer.promoted else "the champion was kept"
    return correct(f"version {answer.model_version} trained on Jan-May scores MAE {answer.metrics['mae']:.2f} "
                   f"on June; {verdict}.")


# The truth of 07.2 is what the course flow's cache policies do; tests/test_orchestration.py runs each change.
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


def _task_aliases() -> dict[str, str]:
    """The course tasks' function names -> task names (``validate_data`` is the task ``validate``)."""
    from mlops_course import orchestration

    tasks = (orchestration.validate_data, orchestration.prepare_data, orchestration.train_model,
             orchestration.evaluate_model, orchestration.register_model, orchestration.render_report)
    return {t.fn.__name__: t.name for t in tasks}


@exercise("07.3", "find the retried task")
def retried_task(answer, tasks=None, flow_run_name: str = "first-run") -> object:
    """``tasks``: the flow run's task-run table; read from the Prefect API (by flow run name) when omitted."""
    if not isinstance(answer, (tuple, list)) or len(answer) != 2:
        return wrong(f"expected a pair (task name, attempts), got {answer!r}.", "write it like ('train', 3).")
    name, attempts = str(answer[0]).strip().lower(), answer[1]
    name = _task_aliases().get(name, name)
    if tasks is None:
        from mlops_course import orchestration

        missing = _server_missing()
        if missing:
            return missing
        runs = orchestration.flow_runs()
        match = runs[runs["flow_run"] == flow_run_name]
        if match.empty:
            return wrong(f"there is no flow run named {flow_run_name!r} on this kernel's Prefect server.",
                         "run the cell of section 3 that runs 'first-run' (Run 1), then this check again.")
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
    if isinstance(attempts, bool) or not isinstance(attempts, (int, float)) or attempts != truth_attempts:
        hint = ("the first attempt counts too: run_count is the number of attempts, retries included."
                if attempts == truth_attempts - 1 else "read the 'attempts' column (the task run's run_count).")
        return wrong(f"{name!r} is right, but it took {truth_attempts} attempts, not {attempts!r}.", hint)
    return correct(f"{name!r} failed once on the outage and succeeded on attempt {truth_attempts}.")


# ---------------------------------------------------------------- 07.4: retries and caching, by running the task
PROBE_DAYS = ("2011-05-01", "2011-05-02")


def _delays(delay, retries: int) -> list[float]:
    """The wait before each retry, as Prefect applies ``retry_delay_seconds`` (a list repeats its last value)."""
    if retries <= 0:
        return []
    if delay is None:
        return [0.0] * retries
    if isinstance(delay, (list, tuple)):
        return [float(delay[min(i, len(delay) - 1)]) for i in range(retries)] if delay else [0.0] * retries
    return [float(delay)] * retries


def _uses_run_id(policy) -> bool:
    from prefect.cache_policies import CompoundCachePolicy, RunId

    if isinstance(policy, RunId):
        return True
    return isinstance(policy, CompoundCachePolicy) and any(isinstance(p, RunId) for p in policy.policies)


def _probe_cache(task) -> tuple[str, list[str]]:
    """Call the task (without retries) in two flow runs; the state names of the second run's three calls.

    Run 1 stores (A, day 1). Run 2 calls (A, day 1) again, then (A, day 2) and (B, day 1). Station names carry a
    fresh token, so nothing stored by an earlier check can answer.
    """
    from uuid import uuid4

    from prefect import flow

    probe = task.with_options(retries=0, retry_delay_seconds=0)
    token = uuid4().hex[:8]
    a, b = f"check-{token}-A", f"check-{token}-B"
    day1, day2 = PROBE_DAYS

    @flow(name="check-07-4", flow_run_name="check-07-4-run-{label}")
    def calls(label: str, pairs: list[list[str]]) -> list[str]:
        return [probe(station, day, return_state=True).name for station, day in pairs]

    first = calls("1", [[a, day1]])
    second = calls("2", [[a, day1], [a, day2], [b, day1]])
    return first[0], second


@exercise("07.4", "declare retries and caching")
def declare_task(answer) -> object:
    from prefect import Task

    if not isinstance(answer, Task):
        return wrong(f"expected a Prefect task, got {type(answer).__name__}.",
                     "decorate the function with @task(...) and assign the decorated function.")
    if answer.retries != 3:
        return wrong(f"the task retries {answer.retries} time(s), not 3.", "pass retries=3 to @task.")
    delays = _delays(answer.retry_delay_seconds, answer.retries)
    if delays != [10.0] * 3:
        if not any(delays):
            return wrong("the task retries at once, with no wait between attempts.",
                         "pass retry_delay_seconds=10 to @task.")
        shown = ", ".join(f"{d:g}" for d in delays)
        return wrong(f"the waits before the three retries are {shown} s, not 10 s each.",
                     "retry_delay_seconds=10 waits 10 s before every retry (a list gives one wait per retry; "
                     "exponential_backoff grows them).")
    missing = _server_missing()
    if missing:
        return missing
    first, (again, other_day, other_station) = _probe_cache(answer)
    if "Failed" in (first, again, other_day, other_station):
        return wrong("your task failed when the check called it with a station and a day.",
                     "the body may be a stub, but it must accept (station, day) and return without an error.")
    if again != "Cached":
        if answer.persist_result is False:
            hint = "persist_result=False switches caching off: leave it out (a cache policy persists results)."
        elif getattr(answer, "refresh_cache", None):
            hint = "refresh_cache=True recomputes on every call: leave it out."
        elif _uses_run_id(answer.cache_policy):
            hint = ("the key includes the flow run id (RUN_ID, part of Prefect's DEFAULT policy), so a new run "
                    "never reuses it: use cache_policy=INPUTS.")
        else:
            hint = "give the task a cache policy keyed on its inputs: cache_policy=INPUTS."
        return wrong(f"called again with the same station and day in a later flow run, the task ran again "
                     f"(state {again}).", hint)
    if other_day == "Cached":
        return wrong("a call with another day returned the stored result of the first day: the key leaves "
                     "out the day.", "keep both inputs in the key: cache_policy=INPUTS, without '- \"day\"'.")
    if other_station == "Cached":
        return wrong("a call for another station returned the stored result of the first one: the key leaves "
                     "out the station.", "keep both inputs in the key: cache_policy=INPUTS.")
    return correct("three retries ten seconds apart; run again in a later flow run, the same station and day "
                   "came from the cache, another day or station did not.")


# ---------------------------------------------------------------- 07.5: a cron string, by the dates it fires
CRON_START = datetime(2011, 12, 31, tzinfo=UTC)  # a Saturday
CRON_DATES = 60  # more than a year of Mondays: a schedule that only looks right for a few weeks is caught


@exercise("07.5", "write a cron schedule")
def monday_cron(answer: str) -> object:
    from mlops_course import flow_display

    if not isinstance(answer, str) or len(answer.split()) != 5:
        return wrong(f"expected a cron string with five fields, got {answer!r}.",
                     "five fields: minute hour day-of-month month day-of-week, e.g. '0 6 1 * *'.")
    try:
        got = flow_display.next_run_times(answer, CRON_START, n=CRON_DATES)
    except ValueError:
        minute, hour = answer.split()[:2]
        if minute.isdigit() and hour.isdigit() and int(hour) > 23:
            return wrong(f"{answer!r} is not a valid schedule: hour {hour} does not exist.",
                         "the minute comes first, then the hour: '30 6 ...'.")
        return wrong(f"{answer!r} is not a valid cron string.",
                     "five fields: minute hour day-of-month month day-of-week.")
    expected = flow_display.next_run_times("30 6 * * 1", CRON_START, n=CRON_DATES)
    if got == expected:
        return correct("fires " + ", ".join(d.strftime("%a %Y-%m-%d %H:%M") for d in got[:3]) + " UTC, ...")
    if all(d.strftime("%H:%M") == "06:30" for d in got):
        if all(d.weekday() == 6 for d in got):
            return wrong(f"{answer!r} fires on Sundays.", "in cron, day-of-week 0 is Sunday and 1 is Monday.")
        odd = next((d for d in got if d.weekday() != 0), None)
        if odd is not None:
            return wrong(f"{answer!r} fires at 06:30 but not only on Mondays: also on "
                         f"{odd.strftime('%a %Y-%m-%d')}.",
                         "restrict the fifth field (day of week) to 1 and leave day-of-month and month as '*'.")
        return wrong(f"{answer!r} fires on Mondays at 06:30 but skips some: the first it misses is "
                     f"{next(e for e in expected if e not in got).strftime('%a %Y-%m-%d')}.",
                     "leave day-of-month and month as '*', so every Monday of every month counts.")
    shown = ", ".join(d.strftime("%a %H:%M") for d in got[:3])
    return wrong(f"{answer!r} fires at {shown}.", "minute first, then hour: 06:30 is '30 6'.")


# ---------------------------------------------------------------- 07.6: write a flow, checked by running it
FLOW_CHECK_MONTHS = ["Feb", "July", "Nov"]  # not the months the exercise's text uses


def _is_stub(fn) -> bool:
    """True when a function's body is only a docstring, ``...`` or ``pass`` (the exercise's empty stub)."""
    try:
        node = ast.parse(textwrap.dedent(inspect.getsource(fn))).body[0]
    except (OSError, TypeError, SyntaxError, IndexError):
        return False
    body = [s for s in getattr(node, "body", []) if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant)
                                                         and isinstance(s.value.value, str))]
    return all(isinstance(s, ast.Pass) or (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant)
                                           and s.value.value is Ellipsis) for s in body)


def _task_table(flow_run_id: str, at_least: int):
    """The flow run's task runs, waiting (briefly) until ``at_least`` of them are recorded in a final state."""
    from mlops_course import orchestration

    try:
        return orchestration.task_runs(flow_run_id, expected=at_least, timeout=15)
    except orchestration.OrchestrationError:
        return orchestration.task_runs(flow_run_id)


def _result(state):
    """A final state's value (or exception); ``_sync`` because in a notebook Prefect would return a coroutine."""
    return state.result(raise_on_failure=False, _sync=True)


@exercise("07.6", "write a flow")
def write_flow(answer, warehouse=None) -> object:
    from uuid import UUID

    from prefect import Flow, get_client
    from prefect.futures import PrefectFuture
    from prefect.states import State

    from mlops_course import data, flow_display, orchestration

    if not isinstance(answer, Flow):
        return wrong(f"expected a Prefect flow, got {type(answer).__name__}.",
                     "decorate the function with @flow and pass the decorated function itself.")
    if _is_stub(answer.fn):
        return wrong("exercise 07.6 (write a flow) is not answered yet: the flow's body is still empty.",
                     "fill in the cell above, run it, then run this check again.")
    if not isinstance(warehouse, orchestration.Warehouse):
        return wrong("the check needs the warehouse your flow reads from.",
                     "call check('07.6', monthly_demand, warehouse).")
    missing = _server_missing()
    if missing:
        return missing
    months = list(FLOW_CHECK_MONTHS)
    warehouse.reset(failures=1)  # the first read of every month times out
    try:
        state = answer(months, return_state=True)
    except Exception as exc:  # noqa: BLE001 - e.g. a signature that does not take the months
        return wrong(f"calling your flow with {months} raised {type(exc).__name__}: {exc}",
                     "the flow takes one argument: the list of month names.")
    flow_run_id = str(state.state_details.flow_run_id)
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(UUID(flow_run_id))
    reads = list(warehouse.reads)
    outside = [r for r in reads if r.task_run_id is None]
    per_task: dict[str, set[str]] = {}
    for r in reads:
        if r.task_run_id is not None:
            per_task.setdefault(r.task_run_id, set()).add(r.month)
    shared = next((sorted(ms) for ms in per_task.values() if len(ms) > 1), None)
    tasks = _task_table(flow_run_id, len(per_task))
    mine = tasks[tasks["id"].isin(per_task)]
    completed = run.state_type is not None and run.state_type.value == "COMPLETED"
    if outside:
        return wrong(f"the flow's own body read {outside[0].month} from the warehouse, outside any task run "
                     f"(the flow run ended {run.state_name}).",
                     "move warehouse.read(month) into a @task with retries, so Prefect records, retries and "
                     "parallelises each month.")
    if shared:
        return wrong(f"one task run read {shared}: the months share one task run (the flow run ended "
                     f"{run.state_name}).",
                     "write the task for ONE month and call it once per month (task.map(months)), so each "
                     "month retries on its own and the months can run at the same time.")
    if not completed:
        once = mine[(mine["state"] == "Failed") & (mine["attempts"] < 2)]
        if not once.empty:
            return wrong(f"the flow run ended {run.state_name}: task {once['task'].iloc[0]!r} failed on the "
                         "warehouse's first timeout and was not retried.",
                         "give the task retries, e.g. @task(retries=2, retry_delay_seconds=0).")
        exc = _result(state)
        detail = f"{type(exc).__name__}: {exc}" if isinstance(exc, BaseException) else "see its log"
        return wrong(f"the flow run ended {run.state_name} ({detail}).",
                     "run monthly_demand(['Feb', 'July']) in a cell of its own and read the traceback.")
    value = _result(state)
    if isinstance(value, Mapping) and any(isinstance(v, (PrefectFuture, State)) for v in value.values()):
        return wrong("the flow returned futures or states, not the numbers.",
                     "call .result() on each future (or state) before you put it in the dict.")
    if not isinstance(value, Mapping):
        return wrong(f"the flow returned {type(value).__name__}, not a dict of month -> mean hourly rentals.",
                     "return {month: value, ...}, e.g. dict(zip(months, [f.result() for f in futures])).")
    if sorted(value) != sorted(months):
        return wrong(f"called with {months}, the flow returned the months {sorted(value)}.",
                     "use the flow's months argument, not a list of your own.")
    truth = {m: round(float(data.select_months(warehouse.bikes, [m])[data.TARGET].mean()), 1) for m in months}
    off = [m for m in months if isinstance(value[m], bool) or not isinstance(value[m], numbers.Real)
           or abs(float(value[m]) - truth[m]) > 0.051]
    if off:
        m = off[0]
        return wrong(f"for {m} the flow returned {value[m]!r}; the month's mean hourly rentals are {truth[m]}.",
                     f"the mean of the '{data.TARGET}' column over the month's rows, rounded to 1 decimal.")
    unread = [m for m in months if not any(r.month == m and r.ok for r in reads)]
    if unread:
        return wrong(f"the flow never got {unread[0]} from the warehouse (a cached result, or data of its own?).",
                     "read every month with warehouse.read(month) inside the task, and leave caching off here.")
    by_hand = mine[mine["attempts"] < 2]
    if not by_hand.empty:
        return wrong(f"task {by_hand['task'].iloc[0]!r} caught the timeout and read again itself: Prefect recorded "
                     "a single attempt.",
                     "let the error propagate and give the task retries=...; Prefect then records every attempt.")
    if len(mine) < len(months) or not flow_display.overlap(mine).all_at_once:
        return wrong(f"the {len(months)} months ran one after another, not at the same time.",
                     "submit them all before waiting: futures = task.map(months) (or task.submit(m) for each), "
                     "then call .result() on the futures.")
    shown = ", ".join(f"{m} {truth[m]:.1f}" for m in months)
    return correct(f"{len(months)} task runs at the same time, each retried after the warehouse's first "
                   f"timeout; mean rentals an hour: {shown}.")
