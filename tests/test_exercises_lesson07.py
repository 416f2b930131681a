"""Checks of lesson 07: right answers pass, typical wrong answers get the matching hint.

07.4 and 07.6 run the learner's code against a Prefect server (one for the module, started by the ``prefect``
fixture); the other checks need none.
"""

from types import SimpleNamespace

import mlflow
import pandas as pd
import pytest
from conftest import module_lesson

from mlops_course import data, pipeline, registry
from mlops_course.exercises import evaluate
from mlops_course.exercises.lesson07 import CACHE_CASES, FLOW_CHECK_MONTHS, RETRAIN_MONTHS


@pytest.fixture(scope="module")
def prefect(tmp_path_factory):
    """A Prefect server for the checks that run the learner's task or flow."""
    with module_lesson(tmp_path_factory, "94", "lesson07-checks") as lesson:
        from mlops_course.prefect_server import PrefectServer

        server = PrefectServer(lesson.workspace, console_logs=False).start().wait()
        try:
            yield lesson
        finally:
            server.stop()


# ---------------------------------------------------------------- 07.1 retrain
@pytest.fixture
def registered(lesson_env):
    from mlops_course import setup_lesson

    setup_lesson("96", quiet=True)
    mlflow.set_experiment(experiment_id="0")  # the new store's Default, whatever an earlier test left active
    bikes = data.load_bikeshare()
    model = pipeline.train(data.select_months(bikes, ["Jan"]), n_estimators=3, max_depth=3)
    versions = {}
    for months in (RETRAIN_MONTHS, ["Jan"]):
        with mlflow.start_run():
            logged = registry.log_bike_model(model, pipeline.make_features(bikes.head(5)), onnx=False)
        versions[tuple(months)] = registry.register(logged, tags={"train_months": months})
    return versions


LESSON_PARAMS = {"n_estimators": 20, "max_depth": 8}


def result(version, months=RETRAIN_MONTHS, holdout="June", promoted=True, params=LESSON_PARAMS):
    return SimpleNamespace(train_months=tuple(months), holdout_month=holdout, model_version=version,
                           metrics={"mae": 31.5}, promoted=promoted, model_kind="random_forest",
                           model_params=pipeline.as_params(params, "random_forest"))


def test_retrain_right_answers(registered):
    feedback = evaluate("07.1", result(registered[tuple(RETRAIN_MONTHS)]))
    assert feedback.ok and "promoted" in feedback.message and "31.50" in feedback.message
    kept = evaluate("07.1", result(registered[tuple(RETRAIN_MONTHS)], promoted=False))
    assert kept.ok and "champion was kept" in kept.message
    shuffled = evaluate("07.1", result(registered[tuple(RETRAIN_MONTHS)], months=RETRAIN_MONTHS[::-1]))
    assert shuffled.ok  # the same five months in another order train on the same rows


def test_retrain_typical_mistakes(registered):
    good = registered[tuple(RETRAIN_MONTHS)]
    assert "object training_flow returns" in evaluate("07.1", {"train_months": RETRAIN_MONTHS}).message
    assert "train_months=" in evaluate("07.1", result(good, months=["Jan", "Feb", "March", "April"])).hint
    assert "holdout_month='June'" in evaluate("07.1", result(good, holdout="May")).hint
    assert "register=True" in evaluate("07.1", result(None)).hint
    other = evaluate("07.1", result(registered[("Jan",)]))
    assert not other.ok and "was not trained on" in other.message


def test_retrain_with_the_lessons_settings(registered):
    good = registered[tuple(RETRAIN_MONTHS)]
    assert evaluate("07.1", result(good), model_params=LESSON_PARAMS).ok
    defaults_spelled_out = {**LESSON_PARAMS, "min_samples_leaf": pipeline.DEFAULT_PARAMS["random_forest"]["min_samples_leaf"]}
    assert evaluate("07.1", result(good), model_params=defaults_spelled_out).ok  # the same settings, written out
    for params in ({"n_estimators": 40, "max_depth": 8}, {"n_estimators": 20}):  # other trees; the default depth
        feedback = evaluate("07.1", result(good, params=params), model_params=LESSON_PARAMS)
        assert not feedback.ok and "model_params=model_params" in feedback.hint


