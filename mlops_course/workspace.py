"""One call per lesson: a fresh isolated workspace, telemetry off, seeds and display settings.

Each lesson works in ``workspaces/lesson-NN-<pid>/`` (``MLOPS_COURSE_WORKSPACE`` moves the root). The process
id in the name keeps two kernels running the same lesson apart; folders whose process has ended are removed
the next time that lesson starts, so a learner's disk does not fill up. Running the setup cell again in the same
kernel gives a fresh folder (``lesson-NN-<pid>-2``, ...).
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import shutil
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

from mlops_course import empty_stores, paths
from mlops_course.offline import OFFLINE_ENV, TELEMETRY_OFF  # noqa: F401 - TELEMETRY_OFF: part of this module's API

SEED = 42

@dataclass(frozen=True)
class Lesson:
    """The paths and settings one lesson works with (returned by :func:`setup_lesson`)."""

    number: str
    workspace: Path
    data_file: Path
    tracking_uri: str
    seed: int = SEED

    def path(self, *parts: str) -> Path:
        """A path inside the workspace, e.g. ``lesson.path("models", "model.onnx")``."""
        return self.workspace.joinpath(*parts)

    def show(self, path: os.PathLike | str) -> str:
        """A path as the learner should see it: relative to the workspace, never this machine's."""
        p = Path(path)
        with contextlib.suppress(ValueError):
            return str(p.resolve().relative_to(self.workspace.resolve())) or "."
        return p.name


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale(root: Path, number: str) -> None:
    """Remove this lesson's folders left by ended processes and by this process's earlier setups."""
    for old in root.glob(f"lesson-{number}-*"):
        pid = old.name.split("-")[2]
        if pid.isdigit() and (int(pid) == os.getpid() or not _pid_alive(int(pid))):
            shutil.rmtree(old, ignore_errors=True)


_setups: dict[str, int] = {}


def normalise_number(lesson: str | int) -> str:
    """``1``, ``"1"``, ``"01"`` and ``"01-Data_Versioning_with_DVC"`` all mean lesson ``"01"``."""
    text = str(lesson).strip()
    head = text.split("-", 1)[0]
    if not head.isdigit():
        raise ValueError(f"lesson must start with its number, like '01'; got {lesson!r}")
    return f"{int(head):02d}"


def make_workspace(number: str) -> Path:
    """Create a fresh, empty workspace folder for this process and lesson and return it."""
    root = paths.workspaces_dir()
    root.mkdir(parents=True, exist_ok=True)
    _remove_stale(root, number)
    # Running the setup cell again in the same kernel gets a new folder name: MLflow keeps the database
    # connection of a path open, and a new file at the old path would be read-only through it.
    _setups[number] = _setups.get(number, 0) + 1
    suffix = f"-{_setups[number]}" if _setups[number] > 1 else ""
    ws = root / f"lesson-{number}-{os.getpid()}{suffix}"
    ws.mkdir()
    return ws.resolve()


def quiet_offline_env(workspace: Path) -> None:
    """Telemetry and update checks off; tool state (git, DVC, Prefect) kept inside the workspace."""
    os.environ.update(OFFLINE_ENV)
    os.environ["DVC_SITE_CACHE_DIR"] = str(workspace / ".tools" / "dvc-site-cache")
    os.environ["DVC_GLOBAL_CONFIG_DIR"] = str(workspace / ".tools" / "dvc-global")
    os.environ["PREFECT_HOME"] = str(workspace / ".tools" / "prefect")
    os.environ["GIT_CONFIG_GLOBAL"] = str(workspace / ".tools" / "gitconfig")
    os.environ["GIT_CONFIG_NOSYSTEM"] = "1"
    # The kernel's own tools (dvc, mlflow, uvicorn) must be found even when the venv is not activated.
    bin_dir = str(Path(sys.executable).parent)
    if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
    (workspace / ".tools").mkdir(exist_ok=True)


def seed_everything(seed: int = SEED) -> None:
    """Seed Python's and NumPy's global generators (models still get ``random_state`` explicitly)."""
    random.seed(seed)
    try:
        import numpy as np

        np.random.seed(seed)
    except ImportError:  # pragma: no cover - numpy is a dependency
        pass


def display_settings() -> None:
    """Plain-text sklearn reprs, compact pandas tables and one matplotlib style for every lesson."""
    import matplotlib as mpl
    import pandas as pd
    import sklearn

    sklearn.set_config(display="text")
    pd.set_option("display.width", 120)
    pd.set_option("display.max_columns", 20)
    pd.set_option("display.precision", 3)
    mpl.rcParams.update(mpl.rcParamsDefault)
    mpl.rcParams.update({"figure.figsize": (7.0, 3.6), "figure.dpi": 90, "axes.grid": True,
                         "grid.alpha": 0.3, "axes.spines.top": False, "axes.spines.right": False})
    # Notices that say nothing about the lesson and would only clutter stored outputs.
    warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer column")
    # Starlette 1.x announces that its TestClient will move to httpx2; with the pinned versions it works as is.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient` is deprecated")
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)


def create_tracking_store(uri: str) -> None:
    """Create the MLflow database now, so the one-off table creation never shows in a later cell.

    A SQLite store starts as a copy of the cached empty one when there is one (see ``empty_stores``).
    """
    import mlflow

    noisy = [logging.getLogger(n) for n in ("mlflow", "alembic", "mlflow.store.db.utils")]
    levels = [lg.level for lg in noisy]
    for lg in noisy:
        lg.setLevel(logging.ERROR)
    database = Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None
    try:
        copied = database is not None and empty_stores.restore("mlflow", database)
        mlflow.set_tracking_uri(uri)
        mlflow.MlflowClient(uri).search_experiments(max_results=1)
        if database is not None and not copied:
            empty_stores.keep("mlflow", database, empty_stores.without_experiments)
        # A kernel or test process may remember an experiment of an earlier store: start from Default.
        while mlflow.active_run() is not None:
            mlflow.end_run()
        mlflow.set_experiment(experiment_id="0")
    finally:
        for lg, level in zip(noisy, levels):
            lg.setLevel(level)


def setup_lesson(lesson: str | int, *, tracking: bool = True, quiet: bool = False) -> Lesson:
    """Prepare a lesson: fresh workspace (made the working directory), offline env, seeds, display.

    With ``tracking=True`` an MLflow SQLite store is created in the workspace and made the default
    (``MLFLOW_TRACKING_URI``), so runs, artifacts and registered models never leave the workspace.
    """
    number = normalise_number(lesson)
    ws = make_workspace(number)
    quiet_offline_env(ws)
    os.chdir(ws)
    seed_everything(SEED)
    display_settings()
    uri = f"sqlite:///{ws / 'mlflow.db'}"
    if tracking:
        os.environ["MLFLOW_TRACKING_URI"] = uri
        create_tracking_store(uri)
    from mlops_course import process

    process.install_cleanup()
    lesson_obj = Lesson(number=number, workspace=ws, data_file=paths.data_dir() / "Bikeshare.csv",
                        tracking_uri=uri)
    if not quiet:
        store = "MLflow store: sqlite in the workspace" if tracking else "no MLflow store"
        print(f"Lesson {number} ready: fresh workspace, {store}, telemetry off, seed {SEED}.")
    return lesson_obj
