"""The repository's own CI: the workflow passes GitHub's schema and runs as a non-root runner can; every version
cap in pyproject.toml says why it is there; the weekly job's helpers (.ci/) report what they should."""

import importlib.util
import re
import sys

import yaml
from conftest import REPO

from mlops_course import lint

WORKFLOW = REPO / ".github" / "workflows" / "ci.yml"


def load_script(name):
    spec = importlib.util.spec_from_file_location(name, REPO / ".ci" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


def test_workflow_passes_githubs_schema():
    verdict = lint.check_workflow(WORKFLOW)
    assert verdict.ok, str(verdict)


def steps(workflow):
    for name, job in workflow["jobs"].items():
        for step in job.get("steps", []):
            yield name, step


def test_make_test_runs_as_root_through_sudo_keeping_path():
    # GitHub's runners are not root; the suite needs root (network namespaces, apt-get for chromium/promtool).
    workflow = yaml.safe_load(WORKFLOW.read_text())
    runs = [(job, step["run"]) for job, step in steps(workflow) if "make test" in step.get("run", "")]
    assert {job for job, _ in runs} == {"test", "newest"}
    for job, command in runs:
        assert command.strip() == 'sudo -E env "PATH=$PATH" make test', f"{job}: {command!r}"


def test_weekly_jobs_cover_python_312_313_the_lock_diff_and_the_caps_probe():
    workflow = yaml.safe_load(WORKFLOW.read_text())
    jobs = workflow["jobs"]
    assert jobs["newest"]["strategy"]["matrix"]["python"] == ["3.11", "3.12"]
    assert any(s.get("with", {}).get("python-version") == "3.13" for _, s in steps({"jobs": {"r": jobs["newest-run"]}}))
    for name in ("newest", "newest-run"):
        assert any("moved_against_lock.py" in s.get("run", "") for _, s in steps({"jobs": {name: jobs[name]}}))
    assert jobs["caps"]["continue-on-error"] is True
    assert any("probe_caps.py --unit-tests" in s.get("run", "") for _, s in steps({"jobs": {"c": jobs["caps"]}}))


def test_every_cap_in_pyproject_carries_its_reason():
    lines = (REPO / "pyproject.toml").read_text().splitlines()
    for i, line in enumerate(lines):
        requirement = re.match(r'\s*"([^"]+)",', line)
        if requirement and re.search(r"<|!=", requirement[1]):
            comment = lines[i - 1].strip() if i else ""
            assert comment.startswith("#") and len(comment) > 20, f"{requirement[1]}: no reason above it"


def test_moved_against_lock_names_moves_additions_and_missing():
    moved = load_script("moved_against_lock")
    pins = {"pandas": "2.3.3", "numpy": "2.4.6", "gone": "1.0"}
    have = {"pandas": "3.1.1", "numpy": "2.4.6", "extra-pkg": "0.1", "pip": "26"}
    assert moved.moved(pins, have) == ["extra-pkg: not in the lock -> 0.1", "gone: 1.0 -> not installed",
                                       "pandas: 2.3.3 -> 3.1.1"]
    assert moved.canonical("Scikit_Learn") == "scikit-learn"
    assert moved.lock_pins(REPO / "requirements.lock")["mlflow"].startswith("3.")


def test_probe_verdicts_say_what_needs_doing():
    probe = load_script("probe_caps")
    assert not probe.cap("pandas<3", True, "evidently fails").needs_action
    assert probe.cap("pandas<3", False, "evidently imports").needs_action
    assert not probe.Verdict("fastapi<0.151", "upstream only", "works").needs_action
    assert probe.Verdict("course code under pandas 3", "fails", "2 failed").needs_action
    assert str(probe.cap("x<1", True, "why")) == "x<1: binds: why"


def test_probe_reads_prefects_own_fastapi_bound():
    probe = load_script("probe_caps")
    bound = probe.prefect_fastapi_bound()
    assert bound is not None and any(s.operator == "<" for s in bound.specifier)
