"""The capstone (lesson 08): a retraining policy judged offline against its baselines, then run for real.

A *policy* is a function ``policy(signals) -> bool`` called at the end of each production month, once the
month's labels have arrived; :class:`Signals` is what it may look at. Two ways to run one:

- :class:`OfflineReplay` replays the year in memory with :mod:`mlops_course.pipeline` (the same training code,
  model settings and seed as the flow) and scores every policy on the same months with the same metric, next
  to the naive forecast "same hour last week" (:func:`naive_forecast`). Fits are cached by training months,
  so comparing many policies costs little more than one.
- :class:`ClosedLoop` runs one policy for real, a month per :meth:`ClosedLoop.step`:

  1. ``traffic.replay``: the month's hours go to the running prediction service over HTTP (lessons 04/05).
  2. The month's labels arrive: the error of what was served, from the service's own answers; the drift share
     of lesson 05 (``drift.drift_table`` + ``drift.drift_share``) against the months the serving model
     learned from; the naive forecast's error on the same hours.
  3. The policy decides. If it retrains: a new data version in the DVC repository (lesson 01), the Prefect
     ``training_flow`` (lesson 07) trains on every labelled month before this one, and its gate
     (``registry.promote_if_better``, lessons 03/06) moves ``@champion`` only if the challenger has the
     lower MAE on this month.
  4. A challenger that passed the gate is refit on every labelled month, this one included
     (:func:`refit_champion`), so the served model learns the month it was judged on; the service then
     reloads ``@champion`` (``POST /reload``) without restarting.

Both take the gate's decision with ``registry.gate``, so a policy scores the same offline and for real.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import io
import json
import math
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlops_course import data, drift, paths, pipeline, registry, stages, traffic, train_config, versioning

# The calendar and weather codes are categories, as in lesson 05's drift table.
CATEGORICAL = ["weekday", "workingday", "holiday", "weather"]
NAIVE = "naive: same hour last week"
NAIVE_WEEKS = 4  # when last week's hour is missing from the data, look up to this many weeks back
REFIT_RUN_PREFIX = "refit"


class LessonStateError(RuntimeError):
    """A step of the lesson ran before the step it needs; the message names the cell to run first."""


class PolicyError(TypeError):
    """A policy that cannot be run: it raised (``raised``), or answered something else than True or False
    (``answer``)."""

    def __init__(self, message: str, *, answer: Any = None, raised: BaseException | None = None):
        super().__init__(message)
        self.answer, self.raised = answer, raised


# ------------------------------------------------------------------ what a policy sees
@dataclass(frozen=True)
class Signals:
    """What a retraining policy knows at the end of a month, once the month's labels have arrived.

    - ``month``: the month just served (``"May"`` ...).
    - ``mae``: mean absolute error of the served predictions on that month (bikes per hour).
    - ``naive_mae``: the same for the naive forecast "same hour last week" on the same hours.
    - ``drift_share``: lesson 05's drift measure, the share of features whose test flags drift, this month
      against the months the serving model learned from.
    - ``new_months``: labelled months the serving model has not learned from, this one included.
    """

    month: str
    mae: float
    naive_mae: float
    drift_share: float
    new_months: int


Policy = Callable[[Signals], bool]


def decide(policy: Policy, signals: Signals) -> bool:
    """Run ``policy`` on ``signals``; a policy that raises or answers anything but a bool gets a clear error."""
    if not callable(policy):
        raise PolicyError(f"a policy is a function of one argument (the month's Signals); got "
                          f"{type(policy).__name__}", answer=policy)
    name = getattr(policy, "__name__", type(policy).__name__)
    try:
        answer = policy(signals)
    except Exception as exc:
        raise PolicyError(f"policy {name!r} raised {type(exc).__name__} in {signals.month}: {exc}. It receives "
                          f"one Signals object: use s.mae, s.naive_mae, s.drift_share, s.new_months, "
                          f"s.month", raised=exc) from exc
    if isinstance(answer, (bool, np.bool_)):
        return bool(answer)
    raise PolicyError(f"policy {name!r} answered {answer!r} in {signals.month}; it must return True "
                      f"(retrain) or False (keep the champion)", answer=answer)


# ------------------------------------------------------------------ lesson 05's rule
@dataclass(frozen=True)
class Lesson05Rule:
    """Lesson 05's retraining thresholds, as its parameters cell sets them."""

    drift_threshold: float
    tolerance: float

    def error_threshold(self, validation_mae: float) -> float:
        """The error threshold argued from the release model's own error: its validation MAE plus the tolerance."""
        return float(validation_mae) * (1.0 + self.tolerance)

    def __str__(self) -> str:
        return (f"lesson 05's rule: retrain when the share of drifted features is above {self.drift_threshold:g} "
                f"and the month's MAE is more than {self.tolerance:.0%} above the release model's validation MAE")


