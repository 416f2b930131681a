"""The course's training pipeline as a Prefect 3 flow: validate -> prepare -> train -> evaluate -> register.

Every task calls the package's own functions (:mod:`mlops_course.pipeline`, :mod:`mlops_course.registry`), so
there is one copy of the training code. Around the flow sit the pieces a lesson needs to run it and to see
what it did:

- :func:`simulate_outage` and :class:`Warehouse`: data sources that fail (and answer slowly) on purpose, so
  retries and parallel task runs can be watched deterministically.
- :func:`flow_runs`, :func:`task_runs` and :func:`state_history`: what happened, read back from the Prefect
  API. The server itself is :class:`mlops_course.prefect_server.PrefectServer` (re-exported here); drawing
  and printing flows is :mod:`mlops_course.flow_display`.
- :func:`write_report_template` and the ``report`` task: a parameterised notebook run by papermill.

The capstone retrains with::

    result = training_flow(data_path, train_months=["Jan", "Feb"], holdout_month="March",
                           model_params={"n_estimators": 40}, register=True)
    result.model_version, result.metrics["mae"], result.promoted

Prefect reads its settings (home folder, telemetry, logging format) when it is imported. This module sets
offline defaults before importing it, and :class:`PrefectServer` points an already imported Prefect at the
lesson's workspace, so importing this module before or after ``setup_lesson`` both work.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mlops_course import data, pipeline, registry

# The server and Prefect's settings live in prefect_server (imported first: it sets the offline defaults
# before Prefect is imported below); they are re-exported here, where the flow's users look for them.
from mlops_course.prefect_server import (  # noqa: F401
    CONSOLE_LOG_FORMATS,
    OFFLINE_SETTINGS,
    SERVER_SETTINGS,
    PrefectServer,
    _refresh_prefect_settings,
    flush_client,
    prefect_home,
    prefect_server,
)

# isort: split
import pandas as pd
from prefect import flow, get_client, runtime, task
from prefect.cache_policies import INPUTS, NO_CACHE

FLOW_NAME = "bike-training"
EXPERIMENT = "bike-training-flow"
TASK_NAMES = ("validate", "prepare", "train", "evaluate", "register", "report")
TERMINAL_STATES = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


class OrchestrationError(RuntimeError):
    """Prefect's server or the flow's run records are not in the state a helper needs."""


# ------------------------------------------------------------------ the (simulated) flaky data source
OUTAGE_FILE = "data-source-outage.json"


class DataSourceUnavailable(ConnectionError):
    """The simulated data source did not answer (a transient error: retrying helps)."""


def simulate_outage(failures: int = 1, workspace: os.PathLike | str | None = None) -> Path:
    """Make the next ``failures`` reads of the data source fail, like a database that is briefly down.

    The count lives in a small file in the workspace (not in memory), so it survives retries and is the same
    on every run of the lesson. ``failures=0`` ends the outage.
    """
    if isinstance(failures, bool) or not isinstance(failures, int) or failures < 0:
        raise ValueError(f"failures must be a whole number >= 0; got {failures!r}")
    path = (Path(workspace) if workspace is not None else Path.cwd()) / OUTAGE_FILE
    path.write_text(json.dumps({"failures_left": failures}))
    return path


def read_source(data_path: os.PathLike | str, workspace: os.PathLike | str | None = None) -> pd.DataFrame:
    """Read the bike table from the 'data source'; raise ``DataSourceUnavailable`` while an outage lasts."""
    outage = (Path(workspace) if workspace is not None else Path.cwd()) / OUTAGE_FILE
    if outage.is_file():
        left = int(json.loads(outage.read_text()).get("failures_left", 0))
        if left > 0:
            outage.write_text(json.dumps({"failures_left": left - 1}))
            raise DataSourceUnavailable("simulated outage: the data source did not answer")
    return data.load_bikeshare(data_path, verify=False)


@dataclass(frozen=True)
class Read:
    """One call of :meth:`Warehouse.read`: which month, from which flow and task run, and whether it answered."""

    month: str
    flow_run_id: str | None
    task_run_id: str | None
    ok: bool


class Warehouse:
    """The bike table's months behind a slow, sometimes failing connection, like a remote data warehouse.

    ``read(month)`` waits ``latency`` seconds (time a thread spends waiting, as on a network call), and the
    first ``failures`` reads of each month raise :class:`DataSourceUnavailable`. Every read is recorded in
    :attr:`reads` with the Prefect flow and task run it came from, so a check can see where a flow read what.
    Safe to call from the threads of Prefect's task runner.
    """

    def __init__(self, bikes: pd.DataFrame, *, latency: float = 0.2, failures: int = 0):
        if latency < 0 or isinstance(failures, bool) or not isinstance(failures, int) or failures < 0:
            raise ValueError(f"latency must be >= 0 s and failures a whole number >= 0; got {latency!r}, "
                             f"{failures!r}")
        self.bikes = bikes
        self.latency = float(latency)
        self.failures = failures
        self.reads: list[Read] = []
        self._lock = threading.Lock()

    def reset(self, failures: int | None = None) -> None:
        """Forget every read, so each month fails ``failures`` times again (by default as many as at creation)."""
        with self._lock:
            if failures is not None:
                self.failures = failures
            self.reads = []

    def read(self, month: str) -> pd.DataFrame:
        """The rows of one month (a name as in the data, e.g. ``"May"``), after ``latency`` seconds."""
        from prefect.context import FlowRunContext, TaskRunContext

        task_ctx, flow_ctx = TaskRunContext.get(), FlowRunContext.get()
        task_run = str(task_ctx.task_run.id) if task_ctx is not None else None
        flow_run = (str(task_ctx.task_run.flow_run_id) if task_ctx is not None and task_ctx.task_run.flow_run_id
                    else str(flow_ctx.flow_run.id) if flow_ctx is not None and flow_ctx.flow_run else None)
        rows = data.select_months(self.bikes, [month])  # an unknown month fails here, at once
        time.sleep(self.latency)
        with self._lock:
            failed_before = sum(1 for r in self.reads if r.month == month and not r.ok)
            ok = failed_before >= self.failures
            self.reads.append(Read(month, flow_run, task_run, ok))
        if not ok:
            raise DataSourceUnavailable(f"the warehouse did not answer for {month}")
        return rows

    def __repr__(self) -> str:
        return f"<Warehouse latency {self.latency:g} s, {self.failures} failure(s) per month, {len(self.reads)} reads>"


# ------------------------------------------------------------------ the tasks: thin wrappers over the package
@task(name="validate", task_run_name="validate", retries=2, retry_delay_seconds=0,
      cache_policy=INPUTS, persist_result=True)
def validate_data(data_path: str, data_sha256: str) -> pd.DataFrame:
    """Read the data source and check its schema (``pipeline.validate``). Cached on (path, checksum)."""
    return pipeline.validate(read_source(data_path))


@task(name="prepare", task_run_name="prepare", cache_policy=INPUTS - "df", persist_result=True)
def prepare_data(df: pd.DataFrame, data_sha256: str, train_months: list[str],
                 holdout_month: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Time-based split into training months and one holdout month (``pipeline.split_by_month``).

    Cached on (checksum, months): the table itself is left out of the key (``INPUTS - "df"``) because the
    checksum already identifies it, and Prefect hashes a DataFrame by pickling it, where equal tables need not
    give equal bytes (a copy hashes differently), so the key could miss for no reason.
    """
    return pipeline.split_by_month(df, train_months, [holdout_month])


