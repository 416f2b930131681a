import contextlib
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
LESSON_FILES = sorted(NOTEBOOKS.glob("[0-9][0-9]-*.ipynb"))


@pytest.fixture(scope="module", autouse=True)
def _no_mlflow_state_between_files():
    """After each test file, end any run it left active and forget its active experiment.

    MLflow keeps both in the process, and with ``--dist loadfile`` the next file in the same worker may work
    in another store, where that experiment id names nothing (or another experiment).
    """
    yield
    if "mlflow" in sys.modules:
        import mlflow
        from mlflow.tracking import fluent

        while mlflow.active_run() is not None:
            mlflow.end_run()
        fluent._active_experiment_id = None


@pytest.fixture
def lesson_env(tmp_path, monkeypatch):
    """Workspace root in a temp folder; cwd and environment restored after the test."""
    monkeypatch.setenv("MLOPS_COURSE_WORKSPACE", str(tmp_path / "ws"))
    monkeypatch.chdir(tmp_path)
    saved = dict(os.environ)
    yield tmp_path
    import mlflow
    from mlflow.tracking import fluent

    while mlflow.active_run() is not None:
        mlflow.end_run()
    fluent._active_experiment_id = None  # the next test's store does not have this test's experiment
    os.environ.clear()
    os.environ.update(saved)


@contextlib.contextmanager
def module_lesson(tmp_path_factory, number: str, experiment: str):
    """``setup_lesson(number)`` in a workspace root of its own, for a module-scoped fixture.

    Yields the lesson with ``experiment`` active; afterwards stops every background server and restores the
    environment, the working directory, MLflow's tracking URI and active experiment, and Prefect's settings.
    """
    import mlflow
    from mlflow.tracking import fluent

    from mlops_course import process, setup_lesson

    saved_env, saved_cwd, saved_uri = dict(os.environ), os.getcwd(), mlflow.get_tracking_uri()
    os.environ["MLOPS_COURSE_WORKSPACE"] = str(tmp_path_factory.mktemp(f"lesson-{number}-ws"))
    try:
        lesson = setup_lesson(number, quiet=True)
        mlflow.set_experiment(experiment)
        yield lesson
    finally:
        process.stop_all()
        fluent._active_experiment_id = None
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
        mlflow.set_tracking_uri(saved_uri)
        if "prefect" in sys.modules:  # Prefect re-reads the restored environment
            from mlops_course.orchestration import _refresh_prefect_settings

            _refresh_prefect_settings()


def small_champion(months=("Jan",)):
    """Train a small forest on ``months``, log it (with its ONNX copy) and register it as bike-demand@champion.

    Returns the model and its training frame.
    """
    import mlflow

    from mlops_course import data, pipeline, registry

    train = data.select_months(data.load_bikeshare(), list(months))
    model = pipeline.train(train, n_estimators=5, max_depth=4)
    with mlflow.start_run():
        registry.register(registry.log_bike_model(model, pipeline.make_features(train)), alias="champion")
    return model, train


@pytest.fixture(scope="module")
def stage_bikes():
    from mlops_course import data

    return data.load_bikeshare()


@pytest.fixture
def project(tmp_path, monkeypatch, stage_bikes):
    """A folder with data/bikes.csv (Jan-March) and the course pipeline's files (``stages.write_pipeline``),
    as the working directory."""
    from mlops_course import data, stages

    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    data.select_months(stage_bikes, ["Jan", "Feb", "March"]).to_csv(stages.DATA, index=False)
    months = {"train_months": ["Jan", "Feb"], "test_months": ["March"]}
    stages.write_pipeline(tmp_path, params={"prepare": months, "train": {"n_estimators": 5, "max_depth": 6}})
    return tmp_path