# ---------------------------------------------------------------- 07.2 cache prediction
def test_cache_prediction_right_answer():
    answer = {case: sorted(tasks) for case, tasks in CACHE_CASES.items()}
    assert evaluate("07.2", answer).ok
    assert evaluate("07.2", {**answer, "holdout June": "prepare"}).ok  # a single name as a string is fine


@pytest.mark.parametrize("case,given,hint", [
    ("holdout June", ["validate", "prepare"], "holdout_month is an input of prepare"),
    ("more trees", ["prepare"], "model settings are inputs of train only"),
    ("edited data file", [], "changes its SHA-256"),
    ("same call again", ["validate"], "identical inputs"),
])
def test_cache_prediction_mistakes_get_the_matching_hint(case, given, hint):
    answer = {c: sorted(t) for c, t in CACHE_CASES.items()}
    answer[case] = given
    feedback = evaluate("07.2", answer)
    assert not feedback.ok and case in feedback.message and hint in feedback.hint


def test_cache_prediction_shape_errors():
    assert "dict" in evaluate("07.2", ["validate"]).message
    assert "no prediction yet" in evaluate("07.2", {"more trees": []}).message
    answer = {c: sorted(t) for c, t in CACHE_CASES.items()}
    answer["more trees"] = ["train"]
    assert "NO_CACHE" in evaluate("07.2", answer).hint


# ---------------------------------------------------------------- 07.3 retried task
TASKS = pd.DataFrame({"task": ["validate", "prepare", "train"], "state": ["Completed"] * 3,
                      "attempts": [2, 1, 1]})


def test_retried_task_from_a_table():
    assert evaluate("07.3", ("validate", 2), TASKS).ok
    assert evaluate("07.3", ["validate_data", 2.0], TASKS).ok  # the task's function name, a float count
    assert evaluate("07.3", (" Validate", 2), TASKS).ok
    as_text = evaluate("07.3", ("validate", "2"), TASKS)
    assert not as_text.ok and "not '2'" in as_text.message
    assert "run_count" in evaluate("07.3", ("validate", 1), TASKS).hint
    assert "Retrying" in evaluate("07.3", ("train", 2), TASKS).hint
    assert "not a task of the flow" in evaluate("07.3", ("fetch", 2), TASKS).message
    assert "pair" in evaluate("07.3", "validate", TASKS).message
    calm = TASKS.assign(attempts=1)
    assert "needed a retry" in evaluate("07.3", ("validate", 2), calm).message


# ---------------------------------------------------------------- 07.4 task declaration, judged by running it
def fetch(station: str, day: str) -> dict:
    return {"station": station, "day": day, "temp_c": 12.0}


def by_station_and_day(context, parameters):
    return f"weather-{parameters['station']}-{parameters['day']}"


def correct_declarations():
    from prefect import task
    from prefect.cache_policies import INPUTS, TASK_SOURCE
    from prefect.tasks import exponential_backoff  # noqa: F401 - used by the wrong ones

    return {
        "INPUTS, persisted": task(retries=3, retry_delay_seconds=10, cache_policy=INPUTS, persist_result=True)(fetch),
        "INPUTS + TASK_SOURCE": task(retries=3, retry_delay_seconds=10, cache_policy=INPUTS + TASK_SOURCE)(fetch),
        "a key function": task(retries=3, retry_delay_seconds=[10, 10, 10], cache_key_fn=by_station_and_day)(fetch),
        "a list of one delay": task(retries=3, retry_delay_seconds=[10], cache_policy=INPUTS)(fetch),
    }


@pytest.mark.parametrize("label", list(correct_declarations()))
def test_task_declaration_equivalent_answers_pass(prefect, label):
    feedback = evaluate("07.4", correct_declarations()[label])
    assert feedback.ok, feedback