@task(name="train", task_run_name="train", cache_policy=NO_CACHE)
def train_model(train_df: pd.DataFrame, model_kind: str, model_params: dict[str, Any]):
    """Fit the model (``pipeline.train``); never cached: training is what a retrain run is for."""
    return pipeline.train(train_df, model_kind, **model_params)


@task(name="evaluate", task_run_name="evaluate", cache_policy=NO_CACHE)
def evaluate_model(model, holdout_df: pd.DataFrame) -> dict[str, float]:
    """MAE, RMSE and R^2 on the holdout month (``pipeline.evaluate``)."""
    return pipeline.evaluate(model, holdout_df)


@task(name="register", task_run_name="register", cache_policy=NO_CACHE)
def register_model(model, train_df: pd.DataFrame, holdout_df: pd.DataFrame, metrics: dict[str, float],
                   params: dict[str, Any], *, run_name: str, experiment: str = EXPERIMENT, register: bool = True,
                   promote: bool = True, margin: float = 0.0, onnx: bool = True) -> dict[str, Any]:
    """Log params, metrics and model in one MLflow run; register a version and gate it when asked."""
    import mlflow

    # The experiment is passed by id: set_experiment would change the caller's active experiment (and log a
    # timestamped notice when it creates one).
    client = mlflow.MlflowClient()
    found = client.get_experiment_by_name(experiment)
    experiment_id = found.experiment_id if found is not None else client.create_experiment(experiment)
    with mlflow.start_run(run_name=run_name, experiment_id=experiment_id) as run:
        mlflow.log_params({k: (",".join(v) if isinstance(v, (list, tuple)) else v) for k, v in params.items()})
        mlflow.log_metrics({f"holdout_{k}": v for k, v in metrics.items()})
        mlflow.set_tags({"orchestrator": "prefect", "prefect.flow_run_name": run_name,
                         "prefect.flow_run_id": str(runtime.flow_run.id)})
        logged = registry.log_bike_model(model, pipeline.make_features(train_df), onnx=onnx)
    out: dict[str, Any] = {"mlflow_run_id": run.info.run_id, "model_uri": logged.model_uri,
                           "model_version": None, "promoted": None, "gate": None}
    if register:
        version = registry.register(logged, tags={"train_months": params["train_months"],
                                                  "holdout_month": params["holdout_month"],
                                                  "prefect_flow_run": run_name})
        out["model_version"] = version
        if promote:
            decision = registry.promote_if_better(version, holdout_df, margin=margin)
            out["promoted"], out["gate"] = decision.promoted, decision.reason
    return out


