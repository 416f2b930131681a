"""Reliability suite, failure half (issue 12): lessons that fail or are killed leave nothing behind.

Same machinery as ``tests/test_reliability.py`` (a network namespace with only loopback, the network audit,
the overlay over the repository, a fresh HOME; see ``lesson_harness``):

- injected failure: for each lesson that starts a server, a copy in ``tmp_path`` with a cell
  ``raise RuntimeError("injected")`` right after the cell that starts it must end with status ``failed``,
  the error naming the injected failure, and no process, listening port or stray file left behind;
- interrupted kernel: lesson 04 is run cell by cell, its kernel SIGKILLed right after both services
  started; the services must die with it, and the lesson then runs again in full, cleanly, with outputs
  nbval accepts.

It is a separate file so that ``pytest -n 2 --dist loadfile`` can run it next to the per-lesson runs.
"""

import nbformat
import pytest
from conftest import NOTEBOOKS
from reliability import lesson_harness as harness
from reliability.lesson_harness import font_cache  # noqa: F401 - a fixture

# Per lesson: text of the cell that starts its (first) servers, and what the started servers' command lines
# contain (read from the audit's process log, so the failure is known to come after they started).
SERVER_CELLS = {
    "02": ("tracking_server(", ["mlflow_launch server"]),  # started from a thread in the setup cell
    # mlflow models serve starts in a background thread in section 2, the course service in section 4.
    "04": ("svc = serving.start_service(", ["mlops_course.serving", "models serve"]),
    "05": ("start_service(", ["mlops_course.serving"]),
    "07": ("PrefectServer(", ["prefect server start"]),
    # Prefect starts in the setup cell; failing after the service starts leaves both of them running.
    "08": ("start_service(", ["prefect server start", "mlops_course.serving"]),
    # PostgreSQL, the S3 store, the MLflow server and the Prefect server start in section 1, the replicas and the
    # worker in section 4; failing right after the worker starts leaves all of them. Only Python processes are in
    # the audit's log, so PostgreSQL is checked by the leftover checks alone.
    "09": ("prefect_server.worker(", ["moto_server", "mlflow_launch server", "mlops_course.serving",
                                      "prefect server start", "prefect worker start"]),
}
INJECTED = 'raise RuntimeError("injected")'


def lesson_file(number):
    found = sorted(NOTEBOOKS.glob(f"{number}-*.ipynb"))
    assert len(found) == 1, f"expected one lesson {number} in notebooks/, found {found}"
    return found[0]


def inject_failure(source, marker, folder):
    """A copy of lesson ``source`` in ``folder`` with the failing cell after the first cell containing
    ``marker``; fails the test when no cell contains it (the lesson changed: update SERVER_CELLS)."""
    nb = nbformat.read(source, as_version=4)
    at = next((i for i, c in enumerate(nb.cells) if c.cell_type == "code" and marker in c.source), None)
    if at is None:
        pytest.fail(f"{source.stem}: no code cell contains {marker!r}; update SERVER_CELLS", pytrace=False)
    nb.cells.insert(at + 1, nbformat.v4.new_code_cell(INJECTED))
    folder.mkdir()
    copy = folder / source.name
    nbformat.write(nb, copy)
    return copy


def started(run, expected):
    commands = [" ".join(rec["argv"]) for rec in run.processes]
    return [e for e in expected if not any(e in c for c in commands)]


@pytest.mark.parametrize("number", sorted(SERVER_CELLS))
def test_failed_lesson_leaves_nothing_behind(number, tmp_path, font_cache):
    marker, servers = SERVER_CELLS[number]
    source = lesson_file(number)
    copy = inject_failure(source, marker, tmp_path / "lesson")
    run = harness.run_notebook(copy, tmp_path / "run", font_cache)
    assert run.status == "failed", f"{source.stem}: the copy with the injected failure ended {run.status}"
    assert "RuntimeError: injected" in run.result["error"], f"{source.stem}: error {run.result['error']!r}"
    missing = started(run, servers)
    assert not missing, f"{source.stem}: no process {missing} started before the injected failure"
    problems = run.problems()
    assert not problems, f"{source.stem} (failed at the injected cell):\n  " + "\n  ".join(problems)


def test_killed_kernel_takes_its_servers_along_and_the_lesson_runs_again(tmp_path, font_cache, request):
    source = lesson_file("04")
    marker, servers = SERVER_CELLS["04"]
    run = harness.run_notebook(source, tmp_path, font_cache, interrupt_after=marker)
    killed = run.result["interrupted"]
    assert killed["killed_after_cell"], f"{source.stem}: no cell contains {marker!r}"
    children = " ".join(killed["kernel_children"])
    assert all(s in children for s in servers), f"servers not running when the kernel was killed: {children}"
    problems = [f"after the kill: {p}" for p in run.problems(killed)]
    assert run.status == "ok", f"{source.stem} failed when run again after the kill: {run.result['error']}"
    problems += run.problems() + harness.nbval_mismatches(run.result["output"], source, request.session)
    stale = list((tmp_path / "ws").glob(f"lesson-04-{killed['kernel_pid']}"))
    problems += [f"the killed kernel's workspace {p.name} was not cleared by the next run" for p in stale]
    assert not problems, f"{source.stem}, killed after cell [{killed['killed_after_cell']}]:\n  " + "\n  ".join(problems)
