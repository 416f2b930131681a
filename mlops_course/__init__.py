"""Helper package for the MLOps notebook course.

Lessons import what they need from the stage modules (``data``, ``pipeline``, ``tracking`` ...);
``setup_lesson`` is the one call every lesson's setup cell makes.
"""

from mlops_course import offline
from mlops_course.workspace import Lesson, setup_lesson

# Every lesson imports this package before mlflow, onnxruntime or Prefect: their telemetry switches must be set
# now, because they read them when imported, before setup_lesson runs. Nothing else happens at import.
offline.apply()

__all__ = ["Lesson", "setup_lesson"]
__version__ = "0.1.0"
