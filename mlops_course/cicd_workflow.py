"""The bike model's GitHub Actions workflow: generated, checked as YAML, and the step commands its jobs run.

``bike_workflow()`` returns the workflow text (lint -> tests -> train -> evaluate -> gate -> register -> build),
``trigger_env()`` the environment one trigger (a schedule, a dispatch payload, a manual run's inputs) gives it,
``validate_workflow()`` parses a workflow and checks its jobs, steps and order, and
``python -m mlops_course.cicd_workflow train|evaluate|gate|register`` are the commands its jobs call.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mlops_course import train_config

STRIP_ARGS = ("--keep-output --keep-count --keep-id "
              '--extra-keys "metadata.papermill cell.metadata.papermill cell.metadata.execution"')
# The workflow and its repeated step blocks are files: mlops_course/templates/bike-workflow.yml,
# workflow-setup-steps.yml and workflow-data-step.yml.
JOB_ORDER = ("lint", "tests", "train", "evaluate", "gate", "register", "build")
# Text each job must run (in a step's `run` or `uses`): what validate_workflow checks by default.
EXPECTED_STEPS: dict[str, tuple[str, ...]] = {
    "lint": ("actions/checkout", "ruff check", "nbstripout --verify"),
    "tests": ("actions/checkout", "pytest -q ci_tests/test_data.py"),
    "train": ("actions/checkout", "cicd_workflow train", "actions/upload-artifact"),
    "evaluate": ("actions/download-artifact", "pytest -q ci_tests/test_model.py", "cicd_workflow evaluate"),
    "gate": ("actions/download-artifact", "cicd_workflow gate"),
    "register": ("actions/download-artifact", "cicd_workflow register"),
    "build": ("docker build", "docker run", "pytest -q ci_tests/test_serving.py"),
}


def bike_workflow(*, train_months: Sequence[str] = train_config.CI.train_months,
                  test_month: str = train_config.CI.test_month, as_of: str = "2011-07-01", margin: float = 0.02,
                  environment: str | None = None) -> str:
    """The bike model's workflow as YAML text; ``margin`` is the gate's relative margin.

    Without ``environment`` the register job runs as soon as the gate passes (automatic delivery). With
    ``environment="production"`` it waits for that GitHub environment, whose required reviewers give a
    manual approval.
    """
    from mlops_course import templates
    from mlops_course.deploy import SERVICE_PORT  # the port the image's service listens on

    problem = train_config.month_problem([*train_months, test_month])
    if problem:
        raise ValueError(problem)
    if not 0 <= margin < 1:
        raise ValueError(f"margin is a fraction in [0, 1); got {margin}")
    return templates.render("bike-workflow.yml", train_months=",".join(train_months), test_month=test_month,
                            as_of=as_of, margin=f"{margin:g}",
                            environment=f"    environment: {environment}\n" if environment else "",
                            strip_args=STRIP_ARGS, setup=templates.read("workflow-setup-steps.yml"),
                            data=templates.read("workflow-data-step.yml"), service_port=SERVICE_PORT)


class WorkflowError(ValueError):
    """A workflow file that GitHub Actions would reject or that lacks an expected job or step."""

    def __init__(self, problems: Sequence[str]):
        self.problems = list(problems)
        super().__init__("workflow check failed:\n- " + "\n- ".join(self.problems))


@dataclass(frozen=True)
class WorkflowReport:
    """What a valid workflow runs: its name, triggers, and jobs in an order that respects ``needs``."""

    name: str
    triggers: list[str]
    order: list[str]
    needs: dict[str, list[str]]
    steps: dict[str, int]

    def __str__(self) -> str:
        lines = [f"workflow {self.name!r}, triggers: {', '.join(self.triggers)}"]
        for job in self.order:
            after = f" (after {', '.join(self.needs[job])})" if self.needs[job] else ""
            lines.append(f"  {job}: {self.steps[job]} steps{after}")
        return "\n".join(lines)


def load_workflow(source: str | os.PathLike | Mapping) -> dict:
    """A workflow as a dict from YAML text, a file path or a dict. YAML 1.1 reads a bare ``on:`` key as
    ``True``; it is put back under ``"on"``."""
    if isinstance(source, Mapping):
        doc = dict(source)
    else:
        text = Path(source).read_text() if isinstance(source, os.PathLike) else str(source)
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise WorkflowError([f"not valid YAML: {exc}"]) from None
    if not isinstance(doc, dict):
        raise WorkflowError([f"a workflow is a mapping at the top level; got {type(doc).__name__}"])
    if True in doc and "on" not in doc:
        doc["on"] = doc.pop(True)
    return doc


def _needs(job: Mapping) -> list[str]:
    needs = job.get("needs", [])
    return [needs] if isinstance(needs, str) else list(needs or [])


def _order(needs: Mapping[str, list[str]]) -> list[str] | None:
    order, done = [], set()
    while len(order) < len(needs):
        ready = [j for j in needs if j not in done and all(n in done for n in needs[j])]
        if not ready:
            return None
        order.append(ready[0])
        done.add(ready[0])
    return order


def _job_problems(name: str, job: Any, jobs: Mapping) -> list[str]:
    if not isinstance(job, Mapping):
        return [f"job {name!r} is not a mapping"]
    problems = [f"job {name!r} needs {n!r}, which is not a job" for n in _needs(job) if n not in jobs]
    if "uses" in job:  # a reusable workflow has no runner or steps of its own
        return problems
    if "runs-on" not in job:
        problems.append(f"job {name!r} has no runs-on")
    steps = job.get("steps")
    if not isinstance(steps, list) or not steps:
        return [*problems, f"job {name!r} has no steps"]
    for i, step in enumerate(steps, 1):
        if not isinstance(step, Mapping) or ("run" in step) == ("uses" in step):
            problems.append(f"job {name!r}, step {i}: needs exactly one of 'run' or 'uses'")
    return problems


def validate_workflow(source: str | os.PathLike | Mapping,
                      expected_steps: Mapping[str, Sequence[str]] | None = None,
                      expected_order: Sequence[str] = ()) -> WorkflowReport:
    """Check a workflow and return what it runs; raise ``WorkflowError`` listing every problem.

    Checks: triggers and jobs exist; every job has a runner and steps, each step one ``run`` or ``uses``;
    ``needs`` name real jobs without cycles; each job in ``expected_steps`` runs every listed text; jobs in
    ``expected_order`` run one after the other.
    """
    doc = load_workflow(source)
    problems = [f"missing top-level key {key!r}" for key in ("on", "jobs") if not doc.get(key)]
    jobs = doc.get("jobs") if isinstance(doc.get("jobs"), Mapping) else {}
    for name, job in jobs.items():
        problems += _job_problems(name, job, jobs)
    for name, texts in (expected_steps or {}).items():
        if name not in jobs:
            problems.append(f"expected job {name!r} is missing (jobs: {sorted(jobs)})")
            continue
        steps = [s for s in jobs[name].get("steps") or [] if isinstance(s, Mapping)]
        said = "\n".join(f"{s.get('run', '')} {s.get('uses', '')}" for s in steps)
        problems += [f"job {name!r} has no step running {t!r}" for t in texts if t not in said]
    needs = {n: [x for x in _needs(j) if x in jobs] for n, j in jobs.items() if isinstance(j, Mapping)}
    order = _order(needs)
    if order is None:
        problems.append(f"the needs of the jobs form a cycle: {needs}")
    for before, after in itertools.pairwise(expected_order):
        if after in needs and before not in needs[after]:
            problems.append(f"job {after!r} should need {before!r}; it needs {needs[after] or 'nothing'}")
    if problems:
        raise WorkflowError(problems)
    on = doc["on"]
    triggers = [on] if isinstance(on, str) else list(on)
    steps = {n: len(j.get("steps") or []) for n, j in jobs.items()}
    return WorkflowReport(str(doc.get("name", "")), triggers, order, needs, steps)


def validate_bike_workflow(source: str | os.PathLike | Mapping) -> WorkflowReport:
    """``validate_workflow`` with the bike model's expected jobs, steps and order."""
    return validate_workflow(source, EXPECTED_STEPS, JOB_ORDER)