@task(name="report", task_run_name="report", cache_policy=NO_CACHE)
def render_report(result: TrainingResult, template: str, output_dir: str) -> str:
    """Run the report notebook with papermill, its parameters taken from the flow's result."""
    return str(run_report(template, Path(output_dir) / f"report-{result.run_name}.ipynb",
                          report_parameters(result)))


# ------------------------------------------------------------------ the flow
@dataclass(frozen=True)
class TrainingResult:
    """What one run of :func:`training_flow` produced (no ids in ``str()``, so it can be printed)."""

    run_name: str
    train_months: tuple[str, ...]
    holdout_month: str
    model_kind: str
    model_params: dict[str, Any]
    metrics: dict[str, float]
    train_rows: int
    holdout_rows: int
    mlflow_run_id: str
    model_uri: str
    model_version: str | None = None
    promoted: bool | None = None
    gate: str | None = None
    report_path: str | None = None
    flow_run_id: str = ""
    tasks: tuple[str, ...] = field(default_factory=tuple)

    @classmethod
    def collect(cls, params: Mapping[str, Any], settings: Mapping[str, Any], metrics: Mapping[str, float],
                train_df: pd.DataFrame, holdout_df: pd.DataFrame, logged: Mapping[str, Any]) -> TrainingResult:
        """Assemble the result inside a flow run (names and ids come from ``prefect.runtime``)."""
        return cls(run_name=runtime.flow_run.name, train_months=tuple(params["train_months"]),
                   holdout_month=params["holdout_month"], model_kind=params["model_kind"],
                   model_params=dict(settings), metrics={k: round(float(v), 4) for k, v in metrics.items()},
                   train_rows=len(train_df), holdout_rows=len(holdout_df), mlflow_run_id=logged["mlflow_run_id"],
                   model_uri=logged["model_uri"], model_version=logged["model_version"],
                   promoted=logged["promoted"], gate=logged["gate"], flow_run_id=str(runtime.flow_run.id),
                   tasks=("validate", "prepare", "train", "evaluate", "register"))

    def __str__(self) -> str:
        m = self.metrics
        line = (f"{self.run_name}: {self.model_kind} trained on {'+'.join(self.train_months)} "
                f"({self.train_rows} rows), holdout {self.holdout_month} ({self.holdout_rows} rows): "
                f"MAE {m['mae']:.2f}, RMSE {m['rmse']:.2f}, R2 {m['r2']:.3f}")
        if self.model_version is not None:
            line += f"; registered as version {self.model_version}"
        if self.gate:
            line += f"; gate: {self.gate}"
        return line


