"""Loading the model a service serves: resolve ``models:/<name>@<alias>`` and load ONNX or scikit-learn.

The prediction service (``serving.py``) calls :func:`load_served_model` at start-up and on ``POST /reload``.
The alias is resolved once with ``registry.version_by_alias``; that version is then loaded by number, from its
ONNX copy (the URI in its ``registry.ONNX_TAG`` tag) or with ``mlflow.sklearn``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from mlops_course import packaging, pipeline, registry

BACKENDS = ("auto", "onnx", "sklearn")


class ModelLoadError(RuntimeError):
    """The registry has no model for the alias, or the requested backend cannot serve it."""


@dataclass(frozen=True)
class ServedModel:
    """One loaded model version and the function that predicts with it."""

    name: str
    alias: str
    version: str
    backend: str  # "onnx" or "sklearn"
    predictor: Callable[[np.ndarray], np.ndarray] = field(repr=False, compare=False)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predicted bikes per hour (float64) for a matrix of rows in ``pipeline.FEATURES`` order."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != len(pipeline.FEATURES):
            raise ValueError(f"expected a matrix with {len(pipeline.FEATURES)} columns {pipeline.FEATURES}; "
                             f"got shape {X.shape}")
        return np.asarray(self.predictor(X), dtype=np.float64).ravel()


@contextlib.contextmanager
def tracking_store(uri: str | None) -> Iterator[None]:
    """Point MLflow at ``uri`` for the duration of a block, then restore exactly what was set before."""
    import mlflow

    if not uri or uri == mlflow.get_tracking_uri():
        yield
        return
    from mlflow.tracking._tracking_service import utils as tracking_utils

    previous = getattr(tracking_utils, "_tracking_uri", None)  # None: nothing was set explicitly
    previous_env = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)
        if previous_env is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = previous_env


def _sklearn_predictor(model) -> Callable[[np.ndarray], np.ndarray]:
    # The model was fitted on a DataFrame: give it one, so scikit-learn checks the column names.
    def predict(X: np.ndarray) -> np.ndarray:
        return model.predict(pd.DataFrame(X, columns=pipeline.FEATURES))

    return predict


def _onnx_predictor(session) -> Callable[[np.ndarray], np.ndarray]:
    def predict(X: np.ndarray) -> np.ndarray:
        return packaging.onnx_predict(session, X)

    return predict


def check_signature(name: str, version: str) -> None:
    """Refuse a version whose signature inputs are not the columns the service's request schema is built from.

    The ``/predict`` schema lists ``pipeline.FEATURES`` with their units and ranges; a model logged with other
    inputs would get rows it cannot use, so it is never served.
    """
    import mlflow

    signature = mlflow.models.get_model_info(f"models:/{name}/{version}").signature
    if signature is None:
        raise ModelLoadError(f"version {version} of {name!r} was logged without a signature; log it with one "
                             f"(registry.log_bike_model does) so the service can check its inputs")
    inputs = signature.inputs.input_names()
    if list(inputs) != list(pipeline.FEATURES):
        raise ModelLoadError(f"version {version} of {name!r} expects inputs {list(inputs)}, but this service's "
                             f"request schema has {list(pipeline.FEATURES)}; serve it with a service built for "
                             f"those columns, or register a model trained on pipeline.FEATURES")


def load_served_model(name: str = registry.MODEL_NAME, alias: str = "champion", *,
                      tracking_uri: str | None = None, backend: str = "auto",
                      version: str | int | None = None) -> ServedModel:
    """Load the version ``alias`` points at. ``backend``: ``"auto"`` (ONNX when the version has an ONNX copy,
    scikit-learn otherwise), ``"onnx"`` or ``"sklearn"``.

    The alias is resolved once and that version is loaded by number, so the returned version always
    matches the loaded model even when the alias moves meanwhile. A version whose signature does not match
    the request schema is refused (:func:`check_signature`).

    ``version``: load that version instead and leave the alias alone (a Deployment pinned to the version the
    alias named when its manifest was written: a restarted pod loads the same model). ``alias`` is then only
    reported, as where the version came from.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {BACKENDS}")
    if version is None:
        with tracking_store(tracking_uri):
            try:
                version = registry.version_by_alias(alias, name).version
            except registry.AliasError as exc:
                raise ModelLoadError(str(exc)) from None
    return _load_version(name, alias, str(version), tracking_uri=tracking_uri, backend=backend)


def _load_version(name: str, alias: str, version: str, *, tracking_uri: str | None, backend: str) -> ServedModel:
    """One pinned version, loaded with the same checks as an alias (signature, ONNX copy for ``onnx``)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    if not version.isdigit():
        raise ModelLoadError(f"a model version is a whole number like 3; got {version!r}")
    with tracking_store(tracking_uri):
        try:
            mv = mlflow.MlflowClient().get_model_version(name, version)
        except MlflowException:
            raise ModelLoadError(f"model {name!r} has no version {version}") from None
        check_signature(name, version)
        onnx_uri = mv.tags.get(registry.ONNX_TAG)
        if backend == "onnx" and not onnx_uri:
            raise ModelLoadError(f"version {version} of {name!r} has no ONNX copy (tag {registry.ONNX_TAG!r}); "
                                 f"serve it with backend='sklearn' or 'auto'")
        if onnx_uri and backend in ("auto", "onnx"):
            session = packaging.onnx_session(mlflow.onnx.load_model(onnx_uri))
            return ServedModel(name, alias, version, "onnx", _onnx_predictor(session))
        model = mlflow.sklearn.load_model(f"models:/{name}/{version}")
        return ServedModel(name, alias, version, "sklearn", _sklearn_predictor(model))
