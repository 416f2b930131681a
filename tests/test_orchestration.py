"""The Prefect training flow run for real against a local Prefect server, on a tiny copy of the data.

The module's server runs with ``console_logs=False`` (as lesson 07 does); tests that need no server come last.
"""

import os
from pathlib import Path
from types import SimpleNamespace

import mlflow
import pandas as pd
import pytest

from mlops_course import data, flow_display, process, registry
from mlops_course.exercises import evaluate

HOME_PREFECT_EXISTED = (Path.home() / ".prefect").exists()
TINY_MONTHS = ["Jan", "Feb", "March", "April"]


def write_tiny(path: Path, rows_per_month: int = 72, drop_last: int = 0) -> Path:
    """Three days of each of four months, as a CSV with the course's columns."""
    bikes = data.load_bikeshare()
    parts = [batch.head(rows_per_month) for _, batch in data.monthly_batches(bikes, TINY_MONTHS)]
    tiny = pd.concat(parts, ignore_index=True)
    if drop_last:
        tiny = tiny.iloc[:-drop_last]
    tiny.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    root = tmp_path_factory.mktemp("orchestration")
    os.environ["MLOPS_COURSE_WORKSPACE"] = str(root / "ws")
    from mlops_course import orchestration, setup_lesson

    lesson = setup_lesson("97", quiet=True)
    mlflow.set_experiment(experiment_id="0")  # the new store's Default, whatever an earlier test left active
    tiny = write_tiny(lesson.workspace / "tiny.csv")
    server = orchestration.PrefectServer(lesson.workspace, console_logs=False).start().wait()
    try:
        yield SimpleNamespace(lesson=lesson, orch=orchestration, server=server, tiny=tiny)
    finally:
        server.stop()
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
        orchestration._refresh_prefect_settings()


def flow_kwargs(env, **overrides):
    kwargs = {"data_path": env.tiny, "train_months": ["Jan", "Feb"], "holdout_month": "March",
              "model_params": {"n_estimators": 5, "max_depth": 4}, "onnx": False}
    return {**kwargs, **overrides}


@pytest.fixture(scope="module")
def runs(env):
    env.orch.simulate_outage(1)
    first = env.orch.training_flow(**flow_kwargs(env, run_name="first"))
    second = env.orch.training_flow(**flow_kwargs(env, run_name="second"))
    tasks = {r.run_name: env.orch.task_runs(r.flow_run_id, expected=len(r.tasks)) for r in (first, second)}
    return SimpleNamespace(first=first, second=second, tasks=tasks)


def states(frame):
    return dict(zip(frame["task"], frame["state"]))


def test_state_lives_in_the_workspace_and_nowhere_else(env, runs):
    assert env.server.database.is_file()
    assert env.server.database.is_relative_to(env.lesson.workspace)
    assert os.environ["PREFECT_HOME"] == str(env.orch.prefect_home(env.lesson.workspace))
    assert any((env.server.home / "storage").iterdir()), "cached task results are stored in the workspace"
    assert os.environ["PREFECT_API_URL"].startswith("http://127.0.0.1:")
    if not HOME_PREFECT_EXISTED:
        assert not (Path.home() / ".prefect").exists()


def test_first_run_retries_the_flaky_source_and_registers(env, runs):
    first, table = runs.first, runs.tasks["first"]
    assert list(table["task"]) == ["validate", "prepare", "train", "evaluate", "register"]
    assert set(table["state"]) == {"Completed"}
    assert table.set_index("task").loc["validate", "attempts"] == 2
    assert table.set_index("task").loc["train", "attempts"] == 1
    history = env.orch.state_history(table.set_index("task").loc["validate", "id"])
    assert history == ["Pending", "Running", "Retrying", "Completed"]
    assert first.model_version == "1" and first.promoted is True
    assert first.train_rows == 144 and first.holdout_rows == 72
    assert "registered as version 1" in str(first) and first.flow_run_id not in str(first)


def test_second_run_reuses_validate_and_prepare(env, runs):
    assert states(runs.tasks["second"]) == {"validate": "Cached", "prepare": "Cached", "train": "Completed",
                                            "evaluate": "Completed", "register": "Completed"}
    assert runs.second.metrics == runs.first.metrics  # same cached data, same seeded model
    assert runs.second.model_version == "2" and runs.second.promoted is False
    assert "champion kept" in runs.second.gate