@contextlib.contextmanager
def _register_notice_dropped() -> Iterator[None]:
    """Drop pydantic's notice that the flow's parameter ``register`` shadows ``BaseModel.register``.

    Prefect builds a pydantic model of the flow's parameters when the flow is defined and again for every call;
    the notice is harmless (the value is read correctly). Other warnings are passed on to the filters in force
    (so ``-W error`` still turns them into errors); no filter is left installed.
    """
    with warnings.catch_warnings(record=True, action="always") as caught:  # recorded, whatever the filters
        yield
    for w in caught:
        if not (issubclass(w.category, UserWarning) and 'Field name "register"' in str(w.message)):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


def _flow_run_name() -> str:
    params = runtime.flow_run.parameters
    if params.get("run_name"):
        return str(params["run_name"])
    months = list(params.get("train_months") or [])
    span = f"{months[0]}-{months[-1]}" if len(months) > 1 else "".join(months)
    return f"train-{span}-to-{params.get('holdout_month')}"


with _register_notice_dropped():
    @flow(name=FLOW_NAME, flow_run_name=_flow_run_name)
    def training_flow(data_path: Path | str, train_months: list[str], holdout_month: str,
                      model_params: dict[str, Any] | None = None, register: bool = True, *,
                      model_kind: str = "random_forest", promote: bool = True, margin: float = 0.0,
                      run_name: str | None = None, experiment: str = EXPERIMENT, onnx: bool = True,
                      report_template: str | None = None, report_dir: str = "reports") -> TrainingResult:
        """Train the bike-demand model end to end and return a :class:`TrainingResult`.

        - ``data_path``: CSV with the course's columns; its SHA-256 keys the cache of ``validate`` and ``prepare``.
        - ``train_months`` / ``holdout_month``: month names as in the data (``"Jan"`` ... ``"Dec"``).
        - ``model_params``: settings of ``model_kind`` merged over ``pipeline.DEFAULT_PARAMS`` (unknown keys fail).
        - ``register``: add the model to the MLflow registry as a new version of ``registry.MODEL_NAME``; with
          ``promote`` it becomes ``challenger`` and, if it beats the champion's MAE on the holdout month by more
          than ``margin``, ``champion`` (``registry.promote_if_better``). ``register=False`` only logs the run.
        - ``run_name``: name of the Prefect flow run and of the MLflow run (default ``train-Jan-April-to-May``).
        - ``report_template``: a notebook run by papermill after training (see :func:`write_report_template`).
        """
        settings = _model_settings(model_kind, model_params)
        sha = data.sha256_file(data_path)
        df = validate_data(str(data_path), sha)
        train_df, holdout_df = prepare_data(df, sha, list(train_months), holdout_month)
        model = train_model(train_df, model_kind, settings)
        metrics = evaluate_model(model, holdout_df)
        params = {"model_kind": model_kind, **settings, "train_months": list(train_months),
                  "holdout_month": holdout_month, "data_sha256": sha[:12]}
        logged = register_model(model, train_df, holdout_df, metrics, params, run_name=runtime.flow_run.name,
                                experiment=experiment, register=register, promote=promote, margin=margin, onnx=onnx)
        result = TrainingResult.collect(params, settings, metrics, train_df, holdout_df, logged)
        if report_template:
            path = render_report(result, report_template, report_dir)
            result = replace(result, report_path=path, tasks=(*result.tasks, "report"))
        return result


