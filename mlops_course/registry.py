"""Logging, registering, aliasing and loading the bike model in the MLflow Model Registry.

A course model version is the scikit-learn model (saved with skops) plus, when it converts, an ONNX copy
logged in the same run; the version's tag ``onnx_model_uri`` points at that copy so the service can serve it
with ONNX Runtime.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from mlops_course import packaging, pipeline

MODEL_NAME = "bike-demand"
ONNX_TAG = "onnx_model_uri"
# What each flavour needs at load time; log_bike_model pins them to the installed versions
# (packaging.pin_requirements), so a model's requirements.txt fixes every version.
SKLEARN_REQUIREMENTS = ["scikit-learn", "skops", "numpy", "pandas"]
ONNX_REQUIREMENTS = ["onnxruntime", "onnx", "numpy"]
MODEL_CARD_TAG = "model_card"
MODEL_CARD_DIR = "model_card"


class AliasError(LookupError):
    """An alias that the registered model does not have."""


@dataclass(frozen=True)
class LoggedBikeModel:
    model_uri: str
    onnx_model_uri: str | None
    run_id: str


def log_bike_model(model, X_example: pd.DataFrame, *, name: str = "model", onnx: bool = True) -> LoggedBikeModel:
    """Log a fitted course model in the active run: skops-saved sklearn flavour with signature, plus ONNX."""
    import mlflow

    run = mlflow.active_run()
    if run is None:
        raise RuntimeError("log_bike_model needs an active run: call it inside `with mlflow.start_run():`")
    example = X_example[pipeline.FEATURES].head(5)
    kind = pipeline.model_kind(model)
    info = mlflow.sklearn.log_model(model, name=name, input_example=example,
                                    pip_requirements=packaging.pin_requirements(SKLEARN_REQUIREMENTS),
                                    serialization_format="skops",
                                    skops_trusted_types=pipeline.SKOPS_TRUSTED[kind] or None)
    onnx_uri = None
    if onnx and kind != "gradient_boosting":
        proto = packaging.to_onnx(model)
        # CPU only: MLflow's default also lists CUDA and then warns on every log that it is missing.
        onnx_info = mlflow.onnx.log_model(proto, name=f"{name}-onnx",
                                          pip_requirements=packaging.pin_requirements(ONNX_REQUIREMENTS),
                                          input_example=example.to_numpy(dtype="float32"),
                                          onnx_execution_providers=["CPUExecutionProvider"])
        onnx_uri = onnx_info.model_uri
    return LoggedBikeModel(info.model_uri, onnx_uri, run.info.run_id)


def register(logged: LoggedBikeModel, *, name: str = MODEL_NAME, alias: str | None = None,
             description: str | None = None, tags: Mapping[str, Any] | None = None) -> str:
    """Register a logged model as a new version of ``name``; optionally set an alias. Returns the version."""
    import mlflow

    client = mlflow.MlflowClient()
    version = mlflow.register_model(logged.model_uri, name).version
    if logged.onnx_model_uri:
        client.set_model_version_tag(name, version, ONNX_TAG, logged.onnx_model_uri)
    for key, value in (tags or {}).items():
        client.set_model_version_tag(name, version, key, str(value))
    if description:
        client.update_model_version(name, version, description=description)
    if alias:
        client.set_registered_model_alias(name, alias, version)
    return str(version)


def aliases(name: str = MODEL_NAME, *, tracking_uri: str | None = None) -> dict[str, str]:
    """The aliases of a registered model and the version each points at (``tracking_uri``: the current one)."""
    import mlflow

    model = mlflow.MlflowClient(tracking_uri=tracking_uri).get_registered_model(name)
    return {k: str(v) for k, v in sorted(model.aliases.items())}


def version_by_alias(alias: str, name: str = MODEL_NAME, *, tracking_uri: str | None = None):
    """The ``ModelVersion`` an alias points at; ``AliasError`` lists the aliases that exist."""
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        try:
            existing = aliases(name, tracking_uri=tracking_uri)
        except MlflowException:
            raise AliasError(f"no registered model named {name!r}; register one first") from None
        raise AliasError(f"model {name!r} has no alias {alias!r}; existing aliases: "
                         f"{existing or 'none'}") from None


def load_sklearn(alias: str = "champion", name: str = MODEL_NAME):
    """The scikit-learn estimator behind ``models:/<name>@<alias>`` (skops, trusted tree types only)."""
    import mlflow

    version_by_alias(alias, name)
    return mlflow.sklearn.load_model(f"models:/{name}@{alias}")


def load_onnx_session(alias: str = "champion", name: str = MODEL_NAME):
    """An ONNX Runtime session for the alias's version, or ``None`` when it has no ONNX copy."""
    import mlflow

    version = version_by_alias(alias, name)
    uri = version.tags.get(ONNX_TAG)
    if not uri:
        return None
    return packaging.onnx_session(mlflow.onnx.load_model(uri))