def notebook_parameters(notebook: Path) -> dict[str, Any]:
    """The literal values assigned in a notebook's ``parameters``-tagged cell (read, never executed)."""
    cells = json.loads(Path(notebook).read_text(encoding="utf-8"))["cells"]
    source = next(("".join(c["source"]) for c in cells
                   if "parameters" in c.get("metadata", {}).get("tags", [])), None)
    if source is None:
        raise LookupError(f"{Path(notebook).name} has no cell tagged 'parameters'")
    values = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            with contextlib.suppress(ValueError):
                values[node.targets[0].id] = ast.literal_eval(node.value)
    return values


def _lesson_file(number: str) -> Path:
    """The notebook of lesson ``number`` in ``notebooks/``."""
    found = sorted(paths.notebooks_dir().glob(f"{number}-*.ipynb"))
    if len(found) != 1:
        raise LookupError(f"expected one lesson {number} in {paths.notebooks_dir()}, found {[f.name for f in found]}")
    return found[0]


def lesson05_rule(notebook: Path | None = None) -> Lesson05Rule:
    """Read ``drift_threshold`` and ``tolerance`` from lesson 05's parameters cell: one source for both."""
    path = Path(notebook) if notebook is not None else _lesson_file("05")
    values = notebook_parameters(path)
    missing = [k for k in ("drift_threshold", "tolerance") if not isinstance(values.get(k), (int, float))]
    if missing:
        raise LookupError(f"{path.name}: its parameters cell sets no number for {missing}; lesson 08 reads "
                          f"lesson 05's retraining thresholds from there")
    return Lesson05Rule(float(values["drift_threshold"]), float(values["tolerance"]))


# ------------------------------------------------------------------ the naive baseline
def naive_forecast(bikes: pd.DataFrame, rows: pd.DataFrame, *, weeks: int = NAIVE_WEEKS) -> np.ndarray:
    """"Same hour last week" for each row of ``rows``: the count of ``bikes`` 168 hours earlier.

    Where that hour is missing from the data (the table lacks 115 hours of 2011), the same hour one more week
    back stands in, up to ``weeks`` weeks. Raises ``ValueError`` when no week back has the hour.
    """
    counts = bikes.set_index(["day", "hr"])[pipeline.TARGET]
    forecast = pd.Series(np.nan, index=range(len(rows)))
    day, hour = rows["day"].to_numpy(), rows["hr"].to_numpy()
    for week in range(1, weeks + 1):
        earlier = counts.reindex(pd.MultiIndex.from_arrays([day - 7 * week, hour])).to_numpy(dtype=float)
        forecast = forecast.fillna(pd.Series(earlier))
    if forecast.isna().any():
        first = rows.iloc[int(np.flatnonzero(forecast.isna().to_numpy())[0])]
        raise ValueError(f"day {int(first['day'])}, hour {int(first['hr'])}: no count for that hour within "
                         f"{weeks} week(s) before; the naive forecast needs history")
    return forecast.to_numpy()


def naive_mae(bikes: pd.DataFrame, month: str) -> float:
    """MAE of the naive forecast on one month's hours."""
    rows = data.select_months(bikes, [month])
    return pipeline.metrics(rows[pipeline.TARGET], naive_forecast(bikes, rows))["mae"]


def drift_share(bikes: pd.DataFrame, trained_on: Sequence[str], batch: pd.DataFrame) -> float:
    """Lesson 05's drift measure: share of features that drift, ``batch`` against the months ``trained_on``."""
    reference = pipeline.make_features(data.select_months(bikes, trained_on))
    table = drift.drift_table(reference, pipeline.make_features(batch), categorical=CATEGORICAL,
                              categorical_test="jensenshannon")
    return drift.drift_share(table)


