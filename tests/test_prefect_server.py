"""The Prefect helpers of lesson 09: a worker on a process work pool runs a deployment's runs, one at a time."""

import os
import time

import pytest

from mlops_course import process

FLOW = '''
import time
from prefect import flow


@flow(name="sleepy")
def sleepy(seconds: float = 0.5, trigger: str = "manual"):
    time.sleep(seconds)
    return trigger
'''


@pytest.fixture(scope="module")
def prefect(tmp_path_factory):
    saved_env = dict(os.environ)
    workspace = tmp_path_factory.mktemp("prefect-worker")
    from mlops_course.prefect_server import PrefectServer

    server = PrefectServer(workspace, console_logs=False).start().wait()
    try:
        yield server, workspace
    finally:
        server.stop()
        os.environ.clear()
        os.environ.update(saved_env)


def test_a_worker_needs_a_server(monkeypatch, tmp_path):
    from mlops_course import prefect_server

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    with pytest.raises(process.ServerError, match="start one first"):
        prefect_server.worker("pool", tmp_path)


def test_worker_runs_deployment_runs_one_at_a_time_under_the_pool_limit(prefect):
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.deployments import run_deployment

    from mlops_course import prefect_server

    _, workspace = prefect
    (workspace / "sleepy.py").write_text(FLOW)
    with get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name="one-at-a-time", type="process", concurrency_limit=1))
    deployment_id = flow.from_source(source=str(workspace), entrypoint="sleepy.py:sleepy").deploy(
        name="test", work_pool_name="one-at-a-time", build=False, push=False, print_next_steps=False,
        ignore_warnings=True, parameters={"seconds": 1.0})
    worker = prefect_server.worker("one-at-a-time", workspace, name="test", start=False)
    assert not worker.running  # start=False: built, not started (a lesson starts it in a thread)
    worker.start()
    try:
        assert worker.running and worker.url.startswith("http://127.0.0.1:")
        runs = [run_deployment(deployment_id, parameters={"trigger": t}, timeout=0) for t in ("a", "b")]
        deadline = time.monotonic() + 240
        while True:
            with get_client(sync_client=True) as client:
                found = [client.read_flow_run(r.id) for r in runs]
            if all(r.state.is_final() for r in found) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    finally:
        worker.stop()
    assert [r.state.name for r in found] == ["Completed", "Completed"], worker.log_tail()
    assert [r.parameters for r in found] == [{"seconds": 1.0, "trigger": "a"}, {"seconds": 1.0, "trigger": "b"}]
    first, second = sorted(found, key=lambda r: r.start_time)
    assert second.start_time >= first.end_time  # the limit of 1: never two at once
    assert not worker.running and not process.port_in_use(worker.port)
