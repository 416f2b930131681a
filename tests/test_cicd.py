import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from mlops_course import cicd, cicd_workflow, data, pipeline

REPO = Path(__file__).resolve().parents[1]
FIRST_HALF = data.MONTHS[:6]


@pytest.fixture(scope="module")
def bikes():
    return data.load_bikeshare()


# ---------------------------------------------------------------- baseline and time stamps
def test_hour_stamps_count_days_from_new_year(bikes):
    stamps = cicd.hour_stamps(bikes.head(3))
    assert stamps.iloc[0] == np.datetime64("2011-01-01T00:00")
    assert list(cicd.hour_stamps(bikes.assign(day=32, hr=5)).head(1)) == [np.datetime64("2011-02-01T05:00")]
    with pytest.raises(KeyError, match=r"\['day'\]"):
        cicd.hour_stamps(bikes.drop(columns="day"))


def test_same_hour_last_week_looks_up_the_earlier_hour(bikes):
    naive = cicd.same_hour_last_week(bikes)
    row = bikes.index[(bikes["day"] == 15) & (bikes["hr"] == 8)][0]
    week_before = bikes.loc[(bikes["day"] == 8) & (bikes["hr"] == 8), "bikers"].item()
    assert naive[row] == week_before
    assert naive[bikes["day"] <= 7].isna().all() and naive[bikes["day"] > 7].notna().mean() > 0.98
    two_days = cicd.same_hour_last_week(bikes, lag_days=2)
    assert two_days[row] == bikes.loc[(bikes["day"] == 13) & (bikes["hr"] == 8), "bikers"].item()


def test_same_hour_last_week_rejects_bad_input(bikes):
    with pytest.raises(ValueError, match="one row per hour"):
        cicd.same_hour_last_week(bikes.iloc[[0, 0, 1]])
    with pytest.raises(ValueError, match="lag_days"):
        cicd.same_hour_last_week(bikes, lag_days=0)
    with pytest.raises(KeyError, match="bikers"):
        cicd.same_hour_last_week(bikes.drop(columns="bikers"))


# ---------------------------------------------------------------- the suite
def test_suite_files_are_valid_python_and_written(tmp_path):
    written = cicd.write_test_suite(tmp_path / "ci")
    assert [p.name for p in written] == list(cicd.SUITE_FILES)
    for path in written:
        if path.suffix == ".py":
            compile(path.read_text(), path.name, "exec")
    assert "[pytest]" in (tmp_path / "ci" / "pytest.ini").read_text()
    with pytest.raises(ValueError, match="test_nothing.py"):
        cicd.write_test_suite(tmp_path, ["test_nothing.py"])


def test_suite_env_checks_months_and_date():
    env = cicd.suite_env(data_file="d.csv", model_file="m.skops", train_months=["Jan"], test_month="Feb",
                         as_of="2011-03-01", min_skill=0.1)
    assert env["BIKE_TRAIN_MONTHS"] == "Jan" and env["BIKE_MIN_SKILL"] == "0.1"
    assert all(isinstance(v, str) for v in env.values())
    two = cicd.suite_env(data_file="d", model_file=["a.skops", Path("b.skops")], train_months=["Jan"],
                         test_month="Feb", as_of="2011-03-01")
    assert two["BIKE_MODEL"] == "a.skops,b.skops"
    with pytest.raises(ValueError, match="no model file"):
        cicd.suite_env(data_file="d", model_file=[], train_months=["Jan"], test_month="Feb", as_of="2011-03-01")
    with pytest.raises(ValueError, match="Febuary"):
        cicd.suite_env(data_file="d", model_file="m", train_months=["Jan"], test_month="Febuary", as_of="2011-03-01")
    with pytest.raises(ValueError):
        cicd.suite_env(data_file="d", model_file="m", train_months=["Jan"], test_month="Feb", as_of="someday")