# ---------------------------------------------------------------- what a trigger hands the jobs
_OPERAND = re.compile(r"\s*(?:'((?:[^']|'')*)'|([A-Za-z_][\w-]*(?:\.[A-Za-z_][\w-]*)*))\s*$")


def _evaluate(expression: str, context: Mapping[str, Any], key: str) -> str:
    """``a || b || 'literal'`` as GitHub evaluates it: the first operand that is not empty, null or false."""
    value: Any = None
    for operand in re.split(r"\|\|(?=(?:[^']*'[^']*')*[^']*$)", expression):
        match = _OPERAND.match(operand)
        if not match:
            raise WorkflowError([(f"env {key}: {operand.strip()!r} in ${{{{ {expression.strip()} }}}} is beyond "
                                  "what trigger_env evaluates (context paths and '...' strings joined by ||)")])
        literal, path = match.groups()
        if literal is not None:
            value = literal.replace("''", "'")
        else:
            value = context
            for part in path.split("."):
                value = value.get(part) if isinstance(value, Mapping) else None
        if value not in (None, "", False):
            break
    return "" if value is None else str(value)


def trigger_env(source: str | os.PathLike | Mapping, event_name: str, event: Mapping[str, Any] | None = None,
                *, secrets: Mapping[str, str] | None = None) -> dict[str, str]:
    """The workflow-level ``env`` the jobs would get for one trigger, ``${{ ... }}`` evaluated.

    ``event`` is the trigger's payload as GitHub delivers it: ``{"inputs": {...}}`` for ``workflow_dispatch``,
    ``{"action": "<event type>", "client_payload": {...}}`` for ``repository_dispatch``. Raises
    ``WorkflowError`` when the workflow does not start on that event or an input is not declared.
    """
    doc = load_workflow(source)
    event = dict(event or {})
    on = doc.get("on") or {}
    on = {on: None} if isinstance(on, str) else {t: None for t in on} if isinstance(on, list) else dict(on)
    if event_name not in on:
        raise WorkflowError([f"the workflow does not start on {event_name!r}; its triggers: {sorted(on)}"])
    settings = on[event_name] if isinstance(on[event_name], Mapping) else {}  # schedule holds a list
    types = settings.get("types") if event_name == "repository_dispatch" else None
    if types and event.get("action") not in types:
        raise WorkflowError([f"repository_dispatch of type {event.get('action')!r} does not start it; types: {types}"])
    inputs = dict(event.get("inputs") or {}) if event_name == "workflow_dispatch" else {}
    unknown = sorted(set(inputs) - set(settings.get("inputs") or {}))
    if unknown:
        declared = sorted(settings.get("inputs") or {})
        raise WorkflowError([f"workflow_dispatch inputs {unknown} are not declared; declared: {declared}"])
    context = {"github": {"event_name": event_name, "event": event}, "inputs": inputs,
               "secrets": dict(secrets or {}), "vars": {}}
    env = {}
    for key, value in (doc.get("env") or {}).items():
        text = str(value)
        whole = re.fullmatch(r"\s*\$\{\{(.*)\}\}\s*", text, re.DOTALL)
        env[key] = _evaluate(whole.group(1), context, key) if whole else text
    return env