def test_task_declaration_mistakes_found_without_running():
    from prefect import task
    from prefect.cache_policies import INPUTS
    from prefect.tasks import exponential_backoff

    assert "@task" in evaluate("07.4", fetch).hint
    assert "retries=3" in evaluate("07.4", task(retries=1, retry_delay_seconds=10, cache_policy=INPUTS)(fetch)).hint
    assert "retry_delay_seconds=10" in evaluate("07.4", task(retries=3, cache_policy=INPUTS)(fetch)).hint
    growing = evaluate("07.4", task(retries=3, retry_delay_seconds=exponential_backoff(10), cache_policy=INPUTS)(fetch))
    assert not growing.ok and "10, 20, 40" in growing.message and "exponential_backoff" in growing.hint


@pytest.mark.parametrize("declare,hint", [
    (lambda task, p: task(retries=3, retry_delay_seconds=10)(fetch), "flow run id"),  # Prefect's DEFAULT policy
    (lambda task, p: task(retries=3, retry_delay_seconds=10, cache_policy=p.DEFAULT)(fetch), "flow run id"),
    (lambda task, p: task(retries=3, retry_delay_seconds=10, cache_policy=p.INPUTS, persist_result=False)(fetch),
     "persist_result=False"),
    (lambda task, p: task(retries=3, retry_delay_seconds=10, cache_policy=p.NO_CACHE)(fetch), "cache_policy=INPUTS"),
    (lambda task, p: task(retries=3, retry_delay_seconds=10, cache_policy=p.INPUTS - "day")(fetch), "the day"),
    (lambda task, p: task(retries=3, retry_delay_seconds=10, cache_policy=p.INPUTS - "station")(fetch), "station"),
])
def test_task_declaration_wrong_caches_are_found_by_running(prefect, declare, hint):
    import prefect.cache_policies as policies
    from prefect import task

    feedback = evaluate("07.4", declare(task, policies))
    assert not feedback.ok and (hint in feedback.hint or hint in feedback.message), feedback


def test_task_declaration_whose_body_fails(prefect):
    from prefect import task
    from prefect.cache_policies import INPUTS

    @task(retries=3, retry_delay_seconds=10, cache_policy=INPUTS)
    def broken(station: str, day: str) -> dict:
        raise RuntimeError("no network here")

    feedback = evaluate("07.4", broken)
    assert not feedback.ok and "failed when the check called it" in feedback.message


def test_task_declaration_needs_a_server(lesson_env, monkeypatch):
    from prefect import task
    from prefect.cache_policies import INPUTS

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    feedback = evaluate("07.4", task(retries=3, retry_delay_seconds=10, cache_policy=INPUTS)(fetch))
    assert not feedback.ok and "setup cell" in feedback.hint


# ---------------------------------------------------------------- 07.5 cron
def test_cron_right_answers():
    assert evaluate("07.5", "30 6 * * 1").ok
    assert evaluate("07.5", "30 6 * * mon").ok
    assert evaluate("07.5", "30 06 * * MON").ok


@pytest.mark.parametrize("cron,hint", [
    ("30 6 2,9,16 1 *", "day of week"),  # Jan 2, 9 and 16 of 2012 are Mondays: the next dates are not
    ("30 6 * 1 1", "every Monday of every month"),
    ("6 30 * * 1", "minute comes first"),
    ("30 6 * * *", "day of week"),
    ("30 6 * * 0", "0 is Sunday"),
    ("0 6 * * 1", "minute first"),
    ("30 6 * *", "five fields"),
    ("every monday", "five fields"),
])
def test_cron_mistakes_get_the_matching_hint(cron, hint):
    feedback = evaluate("07.5", cron)
    assert not feedback.ok and hint in feedback.hint


# ---------------------------------------------------------------- 07.6 write a flow, judged by running it
@pytest.fixture(scope="module")
def warehouse(prefect):
    from mlops_course import orchestration

    return orchestration.Warehouse(data.load_bikeshare(), latency=0.2, failures=1)


