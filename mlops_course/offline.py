"""The switches that keep every tool the course runs offline and quiet, as data, and where they are applied.

``TELEMETRY_OFF`` is applied when ``mlops_course`` is imported (MLflow and ONNX Runtime read their switch when
they are imported, which in a lesson is right after the course's setup import); a value the user set is kept.
``setup_lesson`` applies ``OFFLINE_ENV`` (the same switches and the quiet ones) for the lesson and every process
it starts. Nothing here writes a file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping

# Telemetry and analytics off for every tool the course uses. ONNX Runtime's telemetry looks its host up
# from a native thread and keeps a device id under ~/.cache; MLflow's writes ~/.config/mlflow. Both read
# their switch when imported, so importing mlops_course sets these first (see __init__.py).
TELEMETRY_OFF = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    "DVC_NO_ANALYTICS": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_CLOUD_ENABLE_ORCHESTRATION_TELEMETRY": "false",
    "ORT_DISABLE_TELEMETRY": "1",
}
# Switches that keep every tool the course runs quiet and offline.
OFFLINE_ENV = {
    **TELEMETRY_OFF,
    "MLFLOW_ENABLE_ARTIFACTS_DESTINATION": "false",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "TQDM_DISABLE": "1",
    "GIT_PAGER": "cat",
    "PAGER": "cat",
}


def apply(switches: Mapping[str, str] = TELEMETRY_OFF, env: MutableMapping[str, str] = os.environ) -> None:
    """Set each switch unless the environment already has a value for it."""
    for name, value in switches.items():
        env.setdefault(name, value)