# ---------------------------------------------------------------- the commands the jobs run
def _settings() -> dict[str, Any]:
    env = os.environ
    window = train_config.TrainConfig.from_env(env, default=train_config.CI)
    return {"data": env.get("BIKE_DATA", "data/bikes.csv"), "model": env.get("BIKE_MODEL", "build/model.skops"),
            "train_months": list(window.train_months), "test_month": window.test_month,
            "metrics": "build/metrics.json"}


def _month(path: str, month: str):
    from mlops_course import data

    return data.select_months(data.load_bikeshare(path, verify=False), [month]).reset_index(drop=True)


def step_train(s: Mapping[str, Any]) -> str:
    from mlops_course import data, pipeline

    bikes = pipeline.validate(data.load_bikeshare(s["data"], verify=False))
    model = pipeline.train(data.select_months(bikes, s["train_months"]))
    return f"trained on {','.join(s['train_months'])}: {pipeline.save_model(model, s['model'])}"


def step_evaluate(s: Mapping[str, Any]) -> str:
    from mlops_course import pipeline

    scores = pipeline.evaluate(pipeline.load_model(s["model"]), _month(s["data"], s["test_month"]))
    report = {"month": s["test_month"], **{k: round(v, 4) for k, v in scores.items()}}
    Path(s["metrics"]).parent.mkdir(parents=True, exist_ok=True)
    Path(s["metrics"]).write_text(json.dumps(report, indent=2))
    return f"{s['test_month']}: MAE {scores['mae']:.2f}, R2 {scores['r2']:.3f} -> {s['metrics']}"


