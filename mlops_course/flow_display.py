"""Showing flows in a lesson: a task-run time line, a task's source, the dates a cron schedule fires.

These helpers only display what :mod:`mlops_course.orchestration` runs and records; they start nothing:

- :func:`plot_gantt`: one bar per task run, from the start and end times the Prefect API recorded.
- :func:`overlap`: whether task runs were running at the same time, from the same times.
- :func:`source`: a task's or flow's code, decorators included, without its docstring.
- :func:`next_run_times`: the next dates of a cron schedule, computed by Prefect's own schedule model.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pandas as pd

STATE_COLOURS = {"Completed": "#55A868", "Cached": "#64B5CD", "Failed": "#C44E52"}


def plot_gantt(runs: Mapping[str, pd.DataFrame], title: str = "Task runs, each flow run from its own start"):
    """One horizontal bar per task run, from its start to its end, coloured by final state.

    ``runs`` maps a label (e.g. the flow run's name) to its ``orchestration.task_runs`` table. Each flow run
    is drawn from its own first task start, so runs can be compared; a bar is labelled with its state and,
    when the task needed more than one attempt, the number of attempts.
    """
    import matplotlib.pyplot as plt

    rows = []
    for label, frame in runs.items():
        starts = [t for t in frame["start"] if t is not None and not pd.isna(t)]
        origin = min(starts) if starts else None
        for r in frame.itertuples():
            begin = (r.start - origin).total_seconds() if origin is not None and not pd.isna(r.start) else 0.0
            length = ((r.end - r.start).total_seconds()
                      if not pd.isna(r.start) and not pd.isna(r.end) else 0.0)
            rows.append((f"{label}: {r.task}", begin, max(length, 0.0), r.state, int(r.attempts or 1)))
    if not rows:
        raise ValueError("no task runs to plot: pass {'flow run label': task_runs(...)}")
    span = max(begin + length for _, begin, length, _, _ in rows) or 1.0
    fig, ax = plt.subplots(figsize=(7.5, 0.32 * len(rows) + 1.3))
    for i, (_, begin, length, state, attempts) in enumerate(rows):
        ax.barh(i, max(length, span * 0.006), left=begin, color=STATE_COLOURS.get(state, "#8172B2"))
        note = state + (f", {attempts} attempts" if attempts > 1 else "")
        ax.text(begin + max(length, span * 0.006) + span * 0.01, i, note, va="center", fontsize=8)
    ax.set_yticks(range(len(rows)), [name for name, *_ in rows])
    ax.invert_yaxis()
    ax.set_xlim(0, span * 1.25)
    ax.set_xlabel("seconds since the flow run's first task started")
    ax.set_title(title)
    fig.tight_layout()
    return fig


@dataclass(frozen=True)
class Overlap:
    """How a set of task runs shared the clock (from their recorded start and end times)."""

    runs: int
    all_at_once: bool  # some moment when every one of them was running
    span_seconds: float  # first start to last end
    busy_seconds: float  # the runs' durations added up: what one after another would take

    def __str__(self) -> str:
        together = "all running at the same moment" if self.all_at_once else "not all running at once"
        faster = "less" if self.span_seconds < self.busy_seconds / 2 else "more"
        return (f"{self.runs} task runs, {together}; from the first start to the last end took {faster} than "
                f"half of their durations added up")


def overlap(tasks: pd.DataFrame) -> Overlap:
    """Did the task runs of a ``task_runs`` table run at the same time? (Stated without clock readings.)"""
    if tasks.empty or tasks["start"].isna().any() or tasks["end"].isna().any():
        raise ValueError("every task run needs a start and an end time: pass a table of finished task runs")
    span = (tasks["end"].max() - tasks["start"].min()).total_seconds()
    busy = sum((end - start).total_seconds() for start, end in zip(tasks["start"], tasks["end"]))
    return Overlap(len(tasks), bool(tasks["start"].max() < tasks["end"].min()), span, busy)


def source(obj: Any, docstring: bool = False) -> str:
    """The source code of a task, flow or function (decorators included), by default without its docstring."""
    fn = getattr(obj, "fn", obj)
    text = textwrap.dedent(inspect.getsource(fn))
    if docstring:
        return text
    node = ast.parse(text).body[0]
    body = getattr(node, "body", [])
    if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
            and isinstance(body[0].value.value, str):
        lines = text.splitlines()
        doc = body[0]
        text = "\n".join(lines[:doc.lineno - 1] + lines[doc.end_lineno:])
    return text.rstrip() + "\n"


def next_run_times(cron: str, start: datetime, n: int = 3, tz: str = "UTC") -> list[datetime]:
    """The next ``n`` times a cron schedule fires after ``start``, computed by Prefect's schedule model.

    Raises ``ValueError`` for a string that is not a valid cron schedule.
    """
    from prefect.server.schemas.schedules import CronSchedule
    from prefect.utilities.asyncutils import run_coro_as_sync

    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    schedule = CronSchedule(cron=cron, timezone=tz)
    return [datetime.fromtimestamp(d.timestamp(), tz=UTC) for d in
            run_coro_as_sync(schedule.get_dates(n=n, start=start))]
