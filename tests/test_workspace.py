import os
from pathlib import Path

import pytest

from mlops_course import workspace


def test_setup_lesson_makes_fresh_isolated_workspace(lesson_env, capsys):
    lesson = workspace.setup_lesson("3")
    assert lesson.number == "03"
    assert lesson.workspace.parent == lesson_env / "ws"
    assert Path.cwd() == lesson.workspace
    assert (lesson.workspace / "mlflow.db").exists()
    assert os.environ["MLFLOW_TRACKING_URI"] == lesson.tracking_uri
    assert os.environ["MLFLOW_DISABLE_TELEMETRY"] == "true" and os.environ["DVC_NO_ANALYTICS"] == "1"
    out = capsys.readouterr()
    assert "Lesson 03 ready" in out.out and str(lesson.workspace) not in out.out
    assert "Creating initial MLflow database" not in out.out + out.err


def test_rerun_replaces_own_workspace_and_keeps_live_ones(lesson_env):
    root = lesson_env / "ws"
    live = root / "lesson-05-1"  # pid 1 is alive: another kernel's workspace is left alone
    stale = root / "lesson-05-999999999"
    live.mkdir(parents=True)
    stale.mkdir()
    first = workspace.setup_lesson("05", tracking=False, quiet=True)
    (first.workspace / "leftover.txt").write_text("x")
    second = workspace.setup_lesson("05", tracking=False, quiet=True)
    assert not first.workspace.exists() and not (second.workspace / "leftover.txt").exists()
    assert second.workspace.name.startswith(f"lesson-05-{os.getpid()}")
    assert live.exists() and not stale.exists()


def test_rerun_in_the_same_process_can_still_track(lesson_env):
    import mlflow

    for _ in range(2):  # the second store used to be read-only through MLflow's cached connection
        lesson = workspace.setup_lesson("06", quiet=True)
        mlflow.set_experiment("again")
        with mlflow.start_run(run_name="r"):
            mlflow.log_param("p", 1)
        assert len(mlflow.search_runs()) == 1
        assert Path(mlflow.get_experiment_by_name("again").artifact_location).parent == lesson.path("mlruns")


def test_show_never_prints_machine_paths(lesson_env):
    lesson = workspace.setup_lesson("01", tracking=False, quiet=True)
    assert lesson.show(lesson.path("data", "x.csv")) == "data/x.csv"
    assert lesson.show("/etc/passwd") == "passwd"


@pytest.mark.parametrize("value,expected", [(1, "01"), ("01", "01"), ("07-Workflow", "07"), ("8", "08")])
def test_normalise_number(value, expected):
    assert workspace.normalise_number(value) == expected


def test_normalise_number_rejects_names():
    with pytest.raises(ValueError, match="number"):
        workspace.normalise_number("intro")


def test_importing_the_package_switches_telemetry_off_before_any_tool_loads():
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in workspace.TELEMETRY_OFF}
    code = ("import os, sys, mlops_course; from mlops_course.workspace import TELEMETRY_OFF; "
            "assert all(os.environ[k] == v for k, v in TELEMETRY_OFF.items()); "
            "assert not {'mlflow', 'onnxruntime', 'prefect'} & set(sys.modules); print('ok')")
    out = subprocess.run([sys.executable, "-c", code], check=False, env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "ok", out.stderr
    assert workspace.TELEMETRY_OFF["ORT_DISABLE_TELEMETRY"] == "1"