def test_run_pytest_reports_counts_without_duration_and_failures(tmp_path):
    (tmp_path / "test_toy.py").write_text(
        "def test_ok():\n    assert 1 + 1 == 2\n\n"
        "def test_broken():\n    assert 2 + 2 == 5, 'arithmetic is broken'\n")
    result = cicd.run_pytest("test_toy.py", cwd=tmp_path)
    assert result.summary == "1 failed, 1 passed" and not result.ok
    assert result.count("failed") == 1 and result.count("passed") == 1 and result.count("error") == 0
    assert result.failures == ["FAILED test_toy.py::test_broken - AssertionError: arithmetic is broken"]
    assert str(result).splitlines()[0] == "1 failed, 1 passed"
    missing = cicd.run_pytest("test_missing.py", cwd=tmp_path)
    assert missing.returncode == 4 and missing.summary == "no tests ran"
    assert "file or directory not found: test_missing.py" in str(missing)
    with pytest.raises(ValueError, match="at least one"):
        cicd.run_pytest(cwd=tmp_path)


def test_counts_are_read_from_the_summary_line():
    result = cicd.PytestResult([], 1, "1 failed, 2 passed, 3 errors, 1 warning")
    assert [result.count(k) for k in ("failed", "passed", "error", "errors", "warning", "skipped")] == [1, 2, 3, 3, 1, 0]
    assert not result.ok and cicd.PytestResult([], 0, "2 passed").ok


def _workspace(root: Path, bikes, train_months, model_months=None):
    data_file = root / "data" / "bikes.csv"
    data_file.parent.mkdir(parents=True)
    data.select_months(bikes, FIRST_HALF).to_csv(data_file, index=False)
    model = pipeline.train(data.select_months(bikes, model_months or train_months), n_estimators=15)
    pipeline.save_model(model, root / "build" / "model.skops")
    cicd.write_test_suite(root / "ci_tests")
    return cicd.suite_env(data_file="data/bikes.csv", model_file="build/model.skops", train_months=train_months,
                          test_month="June", as_of="2011-07-01")


def test_suite_passes_for_a_good_model_and_fresh_data(tmp_path, bikes):
    env = _workspace(tmp_path, bikes, FIRST_HALF[:5])
    result = cicd.run_pytest("ci_tests/test_data.py", "ci_tests/test_model.py", cwd=tmp_path, env=env)
    assert result.summary == "7 passed", result.output


def test_model_tests_run_once_per_model_and_name_the_stale_one(tmp_path, bikes):
    env = _workspace(tmp_path, bikes, FIRST_HALF[:5])
    stale = pipeline.train(data.select_months(bikes, ["Jan", "Feb"]), n_estimators=15)
    pipeline.save_model(stale, tmp_path / "build" / "stale.skops")
    env["BIKE_MODEL"] = "build/model.skops,build/stale.skops"
    result = cicd.run_pytest("ci_tests/test_model.py", cwd=tmp_path, env=env)
    assert result.summary == "1 failed, 5 passed", result.output
    assert result.failures[0].startswith(
        "FAILED ci_tests/test_model.py::test_beats_same_hour_last_week[build/stale.skops] - AssertionError: model MAE")


def test_suite_fails_for_broken_data_and_a_stale_model(tmp_path, bikes):
    env = _workspace(tmp_path, bikes, FIRST_HALF[:5], model_months=["Jan", "Feb"])
    broken = data.select_months(bikes, FIRST_HALF).assign(hum=lambda d: d["hum"] * 100)
    broken.to_csv(tmp_path / "data" / "broken.csv", index=False)
    env = {**env, "BIKE_DATA": "data/broken.csv", "BIKE_AS_OF": "2011-09-01"}
    result = cicd.run_pytest("ci_tests/test_data.py", "ci_tests/test_model.py::test_beats_same_hour_last_week",
                             cwd=tmp_path, env=env)
    failed = {line.split(" - ")[0].split("::")[1].split("[")[0]: line for line in result.failures}
    assert set(failed) == {"test_feature_ranges", "test_data_is_fresh", "test_beats_same_hour_last_week"}
    assert "hum (relative humidity, fraction)" in failed["test_feature_ranges"]
    assert "stale data" in failed["test_data_is_fresh"]
    assert "is not below" in failed["test_beats_same_hour_last_week"]
    assert result.summary == "3 failed, 2 passed"


