"""The course's own tooling, apart from what the lessons import: ``mlops-course`` and what it runs.

``cli`` (the command), ``runner`` and ``lessons`` (executing the catalogue of lessons), ``editions`` (the learner
and instructor notebooks), ``site`` (the static site), ``doctor`` (what the machine lacks) and ``lab``
(JupyterLab's settings). These modules import the lifecycle and plumbing modules of ``mlops_course``; none of
those imports these.
"""
