"""The bike-demand model's stages as plain functions: validate -> prepare -> train -> evaluate.

Every lesson that trains (DVC stages, MLflow runs, the Prefect flow, the capstone) calls these, so there is
one copy of the training code. Features are numeric so the same columns feed scikit-learn, the MLflow
signature, ONNX and the REST service.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlops_course import data, schema, train_config

FEATURES = schema.columns(table=schema.FEATURES)
TARGET = data.TARGET
# Units and valid ranges of each feature (from the schema): used by validation, the service schema and the docs.
FEATURE_RANGES: dict[str, tuple[float, float, str]] = {c.name: (c.low, c.high, c.unit) for c in schema.FEATURES}
RAW_RANGES = {c.name: (c.low, c.high) for c in schema.RAW if c.numeric and c.name not in FEATURE_RANGES}
MODEL_KINDS = ("random_forest", "gradient_boosting", "ridge")
DEFAULT_PARAMS: dict[str, dict[str, Any]] = {
    "random_forest": {"n_estimators": 40, "max_depth": 10, "min_samples_leaf": 2},
    "gradient_boosting": {"max_iter": 150, "learning_rate": 0.1, "max_leaf_nodes": 31},
    "ridge": {"alpha": 1.0},
}
# Types skops must be told to trust when loading each model family (nothing else is ever loaded).
SKOPS_TRUSTED = {
    "random_forest": ["sklearn.tree._tree.Tree"],
    "gradient_boosting": ["sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"],
    "ridge": [],
}
ALL_TRUSTED_TYPES = sorted({t for types in SKOPS_TRUSTED.values() for t in types})
SEED = 42


class ValidationError(ValueError):
    """The data broke the schema; the message lists every problem with its column and rows."""

    def __init__(self, problems: Sequence[str]):
        self.problems = list(problems)
        super().__init__("data validation failed:\n- " + "\n- ".join(self.problems))


# ---------------------------------------------------------------- validate
def check_schema(df: pd.DataFrame) -> list[str]:
    """Every schema problem of a loaded table: columns, dtypes, ranges, categories, duplicated hours."""
    problems = schema.shape_problems(df, data.COLUMNS)
    if problems:
        return problems
    ranges = {c: (lo, hi) for c, (lo, hi, _) in FEATURE_RANGES.items() if c in df.columns}
    ranges.update(RAW_RANGES)
    for col, (lo, hi) in ranges.items():
        values = df[col]
        bad = values.isna() | (values < lo) | ((values > hi) if hi is not None else False)
        if bad.any():
            rows = list(df.index[bad][:5])
            problems.append(f"column '{col}': {int(bad.sum())} value(s) outside [{lo}, {hi}] or missing, "
                            f"rows {rows}")
    for col, allowed in (("mnth", data.MONTHS), ("weathersit", data.WEATHER)):
        bad = ~df[col].astype("object").isin(allowed)
        if bad.any():
            problems.append(f"column '{col}': unknown value(s) {sorted(map(str, df.loc[bad, col].unique()))[:5]}"
                            f" at rows {list(df.index[bad][:5])}")
    dup = df.duplicated(["day", "hr"], keep=False)
    if dup.any():
        problems.append(f"duplicated hours (same day and hr): rows {list(df.index[dup][:6])}")
    total = df["casual"] + df["registered"]
    bad_sum = total.ne(df["bikers"])
    if bad_sum.any():
        problems.append(f"column 'bikers' is not casual + registered at rows {list(df.index[bad_sum][:5])}")
    return problems


def validate(df: pd.DataFrame) -> pd.DataFrame:
    """Return ``df`` unchanged when it passes :func:`check_schema`; raise ``ValidationError`` otherwise."""
    problems = check_schema(df)
    if problems:
        raise ValidationError(problems)
    return df


# ---------------------------------------------------------------- prepare
def make_features(df: pd.DataFrame) -> pd.DataFrame:
    """The model's inputs, all float64, in the order of ``FEATURES``."""
    missing = [c for c in FEATURES if c not in df.columns and c != "weather"]
    if "weather" not in df.columns and "weathersit" not in df.columns:
        missing.append("weathersit")
    if missing:
        raise KeyError(f"cannot build features: missing column(s) {missing}; got {list(df.columns)}")
    out = pd.DataFrame(index=df.index)
    for col in FEATURES:
        if col == "weather" and "weather" not in df.columns:
            codes = pd.Categorical(df["weathersit"], categories=data.WEATHER).codes
            if (codes < 0).any():
                raise ValueError(f"column 'weathersit' has values outside {data.WEATHER}")
            out[col] = codes.astype("float64") + 1.0
        else:
            out[col] = df[col].astype("float64")
    return out


