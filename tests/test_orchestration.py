"""The Prefect training flow run for real against a local Prefect server, on a tiny copy of the data."""

import os
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import mlflow
import pandas as pd
import pytest

from mlops_course import data, process, registry
from mlops_course.exercises import evaluate

# Prefect's parameter model notes that the flow's `register` parameter shadows BaseModel.register (harmless).
pytestmark = pytest.mark.filterwarnings('ignore:Field name "register":UserWarning')
HOME_PREFECT_EXISTED = (Path.home() / ".prefect").exists()
TINY_MONTHS = ["Jan", "Feb", "March"]


def write_tiny(path: Path, rows_per_month: int = 72, drop_last: int = 0) -> Path:
    """Three days of each of three months, as a CSV with the course's columns."""
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
    server = orchestration.PrefectServer(lesson.workspace).start().wait()
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


def test_gantt_has_one_bar_per_task_run(env, runs):
    import matplotlib.pyplot as plt

    fig = env.orch.plot_gantt(runs.tasks)
    bars = [p for p in fig.axes[0].patches]
    assert len(bars) == 10 and all(bar.get_width() > 0 for bar in bars)
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()][:2] == ["first: validate", "first: prepare"]
    plt.close(fig)
    with pytest.raises(ValueError, match="no task runs"):
        env.orch.plot_gantt({})


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


def test_a_server_that_does_not_start_is_stopped_and_env_restored(env, runs, tmp_path):
    before = os.environ["PREFECT_API_URL"]
    broken = env.orch.PrefectServer(tmp_path, startup_timeout=0.2)
    with pytest.raises(process.ServerError):
        broken.start().wait()
    assert not broken.running
    assert os.environ["PREFECT_API_URL"] == before and os.environ["PREFECT_HOME"] == str(env.server.home)


def test_stop_ends_the_server_and_restores_the_environment(env, runs):
    # Last test of the module: it stops the shared server (the fixture's stop() is then a no-op).
    port = int(env.server.api_url.rsplit(":", 1)[1].split("/")[0])
    env.server.stop()
    assert not env.server.running and not process.port_in_use(port)
    assert os.environ.get("PREFECT_API_URL") != env.server.api_url


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


def test_next_run_times_follow_the_cron_string():
    from mlops_course import orchestration

    start = datetime(2011, 12, 31, tzinfo=UTC)
    got = orchestration.next_run_times("0 6 1 * *", start, n=3)
    assert [d.isoformat() for d in got] == ["2012-01-01T06:00:00+00:00", "2012-02-01T06:00:00+00:00",
                                            "2012-03-01T06:00:00+00:00"]
    with pytest.raises(ValueError):
        orchestration.next_run_times("6 30 * * 1", start)


def test_report_template_parameters_and_errors(tmp_path):
    import papermill as pm

    from mlops_course import orchestration

    template = orchestration.write_report_template(tmp_path / "t.ipynb")
    assert set(pm.inspect_notebook(str(template))) == set(orchestration.REPORT_PARAMETERS)
    with pytest.raises(ValueError, match=r"no parameter\(s\) \['colour'\]"):
        orchestration.run_report(template, tmp_path / "out.ipynb", {"colour": "red"})
    with pytest.raises(FileNotFoundError, match="write_report_template"):
        orchestration.run_report(tmp_path / "missing.ipynb", tmp_path / "out.ipynb", {})


def test_source_drops_the_docstring_only():
    from mlops_course import orchestration

    text = orchestration.source(orchestration.validate_data)
    assert text.startswith("@task(") and '"""' not in text and "pipeline.validate(" in text
    assert '"""' in orchestration.source(orchestration.validate_data, docstring=True)


def test_a_later_server_starts_from_the_cached_empty_database(env, tmp_path):
    from mlops_course import empty_stores

    assert empty_stores.template("prefect").is_file()  # kept by this module's server (or an earlier one)
    (tmp_path / "other").mkdir()
    api_before = os.environ.get("PREFECT_API_URL")
    other = env.orch.PrefectServer(tmp_path / "other")
    try:
        other.start().wait()
        assert not other._fresh_database and other.database.is_file()
        with env.orch.get_client(sync_client=True) as client:
            assert client.read_flow_runs() == []  # an empty database, not a copy of another workspace's
    finally:
        other.stop()
    assert os.environ.get("PREFECT_API_URL") == api_before
