"""The closed loop of the capstone (lesson 08): serve, monitor, retrain, gate, promote, reload, for real.

:class:`ClosedLoop` keeps no copy of any stage: each month it calls the pieces of the earlier lessons.

1. ``traffic.replay``: the month's hours go to the running prediction service over HTTP (lesson 04/05).
2. ``drift.drift_table``: the month's inputs against the data the serving model learned from (lesson 05).
3. The month's labels arrive: the error of what was served, from the service's own answers.
4. ``monitoring.should_retrain``: the rule of lesson 05, on the drift score and that error.
5. If it fires: a new data version in the DVC repository (``dvc add`` + ``git commit``, lesson 01), the Prefect
   ``training_flow`` (lesson 07) trains on every labelled month before this one, and its gate
   (``registry.promote_if_better``, lessons 03/06) moves ``@champion`` only if the challenger has the lower
   MAE on this month. The service then reloads the alias (``POST /reload``) without restarting.

The drift score is the share of features whose PSI is above ``drift.PSI_SIGNIFICANT`` (0.25).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from mlops_course import data, drift, monitoring, pipeline, registry, stages, traffic, versioning

CATEGORICAL = ["weekday", "workingday", "holiday", "weather"]


@dataclass(frozen=True)
class Policy:
    """When to retrain, and how strict the gate is."""

    drift_threshold: float = 0.3  # share of features with PSI above 0.25
    error_threshold: float = 40.0  # MAE in bikes per hour
    margin: float = 0.0  # the challenger must beat the champion's MAE by this fraction
    rows_per_request: int = 48


@dataclass(frozen=True)
class MonthRecord:
    """What happened in one month of production (printable: no ids, paths or times)."""

    month: str
    served_version: str
    requests: int
    mae: float
    drift_score: float
    retrain: bool
    challenger: str | None = None
    promoted: bool | None = None
    data_commit: str | None = None


@dataclass
class ClosedLoop:
    """One year of production, a month per :meth:`step`. Needs a running service and Prefect API server."""

    repo: Path
    service_url: str
    bikes: pd.DataFrame
    labelled: list[str]
    policy: Policy = field(default_factory=Policy)
    model_params: dict[str, Any] = field(default_factory=dict)
    records: list[MonthRecord] = field(default_factory=list)
    reference_months: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.repo = Path(self.repo)
        unknown = [m for m in self.labelled if m not in data.MONTHS]
        if unknown:
            raise ValueError(f"unknown month(s) {unknown}; use {data.MONTHS}")
        if not self.reference_months:
            self.reference_months = list(self.labelled)

    def reference(self) -> pd.DataFrame:
        """Features of the months the serving model was trained on: what drift is measured against."""
        return pipeline.make_features(data.select_months(self.bikes, self.reference_months))

    def step(self, month: str, batch: pd.DataFrame) -> MonthRecord:
        """One month: serve it, measure drift and (delayed) error, and retrain + gate + reload if the rule fires."""
        import httpx

        features = pipeline.make_features(batch)
        served = traffic.replay(self.service_url, [(month, features)],
                                rows_per_request=self.policy.rows_per_request)
        table = drift.drift_table(self.reference(), features, categorical=CATEGORICAL)
        score = float((table["psi"] > drift.PSI_SIGNIFICANT).mean())
        mae = pipeline.metrics(batch[pipeline.TARGET], served["prediction"])["mae"]  # labels have arrived
        self.labelled.append(month)
        retrain = monitoring.should_retrain(score, mae, drift_threshold=self.policy.drift_threshold,
                                            error_threshold=self.policy.error_threshold)
        record = MonthRecord(month, served["model_version"].iloc[0], int(served["request_id"].nunique()),
                             round(mae, 2), round(score, 2), retrain)
        if retrain:
            from mlops_course.orchestration import training_flow

            train_months = self.labelled[:-1]
            commit = write_data_version(self.repo, self.bikes, self.labelled)
            result = training_flow(data_path=self.repo / stages.DATA, train_months=train_months,
                                   holdout_month=month, model_params=self.model_params, register=True,
                                   margin=self.policy.margin, run_name=f"retrain-{month}")
            registry_client().set_model_version_tag(registry.MODEL_NAME, result.model_version,
                                                    "data_commit", commit)
            if result.promoted:
                httpx.post(f"{self.service_url}/reload", timeout=60).raise_for_status()
                self.reference_months = list(train_months)
            record = MonthRecord(**{**asdict(record), "challenger": result.model_version,
                                    "promoted": bool(result.promoted), "data_commit": commit})
        self.records.append(record)
        return record

    def timeline(self) -> pd.DataFrame:
        """The records as a table, one row per month."""
        return pd.DataFrame([asdict(r) for r in self.records]).set_index("month")


def registry_client():
    import mlflow

    return mlflow.MlflowClient()


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
    span = months[0] if len(months) == 1 else f"{months[0]}-{months[-1]}"
    return versioning.commit(repo, f"data: {span} ({len(rows)} hours)", f"{stages.DATA}.dvc",
                             str(stages.DATA.parent / ".gitignore"), quiet=quiet)


def lineage(records: Sequence[MonthRecord], first_version: str, first_commit: str) -> pd.DataFrame:
    """Every model version with its training data (git commit of the DVC data), holdout MAE and months served."""
    import mlflow

    client = mlflow.MlflowClient()
    rows = []
    found = client.search_model_versions(f"name='{registry.MODEL_NAME}'")
    for number in sorted(int(v.version) for v in found):
        mv = client.get_model_version(registry.MODEL_NAME, str(number))  # search results carry no aliases
        run = client.get_run(mv.run_id)
        served = [r.month for r in records if r.served_version == str(mv.version)]
        rows.append({"version": str(mv.version),
                     "trained_on": run.data.params.get("train_months", "").replace(",", "+"),
                     "holdout": run.data.params.get("holdout_month"),
                     "holdout_mae": round(run.data.metrics.get("holdout_mae", float("nan")), 2),
                     "data_commit": mv.tags.get("data_commit", first_commit if str(mv.version) == first_version
                                                else None),
                     "served": ",".join(served) or "-",
                     "aliases": ",".join(sorted(mv.aliases)) or "-"})
    return pd.DataFrame(rows).set_index("version")


def plot_timeline(timeline: pd.DataFrame, policy: Policy):
    """Error and drift per month, retraining events and the version serving each month."""
    import matplotlib.pyplot as plt

    fig, (ax_err, ax_drift) = plt.subplots(2, 1, figsize=(8.0, 5.0), sharex=True)
    x = range(len(timeline))
    ax_err.plot(x, timeline["mae"], marker="o", color="#C44E52", label="MAE of served predictions")
    ax_err.axhline(policy.error_threshold, ls="--", color="#C44E52", alpha=0.5, label="error threshold")
    for i, (month, row) in enumerate(timeline.iterrows()):
        ax_err.annotate(f"v{row['served_version']}", (i, row["mae"]), textcoords="offset points", xytext=(0, 7),
                        ha="center", fontsize=8)
        if row["retrain"]:
            colour = "#55A868" if row["promoted"] else "#8C8C8C"
            for ax in (ax_err, ax_drift):
                ax.axvline(i + 0.5, color=colour, lw=2, alpha=0.6)
    ax_err.set_ylabel("bikes per hour")
    ax_err.legend(loc="upper right", fontsize=8)
    ax_err.set_title("A year in production: green lines = retrained and promoted, grey = champion kept")
    ax_drift.bar(x, timeline["drift_score"], color="#4C72B0", alpha=0.7, label="drift score")
    ax_drift.axhline(policy.drift_threshold, ls="--", color="#4C72B0", alpha=0.6, label="drift threshold")
    ax_drift.set_ylabel("share of features\nwith PSI > 0.25")
    ax_drift.set_ylim(0, 1)
    ax_drift.legend(loc="upper right", fontsize=8)
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
