"""The closed loop for real (Prefect server, uvicorn service, DVC repo, MLflow registry) on a short year."""

import httpx
import pandas as pd
import pytest

from mlops_course import capstone, data, registry, stages, versioning
from mlops_course.exercises import evaluate


@pytest.fixture(scope="module")
def bikes():
    return data.load_bikeshare()


def test_write_data_version_commits_the_dvc_pointer(lesson_env, bikes):
    from mlops_course import setup_lesson

    lesson = setup_lesson("98", tracking=False, quiet=True)
    repo = versioning.init_repo(lesson.path("repo"), quiet=True)
    first = capstone.write_data_version(repo, bikes, ["Jan"])
    second = capstone.write_data_version(repo, bikes, ["Jan", "Feb"])
    assert first != second
    assert len(pd.read_csv(repo / stages.DATA)) == len(data.select_months(bikes, ["Jan", "Feb"]))
    log = versioning.execute("git log --oneline", repo).output
    assert "data: Jan-Feb" in log and "data: Jan (" in log
    with pytest.raises(ValueError, match="unknown month"):
        capstone.write_data_version(repo, bikes, ["Smarch"])


def test_policy_replay_counts_retrainings(bikes):
    from mlops_course.exercises.lesson08 import count_retrainings

    loose = count_retrainings(bikes, ["Jan", "Feb", "March"], "April", drift_threshold=0.3, error_threshold=40.0)
    strict = count_retrainings(bikes, ["Jan", "Feb", "March"], "April", drift_threshold=0.3, error_threshold=60.0)
    never = count_retrainings(bikes, ["Jan", "Feb", "March"], "April", drift_threshold=1.0, error_threshold=0.0)
    assert loose > strict >= 1 and never == 0


def test_unknown_months_are_refused(tmp_path, bikes):
    with pytest.raises(ValueError, match="unknown month"):
        capstone.ClosedLoop(repo=tmp_path, service_url="http://127.0.0.1:9", bikes=bikes, labelled=["Janvier"])


def test_the_loop_retrains_promotes_and_reloads(lesson_env, bikes):
    from mlops_course import setup_lesson
    from mlops_course.orchestration import PrefectServer, training_flow
    from mlops_course.serving import start_service

    lesson = setup_lesson("97", quiet=True)
    prefect = PrefectServer(lesson.workspace).start()
    service = None
    try:
        repo = versioning.init_repo(lesson.path("repo"), quiet=True)
        commit = capstone.write_data_version(repo, bikes, ["Jan", "Feb", "March", "April"])
        prefect.wait()
        first = training_flow(data_path=repo / stages.DATA, train_months=["Jan", "Feb", "March"],
                              holdout_month="April", model_params={"n_estimators": 20}, register=True,
                              run_name="first")
        service = start_service(tracking_uri=lesson.tracking_uri, request_log=lesson.path("requests.jsonl"),
                                log_file=lesson.path("service.log"))
        loop = capstone.ClosedLoop(repo=repo, service_url=service.url, bikes=bikes,
                                   labelled=["Jan", "Feb", "March", "April"], model_params={"n_estimators": 20},
                                   reference_months=["Jan", "Feb", "March"])
        for month, batch in data.monthly_batches(bikes, ["May", "June", "July"]):
            loop.step(month, batch)
        timeline = loop.timeline()
        assert timeline["retrain"].sum() >= 1
        assert timeline["served_version"].nunique() >= 2, "the served version never changed"
        assert httpx.get(f"{service.url}/health").json()["model_version"] == registry.aliases()["champion"]
        before = timeline.loc[timeline["served_version"] == first.model_version, "mae"].mean()
        after = timeline.loc[timeline["served_version"] != first.model_version, "mae"].mean()
        assert after < before
        table = capstone.lineage(loop.records, first.model_version, commit)
        assert table.loc[first.model_version, "data_commit"] == commit
        assert table["data_commit"].notna().all() and "champion" in ",".join(table["aliases"])
        fig = capstone.plot_timeline(timeline, loop.policy)
        assert len(fig.axes) == 2
        last = str(timeline.iloc[-1]["served_version"])
        renamed = timeline.rename(index={timeline.index[-1]: "Nov"})
        assert evaluate("08.3", table.loc[last, "data_commit"], timeline=renamed, lineage=table).ok
        assert not evaluate("08.3", "0000000", timeline=renamed, lineage=table).ok
    finally:
        if service is not None:
            service.stop()
        prefect.stop()
    assert not service.running and not prefect.running
