import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
LESSON_FILES = sorted(NOTEBOOKS.glob("[0-9][0-9]-*.ipynb"))


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