def test_flow_runs_are_recorded_with_parameters(env, runs):
    table = env.orch.flow_runs()
    recorded = table.set_index("flow_run")
    assert {"first", "second"} <= set(recorded.index)
    assert recorded.loc["first", "state"] == "Completed"
    assert recorded.loc["first", "id"] == runs.first.flow_run_id
    none = env.orch.flow_runs("no-such-flow")
    assert none.empty and list(none.columns) == env.orch.FLOW_RUN_COLUMNS


def test_results_are_logged_to_mlflow(env, runs):
    logged = mlflow.search_runs(experiment_names=[env.orch.EXPERIMENT])
    row = logged.set_index("tags.mlflow.runName").loc["first"]
    assert row["params.train_months"] == "Jan,Feb" and row["params.holdout_month"] == "March"
    assert row["params.n_estimators"] == "5" and row["params.model_kind"] == "random_forest"
    assert row["metrics.holdout_mae"] == pytest.approx(runs.first.metrics["mae"], abs=1e-3)
    assert row["tags.prefect.flow_run_id"] == runs.first.flow_run_id
    assert row["run_id"] == runs.first.mlflow_run_id
    with mlflow.start_run() as caller:  # the flow left the caller's active experiment alone
        pass
    assert mlflow.get_experiment(caller.info.experiment_id).name == "Default"


def test_registered_versions_carry_their_lineage(env, runs):
    version = mlflow.MlflowClient().get_model_version(registry.MODEL_NAME, runs.first.model_version)
    assert version.tags["prefect_flow_run"] == "first"
    assert version.tags["train_months"] == str(["Jan", "Feb"])
    assert registry.aliases() == {"challenger": "2", "champion": "1"}


def test_new_months_miss_the_prepare_cache_and_the_report_runs(env, runs):
    template = env.orch.write_report_template(env.lesson.path("report.ipynb"))
    result = env.orch.training_flow(**flow_kwargs(env, train_months=["Jan"], holdout_month="Feb", register=False,
                                                  run_name="third", report_template=str(template)))
    table = env.orch.task_runs(result.flow_run_id, expected=len(result.tasks))
    assert states(table) == {"validate": "Cached", "prepare": "Completed", "train": "Completed",
                             "evaluate": "Completed", "register": "Completed", "report": "Completed"}
    assert result.model_version is None and result.promoted is None
    assert result.tasks[-1] == "report" and Path(result.report_path).is_file()
    text = env.orch.notebook_text(result.report_path)
    verdict = "PASS" if result.metrics["mae"] <= 80 else "FAIL"
    assert "flow run 'third'" in text and "not registered" in text and f"MAE <= 80: {verdict}" in text


def test_an_outage_longer_than_the_retries_fails_the_run(env, runs):
    other = write_tiny(env.lesson.path("tiny-other.csv"), drop_last=1)  # new checksum: no cache hit
    env.orch.simulate_outage(3)
    with pytest.raises(env.orch.DataSourceUnavailable, match="simulated outage"):
        env.orch.training_flow(**flow_kwargs(env, data_path=other, run_name="down"))
    table = env.orch.flow_runs().set_index("flow_run")
    assert table.loc["down", "state"] == "Failed"
    env.orch.simulate_outage(0)


@pytest.mark.parametrize("overrides,error,match", [
    ({"model_params": {"n_trees": 5}}, ValueError, "not a setting of random_forest"),
    ({"model_kind": "xgboost"}, ValueError, "unknown model kind"),
    ({"holdout_month": "Mai"}, data.DataError, "unknown month"),
    ({"train_months": ["Jan"], "holdout_month": "Jan"}, ValueError, "both train and test"),
])
def test_bad_parameters_fail_with_clear_errors(env, runs, overrides, error, match):
    with pytest.raises(error, match=match):
        env.orch.training_flow(**flow_kwargs(env, register=False, **overrides))


def test_task_runs_gives_up_when_runs_are_missing(env, runs):
    with pytest.raises(env.orch.OrchestrationError, match="only 5 of 9 task runs"):
        env.orch.task_runs(runs.first.flow_run_id, expected=9, timeout=0.5)