def split_by_month(df: pd.DataFrame, train_months: Iterable[str], test_months: Iterable[str]
                   ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Time-based split: train on some months, test on later ones (never a random shuffle of hours)."""
    train_months, test_months = list(train_months), list(test_months)
    overlap = sorted(set(train_months) & set(test_months), key=data.MONTHS.index)
    if overlap:
        raise ValueError(f"month(s) {overlap} are in both train and test; a time split keeps them apart")
    train, test = data.select_months(df, train_months), data.select_months(df, test_months)
    for name, part, months in (("train", train, train_months), ("test", test, test_months)):
        if part.empty:
            raise ValueError(f"the {name} split is empty: no rows for months {months}")
    return train.reset_index(drop=True), test.reset_index(drop=True)


def xy(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    """Features and target of a table."""
    if TARGET not in df.columns:
        raise KeyError(f"target column '{TARGET}' missing; got {list(df.columns)}")
    return make_features(df), df[TARGET].astype("float64")


# ---------------------------------------------------------------- train
def build_model(kind: str = "random_forest", **params: Any):
    """An unfitted scikit-learn regressor of one of ``MODEL_KINDS`` (defaults from ``DEFAULT_PARAMS``; the
    seed is ``SEED`` unless ``random_state`` is given, e.g. to see how much a result moves with the seed)."""
    if kind not in MODEL_KINDS:
        raise ValueError(f"unknown model kind {kind!r}; choose one of {MODEL_KINDS}")
    settings = {**DEFAULT_PARAMS[kind], **params}
    if kind == "random_forest":
        from sklearn.ensemble import RandomForestRegressor

        return RandomForestRegressor(**{"random_state": SEED, "n_jobs": 1, **settings})
    if kind == "gradient_boosting":
        from sklearn.ensemble import HistGradientBoostingRegressor

        return HistGradientBoostingRegressor(**{"random_state": SEED, **settings})
    from sklearn.linear_model import Ridge

    return Ridge(**settings)


def train(train_df: pd.DataFrame, kind: str = "random_forest", **params: Any):
    """Fit a model of ``kind`` on the rows of ``train_df``."""
    X, y = xy(train_df)
    model = build_model(kind, **params)
    model.fit(X, y)
    return model


# ---------------------------------------------------------------- evaluate
def metrics(y_true: Sequence[float], y_pred: Sequence[float]) -> dict[str, float]:
    """MAE, RMSE and R^2 of predictions (scikit-learn's), as plain floats; R^2 is NaN for a constant target."""
    from sklearn.metrics import mean_absolute_error, r2_score, root_mean_squared_error

    y_true, y_pred = np.asarray(y_true, float), np.asarray(y_pred, float)
    if y_true.shape != y_pred.shape or y_true.size == 0:
        raise ValueError(f"need two non-empty arrays of one length; got {y_true.shape} and {y_pred.shape}")
    constant = bool(np.all(y_true == y_true[0]))
    return {"mae": float(mean_absolute_error(y_true, y_pred)), "rmse": float(root_mean_squared_error(y_true, y_pred)),
            "r2": float("nan") if constant else float(r2_score(y_true, y_pred))}


def evaluate(model, df: pd.DataFrame) -> dict[str, float]:
    """Metrics of a fitted model on a table with the target column."""
    X, y = xy(df)
    return metrics(y, model.predict(X))


def evaluate_by_month(model, df: pd.DataFrame) -> pd.DataFrame:
    """MAE, RMSE and R^2 per month, in calendar order."""
    rows = [{"month": m, "rows": len(b), **evaluate(model, b)} for m, b in data.monthly_batches(df)]
    return pd.DataFrame(rows).set_index("month")


# ---------------------------------------------------------------- persist (skops, never pickle)
def model_kind(model) -> str:
    """The ``MODEL_KINDS`` name of a fitted or unfitted model."""
    name = type(model).__name__
    for kind, cls in (("random_forest", "RandomForestRegressor"),
                      ("gradient_boosting", "HistGradientBoostingRegressor"), ("ridge", "Ridge")):
        if name == cls:
            return kind
    raise ValueError(f"{name} is not one of the course's model families {MODEL_KINDS}")


def save_model(model, path: str | Path) -> Path:
    """Save with skops (a format that does not run code when loaded).

    skops writes a zip archive whose members carry the current time and are named after memory addresses;
    they are renamed in schema order and dated 1980-01-01, so the same model always gives the same bytes
    (and the same hash in ``dvc.lock``).
    """
    import io
    import zipfile

    import skops.io as sio

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    source = zipfile.ZipFile(io.BytesIO(sio.dumps(model)))
    schema = source.read("schema.json").decode()
    arrays = sorted((n for n in source.namelist() if n != "schema.json"), key=lambda n: schema.find(f'"{n}"'))
    renamed = {old: f"{i:05d}{Path(old).suffix}" for i, old in enumerate(arrays)}
    for old, new in renamed.items():
        schema = schema.replace(f'"{old}"', f'"{new}"')
    ids: dict[str, str] = {}  # object ids mark shared references: renumber them consistently
    schema = re.sub(r'"__id__": (\d+)', lambda m: f'"__id__": {ids.setdefault(m.group(1), str(len(ids) + 1))}',
                    schema)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as target:
        for name, payload in [("schema.json", schema.encode()),
                              *((renamed[old], source.read(old)) for old in arrays)]:
            target.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), payload,
                            compress_type=zipfile.ZIP_DEFLATED)
    path.write_bytes(buffer.getvalue())
    return path