# ------------------------------------------------------------------ the policy, offline
def live_months(holdout_month: str) -> list[str]:
    """The production months: every month after the release model's holdout month."""
    problem = train_config.month_problem([holdout_month])
    if problem:
        raise ValueError(problem)
    return data.MONTHS[data.MONTHS.index(holdout_month) + 1:]


class OfflineReplay:
    """The production year in memory: the same models, gate and signals as :class:`ClosedLoop`, no servers.

    The release model is trained on ``initial_months`` and judged on ``holdout_month``; production is every
    month after that. Models are cached by their training months (same settings, same seed), drift shares
    and errors by (training months, month), so every policy is scored on the same fits.
    """

    def __init__(self, bikes: pd.DataFrame, initial_months: Sequence[str], holdout_month: str, *,
                 model_params: Mapping[str, Any] | None = None, model_kind: str = "random_forest",
                 margin: float = 0.0):
        self.bikes = bikes
        self.initial_months = tuple(initial_months)
        self.holdout_month = holdout_month
        self.months = live_months(holdout_month)
        if not self.initial_months or self.holdout_month in self.initial_months:
            raise ValueError(f"train on months before the holdout month; got {list(initial_months)} and "
                             f"{holdout_month!r}")
        self.model_kind = model_kind
        self.settings = pipeline.as_params(model_params, model_kind)
        registry.gate(0.0, 1.0, margin)  # refuses a margin outside [0, 1) now, not in the middle of a run
        self.margin = margin
        self._models: dict[tuple[str, ...], Any] = {}
        self._scores: dict[tuple[tuple[str, ...], str], tuple[float, float]] = {}

    def model(self, months: Sequence[str]):
        """The model trained on ``months`` (fitted once)."""
        key = tuple(months)
        if key not in self._models:
            self._models[key] = pipeline.train(data.select_months(self.bikes, key), self.model_kind,
                                               **self.settings)
        return self._models[key]

    def _score(self, trained_on: Sequence[str], month: str) -> tuple[float, float]:
        key = (tuple(trained_on), month)
        if key not in self._scores:
            batch = data.select_months(self.bikes, [month])
            self._scores[key] = (pipeline.evaluate(self.model(trained_on), batch)["mae"],
                                 drift_share(self.bikes, trained_on, batch))
        return self._scores[key]

    def mae(self, trained_on: Sequence[str], month: str) -> float:
        """MAE on ``month`` of the model trained on ``trained_on``."""
        return self._score(trained_on, month)[0]

    @functools.cached_property
    def naive(self) -> dict[str, float]:
        """The naive forecast's MAE per production month."""
        return {m: naive_mae(self.bikes, m) for m in self.months}

    @functools.cached_property
    def hours(self) -> dict[str, int]:
        """Hours (rows) per production month."""
        return {m: len(data.select_months(self.bikes, [m])) for m in self.months}

    def all_months(self, mae_by_month: Mapping[str, float] | pd.Series) -> float:
        """The MAE over every production hour, from the MAE of each month (weighted by its hours)."""
        maes = dict(mae_by_month)
        return sum(maes[m] * self.hours[m] for m in self.months) / sum(self.hours.values())

    @property
    def release_mae(self) -> float:
        """The release model's validation MAE: trained on the initial months, scored on the holdout month."""
        return self.mae(self.initial_months, self.holdout_month)

    def run(self, policy: Policy, *, refit: bool = True) -> pd.DataFrame:
        """Replay the year under ``policy``: one row per month (what served, its error, the decision).

        ``refit=True`` refits every model that passed the gate on all labelled months before it serves
        (the release model included); ``refit=False`` serves the model exactly as the gate judged it.
        """
        labelled = [*self.initial_months, self.holdout_month]
        trained_on = list(labelled) if refit else list(self.initial_months)
        rows = []
        for month in self.months:
            mae, share = self._score(trained_on, month)
            labelled.append(month)
            signals = Signals(month, mae, self.naive[month], share, len(labelled) - len(trained_on))
            row = {"month": month, "trained_on": _span(trained_on), "mae": mae, "naive_mae": signals.naive_mae,
                   "drift_share": share, "retrain": decide(policy, signals), "challenger_mae": math.nan,
                   "promoted": False}
            if row["retrain"]:
                challenger = labelled[:-1]
                row["challenger_mae"] = self.mae(challenger, month)
                row["promoted"], _ = registry.gate(row["challenger_mae"], mae, self.margin)
                if row["promoted"]:
                    trained_on = list(labelled) if refit else list(challenger)
            rows.append(row)
        return pd.DataFrame(rows).set_index("month")

    def compare(self, policies: Mapping[str, Policy], *, refit: bool = True, naive: bool = True) -> pd.DataFrame:
        """One row per policy (and the naive forecast): MAE per month, over all production hours, retrainings.

        Every row is scored on the same months and hours with the same metric. ``all months`` is the MAE
        over every production hour (months weighted by their hours).
        """
        rows = {}
        for name, policy in policies.items():
            run = self.run(policy, refit=refit)
            rows[name] = {**run["mae"].to_dict(), "all months": self.all_months(run["mae"]),
                          "retrainings": int(run["retrain"].sum()), "promotions": int(run["promoted"].sum())}
        if naive:
            rows[NAIVE] = {**self.naive, "all months": self.all_months(self.naive), "retrainings": None,
                           "promotions": None}
        table = pd.DataFrame.from_dict(rows, orient="index")
        table[["retrainings", "promotions"]] = table[["retrainings", "promotions"]].astype("Int64")  # naive: <NA>
        table.index.name = "policy"
        return table


