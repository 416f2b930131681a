"""Model formats and packaging for deployment: ONNX export and parity, latency, pinned requirements,
a Dockerfile for serving, and the model card.

Lesson 03 teaches these; the registry (``registry.py``) and the service (``serving.py``) use them.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence

import numpy as np
import pandas as pd

from mlops_course import pipeline, train_config

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
        converted = convert_sklearn(model, initial_types=[(ONNX_INPUT, FloatTensorType([None, len(feature_names)]))],
                                    name="bike-demand")
    except Exception as exc:  # noqa: BLE001 - skl2onnx raises many types; all mean the same to the learner
        raise ValueError(f"{type(model).__name__} cannot be converted to ONNX here "
                         f"({type(exc).__name__}); use random_forest or ridge") from None
    release_free_memory()  # the converter's scratch: about 70 MiB for a deep forest (tests/test_packaging.py)
    return converted


def onnx_session(onnx_model):
    """An ONNX Runtime session for a ``ModelProto`` (or its serialized bytes), on the CPU."""
    import onnxruntime as ort

    blob = onnx_model if isinstance(onnx_model, bytes) else onnx_model.SerializeToString()
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(blob, options, providers=["CPUExecutionProvider"])
    del blob
    release_free_memory()
    return session


def release_free_memory() -> bool:
    """Hand the heap that a model load freed back to the OS (glibc's ``malloc_trim``); False where the C
    library has no such call (macOS, musl). Building an ONNX Runtime session for a forest of about 3 MiB,
    in a worker thread as the service's ``/reload`` does, leaves some 80 MiB freed but kept by glibc (measured
    by tests/test_packaging.py); ``onnx_session`` and ``to_onnx`` call this before they return."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return False
    trim(0)
    return True


def onnx_predict(session, X: pd.DataFrame | np.ndarray) -> np.ndarray:
    """Predictions of an ONNX Runtime session for a feature table (columns in ``FEATURES`` order)."""
    values = X[pipeline.FEATURES].to_numpy() if isinstance(X, pd.DataFrame) else np.asarray(X)
    return session.run(None, {ONNX_INPUT: values.astype(np.float32)})[0].ravel()


def parity(model, session, X: pd.DataFrame) -> float:
    """The largest absolute difference between scikit-learn's and ONNX Runtime's predictions on ``X``."""
    return float(np.max(np.abs(model.predict(X) - onnx_predict(session, X))))


# ---------------------------------------------------------------- latency: scikit-learn vs ONNX Runtime
def seconds_per_call(fn, *, budget: float = 0.2, repeats: int = 5) -> float:
    """The fastest of ``repeats`` timings of ``fn()`` (seconds per call), spending about ``budget`` seconds.

    The minimum is the usual estimate for a micro-benchmark: other processes only ever add time.
    """
    import timeit

    if budget <= 0 or repeats < 1:
        raise ValueError(f"need budget > 0 and repeats >= 1; got budget={budget}, repeats={repeats}")
    timer = timeit.Timer(fn)
    first = max(timer.timeit(number=1), 1e-7)
    number = max(1, int(budget / repeats / first))
    return min(timer.repeat(repeat=repeats, number=number)) / number


def compare_latency(model, session, X: pd.DataFrame, *, batch_rows: int | None = None,
                    budget: float = 0.2) -> pd.DataFrame:
    """Milliseconds per call of ``model.predict`` and of the ONNX session, for one row and for a batch.

    Each gets its input ready-made, as a service would build it from a request: a DataFrame with the feature
    names for scikit-learn, a float32 array for ONNX Runtime. Returns one row per case with the speed-up.
    """
    if not isinstance(X, pd.DataFrame) or X.empty:
        raise ValueError("X must be a non-empty DataFrame of features (pipeline.make_features)")
    missing = [c for c in pipeline.FEATURES if c not in X.columns]
    if missing:
        raise ValueError(f"X lacks feature column(s) {missing}; build it with pipeline.make_features")
    batch = X[pipeline.FEATURES] if batch_rows is None else X[pipeline.FEATURES].head(batch_rows)
    rows = []
    for case, part in (("1 row", batch.head(1)), (f"{len(batch)} rows", batch)):
        values = part.to_numpy(dtype=np.float32)
        sk = seconds_per_call(lambda part=part: model.predict(part), budget=budget)
        ox = seconds_per_call(lambda values=values: session.run(None, {ONNX_INPUT: values}), budget=budget)
        rows.append({"case": case, "sklearn_ms": sk * 1e3, "onnx_ms": ox * 1e3, "speedup": sk / ox})
    return pd.DataFrame(rows).set_index("case")


