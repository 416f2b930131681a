"""Helper package for the MLOps notebook course.

Lessons import what they need from the stage modules (``data``, ``pipeline``, ``tracking`` ...);
``setup_lesson`` is the one call every lesson's setup cell makes. Three layers, each importing only the ones
below it (``tests/test_layers.py`` checks this):

- **the course's own tooling**, ``mlops_course.course``: the ``mlops-course`` command (``cli``), running lessons
  (``runner``, ``lessons``), the learner editions and the site (``editions``, ``site``), ``doctor`` and
  JupyterLab's settings (``lab``). No lesson imports it, and no module outside it does.
- **the lifecycle**, one module per stage as the lessons meet them: data (``data``, ``schema``, the training
  windows in ``train_config``), pipelines and their versions (``pipeline``, ``versioning``, ``stages``),
  tracking and the registry (``tracking``, ``registry``, ``tuning``), packaging and serving (``packaging``,
  ``model_loader``, ``serving``, ``request_log``, ``loadtest``, ``deploy``), monitoring (``monitoring``,
  ``drift``, ``alerts``, ``traffic``, ``webhook``), CI/CD (``cicd``, ``cicd_workflow``, ``gha_expr``,
  ``lint``), orchestration (``orchestration``, ``flow_display``), the capstone (``capstone``), drawings
  (``diagrams``) and the exercises' checks (``exercises``).
- **shared plumbing**: where files live (``paths``), the files the lessons write, kept as templates
  (``templates``), the offline switches (``offline``), a lesson's workspace (``workspace``, ``empty_stores``),
  background servers and their warden (``process``, ``warden``), and the servers themselves (``mlflow_launch``, ``prefect_server``, ``stage_server``, ``postgres``, ``object_store``,
  ``prometheus_stack``).
"""

from mlops_course import offline
from mlops_course.workspace import Lesson, setup_lesson

# Every lesson imports this package before mlflow, onnxruntime or Prefect: their telemetry switches must be set
# now, because they read them when imported, before setup_lesson runs. Nothing else happens at import.
offline.apply()

__all__ = ["Lesson", "setup_lesson"]
__version__ = "0.1.0"