@dataclass(frozen=True)
class GateResult:
    """The decision of the promotion gate, with the numbers it was based on."""

    promoted: bool
    challenger_version: str
    champion_version: str | None
    challenger_mae: float
    champion_mae: float | None
    reason: str
    margin: float = 0.0  # the relative margin the challenger had to beat the champion by

    def __str__(self) -> str:
        return self.reason


def gate(challenger_mae: float, champion_mae: float | None, margin: float = 0.0) -> tuple[bool, str]:
    """Promote when there is no champion, or the challenger's MAE is lower by more than ``margin`` (relative)."""
    import math
    from numbers import Real

    for label, value in (("challenger_mae", challenger_mae), ("champion_mae", champion_mae)):
        if value is not None and not (isinstance(value, Real) and math.isfinite(value) and value >= 0):
            raise ValueError(f"{label} must be a finite number >= 0 (a mean absolute error); got {value!r}")
    if champion_mae is None:
        return True, "no champion yet: the challenger is promoted"
    if not 0 <= margin < 1:
        raise ValueError(f"margin is a fraction of the champion's MAE in [0, 1); got {margin}")
    needed = champion_mae * (1 - margin)
    if challenger_mae < needed:
        return True, (f"challenger MAE {challenger_mae:.2f} beats champion MAE {champion_mae:.2f} "
                      f"(needed below {needed:.2f}): promoted")
    return False, (f"challenger MAE {challenger_mae:.2f} does not beat champion MAE {champion_mae:.2f} "
                   f"(needed below {needed:.2f}): champion kept")


def promote_if_better(challenger_version: str, holdout: pd.DataFrame, *, name: str = MODEL_NAME,
                      margin: float = 0.0, champion_alias: str = "champion",
                      challenger_alias: str | None = "challenger") -> GateResult:
    """Score challenger and champion on ``holdout``; move the champion alias only if the challenger wins."""
    import mlflow

    client = mlflow.MlflowClient()
    challenger_version = str(challenger_version)
    challenger = mlflow.sklearn.load_model(f"models:/{name}/{challenger_version}")
    challenger_mae = pipeline.evaluate(challenger, holdout)["mae"]
    try:
        champion_version = str(version_by_alias(champion_alias, name).version)
        champion_mae = pipeline.evaluate(load_sklearn(champion_alias, name), holdout)["mae"]
    except AliasError:
        champion_version, champion_mae = None, None
    if challenger_alias:
        client.set_registered_model_alias(name, challenger_alias, challenger_version)
    promoted, reason = gate(challenger_mae, champion_mae, margin)
    if promoted:
        client.set_registered_model_alias(name, champion_alias, challenger_version)
    return GateResult(promoted, challenger_version, champion_version, challenger_mae, champion_mae, reason,
                      float(margin))


def log_model_card(card_path, version: str | int, name: str = MODEL_NAME) -> str:
    """Log a model card file as an artifact of the run that produced ``version`` and tag the version with it.

    Returns the card's artifact URI (``runs:/<run id>/model_card/<file>``), also stored in the version's tag
    ``model_card``.
    """
    from pathlib import Path

    import mlflow
    from mlflow.exceptions import MlflowException

    card_path = Path(card_path)
    if not card_path.is_file():
        raise FileNotFoundError(f"no model card at {card_path.name}: write it first (packaging.write_model_card)")
    client = mlflow.MlflowClient()
    try:
        mv = client.get_model_version(name, str(version))
    except MlflowException:
        versions = sorted(int(v.version) for v in client.search_model_versions(f"name='{name}'"))
        raise LookupError(f"model {name!r} has no version {version}; versions: {versions or 'none'}") from None
    client.log_artifact(mv.run_id, str(card_path), artifact_path=MODEL_CARD_DIR)
    uri = f"runs:/{mv.run_id}/{MODEL_CARD_DIR}/{card_path.name}"
    client.set_model_version_tag(name, str(version), MODEL_CARD_TAG, uri)
    return uri
