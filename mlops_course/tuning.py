"""Parallel Optuna workers on one shared study: separate processes, each trial an MLflow run.

:func:`run_workers` starts ``workers`` processes of ``python -m mlops_course.tuning`` and waits for them. Each
one loads the study from its storage (PostgreSQL in lesson 09: the storage is what makes the study shared),
imports the learner's objective (``"objective:objective"``, a module in the working folder), and runs
``study.optimize`` for ``trials`` trials. Every trial is logged as an MLflow run nested under ``parent_run_id``
(tag ``mlflow.parentRunId``), with its parameters, its value as the metric ``mae`` and the tag ``worker``.

Trials queued with ``study.enqueue_trial`` are handed out by the storage one at a time, so no two workers run
the same queued trial. A worker that fails is reported with the tail of its log.
"""

from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from mlops_course import process


class TuningError(RuntimeError):
    """A worker failed or did not finish in time; the message holds the tail of its log."""


def worker_command(storage: str, study: str, objective: str, trials: int, worker: int,
                   parent_run_id: str | None = None) -> list[str]:
    command = [sys.executable, "-m", "mlops_course.tuning", "--storage", storage, "--study", study,
               "--objective", objective, "--trials", str(trials), "--worker", str(worker)]
    return command + (["--parent-run-id", parent_run_id] if parent_run_id else [])


def _tail(path: Path, lines: int = 15) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


def shares(total: int, workers: int) -> list[int]:
    """``total`` trials split over ``workers`` as evenly as whole numbers allow: ``shares(6, 4) == [2, 2, 1, 1]``."""
    if workers < 1 or total < 0:
        raise ValueError(f"need at least one worker and no negative trials; got {workers} workers, {total} trials")
    return [total // workers + (1 if i < total % workers else 0) for i in range(workers)]


def run_workers(storage: str, study: str, objective: str = "objective:objective", *, workers: int = 2,
                trials: int | Sequence[int] = 3, parent_run_id: str | None = None,
                cwd: os.PathLike | str | None = None, log_dir: os.PathLike | str | None = None,
                timeout: float = 600.0) -> list[Path]:
    """Start ``workers`` processes on the study at once, wait for all; returns their log files.

    ``trials`` is per worker: one number for all, or one per worker (``shares(len(grid), workers)`` runs a
    queue of any length exactly once). The processes inherit this one's environment (``MLFLOW_TRACKING_URI``, S3
    settings) and are handed to the course's warden, so they stop if the kernel dies.
    """
    cwd = Path(cwd or Path.cwd())
    log_dir = Path(log_dir or cwd / "tuning-logs")
    log_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(cwd), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    counts = [trials] * workers if isinstance(trials, int) else list(trials)
    if len(counts) != workers:
        raise ValueError(f"trials gives {len(counts)} counts for {workers} workers; give one number or one per worker")
    started = []
    try:
        for worker in range(1, workers + 1):
            log = log_dir / f"worker-{worker}.log"
            handle = open(log, "wb")  # noqa: SIM115 - closed below, when the worker ended
            command = worker_command(storage, study, objective, counts[worker - 1], worker, parent_run_id)
            proc = process.spawn(command, stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 cwd=cwd, env=env)
            started.append((worker, proc, handle, log))
        deadline = time.monotonic() + timeout
        for worker, proc, _, log in started:
            try:
                code = proc.wait(max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                raise TuningError(f"worker {worker} did not finish within {timeout:.0f} s. Last lines of its "
                                  f"log:\n{_tail(log)}") from None
            if code != 0:
                raise TuningError(f"worker {worker} exited with code {code}. Last lines of its log:\n{_tail(log)}")
    finally:
        for _, proc, handle, _ in started:
            if proc.poll() is None:
                _stop_group(proc)
            handle.close()
    return [log for *_, log in started]


def _stop_group(proc: subprocess.Popen) -> None:
    import contextlib
    import signal

    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(5)


def load_objective(spec: str):
    """``"module:function"`` -> the function (the module is imported from the working folder)."""
    module, _, name = spec.partition(":")
    if not module or not name:
        raise ValueError(f"objective must be 'module:function', like 'objective:objective'; got {spec!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    return getattr(importlib.import_module(module), name)


def logged_objective(objective, *, worker: int, parent_run_id: str | None):
    """``objective`` wrapped so that each trial is an MLflow run (params, ``mae``, tags ``worker`` and parent)."""
    import mlflow

    def run_trial(trial):
        tags = {"worker": str(worker), "optuna_study": trial.study.study_name, "optuna_trial": str(trial.number)}
        if parent_run_id:
            tags["mlflow.parentRunId"] = parent_run_id
        with mlflow.start_run(run_name=f"trial-{trial.number:02d}", tags=tags):
            value = objective(trial)
            mlflow.log_params(trial.params)
            mlflow.log_metric("mae", float(value))
        trial.set_user_attr("worker", worker)
        return value

    return run_trial


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlops_course.tuning", description=__doc__.splitlines()[0])
    parser.add_argument("--storage", required=True)
    parser.add_argument("--study", required=True)
    parser.add_argument("--objective", default="objective:objective")
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--worker", type=int, default=1)
    parser.add_argument("--parent-run-id", default=None)
    args = parser.parse_args(argv)
    import optuna

    study = optuna.load_study(study_name=args.study, storage=args.storage)
    objective = logged_objective(load_objective(args.objective), worker=args.worker, parent_run_id=args.parent_run_id)
    study.optimize(objective, n_trials=args.trials)
    print(f"worker {args.worker}: {args.trials} trials done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
