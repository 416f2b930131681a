"""The bike-demand pipeline as DVC stages: ``python -m mlops_course.stages validate|prepare|train|evaluate``.

Each stage reads ``params.yaml`` and its input files, calls the functions of :mod:`mlops_course.pipeline` (the
one copy of the training code) and writes its declared outputs. Paths are relative to the working directory,
which is the DVC repository when DVC runs a stage:

================  =====================================  ==========================================
stage             reads                                  writes
================  =====================================  ==========================================
``validate``      ``data/bikes.csv``                     ``reports/validation.json`` (rows, months)
``prepare``       ``data/bikes.csv``, the report above   ``data/prepared/train.csv``, ``test.csv``
``train``         ``data/prepared/train.csv``            ``models/model.skops``
``evaluate``      the model, ``data/prepared/test.csv``  ``reports/metrics.json``, ``reports/hourly.png``
================  =====================================  ==========================================

``write_pipeline(folder)`` writes a matching ``dvc.yaml`` and ``params.yaml``. Bad input (missing file,
missing columns, wrong dtypes, empty tables, bad params) stops a stage with a :class:`StageError` that says
what was wrong and what to do; on the command line that is one line on stderr and exit code 1.

A stage command spends most of its time importing pandas, scikit-learn and skops; while a
``stage_server.StageServer`` runs, the command hands itself to it instead (see that module).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

if __name__ == "__main__":  # before the heavy imports below: a running stage server has them already
    from mlops_course.stage_server import run_on_server

    _served = run_on_server(sys.argv[1:])
    if _served is not None:
        sys.exit(_served)

from mlops_course import data, pipeline, schema, train_config

DATA = Path("data/bikes.csv")
VALIDATION = Path("reports/validation.json")
PREPARED = Path("data/prepared")
TRAIN = PREPARED / "train.csv"
TEST = PREPARED / "test.csv"
MODEL = Path("models/model.skops")
METRICS = Path("reports/metrics.json")
PLOT = Path("reports/hourly.png")
PARAMS = Path("params.yaml")
STAGES = ("validate", "prepare", "train", "evaluate")

DEFAULT_PARAMS: dict[str, dict[str, Any]] = {
    "prepare": train_config.EXAMPLE.as_params(),
    "train": {"kind": "random_forest", **pipeline.DEFAULT_PARAMS["random_forest"]},
}

DVC_YAML = f"""\
stages:
  validate:
    cmd: python -m mlops_course.stages validate
    deps:
      - {DATA}
    outs:
      - {VALIDATION}:
          cache: false
  prepare:
    cmd: python -m mlops_course.stages prepare
    deps:
      - {DATA}
      - {VALIDATION}
    params:
      - prepare
    outs:
      - {PREPARED}
  train:
    cmd: python -m mlops_course.stages train
    deps:
      - {TRAIN}
    params:
      - train
    outs:
      - {MODEL}
  evaluate:
    cmd: python -m mlops_course.stages evaluate
    deps:
      - {MODEL}
      - {TEST}
    metrics:
      - {METRICS}:
          cache: false
    plots:
      - {PLOT}:
          cache: false
