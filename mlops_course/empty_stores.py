"""Empty MLflow and Prefect databases kept once per tool version, so a new workspace starts from a copy.

Both tools build a new SQLite database by running their schema migrations: about 1 s for MLflow and 2-3 s
for Prefect on 2 cores, paid again by every lesson and test. The first workspace pays it; a copy of its
freshly migrated database (taken with SQLite's backup API, safe while the tool has the file open) goes to
``build/cache/``, and later workspaces start from a copy of that. The tool still opens, checks and, where
needed, fills the database itself (MLflow creates its Default experiment on first use). A cached file is
named after the tool's version, so an upgrade starts a new one; ``make clean`` removes them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

from mlops_course import paths


def template(tool: str) -> Path:
    """Where the empty database of ``tool`` ("mlflow" or "prefect") at its installed version is kept."""
    return paths.build_dir() / "cache" / f"{tool}-{metadata.version(tool)}-empty.db"


def restore(tool: str, database: Path) -> bool:
    """Start ``database`` (which must not exist yet) as a copy of the cached empty one; False if none is kept."""
    source = template(tool)
    if database.exists() or not source.is_file():
        return False
    try:
        shutil.copyfile(source, database)
    except OSError:
        with contextlib.suppress(OSError):
            database.unlink()
        return False
    return True


def keep(tool: str, database: Path, tidy: Callable[[sqlite3.Connection], None] | None = None) -> None:
    """Cache a copy of a freshly migrated ``database`` (``tidy`` may delete rows from the copy first).

    Does nothing when a copy is already kept. Written under a temporary name and renamed, so two lessons
    doing this at the same time never leave a half-written file.
    """
    target = template(tool)
    if target.exists():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    try:
        with contextlib.closing(sqlite3.connect(database)) as src, contextlib.closing(sqlite3.connect(partial)) as dst:
            src.backup(dst)
            if tidy is not None:
                tidy(dst)
                dst.commit()
        os.replace(partial, target)
    except (OSError, sqlite3.Error):
        pass  # a cache only: the next workspace builds its database itself
    finally:
        with contextlib.suppress(OSError):
            partial.unlink()


def without_experiments(db: sqlite3.Connection) -> None:
    """MLflow's Default experiment records the artifact folder of the workspace that made it: drop it."""
    db.execute("DELETE FROM experiments")