def flow_answers(warehouse):
    """Flows a learner might write: the first two are right, the others make one mistake each."""
    from prefect import flow, task

    @task(retries=2, retry_delay_seconds=0)
    def mean_demand(month: str) -> float:
        return round(float(warehouse.read(month)["bikers"].mean()), 1)

    @task(retries=1)
    def month_mean(month):  # unrounded, no type hints: still right
        return warehouse.read(month)[data.TARGET].mean()

    @task
    def no_retries(month: str) -> float:
        return round(float(warehouse.read(month)["bikers"].mean()), 1)

    @task(retries=2)
    def all_months(months: list[str]) -> dict[str, float]:
        return {m: round(float(warehouse.read(m)["bikers"].mean()), 1) for m in months}

    @task
    def retry_by_hand(month: str) -> float:
        try:
            rows = warehouse.read(month)
        except ConnectionError:
            rows = warehouse.read(month)
        return round(float(rows["bikers"].mean()), 1)

    @task(retries=2)
    def total_demand(month: str) -> float:
        return float(warehouse.read(month)["bikers"].sum())

    @flow(name="answer-map")
    def with_map(months: list[str]) -> dict[str, float]:
        futures = mean_demand.map(months)
        return {m: f.result() for m, f in zip(months, futures)}

    @flow(name="answer-submit")
    def with_submit(months):
        futures = {m: month_mean.submit(m) for m in months}
        return {m: f.result() for m, f in futures.items()}

    @flow(name="answer-one-by-one")
    def one_by_one(months: list[str]) -> dict[str, float]:
        return {m: mean_demand.submit(m).result() for m in months}

    @flow(name="answer-no-retries")
    def without_retries(months: list[str]) -> dict[str, float]:
        return {m: f.result() for m, f in zip(months, no_retries.map(months))}

    @flow(name="answer-one-task")
    def one_task(months: list[str]) -> dict[str, float]:
        return all_months(months)

    @flow(name="answer-in-the-flow", retries=1)
    def in_the_flow(months: list[str]) -> dict[str, float]:
        return {m: round(float(warehouse.read(m)["bikers"].mean()), 1) for m in months}

    @flow(name="answer-by-hand")
    def by_hand(months: list[str]) -> dict[str, float]:
        return {m: f.result() for m, f in zip(months, retry_by_hand.map(months))}

    @flow(name="answer-futures")
    def returns_futures(months: list[str]) -> dict:
        return dict(zip(months, mean_demand.map(months)))

    @flow(name="answer-total")
    def total(months: list[str]) -> dict[str, float]:
        return {m: f.result() for m, f in zip(months, total_demand.map(months))}

    @flow(name="answer-own-months")
    def own_months(months: list[str]) -> dict[str, float]:
        mine = ["Jan", "Feb", "March"]
        return {m: f.result() for m, f in zip(mine, mean_demand.map(mine))}

    @flow(name="answer-stub")
    def stub(months: list[str]) -> dict[str, float]:
        ...  # your code

    return {"map": with_map, "submit": with_submit, "one by one": one_by_one, "no retries": without_retries,
            "one task": one_task, "in the flow": in_the_flow, "by hand": by_hand, "futures": returns_futures,
            "total": total, "own months": own_months, "stub": stub}


@pytest.mark.parametrize("name", ["map", "submit"])
def test_write_flow_right_answers(warehouse, name):
    feedback = evaluate("07.6", flow_answers(warehouse)[name], warehouse)
    assert feedback.ok, feedback
    assert all(month in feedback.message for month in FLOW_CHECK_MONTHS)


@pytest.mark.parametrize("name,words", [
    ("one by one", "one after another"),
    ("no retries", "was not retried"),
    ("one task", "share one task run"),
    ("in the flow", "outside any task run"),
    ("by hand", "single attempt"),
    ("futures", ".result()"),
    ("total", "mean"),
    ("own months", "months argument"),
])
def test_write_flow_mistakes_get_a_hint_that_names_them(warehouse, name, words):
    feedback = evaluate("07.6", flow_answers(warehouse)[name], warehouse)
    assert not feedback.ok, feedback
    assert words in feedback.message + " " + feedback.hint, feedback


def test_write_flow_stub_and_wrong_shapes(warehouse):
    answers = flow_answers(warehouse)
    stub = evaluate("07.6", answers["stub"], warehouse)
    assert not stub.ok and "not answered yet" in stub.message and "[not yet]" in str(stub)
    assert "@flow" in evaluate("07.6", answers["map"].fn, warehouse).hint
    assert "check('07.6', monthly_demand, warehouse)" in evaluate("07.6", answers["map"]).hint
