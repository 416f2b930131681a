"""``python -m mlops_course.mlflow_launch server ARGS...``: ``mlflow server`` as one process instead of two.

``mlflow server`` parses its options, builds the uvicorn command and runs it as a child, then waits: the CLI
stays alive as a parent that only forwards signals (about 190 MiB PSS here, next to uvicorn's 230). Run
through this module, the same CLI with the same options replaces itself with that command (``os.execvpe``),
so the tracking server is the uvicorn process alone. MLflow needs its parent only to run its job runner beside
the server; with job execution on (``MLFLOW_SERVER_ENABLE_JOB_EXECUTION`` not ``false``), or in an MLflow
without the hook, the CLI runs unchanged.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence


def _exec_instead(command: Sequence[str], *, extra_env=None, **_options) -> None:
    """Stand-in for MLflow's ``_exec_cmd``: become ``command`` with the environment MLflow built for it."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvpe(command[0], list(command), {**os.environ, **(extra_env or {})})


def main(argv: Sequence[str] | None = None) -> None:
    import mlflow.server
    from mlflow.cli import cli

    jobs_off = os.environ.get("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "").strip().lower() in ("false", "0")
    if jobs_off and callable(getattr(mlflow.server, "_exec_cmd", None)):
        mlflow.server._exec_cmd = _exec_instead
    cli.main(args=list(sys.argv[1:] if argv is None else argv), prog_name="mlflow")


if __name__ == "__main__":
    main()
