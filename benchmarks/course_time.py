"""Wall time and peak memory of every lesson, next to the kernel-start + import floor, against the budgets.

    .venv/bin/python benchmarks/course_time.py [LESSON ...] [--interval 0.1] [--floor-runs 2] [--floor-only]

Each lesson runs through ``runner.execute`` (papermill, ``python3`` kernel, cwd ``notebooks/``), as
``make run`` does, with its workspace in a temporary folder. While it runs, a thread samples every process
below this one (the kernel and every server, worker or tool it starts) and sums their PSS; the peak of that
sum is the lesson's memory. The floor is a one-cell notebook that does what every lesson's setup cell does
(import the course helper, mlflow, pandas, numpy, scikit-learn and matplotlib, then ``setup_lesson``),
executed the same way, before and after the lessons; the faster of those runs is the floor.

Prints what ran, on what machine, and the figures; writes them to build/bench/course_time.md too. Exits 1
when a lesson (or the floor) fails; a lesson over budget is reported, not an error.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from machine import commit, describe
from proctree import TreeSampler, stop_leftovers

from mlops_course import paths
from mlops_course.course import lessons, runner
from mlops_course.course.lessons import LessonInfo

# Time budgets as multiples of the floor measured in the same run (machines differ, ratios hold). Lessons
# 00-08: the seconds budgets of issues 3-12 divided by the 4.7 s floor of the machine they were set on.
BUDGETS = {"00": 3.2, "01": 5.3, "02": 5.3, "03": 5.3, "04": 6.4, "05": 6.4, "06": 5.3, "07": 9.6, "08": 12.8,
           "09": 15.0}
TOTAL_LESSONS = ("00", "01", "02", "03", "04", "05", "06", "07", "08")  # what TOTAL_BUDGET covers
TOTAL_BUDGET = 32.0  # lessons 00-08 together: 150 s at that 4.7 s floor
MEMORY_BUDGETS_MIB = {"09": 2048}  # per lesson where it differs from the default: 09 runs seven servers
MEMORY_BUDGET_MIB = 1536  # 1.5 GiB of PSS for any one lesson
FLOOR_NUMBER = "99"  # the floor notebook's lesson number: its own workspace, never a real lesson's

FLOOR_SOURCE = f'''\
from mlops_course import setup_lesson

import matplotlib.pyplot as plt
import mlflow
import numpy as np
import pandas as pd
from sklearn.ensemble import RandomForestRegressor
from sklearn.metrics import mean_absolute_error

lesson = setup_lesson("{FLOOR_NUMBER}")
'''


@dataclass(frozen=True)
class FloorLesson(LessonInfo):
    """A lesson-shaped notebook outside ``notebooks/`` (``runner.execute`` only needs path and filename)."""

    folder: Path = Path()

    @property
    def path(self) -> Path:
        return self.folder / self.filename


def write_floor(folder: Path) -> FloorLesson:
    """Write the one-cell floor notebook into ``folder``."""
    import nbformat

    info = FloorLesson(FLOOR_NUMBER, f"{FLOOR_NUMBER}-Kernel_Start_and_Imports", 0, "", "the floor",
                       folder=folder)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(FLOOR_SOURCE)])
    nb.metadata["kernelspec"] = {"name": runner.KERNEL, "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nbformat.write(nb, info.path)
    return info


@dataclass
class Row:
    name: str
    number: str
    status: str
    seconds: float
    peak_mib: float
    at_peak: str
    samples: int
    cells: list[tuple[int | None, float]] = field(default_factory=list)
    left_running: list[str] = field(default_factory=list)
    error: str = ""

    @property
    def slowest_cell(self) -> str:
        if not self.cells:
            return "-"
        count, seconds = max(self.cells, key=lambda c: c[1])
        return f"[{count if count is not None else '?'}] {seconds:.1f}"


def cell_seconds(notebook: Path) -> list[tuple[int | None, float]]:
    """(execution count, seconds) of each executed code cell, from papermill's metadata."""
    import nbformat

    try:
        nb = nbformat.read(notebook, as_version=4)
    except (OSError, ValueError):
        return []
    return [(cell.get("execution_count"), float(cell.metadata["papermill"]["duration"]))
            for cell in nb.cells
            if cell.cell_type == "code" and cell.metadata.get("papermill", {}).get("duration") is not None]