def test_skew_test_passes_for_the_champion_and_catches_a_mismatched_onnx_copy(lesson_env, bikes):
    import mlflow

    from mlops_course import registry, setup_lesson

    lesson = setup_lesson("97", quiet=True)
    mlflow.set_experiment("skew")
    env = _workspace(lesson.workspace, bikes, FIRST_HALF[:5])
    jan = data.select_months(bikes, ["Jan"])
    logged = []
    for depth in (8, 2):
        with mlflow.start_run():
            model = pipeline.train(jan, n_estimators=5, max_depth=depth)
            logged.append(registry.log_bike_model(model, pipeline.make_features(jan)))
    version = registry.register(logged[0], alias="champion")
    result = cicd.run_pytest("ci_tests/test_serving.py", cwd=lesson.workspace, env=env)
    assert result.summary == "1 passed", result.output
    # As the workflow's build job runs it: against a running service (there, the image just built).
    from mlops_course import serving

    with serving.start_service(tracking_uri=lesson.tracking_uri, log_file=lesson.path("svc.log")) as svc:
        result = cicd.run_pytest("ci_tests/test_serving.py", cwd=lesson.workspace,
                                 env={**env, "SERVICE_URL": svc.url})
    assert result.summary == "1 passed", result.output
    result = cicd.run_pytest("ci_tests/test_serving.py", cwd=lesson.workspace,
                             env={**env, "SERVICE_URL": svc.url, "SERVICE_WAIT": "2"})  # stopped: none answers
    assert result.summary == "1 failed" and "no healthy service at" in result.failures[0], result.output
    # The service serves the version's ONNX copy: point it at another model's copy, as a packaging bug would.
    mlflow.MlflowClient().set_model_version_tag(registry.MODEL_NAME, version, registry.ONNX_TAG,
                                                logged[1].onnx_model_uri)
    result = cicd.run_pytest("ci_tests/test_serving.py", cwd=lesson.workspace, env=env)
    assert result.summary == "1 failed" and "service and batch path differ by up to" in result.failures[0]
    mlflow.set_experiment(experiment_id="0")  # mlflow remembers the active experiment across stores: reset it


# ---------------------------------------------------------------- the workflow
def test_generated_workflow_has_the_jobs_in_order():
    report = cicd_workflow.validate_bike_workflow(cicd_workflow.bike_workflow())
    assert report.order == list(cicd_workflow.JOB_ORDER)
    assert report.needs["register"] == ["gate"] and "repository_dispatch" in report.triggers
    assert "lint: " in str(report) and "(after gate)" in str(report)
    doc = cicd_workflow.load_workflow(cicd_workflow.bike_workflow(margin=0.1, test_month="May"))
    assert cicd_workflow.trigger_env(doc, "push")["BIKE_TEST_MONTH"] == "May"
    assert "environment" not in doc["jobs"]["register"]
    assert "--margin 0.1" in json.dumps(doc["jobs"]["gate"])
    manual = cicd_workflow.load_workflow(cicd_workflow.bike_workflow(environment="production"))
    assert manual["jobs"]["register"]["environment"] == "production"


@pytest.mark.parametrize("environment", [None, "production"])
def test_generated_workflow_passes_githubs_schema(tmp_path, environment):
    from mlops_course import lint

    path = tmp_path / "bike-model.yml"
    path.write_text(cicd_workflow.bike_workflow(environment=environment))
    assert lint.check_workflow(path).ok, lint.check_workflow(path)
    path.write_text(cicd_workflow.bike_workflow().replace("    runs-on:", "    runs_on:", 1))
    verdict = lint.check_workflow(path)
    assert not verdict.ok and "$.jobs.lint: 'runs-on' is a required property" in str(verdict), verdict


DRIFT_ALERT = {"action": "drift-alert",
               "client_payload": {"train_months": "March,April,May,June", "test_month": "July",
                                  "as_of": "2011-08-01"}}


