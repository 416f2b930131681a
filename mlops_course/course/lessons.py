"""The course's module table: every lesson with its file, title, estimated minutes and tools taught."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mlops_course import paths


@dataclass(frozen=True)
class LessonInfo:
    number: str
    stem: str
    minutes: int
    tools: str
    summary: str

    @property
    def filename(self) -> str:
        return f"{self.stem}.ipynb"

    @property
    def title(self) -> str:
        return self.stem.split("-", 1)[1].replace("CI_CD", "CI/CD").replace("_", " ")

    @property
    def path(self) -> Path:
        return paths.notebooks_dir() / self.filename


CATALOGUE = [
    LessonInfo("00", "00-Introduction_to_MLOps", 35, "MLflow, scikit-learn",
               "What MLOps is, the lifecycle, the tools per stage; a first tracked model on Iris."),
    LessonInfo("01", "01-Data_Versioning_with_DVC", 60, "DVC, git",
               "Version the bike-rental data, push/pull a remote, validate it, write the stage scripts and "
               "build the pipeline with dvc stage add."),
    LessonInfo("02", "02-Experiment_Tracking_with_MLflow", 45, "MLflow tracking, mlflow server",
               "Track params, metrics, artifacts and models; search runs; a real tracking server."),
    LessonInfo("03", "03-Model_Registry_and_Packaging", 50, "MLflow registry, skops, ONNX, hadolint",
               "Log, register, alias and gate models; safe formats; ONNX parity and speed; Dockerfiles; model card."),
    LessonInfo("04", "04-Model_Deployment_with_FastAPI", 65, "FastAPI, uvicorn, Prometheus client",
               "Write a FastAPI service for the champion, then the hardened one: metrics, reload, a load test."),
    LessonInfo("05", "05-Model_Monitoring_and_Drift", 65, "Prometheus client, SciPy, Evidently, promtool",
               "Watch the model meet the rest of the year: metrics, honest drift and error statistics, tested alerts."),
    LessonInfo("06", "06-CI_CD_for_ML", 40, "pytest, GitHub Actions, pre-commit",
               "Data and model tests, quality gates, and the workflow that runs them."),
    LessonInfo("07", "07-Workflow_Orchestration_with_Prefect", 60, "Prefect, papermill",
               "Write a flow with retries and parallel tasks; the course's flow: caching, registry, schedules."),
    LessonInfo("08", "08-End_to_End_MLOps_Pipeline", 70, "all of the above",
               "Retraining policies judged against baselines, then the closed loop over 2011 for real."),
    LessonInfo("09", "09-MLOps_at_Team_Scale", 75,
               "PostgreSQL, S3 (moto), MLflow server, DVC S3 remote, Optuna, Prefect work pool + worker, "
               "Prometheus, Alertmanager",
               "The same lifecycle on the engines a team shares: two clones share data and runs, two tuning "
               "workers share a study, an alert routed by Alertmanager starts the retraining deployment."),
]


class UnknownLessonError(ValueError):
    """A lesson name or number that is not in the course."""


def find(name: str) -> LessonInfo:
    """A lesson by number (``1``, ``"01"``), file name or stem."""
    text = Path(str(name)).name.removesuffix(".ipynb")
    for info in CATALOGUE:
        if text in (info.stem, info.filename):
            return info
        if text.isdigit() and int(text) == int(info.number):
            return info
    known = ", ".join(info.number for info in CATALOGUE)
    raise UnknownLessonError(f"unknown lesson {name!r}: use a number ({known}) or a file name from notebooks/")


def module_table(markdown: bool = False) -> str:
    """The module table as plain text (for the terminal) or Markdown (for the READMEs)."""
    if markdown:
        lines = ["| # | Lesson | Minutes | Tools | What you do |", "|---|---|---|---|---|"]
        for i in CATALOGUE:
            lines.append(f"| {i.number} | [{i.title}]({i.filename}) | {i.minutes} | {i.tools} | {i.summary} |")
        return "\n".join(lines)
    width = max(len(i.title) for i in CATALOGUE)
    lines = [f"{'#':<3} {'Lesson':<{width}}  {'Min':>3}  Tools"]
    for i in CATALOGUE:
        lines.append(f"{i.number:<3} {i.title:<{width}}  {i.minutes:>3}  {i.tools}")
    return "\n".join(lines)


TABLE_START = "<!-- module-table:start -->"
TABLE_END = "<!-- module-table:end -->"


def write_readme_table(readme: Path | None = None) -> Path:
    """Rewrite the module table between the markers in ``notebooks/README.md`` from the catalogue."""
    readme = readme or paths.notebooks_dir() / "README.md"
    text = readme.read_text()
    head, _, rest = text.partition(TABLE_START)
    _, _, tail = rest.partition(TABLE_END)
    readme.write_text(f"{head}{TABLE_START}\n{module_table(markdown=True)}\n{TABLE_END}{tail}")
    return readme


if __name__ == "__main__":  # python -m mlops_course.course.lessons: refresh notebooks/README.md
    print(f"updated {write_readme_table().relative_to(paths.REPO_ROOT)}")
