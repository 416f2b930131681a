"""Model formats for deployment: ONNX export of the bike model and a parity check against scikit-learn.

Lesson 03 teaches these; the registry (``registry.py``) and the service (``serving.py``) use them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from mlops_course import pipeline

ONNX_INPUT = "features"


def _check_fitted(model) -> None:
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    try:
        check_is_fitted(model)
    except NotFittedError:
        raise ValueError(f"{type(model).__name__} is not fitted: call fit (or pipeline.train) before exporting"
                         ) from None


def _check_features(model, feature_names: Sequence[str]) -> None:
    seen = list(getattr(model, "feature_names_in_", feature_names))
    if list(feature_names) != seen:
        raise ValueError(f"feature names do not match the model: the model was fitted on {seen}, "
                         f"export was asked for {list(feature_names)}")


def to_onnx(model, feature_names: Sequence[str] = pipeline.FEATURES):
    """Convert a fitted course model to an ONNX ``ModelProto`` with one float input named ``features``.

    Random forests and ridge models convert; scikit-learn's HistGradientBoosting does not with the pinned
    skl2onnx and onnx versions (the converter passes booleans where onnx expects integers).
    """
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    _check_fitted(model)
    _check_features(model, feature_names)
    try:
        return convert_sklearn(model, initial_types=[(ONNX_INPUT, FloatTensorType([None, len(feature_names)]))],
                               name="bike-demand")
    except Exception as exc:
        raise ValueError(f"{type(model).__name__} cannot be converted to ONNX here "
                         f"({type(exc).__name__}); use random_forest or ridge") from None


def onnx_session(onnx_model):
    """An ONNX Runtime session for a ``ModelProto`` (or its serialized bytes), on the CPU."""
    import onnxruntime as ort

    blob = onnx_model if isinstance(onnx_model, bytes) else onnx_model.SerializeToString()
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(blob, options, providers=["CPUExecutionProvider"])


def onnx_predict(session, X: pd.DataFrame | np.ndarray) -> np.ndarray:
    """Predictions of an ONNX Runtime session for a feature table (columns in ``FEATURES`` order)."""
    values = X[pipeline.FEATURES].to_numpy() if isinstance(X, pd.DataFrame) else np.asarray(X)
    return session.run(None, {ONNX_INPUT: values.astype(np.float32)})[0].ravel()


def parity(model, session, X: pd.DataFrame) -> float:
    """The largest absolute difference between scikit-learn's and ONNX Runtime's predictions on ``X``."""
    return float(np.max(np.abs(model.predict(X) - onnx_predict(session, X))))
