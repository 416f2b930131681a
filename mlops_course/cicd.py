"""Tests for the bike model as a CI job runs them: a naive baseline, a pytest suite written to disk, a runner.

Lesson 06 writes the suite into its workspace with :func:`write_test_suite` (real ``test_*.py`` files that read
their inputs from environment variables, as a CI job passes them), then runs it with :func:`run_pytest` in a
subprocess and shows pytest's final counts line. The workflow that runs the same suite in GitHub Actions is
in ``cicd_workflow.py``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from mlops_course import train_config

YEAR = 2011  # the year of data/Bikeshare.csv: its "day" column counts days from 1 January 2011
SUITE_FILES = ("pytest.ini", "conftest.py", "test_data.py", "test_model.py", "test_serving.py")


# ---------------------------------------------------------------- baseline and time stamps
def _need(df: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise KeyError(f"{what} needs the column(s) {missing}; got {list(df.columns)}")


def hour_stamps(df: pd.DataFrame, year: int = YEAR) -> pd.Series:
    """The date and hour of every row, from the day-of-year column ``day`` (1 = 1 January) and ``hr``."""
    _need(df, ["day", "hr"], "hour_stamps")
    start = pd.Timestamp(year=year, month=1, day=1)
    days = pd.to_timedelta(df["day"].astype("int64") - 1, unit="D")
    return start + days + pd.to_timedelta(df["hr"].astype("int64"), unit="h")


def same_hour_last_week(df: pd.DataFrame, lag_days: int = 7) -> pd.Series:
    """The naive forecast "as many bikers as in the same hour ``lag_days`` days earlier", for every row.

    Looks the earlier hour up in ``df`` itself, so pass the history too (e.g. the whole table, then select the
    test month). Rows whose earlier hour is not in ``df`` (the first week, hours missing from the data) get NaN.
    """
    _need(df, ["day", "hr", "bikers"], "same_hour_last_week")
    if lag_days < 1:
        raise ValueError(f"lag_days must be at least 1; got {lag_days}")
    if df.duplicated(["day", "hr"]).any():
        raise ValueError("same_hour_last_week needs one row per hour: some (day, hr) pairs appear twice")
    counts = df.set_index(["day", "hr"])["bikers"].astype("float64")
    earlier = pd.MultiIndex.from_arrays([df["day"] - lag_days, df["hr"]])
    return pd.Series(counts.reindex(earlier).to_numpy(), index=df.index, name="same_hour_last_week")


# ---------------------------------------------------------------- the suite, as files
# The files live in mlops_course/templates/ci_suite/ (linted there like the rest of the package);
# conftest.py's defaults are filled in from train_config.CI.
def write_test_suite(folder: os.PathLike | str, files: Iterable[str] = SUITE_FILES) -> list[Path]:
    """Write the bike model's pytest suite into ``folder`` (created if needed) and return the file paths."""
    from mlops_course import templates

    folder = Path(folder)
    unknown = [name for name in files if name not in SUITE_FILES]
    if unknown:
        raise ValueError(f"no suite file(s) {unknown}; choose from {list(SUITE_FILES)}")
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name in files:
        if name == "conftest.py":  # its defaults: the CI window, when no job variable names one
            text = templates.render(f"ci_suite/{name}", train_months=",".join(train_config.CI.train_months),
                                    test_month=train_config.CI.test_month)
        else:
            text = templates.read(f"ci_suite/{name}")
        (folder / name).write_text(text)
        written.append(folder / name)
    return written