def test_the_trigger_sets_the_window():
    workflow = cicd_workflow.bike_workflow()
    window = ("BIKE_TRAIN_MONTHS", "BIKE_TEST_MONTH", "BIKE_AS_OF")

    def env(*trigger):
        got = cicd_workflow.trigger_env(workflow, *trigger)
        return tuple(got[k] for k in window)

    assert env("schedule") == env("push") == ("Jan,Feb,March,April,May", "June", "2011-07-01")
    assert env("repository_dispatch", DRIFT_ALERT) == ("March,April,May,June", "July", "2011-08-01")
    assert env("repository_dispatch", {"action": "new-data"}) == env("schedule")  # no payload: the default
    assert env("workflow_dispatch", {"inputs": {"test_month": "May", "train_months": ""}}) == (
        "Jan,Feb,March,April,May", "May", "2011-07-01")  # an input left empty falls back, as on GitHub
    secrets = cicd_workflow.trigger_env(workflow, "push", secrets={"MLFLOW_TRACKING_URI": "http://mlflow:5000"})
    assert secrets["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"


@pytest.mark.parametrize("trigger,message", [
    (("release", {}), "does not start on 'release'"),
    (("repository_dispatch", {"action": "retrain"}), "type 'retrain' does not start it"),
    (("workflow_dispatch", {"inputs": {"months": "May"}}), "inputs ['months'] are not declared"),
])
def test_trigger_env_names_a_trigger_the_workflow_refuses(trigger, message):
    with pytest.raises(cicd_workflow.WorkflowError) as err:
        cicd_workflow.trigger_env(cicd_workflow.bike_workflow(), *trigger)
    assert message in str(err.value)


def test_trigger_env_refuses_expressions_it_cannot_evaluate():
    workflow = {"on": "push", "env": {"WHEN": "${{ format('{0}', github.sha) }}", "PLAIN": "x"}}
    with pytest.raises(cicd_workflow.WorkflowError, match="env WHEN: .*format"):
        cicd_workflow.trigger_env(workflow, "push")
    workflow["env"]["WHEN"] = "${{ github.event_name || 'none' }}"
    assert cicd_workflow.trigger_env(workflow, "push") == {"WHEN": "push", "PLAIN": "x"}


def test_bike_workflow_rejects_bad_settings():
    with pytest.raises(ValueError, match="Juin"):
        cicd_workflow.bike_workflow(test_month="Juin")
    with pytest.raises(ValueError, match="margin"):
        cicd_workflow.bike_workflow(margin=2)


def test_yaml_reads_a_bare_on_as_true_and_load_workflow_fixes_it():
    text = "on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - run: echo\n"
    assert True in yaml.safe_load(text)
    assert cicd_workflow.load_workflow(text)["on"] == "push"
    assert cicd_workflow.validate_workflow(text).triggers == ["push"]


@pytest.mark.parametrize("change,message", [
    (lambda d: d["jobs"].pop("gate"), "expected job 'gate' is missing"),
    (lambda d: d["jobs"]["train"]["steps"][0].update(run="echo"), "exactly one of 'run' or 'uses'"),
    (lambda d: d["jobs"]["build"].update(needs="deploy"), "needs 'deploy', which is not a job"),
    (lambda d: d["jobs"]["lint"].update(needs="build"), "form a cycle"),
    (lambda d: d["jobs"]["register"].update(needs="evaluate"), "'register' should need 'gate'"),
    (lambda d: d["jobs"]["lint"].pop("runs-on"), "'lint' has no runs-on"),
    (lambda d: d["jobs"]["tests"].update(steps=[]), "'tests' has no steps"),
    (lambda d: d["jobs"]["evaluate"].update(steps=[s for s in d["jobs"]["evaluate"]["steps"]
                                                   if "cicd_workflow evaluate" not in s.get("run", "")]),
     "no step running 'cicd_workflow evaluate'"),
    (lambda d: d.pop("on"), "missing top-level key 'on'"),
])
def test_validate_names_each_problem(change, message):
    doc = cicd_workflow.load_workflow(cicd_workflow.bike_workflow())
    change(doc)
    with pytest.raises(cicd_workflow.WorkflowError) as err:
        cicd_workflow.validate_bike_workflow(doc)
    assert message in str(err.value)


def test_validate_rejects_what_is_not_a_workflow(tmp_path):
    with pytest.raises(cicd_workflow.WorkflowError, match="not valid YAML"):
        cicd_workflow.validate_workflow("jobs: [unclosed")
    with pytest.raises(cicd_workflow.WorkflowError, match="mapping at the top level"):
        cicd_workflow.validate_workflow("- a\n- b\n")
    path = tmp_path / "wf.yml"
    path.write_text(cicd_workflow.bike_workflow())
    assert cicd_workflow.validate_bike_workflow(path).name == "bike-model"


def test_the_course_ci_file_runs_make_test():
    report = cicd_workflow.validate_workflow(REPO / ".github" / "workflows" / "ci.yml", {"test": ["make test"]})
    assert "test" in report.order and "schedule" in report.triggers


def test_the_course_precommit_config_keeps_outputs_counts_and_ids():
    config = yaml.safe_load((REPO / ".pre-commit-config.yaml").read_text())
    hooks = {hook["id"]: hook for repo in config["repos"] for hook in repo["hooks"]}
    assert {"ruff", "nbstripout"} <= set(hooks)
    args = " ".join(hooks["nbstripout"].get("args", []))
    for flag in ("--keep-output", "--keep-count", "--keep-id", "metadata.papermill", "cell.metadata.execution"):
        assert flag in args


# ---------------------------------------------------------------- the step commands
def test_steps_train_evaluate_gate_register(lesson_env, bikes, monkeypatch, capsys):
    import mlflow

    from mlops_course import registry, setup_lesson

    lesson = setup_lesson("96", quiet=True)
    lesson.path("data").mkdir()
    data.select_months(bikes, FIRST_HALF).to_csv(lesson.path("data", "bikes.csv"), index=False)
    outputs = lesson.path("github_output")
    monkeypatch.setenv("GITHUB_OUTPUT", str(outputs))
    assert cicd_workflow.main(["train"]) == 0 and lesson.path("build", "model.skops").is_file()
    assert cicd_workflow.main(["evaluate"]) == 0
    metrics = json.loads(lesson.path("build", "metrics.json").read_text())
    assert metrics["month"] == "June" and 20 < metrics["mae"] < 60
    assert cicd_workflow.main(["gate"]) == 0 and "no champion yet" in capsys.readouterr().out
    assert cicd_workflow.main(["register"]) == 0 and registry.aliases() == {"champion": "1"}
    assert registry.version_by_alias("champion").tags["previous_champion"] == "none"
    assert cicd_workflow.main(["gate", "--margin", "0.05"]) == 0 and "champion kept" in capsys.readouterr().out
    assert outputs.read_text() == "promote=true\npromote=false\n"
    mlflow.set_experiment(experiment_id="0")  # the register step set "bike-ci": leave no active experiment behind


def test_two_triggers_train_on_two_windows(lesson_env, bikes, monkeypatch, capsys):
    from mlops_course import setup_lesson, versioning

    lesson = setup_lesson("96", quiet=True)
    lesson.path("data").mkdir()
    data.select_months(bikes, data.MONTHS[:7]).to_csv(lesson.path("data", "bikes.csv"), index=False)
    workflow = cicd_workflow.bike_workflow()
    trained = {}
    for name, trigger in [("schedule", ("schedule",)), ("drift alert", ("repository_dispatch", DRIFT_ALERT))]:
        for key, value in cicd_workflow.trigger_env(workflow, *trigger).items():
            monkeypatch.setenv(key, value)
        assert cicd_workflow.main(["train"]) == 0
        assert cicd_workflow.main(["evaluate"]) == 0
        said = capsys.readouterr().out
        trained[name] = (said.splitlines()[0].split(":")[0], json.loads(lesson.path("build", "metrics.json")
                                                                       .read_text())["month"],
                         versioning.md5(lesson.path("build", "model.skops")))
    assert trained["schedule"][:2] == ("trained on Jan,Feb,March,April,May", "June")
    assert trained["drift alert"][:2] == ("trained on March,April,May,June", "July")
    assert trained["schedule"][2] != trained["drift alert"][2]  # two windows, two models


def test_steps_report_missing_inputs(lesson_env, monkeypatch, capsys):
    monkeypatch.setenv("BIKE_DATA", "nowhere.csv")
    assert cicd_workflow.main(["train"]) == 1
    assert "train failed: nowhere.csv: no such file" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cicd_workflow.main(["deploy"])
