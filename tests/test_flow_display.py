"""Display helpers for flows: time line, overlap, source and cron dates (no Prefect server needed)."""

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from mlops_course import flow_display, orchestration

T0 = datetime(2011, 5, 1, 6, 0, tzinfo=UTC)


def table(spans, states=None, attempts=None):
    """A task_runs-shaped table: one (start offset, end offset) in seconds per task run."""
    rows = []
    for i, (begin, end) in enumerate(spans):
        rows.append({"task": f"t{i}", "state": (states or ["Completed"] * len(spans))[i],
                     "attempts": (attempts or [1] * len(spans))[i],
                     "start": None if begin is None else T0 + timedelta(seconds=begin),
                     "end": None if end is None else T0 + timedelta(seconds=end), "id": f"id-{i}"})
    return pd.DataFrame(rows, columns=orchestration.TASK_RUN_COLUMNS)


def test_overlap_of_parallel_and_sequential_runs():
    together = flow_display.overlap(table([(0, 0.31), (0.01, 0.32), (0.02, 0.30)]))
    assert together.all_at_once and together.runs == 3
    assert together.span_seconds == pytest.approx(0.32) and together.busy_seconds == pytest.approx(0.90)
    assert "all running at the same moment" in str(together) and "less than half" in str(together)
    in_a_row = flow_display.overlap(table([(0, 0.3), (0.3, 0.6), (0.6, 0.9)]))
    assert not in_a_row.all_at_once and "not all running at once" in str(in_a_row)
    assert "more than half" in str(in_a_row)
    pairwise = flow_display.overlap(table([(0, 0.5), (0.4, 0.9), (0.8, 1.2)]))  # each overlaps the next only
    assert not pairwise.all_at_once


def test_overlap_needs_finished_runs():
    with pytest.raises(ValueError, match="start and an end"):
        flow_display.overlap(table([(0, None)]))
    with pytest.raises(ValueError, match="start and an end"):
        flow_display.overlap(table([]))


def test_gantt_has_one_bar_per_task_run():
    import matplotlib.pyplot as plt

    runs = {"first": table([(0, 1.0), (1.0, 1.5)], attempts=[2, 1]),
            "second": table([(None, None), (0, 0.4)], states=["Cached", "Completed"])}
    fig = flow_display.plot_gantt(runs)
    ax = fig.axes[0]
    assert len(ax.patches) == 4 and all(bar.get_width() > 0 for bar in ax.patches)  # a cached run is a sliver
    assert [t.get_text() for t in ax.get_yticklabels()] == ["first: t0", "first: t1", "second: t0", "second: t1"]
    assert "Completed, 2 attempts" in [t.get_text() for t in ax.texts]
    plt.close(fig)
    with pytest.raises(ValueError, match="no task runs"):
        flow_display.plot_gantt({})


def test_source_drops_the_docstring_only():
    text = flow_display.source(orchestration.validate_data)
    assert text.startswith("@task(") and '"""' not in text and "pipeline.validate(" in text
    assert '"""' in flow_display.source(orchestration.validate_data, docstring=True)


def test_next_run_times_follow_the_cron_string():
    start = datetime(2011, 12, 31, tzinfo=UTC)
    got = flow_display.next_run_times("0 6 1 * *", start, n=3)
    assert [d.isoformat() for d in got] == ["2012-01-01T06:00:00+00:00", "2012-02-01T06:00:00+00:00",
                                            "2012-03-01T06:00:00+00:00"]
    naive = flow_display.next_run_times("0 6 1 * *", datetime(2011, 12, 31), n=1)
    assert naive == got[:1]  # a start without a timezone is read as UTC
    with pytest.raises(ValueError):
        flow_display.next_run_times("6 30 * * 1", start)
