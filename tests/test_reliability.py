"""Reliability suite (issue 12): every lesson runs offline, leaves nothing behind, and repeats exactly.

Each lesson is executed once with papermill (``mlops_course.course.runner.execute``, as ``mlops-course run`` does)
by ``tests/reliability/run_lesson.py``, inside a fresh network namespace with only loopback up (root and
``unshare`` needed; CI runs as root). From that one run this module checks:

1. offline: no Python process of the run (kernel, servers, dvc, Prefect, ...) tried a non-loopback
   connect, bind, sendto or name lookup (``tests/reliability/sitecustomize.py`` logs them), and every Python
   process seen while it ran carried that audit hook;
2. repeatable: the executed notebook passes nbval's own output comparison against the stored lesson (with
   ``tests/sanitize.cfg``); then the learner edition (``editions.build("learner")``: solutions removed) runs in
   the same namespace and checkout, a second run: it must run top to bottom with every check saying
   ``[not yet]``, obey the same rules, and repeat the stored output of every cell before the first exercise;
3. clean: afterwards no child process is left (the runner is a child subreaper) and nothing listens in
   the namespace; while it ran, every listening socket (sampled every 0.2 s) was on 127.0.0.1;
4. contained: nothing was written in the run's fresh HOME but what Jupyter, IPython and matplotlib keep
   there (``lesson_harness.HOME_ALLOWED``), and nothing in the repository outside ``workspaces/``,
   ``build/`` and ``__pycache__``. The repository is seen through an overlay whose upper layer holds
   exactly what this run wrote (created, modified, touched or deleted), so files the other xdist worker
   writes at the same time are never attributed to this lesson, and this run never changes the checkout.

The run's environment is a learner's, not CI's: without make's telemetry switches and without the
CI/pytest markers with which MLflow silences its own telemetry (``lesson_harness.SWITCHES_TELEMETRY``), so
the lesson's own set-up has to turn every tool's telemetry off. Besides the Python audit, the namespace's
kernel counters of packets with no route catch native code (a C library resolving a telemetry host).

Failure injection and the killed-kernel check live in ``tests/reliability/test_reliability_failures.py``.
"""

import nbformat
import pytest
from conftest import LESSON_FILES
from reliability import lesson_harness as harness
from reliability.lesson_harness import font_cache  # noqa: F401 - a fixture

from mlops_course.course import editions


@pytest.mark.parametrize("path", LESSON_FILES, ids=[p.stem for p in LESSON_FILES])
def test_lesson_runs_offline_cleanly_and_repeatably(path, tmp_path, font_cache, request):
    learner = tmp_path / "learner-edition" / path.name
    learner.parent.mkdir()
    nbformat.write(editions.build("learner", path), learner)
    run = harness.run_notebook(path, tmp_path / "run", font_cache, learner=learner)
    assert run.status == "ok", f"{path.stem} failed offline in {run.result.get('error')}"
    executed = nbformat.read(run.result["output"], as_version=4)
    assert all(c.execution_count for c in executed.cells if c.cell_type == "code"), f"{path.stem}: unrun cells"
    assert run.audited, f"{path.stem}: no process loaded the network audit hook (PYTHONPATH not passed on?)"
    problems = run.problems() + harness.nbval_mismatches(run.result["output"], path, request.session)
    assert not problems, f"{path.stem}:\n  " + "\n  ".join(problems)

    # The learner edition, run second in the same checkout: top to bottom, every check says [not yet], the
    # same rules hold, and every cell before the first exercise repeats the stored output.
    second = run.result["learner"]
    assert second["status"] == "ok", f"{path.stem}, learner edition: failed in {second.get('error')}"
    ran = nbformat.read(second["output"], as_version=4)
    checks = [c for c in ran.cells if c.cell_type == "code" and c.source.lstrip().startswith("check(")]
    assert len(checks) >= 3, f"{path.stem}: the learner edition has {len(checks)} checks"
    for cell in checks:
        said = "".join(o.get("text", "") for o in cell.outputs)
        assert "[not yet]" in said and "[correct]" not in said, f"{path.stem}: {cell.source!r} printed {said!r}"
    problems = run.problems(second) + harness.nbval_mismatches(
        harness.before_exercises(ran, path, tmp_path / "learner-compared"), path, request.session)
    assert not problems, f"{path.stem}, learner edition:\n  " + "\n  ".join(problems)


def stored(source, text):
    cell = nbformat.v4.new_code_cell(source)
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=text)] if text else []
    return cell


def test_the_checks_catch_a_misbehaving_notebook(tmp_path, font_cache, request):
    # Every rule broken once, by a notebook run exactly like a lesson; each must be reported.
    stray = harness.REPO / "notebooks" / f"stray-{tmp_path.name}.txt"
    cells = [
        stored("import os, pathlib, socket, subprocess, sys, time", ""),
        stored("try:\n    socket.create_connection(('10.1.2.3', 80), timeout=2)\nexcept OSError:\n    print('offline')",
               "offline\n"),
        stored("_ = subprocess.run(['getent', 'hosts', 'example.org'], capture_output=True)", ""),  # native code: only counters see it
        stored("srv = socket.socket()\nsrv.bind(('0.0.0.0', 0))\nsrv.listen()\ntime.sleep(1)", ""),
        stored("orphan = subprocess.Popen(['sleep', '300'], start_new_session=True)\n"
               "_ = subprocess.run([sys.executable, '-I', '-c', 'import time; time.sleep(1)'])", ""),
        stored("_ = (pathlib.Path.home() / 'stray.txt').write_text('x')\n"
               f"_ = pathlib.Path({stray.name!r}).write_text('x')  # the working directory is notebooks/", ""),
        stored("print(f'on 127.0.0.1:{srv.getsockname()[1]}')", "on 127.0.0.1:1\n"),  # sanitized: accepted
        stored("print(3 + 4)", "8\n"),  # a real difference
    ]
    for number, cell in enumerate(cells, 1):
        cell.execution_count = number
    nb = nbformat.v4.new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                                         "language": "python"}})
    bad = tmp_path / "bad.ipynb"
    nbformat.write(nb, bad)
    run = harness.run_notebook(bad, tmp_path / "run", font_cache)
    assert run.status == "ok", run.result["error"]
    found = run.problems()
    expected = ["network: socket.connect ['10.1.2.3', 80]", "network: packets with no route",
                "not audited: Python process", "listening beyond 127.0.0.1 while running: 0.0.0.0:",
                "process left behind: pid", "written in HOME: stray.txt (new)",
                f"written in the repository: notebooks/{stray.name}"]
    missing = [e for e in expected if not any(line.startswith(e) for line in found)]
    assert not missing, f"not reported: {missing}; reported: {found}"
    assert any("sleep 300" in line for line in found if line.startswith("process left behind"))
    assert not stray.exists(), "the run wrote into the real checkout: the overlay did not hold it"
    mismatches = harness.nbval_mismatches(run.result["output"], bad, request.session)
    assert len(mismatches) == 1 and mismatches[0].startswith("cell [8]"), mismatches