def suite_env(*, data_file: str, model_file: str | Sequence[str], train_months: Sequence[str], test_month: str,
              as_of: str, min_skill: float = 0.05, max_age_days: int = 2) -> dict[str, str]:
    """The environment variables the suite reads, as a CI job's ``env:`` block would set them.

    ``model_file`` may name several models (a list, or paths joined by commas): the model tests then run once
    for each, e.g. for the new candidate and for the champion in production.
    """

    months = [*train_months, test_month]
    problem = train_config.month_problem(months)
    if problem:
        raise ValueError(problem)
    pd.Timestamp(as_of)  # raises on a date pandas cannot read
    models = str(model_file) if isinstance(model_file, (str, os.PathLike)) else ",".join(map(str, model_file))
    if not models or "" in models.split(","):
        raise ValueError(f"model_file names no model file: {model_file!r}")
    return {"BIKE_DATA": str(data_file), "BIKE_MODEL": models,
            "BIKE_TRAIN_MONTHS": ",".join(train_months), "BIKE_TEST_MONTH": test_month,
            "BIKE_AS_OF": str(as_of), "BIKE_MIN_SKILL": str(min_skill), "BIKE_MAX_AGE_DAYS": str(max_age_days)}


# ---------------------------------------------------------------- running pytest
_FINAL = re.compile(r"^=*\s*(?P<counts>.+?) in [\d.]+s(?: \([\d:]+\))?\s*=*$")
_COUNT = re.compile(r"(\d+) (passed|failed|errors?|skipped|deselected|xfailed|xpassed|warnings?)")


@dataclass(frozen=True)
class PytestResult:
    """What a pytest run reported: return code, the final counts line without its duration, failures."""

    command: list[str]
    returncode: int
    summary: str
    failures: list[str] = field(default_factory=list)
    output: str = ""

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def count(self, outcome: str) -> int:
        """How many tests ended with ``outcome`` ("passed", "failed", "error", "skipped", ...)."""
        singular = {"errors": "error", "warnings": "warning"}
        found = {singular.get(kind, kind): int(n) for n, kind in _COUNT.findall(self.summary)}
        return found.get(singular.get(outcome, outcome), 0)

    def __str__(self) -> str:
        lines = [self.summary, *self.failures]
        if self.returncode not in (0, 1):  # usage error, interrupted, nothing collected: show why
            lines.append("\n".join(self.output.strip().splitlines()[-15:]))
        return "\n".join(lines)


def _clean_env(extra: Mapping[str, str] | None) -> dict[str, str]:
    # Jupyter kernels set FORCE_COLOR: drop it, or pytest's lines arrive wrapped in colour codes.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTEST_", "COV_CORE")) and k not in ("FORCE_COLOR", "CLICOLOR_FORCE", "PY_COLORS")}
    # No third-party plugins (faster start, same output everywhere); wide lines so messages are not cut.
    env.update({"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1", "COLUMNS": "240", "PYTHONDONTWRITEBYTECODE": "1",
                "NO_COLOR": "1"})
    env.update({k: str(v) for k, v in (extra or {}).items()})
    return env


def run_pytest(*targets: str, cwd: os.PathLike | str | None = None, env: Mapping[str, str] | None = None,
               timeout: float = 300) -> PytestResult:
    """Run ``python -m pytest -q -p no:cacheprovider -rfE <targets>`` in a subprocess; never raises on failures.

    ``env`` adds variables (the suite's inputs). The result keeps pytest's final counts line with the
    duration removed ("7 passed") and the one-line reason of each failed test.
    """
    if not targets:
        raise ValueError("name at least one test file or folder to run, e.g. run_pytest('ci_tests')")
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfE", "--tb=no", *targets]
    try:
        proc = subprocess.run(command, cwd=cwd, env=_clean_env(env), capture_output=True, text=True,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return PytestResult(command, -1, f"pytest did not finish within {timeout:.0f} s")
    output = proc.stdout + proc.stderr
    lines = [line.strip() for line in proc.stdout.splitlines() if line.strip()]
    final = next((m.group("counts") for m in map(_FINAL.match, reversed(lines)) if m), None)
    summary = final or f"pytest exited with code {proc.returncode} and no summary line"
    failures = [line for line in lines if line.startswith(("FAILED ", "ERROR "))]
    return PytestResult(command, proc.returncode, summary, failures, output)
