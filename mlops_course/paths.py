"""Where the course's own files live: repository root, data, notebooks, workspaces, build output."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def _from_env(name: str, default: Path) -> Path:
    value = os.environ.get(name)
    return Path(value).expanduser().resolve() if value else default


def data_dir() -> Path:
    """The folder with the shipped datasets (``MLOPS_COURSE_DATA`` overrides it)."""
    return _from_env("MLOPS_COURSE_DATA", REPO_ROOT / "data")


def notebooks_dir() -> Path:
    """The folder with the lessons."""
    return REPO_ROOT / "notebooks"


def workspaces_dir() -> Path:
    """Root of the per-lesson workspaces (``MLOPS_COURSE_WORKSPACE`` overrides it; git-ignored)."""
    return _from_env("MLOPS_COURSE_WORKSPACE", REPO_ROOT / "workspaces")


def build_dir() -> Path:
    """Where executed notebooks, sites and benchmark reports go (git-ignored)."""
    return _from_env("MLOPS_COURSE_BUILD", REPO_ROOT / "build")