def step_gate(s: Mapping[str, Any], margin: float) -> str:
    from mlops_course import pipeline, registry

    metrics = json.loads(Path(s["metrics"]).read_text())
    try:
        champion = registry.load_sklearn("champion")
        champion_mae = pipeline.evaluate(champion, _month(s["data"], metrics["month"]))["mae"]
    except registry.AliasError:
        champion_mae = None
    promote, reason = registry.gate(metrics["mae"], champion_mae, margin)
    if os.environ.get("GITHUB_OUTPUT"):  # how a step hands a value to later jobs in GitHub Actions
        with open(os.environ["GITHUB_OUTPUT"], "a") as out:
            out.write(f"promote={'true' if promote else 'false'}\n")
    return reason


def step_register(s: Mapping[str, Any]) -> str:
    import mlflow

    from mlops_course import pipeline, registry

    model = pipeline.load_model(s["model"])
    metrics = json.loads(Path(s["metrics"]).read_text())
    try:
        previous = str(registry.version_by_alias("champion").version)
    except registry.AliasError:
        previous = "none"
    mlflow.set_experiment("bike-ci")
    with mlflow.start_run(run_name=f"ci-{os.environ.get('GITHUB_SHA', 'local')[:8]}"):
        mlflow.log_metrics({k: v for k, v in metrics.items() if isinstance(v, float)})
        logged = registry.log_bike_model(model, pipeline.make_features(_month(s["data"], metrics["month"])))
    version = registry.register(logged, alias="champion", tags={"previous_champion": previous,
                                                                "git_sha": os.environ.get("GITHUB_SHA", "local")})
    return f"version {version} is champion (previous champion: {previous})"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlops_course.cicd_workflow",
                                     description="The steps of the bike model's CI workflow. Inputs come "
                                                 "from BIKE_DATA, BIKE_MODEL, BIKE_TRAIN_MONTHS, BIKE_TEST_MONTH.")
    parser.add_argument("step", choices=["train", "evaluate", "gate", "register"])
    parser.add_argument("--margin", type=float, default=0.02, help="gate: relative MAE margin (default 0.02)")
    args = parser.parse_args(argv)
    s = _settings()
    steps = {"train": step_train, "evaluate": step_evaluate, "register": step_register,
             "gate": lambda s: step_gate(s, args.margin)}
    try:
        print(steps[args.step](s))
    except (OSError, ValueError, KeyError, LookupError) as exc:
        print(f"{args.step} failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