def test_gantt_of_recorded_task_runs(env, runs):
    import matplotlib.pyplot as plt

    fig = flow_display.plot_gantt(runs.tasks)
    bars = [p for p in fig.axes[0].patches]
    assert len(bars) == 10 and all(bar.get_width() > 0 for bar in bars)
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()][:2] == ["first: validate", "first: prepare"]
    plt.close(fig)


def test_deployment_with_a_cron_schedule(env, runs):
    from prefect import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
    from prefect.deployments.runner import EntrypointType

    deployment = env.orch.training_flow.to_deployment(
        name="nightly", cron="0 6 1 * *", paused=True, entrypoint_type=EntrypointType.MODULE_PATH,
        parameters={"data_path": "tiny.csv", "train_months": ["Jan"], "holdout_month": "Feb"})
    deployment_id = deployment.apply()
    with get_client(sync_client=True) as client:
        stored = client.read_deployment_by_name(f"{env.orch.FLOW_NAME}/nightly")
        scheduled = client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])))
    assert stored.id == deployment_id and stored.paused is True
    assert [s.schedule.cron for s in stored.schedules] == ["0 6 1 * *"]
    assert stored.entrypoint == "mlops_course.orchestration.training_flow"
    assert stored.parameters["holdout_month"] == "Feb"
    assert scheduled == []  # paused, scheduler service off, no worker: defined, not running


def test_exercise_checks_against_the_live_server(env, runs):
    assert evaluate("07.3", ("validate", 2), flow_run_name="first").ok
    assert "run_count" in evaluate("07.3", ("validate", 1), flow_run_name="first").hint
    assert "no flow run named" in evaluate("07.3", ("validate", 2), flow_run_name="ghost").message
    feedback = evaluate("07.1", runs.first)
    assert not feedback.ok and "train_months" in feedback.hint


def test_cache_cases_of_exercise_2_are_what_the_flow_does(env, runs):
    from mlops_course.exercises.lesson07 import CACHE_CASES

    path = write_tiny(env.lesson.path("tiny-cache.csv"), drop_last=2)  # a checksum no other test uses
    base = flow_kwargs(env, data_path=path, register=False)

    def rerun(label, **change):
        result = env.orch.training_flow(**{**base, "run_name": label, **change})
        table = states(env.orch.task_runs(result.flow_run_id, expected=len(result.tasks)))
        return {name for name in ("validate", "prepare") if table[name] != "Cached"}

    assert rerun("cache-base") == {"validate", "prepare"}
    seen = {"same call again": rerun("cache-same"),
            "more trees": rerun("cache-trees", model_params={"n_estimators": 8, "max_depth": 4}),
            "holdout June": rerun("cache-holdout", holdout_month="April")}  # the tiny table ends in April
    frame = pd.read_csv(path)
    frame.loc[0, "temp"] = round(frame.loc[0, "temp"] + 0.02, 2)  # one value corrected, same path
    frame.to_csv(path, index=False)
    seen["edited data file"] = rerun("cache-edited")
    assert seen == CACHE_CASES


def test_run_logs_reach_the_server_but_not_the_console(env, runs):
    import logging

    from prefect import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterTaskRunId

    assert all(not logging.getLogger(name).propagate for name in ("prefect.flow_runs", "prefect.task_runs"))
    validate_id = runs.tasks["first"].set_index("task").loc["validate", "id"]
    env.orch.flush_client()
    with get_client(sync_client=True) as client:
        entries = client.read_logs(log_filter=LogFilter(task_run_id=LogFilterTaskRunId(any_=[validate_id])))
    assert any("DataSourceUnavailable" in e.message for e in entries)