def measure(info: LessonInfo, out_dir: Path, interval: float, overhead: list[float]) -> Row:
    """Run one notebook through the course runner while sampling the memory of the process tree."""
    with TreeSampler(interval) as sampler:
        result = runner.execute(info, out_dir, progress=False)
    overhead.append(sampler.cpu_seconds)
    left = stop_leftovers(sampler.new_processes())
    return Row(info.stem, info.number, result.status, result.seconds, sampler.peak_bytes / 2**20,
               sampler.describe_peak(), sampler.samples, cell_seconds(result.output), left, result.error)


def mark(value: float, budget: float | None, unit: str = "") -> str:
    if budget is None:
        return "-"
    return f"{budget:g}{unit}: {'within' if value <= budget else '**OVER**'}"


def table(rows: list[Row], floor: float | None, full_course: bool) -> list[str]:
    """The Markdown table: one row per notebook run (floor rows marked), then the course total."""
    lines = [("| notebook | status | seconds | x floor | time budget (x floor) | slowest cell (s) | peak PSS (MiB) "
              "| largest at peak (MiB) | memory budget (MiB) | left running |"),
             "|---|---|---:|---:|---|---|---:|---|---|---|"]
    for r in rows:
        is_floor = r.number == FLOOR_NUMBER
        time_budget = None if is_floor else BUDGETS.get(r.number)
        memory_budget = None if is_floor else MEMORY_BUDGETS_MIB.get(r.number, MEMORY_BUDGET_MIB)
        ratio = f"{r.seconds / floor:.1f}x" if floor else "n/a"
        within = mark(r.seconds / floor, time_budget, "x") if floor else "no floor"
        lines.append(f"| {'floor: ' if is_floor else ''}{r.name} | {r.status} | {r.seconds:.1f} | {ratio} "
                     f"| {within} | {r.slowest_cell} | {r.peak_mib:.0f} | {r.at_peak} "
                     f"| {mark(r.peak_mib, memory_budget)} | {', '.join(r.left_running) or 'none'} |")
    done = [r for r in rows if r.number != FLOOR_NUMBER]
    if done:
        total = sum(r.seconds for r in done)
        ok = sum(r.status == "ok" for r in done)
        first = sum(r.seconds for r in done if r.number in TOTAL_LESSONS)
        if full_course and floor:
            budget = f"00-08: {first / floor:.1f}x of {mark(first / floor, TOTAL_BUDGET, 'x')}"
        else:
            budget = "applies to the full course"
        ratio = f"{total / floor:.1f}x" if floor else ""
        lines.append(f"| total | {ok}/{len(done)} ok | {total:.1f} | {ratio} | {budget} | "
                     f"| {max(r.peak_mib for r in done):.0f} (max) | | | |")
    return lines


def notes(floors: list[Row], rows: list[Row], interval: float, overhead: float) -> list[str]:
    """How to read the table: the floor and its split, the memory metric and the sampler's cost, budgets."""
    good = [r.seconds for r in floors if r.status == "ok"]
    if good:
        floor_text = (f"{min(good):.1f} s, the faster of {len(floors)} run(s) "
                      f"({', '.join(f'{r.seconds:.1f} s' for r in floors)}); of each run, "
                      f"{', '.join(f'{sum(t for _, t in r.cells):.1f} s' for r in floors)} went to the setup "
                      "cell and the rest to starting the kernel")
    else:
        floor_text = "not measured (the floor notebook failed)"
    wall = sum(r.seconds for r in rows + floors)
    samples = sum(r.samples for r in rows + floors)
    return [
        (f"- Floor (kernel start + the setup cell's imports + `setup_lesson`): {floor_text}. `x floor` is a "
         "notebook's seconds divided by the floor; `slowest cell` is [execution count] and seconds of the "
         "notebook's slowest cell (papermill's cell timing)."),
        ("- Memory: PSS (proportional set size: a page shared by n processes counts 1/n in each) summed over "
         "every process below the benchmark (the kernel and all it starts; orphans are adopted so they still "
         f"count), sampled every {interval:g} s: {samples} samples; the sampler used {overhead:.1f} s of CPU "
         f"({100 * overhead / max(wall, 1e-9):.0f} % of one core)."),
        (f"- Budgets: multiples of the floor per lesson as listed, lessons 00-08 together under {TOTAL_BUDGET:g}x, "
         f"peak PSS under {MEMORY_BUDGET_MIB} MiB (1.5 GiB) for any lesson unless listed. Over budget is reported, not an "
         "error; a failed notebook makes the script exit 1."),
        ("- `left running`: processes the notebook started that were still alive 5 s after it ended (the "
         "benchmark stops them)."),
    ]


