"""Helper package for the MLOps notebook course.

Lessons import what they need from the stage modules (``data``, ``pipeline``, ``tracking`` ...);
``setup_lesson`` is the one call every lesson's setup cell makes.
"""

import os
import warnings

from mlops_course.workspace import TELEMETRY_OFF, Lesson, setup_lesson

# Every lesson imports this package before mlflow, onnxruntime or Prefect: switch their telemetry off now,
# because they read the switches at import, before setup_lesson runs (a value set by the user is kept).
for _name, _value in TELEMETRY_OFF.items():
    os.environ.setdefault(_name, _value)

# tqdm warns about missing Jupyter widgets when MLflow imports it; the course shows no progress bars there.
warnings.filterwarnings("ignore", message="IProgress not found")

__all__ = ["Lesson", "setup_lesson"]
__version__ = "0.1.0"