def test_task_runs_of_a_mapped_flow_and_of_an_unknown_run(env, runs):
    import time
    import uuid

    from prefect import flow, task

    warehouse = env.orch.Warehouse(data.load_bikeshare(env.tiny, verify=False), latency=0.2)

    @task
    def rows(month: str) -> int:
        return len(warehouse.read(month))

    @flow(name="test-mapped")
    def count(months: list[str]) -> dict[str, int]:
        return dict(zip(months, [f.result() for f in rows.map(months)]))

    assert count(["Jan", "Feb", "March"]) == {"Jan": 72, "Feb": 72, "March": 72}
    recorded = env.orch.flow_runs("test-mapped")
    table = env.orch.task_runs(recorded["id"].iloc[-1], expected=3)
    assert list(table["task"]) == ["rows"] * 3  # "rows-<key>" without the key
    assert set(table["id"]) == {r.task_run_id for r in warehouse.reads}
    assert {r.flow_run_id for r in warehouse.reads} == {recorded["id"].iloc[-1]}
    assert flow_display.overlap(table).all_at_once
    began = time.monotonic()
    with pytest.raises(env.orch.OrchestrationError, match="not on the Prefect server"):
        env.orch.task_runs(str(uuid.uuid4()), expected=3)
    assert time.monotonic() - began < 5, "an unknown flow run must fail at once, not after the timeout"


def test_a_flow_that_fails_after_its_retries(env, runs):
    from prefect import flow, task

    calls = []

    @task(retries=2, retry_delay_seconds=0)
    def flaky() -> int:
        calls.append(1)
        raise ConnectionError("still down")

    @flow(name="test-failing")
    def failing() -> int:
        return flaky()

    with pytest.raises(ConnectionError):
        failing()
    recorded = env.orch.flow_runs("test-failing")
    assert recorded["state"].iloc[-1] == "Failed" and len(calls) == 3
    table = env.orch.task_runs(recorded["id"].iloc[-1], expected=1)
    assert table[["task", "state", "attempts"]].values.tolist() == [["flaky", "Failed", 3]]


def test_starting_a_second_server_stops_the_first(env, runs, tmp_path):
    # Near the end of the module: it replaces the shared server, as a learner re-running the setup cell does.
    from mlops_course import empty_stores

    port = env.server._server.port
    (tmp_path / "other").mkdir()
    before_api = env.server._saved_env["PREFECT_API_URL"]  # what the environment held before the first server
    os.environ["PREFECT_HOME"] = str(env.orch.prefect_home(tmp_path / "other"))  # as setup_lesson run again does
    other = env.orch.PrefectServer(tmp_path / "other", console_logs=False)
    try:
        other.start()
        assert not env.server.running and not process.port_in_use(port), "the first server was not stopped"
        other.wait()
        assert empty_stores.template("prefect").is_file() and not other._fresh_database  # a copy of the empty db
        assert os.environ["PREFECT_API_URL"] == other.api_url
        with env.orch.get_client(sync_client=True) as client:
            assert client.read_flow_runs() == []  # an empty database, not a copy of another workspace's
        result = env.orch.training_flow(**flow_kwargs(env, register=False, run_name="on-the-new-server"))
        assert states(env.orch.task_runs(result.flow_run_id, expected=5))["validate"] == "Completed"
    finally:
        other.stop()
    assert not other.running and os.environ.get("PREFECT_API_URL") == before_api
    assert os.environ["PREFECT_HOME"] == str(env.orch.prefect_home(tmp_path / "other"))  # not the first server's


def test_stop_ends_the_server_and_restores_the_environment(env, runs):
    env.server.stop()  # already stopped by the test above: stop() may be called again
    assert not env.server.running and env.orch.PrefectServer._current is None
    assert os.environ.get("PREFECT_API_URL") != env.server.api_url


def test_a_server_that_does_not_start_is_stopped_and_env_restored(tmp_path):
    from mlops_course import orchestration

    before = {k: os.environ.get(k) for k in ("PREFECT_API_URL", "PREFECT_HOME")}
    broken = orchestration.PrefectServer(tmp_path, startup_timeout=0.2)
    with pytest.raises(process.ServerError):
        broken.start().wait()
    assert not broken.running and orchestration.PrefectServer._current is None
    assert {k: os.environ.get(k) for k in before} == before


# ---------------------------------------------------------------- helpers that need no server
def test_simulated_outage_counts_down(tmp_path):
    from mlops_course import orchestration

    orchestration.simulate_outage(2, workspace=tmp_path)
    csv = data.default_path()
    for _ in range(2):
        with pytest.raises(orchestration.DataSourceUnavailable):
            orchestration.read_source(csv, workspace=tmp_path)
    assert len(orchestration.read_source(csv, workspace=tmp_path)) == 8645
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="whole number"):
            orchestration.simulate_outage(bad, workspace=tmp_path)