def show(table: pd.DataFrame, digits: int = 2) -> str:
    """A table as text: floats rounded to ``digits``, whole numbers as they are, missing values as ``-``.

    Written out here so the text is the same under pandas 2 and 3 (which print missing values differently).
    """
    def cell(value) -> str:
        if value is None or value is pd.NA:
            return "-"
        if isinstance(value, (bool, np.bool_)):
            return "yes" if value else "no"
        if isinstance(value, (int, np.integer)):
            return str(int(value))
        if isinstance(value, (float, np.floating)):
            return "-" if math.isnan(value) else f"{value:.{digits}f}"
        return str(value)

    text = pd.DataFrame({c: [cell(v) for v in table[c].tolist()] for c in table.columns}, index=table.index)
    return text.to_string()


# ------------------------------------------------------------------ the policy, for real
@dataclass(frozen=True)
class MonthRecord:
    """What happened in one month of production (printable: no ids, paths or times; ``-`` where nothing)."""

    month: str
    served_version: str
    requests: int
    mae: float
    naive_mae: float
    drift_share: float
    retrain: bool
    challenger: str = "-"
    gate: str = "-"  # "promoted" or "kept"
    refit: str = "-"  # the version refit on every labelled month, which then serves
    data_commit: str = "-"

    def describe(self) -> str:
        """One line for the month."""
        action = "-"
        if self.retrain:
            action = f"retrained -> v{self.challenger}, "
            if self.gate != "promoted":
                action += "champion kept"
            elif self.refit != "-":
                action += f"promoted, refit as v{self.refit}, service reloaded"
            else:
                action += "promoted, service reloaded"
        return (f"{self.month:<5} served by v{self.served_version}  {self.requests:>3} requests  "
                f"MAE {self.mae:6.2f}  naive {self.naive_mae:6.2f}  drift share {self.drift_share:.2f}  {action}")