"""


class StageError(ValueError):
    """A stage cannot run: a file, a column, a dtype or a parameter is wrong (the message says which)."""


# ---------------------------------------------------------------- params
def params_yaml(params: Mapping[str, Any] | None = None) -> str:
    """``params.yaml`` text: the defaults, with the sections of ``params`` merged over them."""
    import yaml

    merged = {section: dict(values) for section, values in DEFAULT_PARAMS.items()}
    for section, values in (params or {}).items():
        merged.setdefault(section, {}).update(values)
    check_params(merged)
    return yaml.safe_dump(merged, sort_keys=False, default_flow_style=None)


def write_pipeline(folder: str | Path = ".", params: Mapping[str, Any] | None = None) -> list[Path]:
    """Write ``dvc.yaml`` (the four stages) and ``params.yaml`` into ``folder``; return both paths."""
    folder = Path(folder)
    if not folder.is_dir():
        raise StageError(f"{folder} is not a folder; create the repository first (versioning.init_repo)")
    dvc_yaml, params_file = folder / "dvc.yaml", folder / PARAMS
    dvc_yaml.write_text(DVC_YAML)
    params_file.write_text(params_yaml(params))
    return [dvc_yaml, params_file]


def _months(value: Any, where: str) -> list[str]:
    if isinstance(value, str) or not isinstance(value, Sequence) or not value:
        raise StageError(f"params: {where} must be a non-empty list of month names like [Jan, Feb]; "
                         f"got {value!r}")
    problem = train_config.month_problem(value)
    if problem:
        raise StageError(f"params: {where} has {problem}")
    return list(value)


def check_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """The checked settings: ``train_months``, ``test_months``, ``kind`` and ``model`` (the model's settings).

    Raises ``StageError`` naming the key when a section or value is missing or wrong.
    """
    if not isinstance(params, Mapping):
        raise StageError(f"params must be a mapping with sections 'prepare' and 'train'; "
                         f"got {type(params).__name__}")
    for section, example in DEFAULT_PARAMS.items():
        if not isinstance(params.get(section), Mapping):
            raise StageError(f"params: section '{section}' is missing or not a mapping; "
                             f"expected e.g. {section}: {example}")
    prepare, train = params["prepare"], dict(params["train"])
    train_months = _months(prepare.get("train_months"), "prepare.train_months")
    test_months = _months(prepare.get("test_months"), "prepare.test_months")
    overlap = [m for m in train_months if m in test_months]
    if overlap:
        raise StageError(f"params: month(s) {overlap} are in both prepare.train_months "
                         f"and prepare.test_months")
    kind = train.pop("kind", None)
    if kind not in pipeline.MODEL_KINDS:
        raise StageError(f"params: train.kind must be one of {list(pipeline.MODEL_KINDS)}; got {kind!r}")
    try:
        model = pipeline.as_params(train, kind)
    except ValueError as exc:
        raise StageError(f"params: train: {exc}") from None
    for key, value in model.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise StageError(f"params: train.{key} must be a number; got {value!r}")
    return {"train_months": train_months, "test_months": test_months, "kind": kind, "model": model}


def load_params(path: str | Path = PARAMS) -> dict[str, Any]:
    """The sections of ``params.yaml``, checked with :func:`check_params` (``StageError`` when wrong)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise StageError(f"{path}: no such file; write it with stages.write_pipeline() or by hand")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise StageError(f"{path}: not valid YAML ({exc})") from None
    raw = raw if raw is not None else {}
    check_params(raw)
    return raw


# ---------------------------------------------------------------- file helpers
def _need_file(path: Path, made_by: str) -> None:
    if not path.is_file():
        raise StageError(f"{path}: no such file; {made_by}")


def read_table(path: str | Path, columns: Sequence[str], made_by: str = "run the previous stage first"):
    """A CSV with at least ``columns``, all numeric, and at least one row; ``StageError`` otherwise."""
    import pandas as pd

    path = Path(path)
    _need_file(path, made_by)
    try:
        df = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise StageError(f"{path}: the file is empty (no header, no rows)") from None
    problems = schema.shape_problems(df, columns)
    if problems:
        has = f"; it has {list(df.columns)}" if problems[0].startswith("missing") else ""
        raise StageError(f"{path}: {'; '.join(problems)}{has}")
    return df


def _write_json(path: Path, payload: Mapping[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


# ---------------------------------------------------------------- stages
def validate_file(path: str | Path = DATA):
    """Load a bike-rental CSV with the course dtypes and check the schema; return the table.

    Raises ``StageError`` for a missing or unreadable file or wrong columns/dtypes/categories, and
    ``pipeline.ValidationError`` (listing every problem with its column and rows) for broken values.
    """
    path = Path(path)
    _need_file(path, "put the data there (dvc pull, or dvc checkout) before validating")
    try:
        df = data.load_bikeshare(path, verify=False)
    except data.DataError as exc:
        raise StageError(str(exc)) from None
    return pipeline.validate(df)


def validate_stage(data_path: str | Path = DATA, report_path: str | Path = VALIDATION) -> dict[str, Any]:
    """Stage 1: validate the data; write a small report (rows, months) that ``prepare`` depends on."""
    df = validate_file(data_path)
    months = [m for m in data.MONTHS if (df["mnth"] == m).any()]
    report = {"rows": len(df), "months": months, "problems": []}
    _write_json(Path(report_path), report)
    return report


def prepare_stage(params: Mapping[str, Any], data_path: str | Path = DATA,
                  report_path: str | Path = VALIDATION, out_dir: str | Path = PREPARED) -> dict[str, int]:
    """Stage 2: split by month and write features + target as ``train.csv`` and ``test.csv``."""
    settings = check_params(params)
    report_path = Path(report_path)
    _need_file(report_path, "run the validate stage first: prepare only reads validated data")
    df = validate_file(data_path)
    try:
        train, test = pipeline.split_by_month(df, settings["train_months"], settings["test_months"])
    except (ValueError, data.DataError) as exc:
        raise StageError(f"prepare: {exc}; the data has months "
                         f"{[m for m in data.MONTHS if (df['mnth'] == m).any()]}") from None
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = {}
    for name, part in (("train", train), ("test", test)):
        table = pipeline.make_features(part)
        table[pipeline.TARGET] = part[pipeline.TARGET].astype("int64")
        table.to_csv(out_dir / f"{name}.csv", index=False)
        rows[name] = len(table)
    return rows


def train_stage(params: Mapping[str, Any], train_path: str | Path = TRAIN,
                model_path: str | Path = MODEL) -> Path:
    """Stage 3: fit the model described by ``params['train']`` on ``train.csv``; save it with skops."""
    settings = check_params(params)
    table = read_table(train_path, [*pipeline.FEATURES, pipeline.TARGET], "run the prepare stage first")
    model = pipeline.train(table, settings["kind"], **settings["model"])
    return pipeline.save_model(model, model_path)


def hourly_figure(hours: Sequence[float], actual: Sequence[float], predicted: Sequence[float]):
    """Mean actual and predicted rentals per hour of day (a matplotlib ``Figure``, no pyplot needed)."""
    import pandas as pd
    from matplotlib.figure import Figure

    means = pd.DataFrame({"hr": hours, "actual": actual, "predicted": predicted}).groupby("hr").mean()
    fig = Figure(figsize=(6.4, 3.2), dpi=90)
    ax = fig.add_subplot()
    ax.plot(means.index, means["actual"], marker="o", label="actual")
    ax.plot(means.index, means["predicted"], marker="x", label="predicted")
    ax.set_xlabel("hour of day")
    ax.set_ylabel("mean rentals per hour")
    ax.set_title("Test months: actual vs predicted demand")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def evaluate_stage(model_path: str | Path = MODEL, test_path: str | Path = TEST,
                   metrics_path: str | Path = METRICS, plot_path: str | Path = PLOT) -> dict[str, float]:
    """Stage 4: score the model on ``test.csv``; write metrics JSON (rounded) and the hourly plot."""
    model_path = Path(model_path)
    _need_file(model_path, "run the train stage first")
    table = read_table(test_path, [*pipeline.FEATURES, pipeline.TARGET], "run the prepare stage first")
    model = pipeline.load_model(model_path)
    scores = {name: round(value, 3) for name, value in pipeline.evaluate(model, table).items()}
    _write_json(Path(metrics_path), scores)
    predicted = model.predict(pipeline.make_features(table))
    plot_path = Path(plot_path)
    plot_path.parent.mkdir(parents=True, exist_ok=True)
    hourly_figure(table["hr"], table[pipeline.TARGET], predicted).savefig(plot_path)
    return scores


def run_stage(name: str, params_file: str | Path = PARAMS) -> str:
    """Run one stage by name with the files in the working directory; return a one-line summary."""
    if name not in STAGES:
        raise StageError(f"unknown stage {name!r}; choose one of {list(STAGES)}")
    if name == "validate":
        report = validate_stage()
        return f"validate: {report['rows']} rows of {', '.join(report['months'])} passed the schema"
    if name == "evaluate":
        scores = evaluate_stage()
        return "evaluate: " + ", ".join(f"{k}={v}" for k, v in scores.items())
    params = load_params(params_file)
    if name == "prepare":
        rows = prepare_stage(params)
        return f"prepare: {rows['train']} train rows, {rows['test']} test rows"
    path = train_stage(params)
    return f"train: saved {path}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlops_course.stages",
                                     description="Run one stage of the bike-demand pipeline in this folder.")
    parser.add_argument("stage", choices=STAGES)
    parser.add_argument("--params", default=str(PARAMS), help="the parameters file (default: params.yaml)")
    args = parser.parse_args(argv)
    try:
        print(run_stage(args.stage, args.params))
    except (StageError, pipeline.ValidationError, data.DataError, FileNotFoundError) as exc:
        print(f"stage {args.stage} failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
