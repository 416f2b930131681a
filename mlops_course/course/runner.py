"""Execute lessons with papermill (``python3`` kernel, cwd ``notebooks/``) and summarise the results."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlops_course import paths
from mlops_course.course import lab
from mlops_course.course.lessons import LessonInfo

KERNEL = "python3"


class ParameterError(ValueError):
    """A ``-p NAME=VALUE`` that is malformed or names no parameter of the lesson."""


@dataclass
class LessonResult:
    lesson: LessonInfo
    status: str  # "ok" or "failed"
    seconds: float
    output: Path
    error: str = ""


def parse_parameters(items: Sequence[str]) -> dict[str, Any]:
    """``["n_estimators=10", "months=[Jan, Feb]"]`` -> values typed as YAML (int, float, list, str)."""
    import yaml

    params: dict[str, Any] = {}
    for item in items:
        name, sep, raw = item.partition("=")
        name = name.strip()
        if not sep or not name.isidentifier():
            raise ParameterError(f"bad parameter {item!r}: write it as NAME=VALUE, e.g. -p n_estimators=20")
        try:
            params[name] = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            params[name] = raw
    return params


def lesson_parameters(notebook: Path) -> dict[str, Any]:
    """Names and defaults of the ``parameters``-tagged cell of a notebook."""
    import papermill as pm

    return {name: spec["default"] for name, spec in pm.inspect_notebook(str(notebook)).items()}


def check_parameters(lesson: LessonInfo, params: Mapping[str, Any]) -> None:
    """Raise ``ParameterError`` when a parameter is not one the lesson declares."""
    known = lesson_parameters(lesson.path)
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise ParameterError(f"lesson {lesson.number} has no parameter(s) {unknown}; "
                             f"its parameters are {sorted(known)}")


def _describe_failure(exc: Exception) -> str:
    ename = getattr(exc, "ename", type(exc).__name__)
    evalue = getattr(exc, "evalue", str(exc))
    cell = getattr(exc, "exec_count", None)
    where = f"cell [{cell}]" if cell is not None else "a cell"
    return f"{where}: {ename}: {evalue}".strip()


def execute(lesson: LessonInfo, out_dir: Path, params: Mapping[str, Any] | None = None,
            progress: bool = True) -> LessonResult:
    """Run one lesson to ``out_dir/<file>``; failures are caught and described, not raised."""
    import papermill as pm

    out_dir.mkdir(parents=True, exist_ok=True)
    output = out_dir / lesson.filename
    start = time.perf_counter()
    try:
        # The output is written once at the end (also when a cell fails), not after every cell: those
        # rewrites of a notebook full of figures cost about half a second of CPU per lesson.
        pm.execute_notebook(str(lesson.path), str(output), parameters=dict(params or {}), kernel_name=KERNEL,
                            cwd=str(paths.notebooks_dir()), progress_bar=progress, log_output=False,
                            request_save_on_cell_execute=False, config=lab.kernel_config())
    except Exception as exc:  # noqa: BLE001 - papermill raises PapermillExecutionError; kernels can die in other ways
        return LessonResult(lesson, "failed", time.perf_counter() - start, output, _describe_failure(exc))
    return LessonResult(lesson, "ok", time.perf_counter() - start, output)


def run(lessons: Sequence[LessonInfo], out_dir: Path | None = None, params: Mapping[str, Any] | None = None,
        progress: bool = True) -> list[LessonResult]:
    """Execute lessons in order with a progress bar over lessons; return one result each."""
    from tqdm.auto import tqdm

    out_dir = out_dir or paths.build_dir() / "executed"
    params = dict(params or {})
    results = []
    bar = tqdm(lessons, desc="lessons", unit="lesson", disable=not progress)
    for lesson in bar:
        bar.set_postfix_str(lesson.number)
        known = lesson_parameters(lesson.path)
        own = {k: v for k, v in params.items() if k in known}
        results.append(execute(lesson, out_dir, own, progress))
    bar.close()
    return results


def summary_table(results: Sequence[LessonResult]) -> str:
    """Lesson, status and seconds per lesson, the total, and each failure's cell and error."""
    width = max([len(r.lesson.stem) for r in results] + [6])
    lines = [f"{'lesson':<{width}}  {'status':<6}  {'seconds':>7}"]
    for r in results:
        lines.append(f"{r.lesson.stem:<{width}}  {r.status:<6}  {r.seconds:>7.1f}")
    total = sum(r.seconds for r in results)
    failed = [r for r in results if r.status != "ok"]
    lines.append(f"{'total':<{width}}  {f'{len(results) - len(failed)}/{len(results)}':<6}  {total:>7.1f}")
    for r in failed:
        lines.append(f"\n{r.lesson.filename} failed in {r.error}\n  full output: {r.output}")
    return "\n".join(lines)


VOLATILE_NOTEBOOK_KEYS = ("papermill",)
VOLATILE_CELL_KEYS = ("papermill", "execution")


def strip_volatile(path: Path) -> None:
    """Remove run-specific metadata (papermill timings, execution timestamps); keep outputs and counts."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    for key in VOLATILE_NOTEBOOK_KEYS:
        nb.metadata.pop(key, None)
    nb.metadata.get("language_info", {}).pop("version", None)
    for cell in nb.cells:
        for key in VOLATILE_CELL_KEYS:
            cell.metadata.pop(key, None)
    nbformat.write(nb, path)


def refresh(lesson: LessonInfo, progress: bool = True) -> LessonResult:
    """Re-execute a lesson and store its outputs in ``notebooks/`` (only when the run succeeded)."""
    import shutil
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        result = execute(lesson, Path(tmp), progress=progress)
        if result.status == "ok":
            strip_volatile(result.output)
            shutil.copyfile(result.output, lesson.path)
        result.output = lesson.path
    return result
