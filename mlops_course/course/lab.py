"""JupyterLab and Jupyter kernels as the course runs them: quiet, offline, encrypted, on 127.0.0.1.

- Kernels get CurveZMQ keys from their manager (``transport_encryption = "auto"``; the python3 kernelspec
  declares support), so ipykernel has nothing to warn about and the kernel's traffic on loopback is
  encrypted. ``runner`` passes :data:`KERNEL_CONFIG` to papermill, ``lab_command`` to JupyterLab.
- JupyterLab asks no news question, checks for no update and searches no extension index: the server is told
  so (no news feed URL, the never-check update class, the read-only extension manager) and the front end's
  settings say so too (``lab_settings/overrides.json``: news off, update check off).
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

from mlops_course import paths

KERNEL_CONFIG = {"KernelManager": {"transport_encryption": "auto"}}
SETTINGS_DIR = Path(__file__).parent / "lab_settings"
DEFAULT_PORT = 8888


def kernel_config():
    """:data:`KERNEL_CONFIG` as a traitlets ``Config`` (for papermill, nbclient and kernel managers)."""
    from traitlets.config import Config

    return Config(KERNEL_CONFIG)


def _flags(config: dict) -> list[str]:
    return [f"--{section}.{name}={value}" for section, names in config.items() for name, value in names.items()]


def lab_command(notebook_dir: os.PathLike | str | None = None, *, port: int = DEFAULT_PORT,
                token: str | None = None, port_retries: int = 50) -> list[str]:
    """The ``jupyter lab`` command line: bound to 127.0.0.1, a token, no browser, nothing fetched.

    ``port_retries``: how many next ports to try when ``port`` is taken (0: fail instead, as tests want).
    """
    folder = Path(notebook_dir or paths.notebooks_dir())
    if not folder.is_dir():
        raise FileNotFoundError(f"no folder {folder} to serve: pass the notebooks folder")
    command = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
               f"--ServerApp.port_retries={port_retries}", f"--ServerApp.root_dir={folder}",
               f"--IdentityProvider.token={token or secrets.token_hex(24)}",
               "--LabApp.news_url=None",
               "--LabApp.check_for_updates_class=jupyterlab.handlers.announcements.NeverCheckForUpdate",
               "--LabApp.extension_manager=readonly", f"--LabApp.app_settings_dir={SETTINGS_DIR}",
               *_flags(KERNEL_CONFIG)]
    if os.geteuid() == 0:  # JupyterLab refuses root without it (containers, CI runners)
        command.append("--allow-root")
    return command