@dataclass
class ClosedLoop:
    """One year of production under ``policy``, a month per :meth:`step`.

    Needs a running service, a Prefect API server and a ``@champion`` trained on ``trained_on``.
    """

    repo: Path
    service_url: str
    bikes: pd.DataFrame
    labelled: list[str]
    policy: Policy
    trained_on: list[str]
    margin: float = 0.0
    refit: bool = True
    rows_per_request: int = 48
    model_params: dict[str, Any] = field(default_factory=dict)
    records: list[MonthRecord] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.repo = Path(self.repo)
        problem = train_config.month_problem([*self.labelled, *self.trained_on])
        if problem:
            raise ValueError(problem)
        self.labelled, self.trained_on = list(self.labelled), list(self.trained_on)

    def check_ready(self) -> None:
        """Raise :class:`LessonStateError` naming the cell to run first when a server or the champion is missing."""
        import os

        import httpx

        try:
            httpx.get(f"{self.service_url}/health", timeout=5).raise_for_status()
        except httpx.HTTPError:
            raise LessonStateError("the prediction service does not answer: run the cell of section 3 "
                                   "(start_service) first") from None
        api = os.environ.get("PREFECT_API_URL")
        try:
            if not api:
                raise httpx.ConnectError("no PREFECT_API_URL")
            httpx.get(f"{api}/health", timeout=5).raise_for_status()
        except httpx.HTTPError:
            raise LessonStateError("no Prefect API server: run the setup cell (it starts one), then the cell "
                                   "of section 2 (prefect.wait())") from None

    def step(self, month: str, batch: pd.DataFrame) -> MonthRecord:
        """One month: serve it, score it once its labels arrive, and retrain + gate + refit if the policy says so."""
        import httpx

        served = traffic.replay(self.service_url, [(month, pipeline.make_features(batch))],
                                rows_per_request=self.rows_per_request)
        mae = pipeline.metrics(batch[pipeline.TARGET], served["prediction"])["mae"]  # the labels have arrived
        self.labelled.append(month)
        signals = Signals(month, mae, naive_mae(self.bikes, month), drift_share(self.bikes, self.trained_on, batch),
                          new_months=len(self.labelled) - len(self.trained_on))
        record = MonthRecord(month, served["model_version"].iloc[0], int(served["request_id"].nunique()),
                             mae, signals.naive_mae, signals.drift_share, decide(self.policy, signals))
        if record.retrain:
            from mlops_course.orchestration import training_flow

            commit = write_data_version(self.repo, self.bikes, self.labelled)
            with registry_notices_hidden():
                result = training_flow(data_path=self.repo / stages.DATA, train_months=self.labelled[:-1],
                                       holdout_month=month, model_params=self.model_params, register=True,
                                       margin=self.margin, run_name=f"retrain-{month}")
            registry_client().set_model_version_tag(registry.MODEL_NAME, result.model_version,
                                                    "data_commit", commit)
            record = replace(record, challenger=str(result.model_version),
                             gate="promoted" if result.promoted else "kept", data_commit=commit)
            if result.promoted:
                if self.refit:
                    version = refit_champion(self.repo / stages.DATA, self.labelled, refit_of=result.model_version,
                                             data_commit=commit, model_params=self.model_params,
                                             run_name=f"refit-{month}")
                    record = replace(record, refit=version)
                    self.trained_on = list(self.labelled)
                else:
                    self.trained_on = list(self.labelled[:-1])
                httpx.post(f"{self.service_url}/reload", timeout=60).raise_for_status()
        self.records.append(record)
        return record

    def timeline(self) -> pd.DataFrame:
        """The records as a table, one row per month."""
        return pd.DataFrame([asdict(r) for r in self.records]).set_index("month")


def registry_client():
    import mlflow

    return mlflow.MlflowClient()


def require_champion() -> str:
    """The ``@champion`` version; :class:`LessonStateError` naming section 2 when there is none yet."""
    try:
        return registry.aliases()["champion"]
    except Exception:  # noqa: BLE001 - no registered model, no alias, or no store: the same advice for each
        raise LessonStateError("there is no @champion yet: run the cells of section 2 (the first champion) "
                               "first") from None


@contextlib.contextmanager
def registry_notices_hidden() -> Iterator[None]:
    """Drop MLflow's "Registered model ... / Created version ..." notices from stderr; everything else passes.

    The loop registers a model most months; one printed line per month says which version it made. Text is
    passed on line by line (``print`` writes a line and its newline separately).
    """
    real = sys.stderr
    notices = ("Successfully registered model ", "Registered model ", "Created version ")

    class Filter(io.TextIOBase):
        pending = ""

        def write(self, text: str) -> int:
            lines = (self.pending + text).split("\n")
            self.pending = lines.pop()
            for line in lines:
                if not line.startswith(notices):
                    real.write(line + "\n")
            return len(text)

        def flush(self) -> None:
            real.flush()

    hidden = Filter()
    try:
        with contextlib.redirect_stderr(hidden):
            yield
    finally:
        if hidden.pending and not hidden.pending.startswith(notices):
            real.write(hidden.pending)


