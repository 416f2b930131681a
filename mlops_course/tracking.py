"""MLflow tracking plumbing for the lessons: a real ``mlflow server`` in the background, and a comparison plot.

``tracking_server(workspace)`` starts ``mlflow server`` on 127.0.0.1 and a free port with one worker, job
execution off, a SQLite backend store and an artifact folder inside the workspace, and waits until ``/health``
answers. It is a :class:`mlops_course.process.BackgroundServer`: use it in a ``with`` block (it is also
stopped when Python exits); a server that cannot start raises ``ServerError`` with the tail of its log.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from mlops_course import process

SERVER_DIR = "mlflow-server"
# One worker and no job runner: about 6 s and 540 MB to start instead of 23 s and 3.5 GB (2 idle cores).
SERVER_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_DISABLE_TELEMETRY": "true",
              "DO_NOT_TRACK": "true"}


LAUNCHER = [sys.executable, "-m", "mlops_course.mlflow_launch"]  # ``mlflow`` that execs its web server


def server_command(backend_store_uri: str, artifacts_destination: os.PathLike | str,
                   workers: int = 1) -> list[str]:
    """The ``mlflow server`` command line, with ``{port}`` where the port goes.

    It runs MLflow's own CLI through :mod:`mlops_course.mlflow_launch`, which leaves one process (uvicorn)
    instead of the CLI waiting beside it; :func:`shown_command` shows it as ``mlflow server ...``.
    """
    return [*LAUNCHER, "server", "--host", process.HOST, "--port", "{port}",
            "--workers", str(workers), "--backend-store-uri", backend_store_uri,
            "--artifacts-destination", str(artifacts_destination)]


def tracking_server(workspace: os.PathLike | str, *, port: int | None = None, backend_store_uri: str | None = None,
                    artifacts_destination: str | None = None, env: Mapping[str, str] | None = None,
                    workers: int = 1, startup_timeout: float = 180.0, start: bool = True) -> process.BackgroundServer:
    """A real ``mlflow server`` for a lesson workspace, started and healthy (``start=False``: not started yet).

    Its database (``mlflow-server/mlflow.db``), artifacts (``mlflow-server/artifacts``) and log
    (``mlflow-server/server.log``) live in ``workspace``; pass ``backend_store_uri`` to serve another store,
    e.g. the lesson's own ``lesson.tracking_uri`` to browse it in the UI, and ``artifacts_destination`` (e.g.
    ``s3://bucket``, with ``MLFLOW_S3_ENDPOINT_URL`` and credentials in ``env``) to keep artifacts elsewhere.
    ``port`` defaults to a free one.
    It starts in about 6 s on 2 idle cores; ``startup_timeout`` leaves room for a machine shared with other jobs
    (a server that fails exits at once and is reported with its log, whatever the timeout).
    """
    workspace = Path(workspace).resolve()
    if not workspace.is_dir():
        raise FileNotFoundError(f"workspace {workspace.name!r} is not a folder: pass lesson.workspace "
                                f"(the folder setup_lesson made)")
    if port is not None and not (isinstance(port, int) and 0 < port < 65536):
        raise ValueError(f"port must be an int between 1 and 65535, or None for a free port; got {port!r}")
    folder = workspace / SERVER_DIR
    folder.mkdir(exist_ok=True)
    (folder / "artifacts").mkdir(exist_ok=True)
    backend = backend_store_uri or f"sqlite:///{folder / 'mlflow.db'}"
    artifacts = artifacts_destination or folder / "artifacts"
    server = process.BackgroundServer(server_command(backend, artifacts, workers), log_file=folder / "server.log",
                                      port=port, health_path="/health", env={**SERVER_ENV, **(env or {})}, cwd=folder,
                                      startup_timeout=startup_timeout, name="mlflow server")
    return server.start() if start else server


def shown_command(server: process.BackgroundServer, workspace: os.PathLike | str) -> str:
    """The server's command line as a learner should read it: no absolute paths, ``<port>`` for the port."""
    root = str(Path(workspace).resolve())
    command = list(server.command)
    if command[:len(LAUNCHER)] == LAUNCHER:
        command[:len(LAUNCHER)] = ["mlflow"]
    parts = []
    for i, part in enumerate(command):
        if i > 0 and command[i - 1] == "--port":
            part = "<port>"
        parts.append(part.replace(root + os.sep, "").replace(root, "."))
    return " ".join(parts)


def comparison_plot(runs, metric: str = "metrics.valid_mae", *, name: str = "tags.mlflow.runName",
                    group: str = "params.model_kind", xlabel: str | None = None,
                    title: str = "Candidates on the validation month"):
    """Horizontal bars of ``metric`` per run (a ``search_runs`` DataFrame), best at the top, one colour per group.

    Returns the matplotlib figure; the best run's bar is outlined and labelled. Runs without the metric are left
    out; ``KeyError`` names a missing column.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    from mlops_course.diagrams import COLOURS

    missing = [c for c in (metric, name, group) if c not in getattr(runs, "columns", [])]
    if missing:
        raise KeyError(f"the runs table has no column(s) {missing}; pass the DataFrame of mlflow.search_runs "
                       f"and log {metric.split('.', 1)[-1]!r} in every run")
    table = runs.dropna(subset=[metric]).sort_values([metric, name], ascending=[False, False])
    if table.empty:
        raise ValueError(f"no run has a value for {metric!r}")
    families = table[group].fillna("other").astype(str)
    groups = sorted(families.unique())
    colour = {g: COLOURS[i % len(COLOURS)] for i, g in enumerate(groups)}
    fig, ax = plt.subplots(figsize=(7.0, 0.32 * len(table) + 1.2))
    values = table[metric].to_numpy()
    bars = ax.barh(table[name].astype(str), values, color=[colour[g] for g in families])
    bars[-1].set_edgecolor("black")
    bars[-1].set_linewidth(1.5)
    ax.text(values[-1], len(values) - 1, f"  best: {values[-1]:.1f}", va="center", fontsize=8)
    ax.legend(handles=[Patch(color=colour[g], label=g) for g in groups], loc="upper left",
              bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    ax.grid(axis="y", visible=False)
    ax.set_xlabel(xlabel or metric.split(".", 1)[-1].replace("_", " "))
    ax.set_xlim(0, values.max() * 1.1)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def artifact_paths(client, run_id: str, path: str | None = None) -> list[str]:
    """Every file among a run's artifacts (folders walked), sorted: ``["evaluation/errors.csv", ...]``."""
    files = []
    for item in client.list_artifacts(run_id, path):
        files.extend(artifact_paths(client, run_id, item.path) if item.is_dir else [item.path])
    return sorted(files)


__all__: Sequence[str] = [
    "SERVER_DIR",
    "SERVER_ENV",
    "artifact_paths",
    "comparison_plot",
    "server_command",
    "shown_command",
    "tracking_server",
]