def _validate_parameters_quietly(parameters: dict[str, Any], *,
                                 _validate=training_flow.validate_parameters) -> dict[str, Any]:
    with _register_notice_dropped():
        return _validate(parameters)


training_flow.validate_parameters = _validate_parameters_quietly  # Prefect validates each call's parameters


def _model_settings(model_kind: str, model_params: Mapping[str, Any] | None) -> dict[str, Any]:
    if model_kind not in pipeline.MODEL_KINDS:
        raise ValueError(f"unknown model kind {model_kind!r}; choose one of {pipeline.MODEL_KINDS}")
    return pipeline.as_params(model_params, model_kind)


# ------------------------------------------------------------------ reading back what happened
FLOW_RUN_COLUMNS = ["flow_run", "state", "start", "end", "id"]
TASK_RUN_COLUMNS = ["task", "state", "attempts", "start", "end", "id"]


def flow_runs(flow_name: str = FLOW_NAME) -> pd.DataFrame:
    """The flow's runs, oldest first: name, state, start and end time, id (from the Prefect API)."""
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])),
                                     sort=FlowRunSort.START_TIME_ASC)
    rows = [(r.name, r.state_name, r.start_time, r.end_time, str(r.id)) for r in runs]
    return pd.DataFrame(rows, columns=FLOW_RUN_COLUMNS)


def task_runs(flow_run_id: str, expected: int | None = None, timeout: float = 30.0) -> pd.DataFrame:
    """Task runs of one flow run: task, state, attempts (``run_count``), start, end, id.

    ``task`` is the task's name: Prefect names a run ``<task>-<3 characters of its key>`` unless the task sets
    ``task_run_name``, and the suffix is dropped here. The course flow's tasks come in pipeline order, other
    flows' tasks in the order they were expected to start. Prefect records task-run states from events the client streams to the
    server, a moment after the flow returns. With ``expected`` (e.g. ``len(result.tasks)``) this waits until
    that many task runs are recorded in a final state, so the table is complete. A flow run that this server
    does not know (its id comes from a server stopped since) raises ``OrchestrationError`` at once.
    """
    from uuid import UUID

    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.client.schemas.sorting import TaskRunSort
    from prefect.exceptions import ObjectNotFound

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        try:
            client.read_flow_run(UUID(str(flow_run_id)))
        except ObjectNotFound:
            raise OrchestrationError(
                f"flow run {flow_run_id} is not on the Prefect server this kernel uses (the setup cell started "
                f"a new server since?): run the cell that runs the flow again, then this one") from None
        while True:
            runs = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[UUID(str(flow_run_id))])),
                sort=TaskRunSort.EXPECTED_START_TIME_ASC)
            done = [r for r in runs if r.state_type is not None and r.state_type.value in TERMINAL_STATES]
            if expected is None or (len(runs) >= expected and len(done) == len(runs)):
                break
            if time.monotonic() > deadline:
                raise OrchestrationError(f"only {len(done)} of {expected} task runs of flow run {flow_run_id} "
                                         f"were recorded within {timeout:.0f} s; is the Prefect server running?")
            time.sleep(0.2)
    rows = [(_task_name(r), r.state_name, r.run_count, r.start_time, r.end_time, str(r.id)) for r in runs]
    frame = pd.DataFrame(rows, columns=TASK_RUN_COLUMNS)
    if not set(frame["task"]) <= set(TASK_NAMES):
        return frame  # another flow's tasks: in the order they were expected to start
    # The course flow's tasks in pipeline order (a cached run never starts, and a retry moves the expected start).
    order = {name: i for i, name in enumerate(TASK_NAMES)}
    return frame.sort_values("task", key=lambda s: s.map(order), kind="stable", ignore_index=True)