def refit_champion(data_path: Path | str, months: Sequence[str], *, refit_of: str, data_commit: str | None = None,
                   model_params: Mapping[str, Any] | None = None, model_kind: str = "random_forest",
                   run_name: str | None = None) -> str:
    """Refit a gated model's recipe on every labelled month and make that model ``@champion``.

    Trains ``model_kind`` with the flow's settings on the rows of ``months`` in ``data_path`` (a data
    version of the lesson's repository), logs it in an MLflow run of the flow's experiment (no holdout
    metric: no labelled month is left to hold out), registers it with the tags ``refit_of`` and
    ``data_commit`` (MLflow's registration notices left out), and moves ``@champion`` to it. Returns the new
    version.
    """
    import mlflow

    from mlops_course.orchestration import EXPERIMENT

    months = list(months)
    rows = data.select_months(data.load_bikeshare(data_path, verify=False), months)
    if rows.empty:
        raise ValueError(f"no rows for months {months} in {Path(data_path).name}")
    settings = pipeline.as_params(model_params, model_kind)
    client = mlflow.MlflowClient()
    found = client.get_experiment_by_name(EXPERIMENT)
    experiment_id = found.experiment_id if found is not None else client.create_experiment(EXPERIMENT)
    with mlflow.start_run(run_name=run_name or f"{REFIT_RUN_PREFIX}-{months[-1]}", experiment_id=experiment_id):
        mlflow.log_params({"model_kind": model_kind, **settings, "train_months": ",".join(months),
                           "refit_of": str(refit_of), "data_sha256": data.sha256_file(data_path)[:12]})
        model = pipeline.train(rows, model_kind, **settings)
        logged = registry.log_bike_model(model, pipeline.make_features(rows))
    tags = {"train_months": ",".join(months), "refit_of": str(refit_of)}
    if data_commit:
        tags["data_commit"] = data_commit
    with registry_notices_hidden():
        return registry.register(logged, alias="champion", tags=tags)


def init_repo(path: Path | str) -> Path:
    """``versioning.init_repo`` without printing: DVC's own log records stay with DVC.

    Importing Prefect's flow module gives the root logger a console handler, which would print DVC's
    "Initialized DVC repository" records a second time, in Prefect's format.
    """
    import logging

    dvc_logger = logging.getLogger("dvc")
    saved = dvc_logger.propagate
    dvc_logger.propagate = False
    try:
        return versioning.init_repo(path, quiet=True)
    finally:
        dvc_logger.propagate = saved


def write_data_version(repo: Path, bikes: pd.DataFrame, months: Sequence[str], *, quiet: bool = True) -> str:
    """Write the rows of ``months`` to the repo's data file, ``dvc add`` it, commit; return the short hash."""
    repo = Path(repo)
    target = repo / stages.DATA
    target.parent.mkdir(parents=True, exist_ok=True)
    rows = data.select_months(bikes, months)
    if rows.empty:
        raise ValueError(f"no rows for months {list(months)}: nothing to version")
    rows.to_csv(target, index=False)
    versioning.run(["dvc", "add", "--quiet", str(stages.DATA)], repo, quiet=quiet)
    return versioning.commit(repo, f"data: {_span(months)} ({len(rows)} hours)", f"{stages.DATA}.dvc",
                             str(stages.DATA.parent / ".gitignore"), quiet=quiet)


def _span(months: Sequence[str]) -> str:
    months = list(months)
    return months[0] if len(months) == 1 else f"{months[0]}-{months[-1]}"


