import sqlite3

import mlflow
import pytest

from mlops_course import empty_stores, workspace


@pytest.fixture
def build(lesson_env, monkeypatch):
    monkeypatch.setenv("MLOPS_COURSE_BUILD", str(lesson_env / "build"))
    return lesson_env / "build"


def test_first_store_is_kept_without_its_default_experiment(build):
    lesson = workspace.setup_lesson("02", quiet=True)
    kept = empty_stores.template("mlflow")
    assert kept.parent == build / "cache" and mlflow.__version__ in kept.name
    with sqlite3.connect(kept) as db:
        assert db.execute("SELECT COUNT(*) FROM experiments").fetchone() == (0,)
        assert db.execute("SELECT COUNT(*) FROM alembic_version").fetchone() == (1,)
    assert mlflow.get_experiment("0").artifact_location.startswith(str(lesson.workspace))


def test_later_store_starts_from_the_copy_and_gets_its_own_default_experiment(build):
    workspace.setup_lesson("02", quiet=True)
    marker = empty_stores.template("mlflow")
    with sqlite3.connect(marker) as db:  # a row only the cached copy has: proves the copy was used
        db.execute("INSERT INTO experiment_tags (key, value, experiment_id) VALUES ('from', 'cache', 0)")
    lesson = workspace.setup_lesson("03", quiet=True)
    default = mlflow.get_experiment("0")
    assert default.tags.get("from") == "cache"
    assert default.artifact_location.startswith(str(lesson.workspace))
    mlflow.set_experiment("works")
    with mlflow.start_run():
        mlflow.log_metric("m", 1.0)
    assert len(mlflow.search_runs()) == 1


def test_restore_leaves_an_existing_database_alone(build, tmp_path):
    db = tmp_path / "mine.db"
    db.write_bytes(b"mine")
    empty_stores.template("mlflow").parent.mkdir(parents=True)
    empty_stores.template("mlflow").write_bytes(b"cached")
    assert empty_stores.restore("mlflow", db) is False and db.read_bytes() == b"mine"
    assert empty_stores.restore("mlflow", tmp_path / "new.db") is True


def test_keep_ignores_an_unreadable_database_and_leaves_no_partial_file(build, tmp_path):
    broken = tmp_path / "broken.db"
    broken.write_bytes(b"not a database" * 100)
    empty_stores.keep("mlflow", broken)
    cache = build / "cache"
    assert not empty_stores.template("mlflow").exists()
    assert not cache.exists() or list(cache.iterdir()) == []
