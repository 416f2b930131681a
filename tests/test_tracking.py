import json
import os
import socket
import time
import urllib.request

import mlflow
import pandas as pd
import pytest

from mlops_course import process, tracking


def group_alive(pgid: int, grace: float = 10.0) -> bool:
    """True if a process of the server's group (CLI, uvicorn worker) still exists after ``grace`` seconds
    (a killed worker may take a moment to be reaped)."""
    deadline = time.monotonic() + grace
    while True:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        if time.monotonic() > deadline:
            return True
        time.sleep(0.1)


@pytest.fixture
def workspace(tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    return ws


def test_command_has_one_worker_loopback_and_workspace_stores(workspace):
    server = tracking.tracking_server(workspace, start=False)
    assert not server.running and server.process is None
    cmd = server.command
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1"
    assert cmd[cmd.index("--workers") + 1] == "1"
    assert cmd[cmd.index("--port") + 1] == str(server.port)
    backend = cmd[cmd.index("--backend-store-uri") + 1]
    assert backend == f"sqlite:///{workspace / 'mlflow-server' / 'mlflow.db'}"
    assert cmd[cmd.index("--artifacts-destination") + 1] == str(workspace / "mlflow-server" / "artifacts")
    assert server.env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    assert server.health_path == "/health"
    assert server.log_file == workspace / "mlflow-server" / "server.log"
    shown = tracking.shown_command(server, workspace)
    assert shown.startswith("mlflow server --host 127.0.0.1 --port <port> --workers 1 ")
    assert "--port <port>" in shown and str(workspace) not in shown
    assert "sqlite:///mlflow-server/mlflow.db" in shown


def test_bad_arguments_are_explained(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a folder"):
        tracking.tracking_server(tmp_path / "missing", start=False)
    with pytest.raises(ValueError, match="port must be"):
        tracking.tracking_server(tmp_path, port=70000, start=False)
    with pytest.raises(ValueError, match="port must be"):
        tracking.tracking_server(tmp_path, port="5000", start=False)


def test_real_server_answers_health_logs_over_http_and_stops_cleanly(workspace):
    with tracking.tracking_server(workspace) as server:
        assert server.running
        pgid = server.process.pid
        with urllib.request.urlopen(server.url + "/health", timeout=5) as response:
            assert response.status == 200
        client = mlflow.MlflowClient(server.url)
        experiment_id = client.create_experiment("shared")
        run = client.create_run(experiment_id, run_name="over-http")
        client.log_metric(run.info.run_id, "valid_mae", 12.5)
        client.set_terminated(run.info.run_id)
        assert client.get_run(run.info.run_id).data.metrics == {"valid_mae": 12.5}
        with urllib.request.urlopen(f"{server.url}/api/2.0/mlflow/experiments/get-by-name?experiment_name=shared",
                                    timeout=5) as response:
            assert json.load(response)["experiment"]["artifact_location"].startswith("mlflow-artifacts:")
    assert not server.running
    assert not group_alive(pgid), "a process of the mlflow server outlived stop()"
    assert not process.port_in_use(server.port)
    assert (workspace / "mlflow-server" / "mlflow.db").is_file()
    assert "Uvicorn running" in server.log_tail(50) or "Application startup complete" in server.log_tail(50)


def test_the_server_is_uvicorn_alone_without_the_cli_waiting_beside_it(workspace):
    """mlflow_launch makes the CLI exec its web server: the server's process is uvicorn, with no child."""
    psutil = pytest.importorskip("psutil")
    with tracking.tracking_server(workspace) as server:
        proc = psutil.Process(server.process.pid)
        assert proc.cmdline()[1:3] == ["-m", "uvicorn"], proc.cmdline()
        assert "mlflow.server" in " ".join(proc.cmdline())
        assert proc.children() == []


def test_a_given_free_port_is_used_and_reusable(workspace):
    port = process.free_port()
    for _ in range(2):
        server = tracking.tracking_server(workspace, port=port)
        try:
            assert server.port == port and server.url.endswith(f":{port}")
            with urllib.request.urlopen(server.url + "/health", timeout=5) as response:
                assert response.status == 200
        finally:
            server.stop()
        assert not process.port_in_use(port)


def test_failure_to_start_reports_the_server_log_tail(workspace):
    server = tracking.tracking_server(workspace, backend_store_uri="nosuchdb://nowhere", start=False)
    with pytest.raises(process.ServerError, match=rf"(?s)mlflow server did not start on 127\.0\.0\.1:{server.port}: "
                                                  r"it exited with code .*nosuchdb://nowhere"):
        server.start()
    assert not server.running and server.process is None
    assert not process.port_in_use(server.port)


def test_a_port_in_use_is_refused(workspace):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(process.ServerError, match=f"port {port} .*already in use"):
            tracking.tracking_server(workspace, port=port)
    assert not (workspace / "mlflow-server" / "server.log").exists()


@pytest.fixture
def runs():
    return pd.DataFrame({
        "tags.mlflow.runName": ["rf-a", "gb-a", "ridge-a", "empty"],
        "params.model_kind": ["random_forest", "gradient_boosting", "ridge", None],
        "metrics.valid_mae": [46.5, 45.3, 95.0, float("nan")],
    })


def test_comparison_plot_one_bar_per_scored_run_best_on_top(runs):
    import matplotlib.pyplot as plt

    fig = tracking.comparison_plot(runs)
    ax = fig.axes[0]
    bars = [p for p in ax.patches if p.get_width() > 0]
    assert len(bars) == 3
    assert [t.get_text() for t in ax.get_yticklabels()][-1] == "gb-a"
    assert bars[-1].get_width() == pytest.approx(45.3) and bars[-1].get_linewidth() == 1.5
    assert sorted(t.get_text() for t in ax.get_legend().get_texts()) == ["gradient_boosting", "random_forest",
                                                                         "ridge"]
    plt.close(fig)


def test_comparison_plot_bad_input(runs):
    with pytest.raises(KeyError, match="no column"):
        tracking.comparison_plot(runs, "metrics.valid_rmse")
    with pytest.raises(ValueError, match="no run has a value"):
        tracking.comparison_plot(runs.assign(**{"metrics.valid_mae": float("nan")}))


def test_artifact_paths_walks_folders(lesson_env):
    from mlops_course import setup_lesson

    setup_lesson("99", quiet=True)
    mlflow.set_experiment("artifacts")
    with mlflow.start_run() as run:
        mlflow.log_dict({"a": 1}, "features.json")
        mlflow.log_text("x", "evaluation/deep/errors.csv")
        mlflow.log_text("y", "evaluation/summary.txt")
    client = mlflow.MlflowClient()
    assert tracking.artifact_paths(client, run.info.run_id) == [
        "evaluation/deep/errors.csv", "evaluation/summary.txt", "features.json"]
    with mlflow.start_run() as empty:
        pass
    assert tracking.artifact_paths(client, empty.info.run_id) == []
    mlflow.set_experiment(experiment_id="0")  # leave no active experiment of this store to later tests


def test_a_relative_workspace_is_resolved(tmp_path, monkeypatch):
    (tmp_path / "ws").mkdir()
    monkeypatch.chdir(tmp_path)
    server = tracking.tracking_server("ws", start=False)
    backend = server.command[server.command.index("--backend-store-uri") + 1]
    assert backend == f"sqlite:///{tmp_path.resolve() / 'ws' / 'mlflow-server' / 'mlflow.db'}"