def lineage(records: Sequence[MonthRecord], first_version: str, first_commit: str) -> pd.DataFrame:
    """Every model version: its training months, holdout month and MAE, what it refits, its data commit,
    the months it served and its aliases (``-`` where there is none)."""
    import mlflow

    client = mlflow.MlflowClient()
    rows = []
    found = client.search_model_versions(f"name='{registry.MODEL_NAME}'")
    for number in sorted(int(v.version) for v in found):
        mv = client.get_model_version(registry.MODEL_NAME, str(number))  # search results carry no aliases
        run = client.get_run(mv.run_id)
        served = [r.month for r in records if r.served_version == str(mv.version)]
        holdout_mae = run.data.metrics.get("holdout_mae")
        commit = mv.tags.get("data_commit") or (first_commit if str(mv.version) == str(first_version) else "-")
        rows.append({"version": str(mv.version),
                     "trained_on": _span(run.data.params.get("train_months", "").split(",")),
                     "holdout": run.data.params.get("holdout_month", "-"),
                     "holdout_mae": "-" if holdout_mae is None else f"{holdout_mae:.2f}",
                     "refit_of": "-" if "refit_of" not in mv.tags else f"v{mv.tags['refit_of']}",
                     "data_commit": commit, "served": ",".join(served) or "-",
                     "aliases": ",".join(sorted(mv.aliases)) or "-"})
    return pd.DataFrame(rows).set_index("version")


def plot_timeline(timeline: pd.DataFrame, drift_threshold: float):
    """Error of the served model and of the naive forecast per month, drift share, and the retrainings."""
    import matplotlib.pyplot as plt

    fig, (ax_err, ax_drift) = plt.subplots(2, 1, figsize=(8.0, 5.0), sharex=True)
    x = range(len(timeline))
    ax_err.plot(x, timeline["mae"], marker="o", color="#C44E52", label="MAE of served predictions")
    ax_err.plot(x, timeline["naive_mae"], marker=".", ls="--", color="#8C8C8C", label="naive: same hour last week")
    for i, (_, row) in enumerate(timeline.iterrows()):
        ax_err.annotate(f"v{row['served_version']}", (i, row["mae"]), textcoords="offset points", xytext=(0, 7),
                        ha="center", fontsize=8)
        if row["retrain"]:
            colour = "#55A868" if row["gate"] == "promoted" else "#8C8C8C"
            for ax in (ax_err, ax_drift):
                ax.axvline(i + 0.5, color=colour, lw=2, alpha=0.6)
    ax_err.set_ylabel("bikes per hour")
    ax_err.set_ylim(0, 1.25 * max(timeline["mae"].max(), timeline["naive_mae"].max()))
    ax_err.legend(loc="lower left", fontsize=8)
    ax_err.set_title("A year in production: green lines = retrained and promoted, grey = champion kept")
    ax_drift.bar(x, timeline["drift_share"], color="#4C72B0", alpha=0.7, label="drift share")
    ax_drift.axhline(drift_threshold, ls="--", color="#4C72B0", alpha=0.6, label="lesson 05's drift threshold")
    ax_drift.set_ylabel("share of features\nthat drift")
    ax_drift.set_ylim(0, 1)
    ax_drift.legend(loc="lower left", fontsize=8)
    ax_drift.set_xticks(list(x), list(timeline.index))
    fig.tight_layout()
    return fig


def at_scale_diagram():
    """Where each piece of the loop runs in production."""
    from mlops_course.diagrams import flow_diagram

    boxes = ["object storage\n(S3/GCS)\nDVC remote", "Prefect workers\n(Kubernetes jobs)\nretrain flow",
             "MLflow server\n+ PostgreSQL\n+ artifact store", "Kubernetes\nDeployment\n(FastAPI pods)",
             "Prometheus\n+ Grafana\n+ Alertmanager", "CI/CD\n(GitHub Actions)\ntests + gate"]
    # The loop retrain -> registry -> service -> monitoring -> retrain is the square in the middle; data feeds
    # it from the left, CI/CD registers gated models and deploys the service from the right. No arrow crosses a box.
    positions = [(0, 0.2), (1.9, 1), (3.8, 1), (3.8, -0.6), (1.9, -0.6), (5.7, 0.2)]
    edges = [(0, 1), (1, 2), (2, 3), (3, 4), (4, 1), (5, 2), (5, 3)]
    return flow_diagram(boxes, edges=edges, positions=positions, title="The same loop at scale",
                        figsize=(9.0, 3.6), fit_arrows=True)
