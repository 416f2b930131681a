"""Helper package for the MLOps notebook course.

Lessons import what they need from the stage modules (``data``, ``pipeline``, ``tracking`` ...);
``setup_lesson`` is the one call every lesson's setup cell makes.
"""

import warnings

# tqdm warns about missing Jupyter widgets when MLflow imports it; the course shows no progress bars there.
warnings.filterwarnings("ignore", message="IProgress not found")

from mlops_course.workspace import Lesson, setup_lesson  # noqa: E402

__all__ = ["Lesson", "setup_lesson"]
__version__ = "0.1.0"