def _task_name(run) -> str:
    suffix = f"-{str(run.dynamic_key)[:3]}"
    return run.name[:-len(suffix)] if run.dynamic_key is not None and run.name.endswith(suffix) else run.name


def state_history(task_run_id: str) -> list[str]:
    """The names of the states one task run went through, in order (e.g. Running, Retrying, Completed)."""
    from uuid import UUID

    with get_client(sync_client=True) as client:
        states = client.read_task_run_states(UUID(task_run_id))
    states = sorted(states, key=lambda s: s.timestamp)
    return [s.name for s in states]


# ------------------------------------------------------------------ parameterised report notebook
REPORT_PARAMETERS = {"run_name": "", "model_version": "", "train_months": [], "holdout_month": "",
                     "metrics": {}, "max_mae": 80.0}


def write_report_template(path: os.PathLike | str) -> Path:
    """Write a small report notebook with a ``parameters`` cell (papermill fills it in per run)."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

    params = "\n".join(f"{k} = {v!r}" for k, v in REPORT_PARAMETERS.items())
    body = (
        'print(f"Model report for flow run {run_name!r}")\n'
        'print(f"trained on {\', \'.join(train_months)}; holdout month {holdout_month}")\n'
        'print(f"registered model version: {model_version or \'not registered\'}")\n'
        "for name, value in metrics.items():\n"
        '    print(f"  {name:>5}: {value:8.3f}")\n'
        'verdict = "PASS" if metrics.get("mae", float("inf")) <= max_mae else "FAIL"\n'
        'print(f"quality bar MAE <= {max_mae:g}: {verdict}")'
    )
    nb = new_notebook(cells=[
        new_markdown_cell("# Training report\n\nWritten by the `report` task of the training flow."),
        new_code_cell(params, metadata={"tags": ["parameters"]}),
        new_code_cell(body),
    ])
    nb.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                   "language_info": {"name": "python"}}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def report_parameters(result: TrainingResult, max_mae: float = REPORT_PARAMETERS["max_mae"]) -> dict[str, Any]:
    """The report notebook's parameters, taken from a flow result."""
    return {"run_name": result.run_name, "model_version": result.model_version or "",
            "train_months": list(result.train_months), "holdout_month": result.holdout_month,
            "metrics": {k: round(v, 3) for k, v in result.metrics.items()}, "max_mae": max_mae}


def run_report(template: os.PathLike | str, output: os.PathLike | str, parameters: Mapping[str, Any]) -> Path:
    """Execute ``template`` with papermill into ``output`` (python3 kernel, no progress bar)."""
    import papermill as pm

    template, output = Path(template), Path(output)
    if not template.is_file():
        raise FileNotFoundError(f"no report template at {template.name}; write one with write_report_template()")
    unknown = sorted(set(parameters) - set(pm.inspect_notebook(str(template))))
    if unknown:
        raise ValueError(f"the report notebook has no parameter(s) {unknown}")
    output.parent.mkdir(parents=True, exist_ok=True)
    # The kernel's own start-up warning (plain-text TCP on loopback) would land in the caller's stderr.
    pm.execute_notebook(str(template), str(output), parameters=dict(parameters), kernel_name="python3",
                        cwd=str(output.parent), progress_bar=False, log_output=False,
                        extra_arguments=["--IPKernelApp.log_level=ERROR"])
    return output


def notebook_text(path: os.PathLike | str) -> str:
    """Everything the code cells of an executed notebook printed, joined (stream outputs only)."""
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
                   if o.get("output_type") == "stream")