def plot_latency(table: pd.DataFrame):
    """Bar chart (log scale) of the table from :func:`compare_latency`; returns the figure."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.2))
    table[["sklearn_ms", "onnx_ms"]].rename(columns={"sklearn_ms": "scikit-learn", "onnx_ms": "ONNX Runtime"}
                                          ).plot.bar(ax=ax, rot=0, logy=True, color=["#4C72B0", "#55A868"])
    ax.set_ylabel("milliseconds per call (log)")
    ax.set_xlabel("")
    ax.set_title("Prediction latency, lower is better")
    for i, speedup in enumerate(table["speedup"]):
        ax.annotate(f"ONNX {speedup:.0f}x faster", (i, table["sklearn_ms"].iloc[i]), xytext=(0, 4),
                    textcoords="offset points", ha="center", fontsize=8)
    ax.margins(y=0.2)
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- requirements and container recipe
def _requirement_name(line: str) -> str:
    import re

    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", line)
    if not match:
        raise ValueError(f"{line!r} is not a requirement line like 'numpy' or 'numpy==2.4.6'")
    return match.group(1)


def pin_requirements(requirements: Sequence[str]) -> list[str]:
    """Pin every requirement to the version installed here: ``"numpy"`` becomes ``"numpy==2.4.6"``.

    Lines that already say ``==`` stay as they are; comments and blank lines are dropped. A package that is
    not installed is an error, because the pin would be a guess.
    """
    from importlib import metadata

    pinned = []
    for raw in requirements:
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if "==" in line:
            _requirement_name(line)  # a pin still needs a package name in front of it
            pinned.append(line)
            continue
        if any(op in line for op in ("<", ">", "~=", "!=", "@")):
            raise ValueError(f"{line!r} is a range or a URL, not a pin; write it as name==version")
        name = _requirement_name(line)
        try:
            pinned.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            raise ValueError(f"cannot pin {name!r}: it is not installed in this environment") from None
    return pinned


def unpinned(requirements: Sequence[str]) -> list[str]:
    """The requirement lines that do not fix one exact version (``==``)."""
    lines = [r.split("#", 1)[0].strip() for r in requirements]
    return [line for line in lines if line and "==" not in line]


SERVE_PORT = 8080


def dockerfile_base(*, python: str | None, port: int, requirements: str) -> str:
    """The lines every course image starts with: a slim Python base, telemetry off, pinned dependencies first.

    ``python`` defaults to this interpreter's ``major.minor``; ``requirements`` is the file installed in the
    first layer, so the layer is rebuilt only when that file changes.
    """
    import sys

    python = python or f"{sys.version_info.major}.{sys.version_info.minor}"
    if not python.replace(".", "").isdigit():
        raise ValueError(f"python must be a version like '3.11'; got {python!r}")
    if not 1 <= int(port) <= 65535:
        raise ValueError(f"port must be in 1..65535; got {port}")
    from mlops_course import templates

    return templates.render("image-base.Dockerfile", python=python, requirements=requirements)


def dockerfile(*, python: str | None = None, port: int = SERVE_PORT, model_dir: str = "model",
               title: str = "the model") -> str:
    """A Dockerfile that serves an MLflow model directory with ``mlflow models serve`` (no conda, no nginx).

    The image installs the pinned ``requirements.txt`` first (a cached layer while only the model changes),
    copies the model, runs as an unprivileged numeric user and answers ``GET /ping`` and ``POST /invocations``.
    hadolint finds nothing in it (``tests/test_packaging.py`` checks).
    ``python`` defaults to this interpreter's ``major.minor``.
    """
    from mlops_course import templates

    base = dockerfile_base(python=python, port=port, requirements="requirements.txt")
    return templates.render("mlflow-serve.Dockerfile", title=title, port=port, base=base, model_dir=model_dir)


def write_serving_bundle(model_uri: str, out_dir, *, python: str | None = None, port: int = SERVE_PORT):
    """A folder to build a serving image from: ``model/`` (the MLflow model), ``requirements.txt``, ``Dockerfile``.

    The model's own ``requirements.txt`` is pinned to the versions installed here (see
    :func:`pin_requirements`). Returns the folder as a ``Path``.
    """
    from pathlib import Path

    import mlflow

    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out.name} already exists and is not empty: pick a new folder")
    out.mkdir(parents=True, exist_ok=True)
    model_path = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=str(out / "model")))
    if not (model_path / "MLmodel").is_file():
        raise ValueError(f"{model_uri} is not an MLflow model (no MLmodel file)")
    if model_path != out / "model":  # some URIs download into a sub-folder named after the artifact
        model_path.rename(out / "model.tmp")
        (out / "model").rmdir()
        (out / "model.tmp").rename(out / "model")
    reqs = (out / "model" / "requirements.txt").read_text().splitlines()
    (out / "requirements.txt").write_text("\n".join(pin_requirements(reqs)) + "\n")
    (out / "Dockerfile").write_text(dockerfile(python=python, port=port, title=f"{model_uri}"))
    return out


# ---------------------------------------------------------------- model card
DEFAULT_INTENDED_USE = (
    "Forecast the number of bikes rented per hour in Washington D.C. from the hour, the calendar and the "
    "weather, to plan how many bikes to have at the stations. A planning aid for operations staff: a person "
    "decides, the model only estimates.")
DEFAULT_LIMITATIONS = (
    ("Trained on a few months of one year (2011) in one city: demand grew and moved after that, so expect "
     "larger errors the further the data is from the training months (see the table)."),
    "Knows nothing about events, strikes, road works, station capacity or prices: spikes they cause are missed.",
    "Weather inputs are the observed weather of the hour; with forecast weather the error will be larger.",
    ("Predictions are for the whole city, not per station, and can be fractional (or slightly negative for a "
     "ridge model): round and clip them before use."),
    ("Not for decisions about individual people: the data holds no personal information and must not be "
     "joined with any."),
)


DATA_SOURCE = ("Capital Bikeshare hourly rentals of 2011 in Washington D.C. (UCI Bike Sharing dataset, "
               "Fanaee-T and Gama 2013, CC BY 4.0), as shipped in `data/Bikeshare.csv`.")


def _markdown_table(table: pd.DataFrame) -> str:
    header = "| " + " | ".join([table.index.name or ""] + [str(c) for c in table.columns]) + " |"
    rule = "|" + "---|" * (len(table.columns) + 1)
    lines = [header, rule]
    for idx, row in table.iterrows():
        cells = [f"{v:.2f}" if isinstance(v, float) else str(v) for v in row.tolist()]
        lines.append("| " + " | ".join([str(idx)] + cells) + " |")
    return "\n".join(lines)


def model_card(model, metrics_by_month: pd.DataFrame, *, name: str, version: str | int,
               train_months: Sequence[str], intended_use: str = DEFAULT_INTENDED_USE,
               limitations: Sequence[str] = DEFAULT_LIMITATIONS, alias: str | None = None,
               extra: str = "") -> str:
    """The model card of a registered model version as Markdown.

    Sections: intended use, data, model, metrics by month (``metrics_by_month`` from
    ``pipeline.evaluate_by_month``, with columns ``mae``, ``rmse``, ``r2``), limitations, how to load it.
    """

    _check_fitted(model)
    _check_features(model, pipeline.FEATURES)
    if not isinstance(metrics_by_month, pd.DataFrame) or metrics_by_month.empty:
        raise ValueError("metrics_by_month must be a non-empty DataFrame (use pipeline.evaluate_by_month)")
    missing = [c for c in ("mae", "rmse", "r2") if c not in metrics_by_month.columns]
    if missing:
        raise ValueError(f"metrics_by_month lacks column(s) {missing}; it has {list(metrics_by_month.columns)}")
    problem = train_config.month_problem([*metrics_by_month.index, *train_months])
    if problem:
        raise ValueError(problem)
    if not str(intended_use).strip():
        raise ValueError("intended_use is empty: say who uses the model, for what decision")
    if isinstance(limitations, str) or not limitations:
        raise ValueError("limitations must be a non-empty list of sentences")
    train_months = list(train_months)
    table = metrics_by_month[["mae", "rmse", "r2"]].copy()
    table.insert(0, "used for", ["training" if m in train_months else "held out" for m in table.index])
    if "rows" in metrics_by_month.columns:
        table.insert(1, "hours", metrics_by_month["rows"].astype(int).astype(str))
    table.columns = [c.upper() if c in ("mae", "rmse") else ("R²" if c == "r2" else c) for c in table.columns]
    table.index.name = "month"
    held = metrics_by_month.loc[[m for m in metrics_by_month.index if m not in train_months]]
    worst = (f"The largest held-out MAE is {held['mae'].max():.1f} bikes per hour ({held['mae'].idxmax()})."
             if len(held) else "No held-out month was evaluated.")
    params = {k: v for k, v in sorted(model.get_params().items()) if k in
              ("n_estimators", "max_depth", "min_samples_leaf", "alpha", "max_iter", "learning_rate")}
    features = "\n".join(f"- `{f}`: {pipeline.FEATURE_RANGES[f][2]}, range {pipeline.FEATURE_RANGES[f][0]} to "
                         f"{pipeline.FEATURE_RANGES[f][1]}" for f in pipeline.FEATURES)
    heading = f"# Model card: {name}, version {version}" + (f" (alias `{alias}`)" if alias else "")
    load = f"models:/{name}@{alias}" if alias else f"models:/{name}/{version}"
    lines = [
        heading, "",
        "## Intended use", "", str(intended_use).strip(), "",
        "## Data", "",
        DATA_SOURCE,
        (f"Training months: {', '.join(train_months)}. Target: `{pipeline.TARGET}` (rentals per hour). "
         "Inputs (all float64; `casual` and `registered` are never inputs, they add up to the target):"), "",
        features, "",
        "## Model", "",
        (f"`{type(model).__name__}` from scikit-learn, settings {params}. Stored with skops (trusted types "
         "listed in the MLmodel file) and, where it converts, as ONNX for ONNX Runtime."), "",
        "## Metrics by month", "",
        "Mean absolute error and root mean squared error in bikes per hour; R² on that month's hours.", "",
        _markdown_table(table), "",
        worst, "",
        "## Limitations", "",
        *[f"- {item}" for item in limitations], "",
        "## How to use", "",
        f"`mlflow.pyfunc.load_model(\"{load}\")`, then `predict` on a DataFrame with the columns above.",
    ]
    if extra.strip():
        lines += ["", extra.strip()]
    return "\n".join(lines) + "\n"


def write_model_card(path, model, metrics_by_month: pd.DataFrame, **kwargs):
    """Write :func:`model_card` to ``path`` (a ``.md`` file) and return the path."""
    from pathlib import Path

    path = Path(path)
    if path.suffix != ".md":
        raise ValueError(f"a model card is Markdown: give a path ending in .md, not {path.name!r}")
    text = model_card(model, metrics_by_month, **kwargs)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path
