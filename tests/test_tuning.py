"""Tuning workers: separate processes share one study through its storage; each trial is a nested MLflow run."""

import mlflow
import optuna
import pytest

from mlops_course import tuning

OBJECTIVE = '''
def objective(trial):
    x = trial.suggest_int("x", 0, 10)
    return (x - 3) ** 2
'''


def test_two_workers_share_one_study(lesson_env, monkeypatch):
    (lesson_env / "toy.py").write_text(OBJECTIVE)
    storage = f"sqlite:///{lesson_env / 'study.db'}"
    tracking = f"sqlite:///{lesson_env / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking)
    for leftover in ("MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"):
        monkeypatch.delenv(leftover, raising=False)
    mlflow.set_tracking_uri(tracking)
    # An earlier test in this process may have left another store's experiment active: a fresh store has only 0.
    mlflow.set_experiment(experiment_id="0")
    study = optuna.create_study(study_name="toy", storage=storage)
    for x in range(4):
        study.enqueue_trial({"x": x})
    with mlflow.start_run(run_name="parent") as parent:
        logs = tuning.run_workers(storage, "toy", "toy:objective", workers=2, trials=2,
                                  parent_run_id=parent.info.run_id, cwd=lesson_env)
    assert len(logs) == 2
    done = optuna.load_study(study_name="toy", storage=storage).trials
    assert sorted(t.params["x"] for t in done) == [0, 1, 2, 3]  # each queued trial ran once
    assert sorted(t.user_attrs["worker"] for t in done) == [1, 1, 2, 2]
    runs = mlflow.search_runs(search_all_experiments=True,
                              filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert len(runs) == 4 and set(runs["tags.worker"]) == {"1", "2"}
    assert sorted(runs["metrics.mae"]) == [0.0, 1.0, 4.0, 9.0]


def test_a_failing_worker_is_reported_with_its_log(lesson_env):
    (lesson_env / "bad.py").write_text("def objective(trial):\n    raise ValueError('no data here')\n")
    storage = f"sqlite:///{lesson_env / 'study.db'}"
    optuna.create_study(study_name="bad", storage=storage)
    with pytest.raises(tuning.TuningError, match="(?s)worker 1 exited.*no data here"):
        tuning.run_workers(storage, "bad", "bad:objective", workers=1, trials=1, cwd=lesson_env)


def test_objective_spec_must_name_module_and_function():
    with pytest.raises(ValueError, match="module:function"):
        tuning.load_objective("objective")


def test_shares_split_a_queue_of_any_length_exactly():
    assert tuning.shares(6, 2) == [3, 3]
    assert tuning.shares(6, 4) == [2, 2, 1, 1]
    assert tuning.shares(2, 3) == [1, 1, 0]
    assert all(sum(tuning.shares(n, w)) == n for n in range(10) for w in range(1, 5))
    with pytest.raises(ValueError, match="at least one worker"):
        tuning.shares(6, 0)
    with pytest.raises(ValueError, match="one per worker"):
        tuning.run_workers("sqlite://", "s", workers=2, trials=[1, 2, 3])