def floor_only(runs: int) -> int:
    """Print ``floor: S s`` (the faster of ``runs`` floor runs); exit 1 when the floor notebook fails."""
    with tempfile.TemporaryDirectory(prefix="course-floor-") as tmp:
        os.environ["MLOPS_COURSE_WORKSPACE"] = str(Path(tmp) / "workspaces")
        info = write_floor(Path(tmp))
        results = [runner.execute(info, Path(tmp) / "out", progress=False) for _ in range(runs)]
    good = [r.seconds for r in results if r.status == "ok"]
    if not good:
        print(f"floor: failed ({results[0].error})")
        return 1
    print(f"floor: {min(good):.1f} s (the faster of {', '.join(f'{r.seconds:.1f}' for r in results)} s)")
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("lessons", nargs="*", help="lesson numbers or file names (default: every lesson)")
    parser.add_argument("--interval", type=float, default=0.1, help="seconds between memory samples")
    parser.add_argument("--floor-runs", type=int, default=2, choices=(1, 2),
                        help="floor before the lessons, or before and after them (default 2)")
    parser.add_argument("--floor-only", action="store_true",
                        help="measure only the floor (for setup_time.sh: the suite's time as a multiple of it)")
    args = parser.parse_args(argv)
    if args.floor_only:
        return floor_only(args.floor_runs)
    try:
        chosen = [lessons.find(a) for a in args.lessons] if args.lessons else list(lessons.CATALOGUE)
    except lessons.UnknownLessonError as exc:
        parser.error(str(exc))

    started = time.strftime("%Y-%m-%d %H:%M")
    host = describe()  # before anything runs, so the load average is the machine's, not ours
    command = " ".join(["benchmarks/course_time.py", *argv])
    print(f"course_time: {len(chosen)} lesson(s) and the floor on {host}", flush=True)
    out_dir = paths.build_dir() / "bench" / "executed"
    rows: list[Row] = []
    floors: list[Row] = []
    overhead: list[float] = []
    with tempfile.TemporaryDirectory(prefix="course-time-") as tmp:
        os.environ["MLOPS_COURSE_WORKSPACE"] = str(Path(tmp) / "workspaces")  # inherited by every kernel
        floor_nb = write_floor(Path(tmp))
        plan = [floor_nb, *chosen] + ([floor_nb] if args.floor_runs == 2 else [])
        for info in plan:
            row = measure(info, out_dir, args.interval, overhead)
            (floors if info is floor_nb else rows).append(row)
            print(f"  {row.name}: {row.status}, {row.seconds:.1f} s, peak PSS {row.peak_mib:.0f} MiB",
                  flush=True)

    good = [r.seconds for r in floors if r.status == "ok"]
    full_course = {i.number for i in chosen} >= set(BUDGETS)
    lines = [f"# Course time and memory ({started})", "",
             f"Command: `{command}` (course commit {commit()})", "",
             f"Machine: {host}", "",
             (f"Ran: {len(chosen)} lesson(s) through `runner.execute` (papermill, kernel `{runner.KERNEL}`), "
              "one at a time, workspaces in a temporary folder; the floor notebook "
              f"{'before and after them' if args.floor_runs == 2 else 'before them'}."), "",
             *table(floors[:1] + rows + floors[1:], min(good) if good else None, full_course), "",
             *notes(floors, rows, args.interval, sum(overhead))]
    for r in rows + floors:
        if r.status != "ok":
            lines.append(f"- {r.name} failed in {r.error} (executed copy: {out_dir / (r.name + '.ipynb')})")
    text = "\n".join(lines)
    print(text)
    out = paths.build_dir() / "bench" / "course_time.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")
    return 0 if all(r.status == "ok" for r in rows + floors) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