def test_report_template_parameters_and_errors(tmp_path):
    import papermill as pm

    from mlops_course import orchestration

    template = orchestration.write_report_template(tmp_path / "t.ipynb")
    assert set(pm.inspect_notebook(str(template))) == set(orchestration.REPORT_PARAMETERS)
    with pytest.raises(ValueError, match=r"no parameter\(s\) \['colour'\]"):
        orchestration.run_report(template, tmp_path / "out.ipynb", {"colour": "red"})
    with pytest.raises(FileNotFoundError, match="write_report_template"):
        orchestration.run_report(tmp_path / "missing.ipynb", tmp_path / "out.ipynb", {})


def test_warehouse_fails_each_month_as_often_as_told_and_records_every_read():
    import time

    from mlops_course import orchestration

    bikes = data.load_bikeshare()
    warehouse = orchestration.Warehouse(bikes, latency=0.05, failures=1)
    began = time.monotonic()
    for month in ("Jan", "Feb"):
        with pytest.raises(orchestration.DataSourceUnavailable, match=month):
            warehouse.read(month)
        assert len(warehouse.read(month)) == len(data.select_months(bikes, [month]))
    assert time.monotonic() - began >= 4 * 0.05
    assert [(r.month, r.ok, r.task_run_id) for r in warehouse.reads] == [
        ("Jan", False, None), ("Jan", True, None), ("Feb", False, None), ("Feb", True, None)]
    with pytest.raises(data.DataError, match="unknown month"):
        warehouse.read("Mai")
    assert len(warehouse.reads) == 4  # a bad month name is not a read
    warehouse.reset(failures=0)
    assert warehouse.reads == [] and len(warehouse.read("Jan")) > 0
    for bad in ({"latency": -1}, {"failures": -1}, {"failures": True}, {"failures": 0.5}):
        with pytest.raises(ValueError, match="latency must be"):
            orchestration.Warehouse(bikes, **bad)


def test_importing_the_server_module_writes_no_file(tmp_path):
    import subprocess
    import sys

    root, home, temp = tmp_path / "workspaces", tmp_path / "home", tmp_path / "tmp"
    for folder in (home, temp):
        folder.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(MLOPS_COURSE_WORKSPACE=str(root), HOME=str(home), TMPDIR=str(temp))
    server_only = ("import os, sys, mlops_course.prefect_server; "
                   "assert 'prefect' not in sys.modules; print(os.environ['PREFECT_HOME'])")
    out = subprocess.run([sys.executable, "-c", server_only], env=env, cwd=tmp_path, capture_output=True,
                         text=True, check=True)
    assert Path(out.stdout.strip()).parent == temp
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["home", "tmp"]
    # With Prefect imported, Prefect itself creates its (empty) home folder there, and nothing else.
    subprocess.run([sys.executable, "-W", "error::UserWarning", "-c", "import mlops_course.orchestration"],
                   env=env, cwd=tmp_path, capture_output=True, text=True, check=True)
    assert [p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.name not in ("home", "tmp")] == [
        Path(out.stdout.strip()).relative_to(tmp_path)]
    assert not any(Path(out.stdout.strip()).iterdir())


def test_equal_tables_need_not_hash_equal_which_is_why_prepare_leaves_the_table_out():
    # Lesson 07 says so where it explains INPUTS - "df"; if Prefect changes this, change the lesson.
    from prefect.utilities.hashing import hash_objects

    bikes = data.load_bikeshare()
    assert bikes.equals(bikes.copy()) and hash_objects(bikes) != hash_objects(bikes.copy())


def test_the_register_parameter_notice_is_dropped_without_a_global_filter():
    import warnings

    from mlops_course import orchestration

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        orchestration.training_flow.validate_parameters(
            {"data_path": "bikes.csv", "train_months": ["Jan"], "holdout_month": "Feb"})
        with orchestration._register_notice_dropped():
            warnings.warn("another notice", UserWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["another notice"]
    assert not any('Field name "register"' in str(f[1]) for f in warnings.filters if f[1] is not None)