def load_model(path: str | Path, trusted: Sequence[str] = ALL_TRUSTED_TYPES):
    """Load a skops file, trusting only the listed types; anything else is refused with its type names."""
    import skops.io as sio

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no model file at {path.name}; run the train stage first")
    untrusted = [t for t in sio.get_untrusted_types(file=path) if t not in trusted]
    if untrusted:
        raise ValueError(f"{path.name} contains types that are not trusted: {untrusted}. "
                         f"Inspect them before adding them to the trusted list.")
    return sio.load(path, trusted=list(trusted))


@dataclass(frozen=True)
class Split:
    """Default months for the running example: train on winter and spring, validate on May, test on June."""

    train: tuple[str, ...] = train_config.EXAMPLE.train_months
    valid: tuple[str, ...] = train_config.EXAMPLE.test_months
    test: tuple[str, ...] = train_config.CI.test_months


DEFAULT_SPLIT = Split()


def as_params(mapping: Mapping[str, Any] | None, kind: str) -> dict[str, Any]:
    """Model settings for ``kind`` merged over its defaults (unknown keys are reported, not ignored)."""
    params = dict(DEFAULT_PARAMS[kind])
    for key, value in (mapping or {}).items():
        if key not in params:
            raise ValueError(f"{key!r} is not a setting of {kind}; known settings: {sorted(params)}")
        params[key] = value
    return params
