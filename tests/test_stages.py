import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from mlops_course import data, pipeline, stages
from mlops_course.stages import StageError


def test_write_pipeline_writes_matching_dvc_yaml_and_params(project):
    pipeline_file = yaml.safe_load((project / "dvc.yaml").read_text())
    assert list(pipeline_file["stages"]) == list(stages.STAGES)
    for name, stage in pipeline_file["stages"].items():
        assert stage["cmd"] == f"python -m mlops_course.stages {name}"
    assert pipeline_file["stages"]["train"]["params"] == ["train"]
    params = stages.load_params(project / "params.yaml")
    assert params["prepare"]["test_months"] == ["March"]
    assert params["train"] == {"kind": "random_forest", "n_estimators": 5, "max_depth": 6,
                               "min_samples_leaf": 2}
    with pytest.raises(StageError, match="not a folder"):
        stages.write_pipeline(project / "missing")


@pytest.mark.parametrize("change, message", [
    ({"prepare": None}, "section 'prepare' is missing"),
    ({"prepare": {"train_months": "Jan", "test_months": ["Feb"]}}, "non-empty list"),
    ({"prepare": {"train_months": ["January"], "test_months": ["Feb"]}}, "unknown month name"),
    ({"prepare": {"train_months": ["Jan", "Feb"], "test_months": ["Feb"]}}, "in both"),
    ({"train": {"kind": "svm"}}, "train.kind must be one of"),
    ({"train": {"kind": "random_forest", "depth": 3}}, "'depth' is not a setting"),
    ({"train": {"kind": "random_forest", "max_depth": "deep"}}, "train.max_depth must be a number"),
])
def test_bad_params_are_named(change, message):
    params = {section: dict(values) for section, values in stages.DEFAULT_PARAMS.items()}
    params.update(change)
    with pytest.raises(StageError, match=message):
        stages.check_params(params)


def test_load_params_errors(tmp_path):
    with pytest.raises(StageError, match="no such file"):
        stages.load_params(tmp_path / "params.yaml")
    (tmp_path / "bad.yaml").write_text("prepare: [unclosed\n")
    with pytest.raises(StageError, match="not valid YAML"):
        stages.load_params(tmp_path / "bad.yaml")
    (tmp_path / "empty.yaml").write_text("")
    with pytest.raises(StageError, match="section 'prepare'"):
        stages.load_params(tmp_path / "empty.yaml")


def test_validate_stage_writes_report(project):
    report = stages.validate_stage()
    assert report == json.loads(stages.VALIDATION.read_text())
    assert report["months"] == ["Jan", "Feb", "March"] and report["rows"] > 2000


@pytest.mark.parametrize("damage, message", [
    (lambda df: df.drop(columns=["hum"]), r"missing column\(s\) \['hum'\]"),
    (lambda df: df.assign(temp=["warm"] + list(df["temp"].iloc[1:])), "column 'temp' must be numeric"),
    (lambda df: df.head(0), "no rows"),
    (lambda df: df.assign(weathersit="sunny"), "column 'weathersit' has unknown value"),
])
def test_validate_rejects_bad_files_with_clear_errors(project, damage, message):
    damage(pd.read_csv(stages.DATA)).to_csv(stages.DATA, index=False)
    with pytest.raises(StageError, match=message):
        stages.validate_stage()
    assert not stages.VALIDATION.exists()


def test_validate_names_column_and_rows_of_broken_values(project):
    df = pd.read_csv(stages.DATA)
    df.loc[[3, 4], "hum"] = 1.5
    pd.concat([df, df.iloc[[0]]]).to_csv(stages.DATA, index=False)
    with pytest.raises(pipeline.ValidationError) as err:
        stages.validate_file()
    assert "'hum'" in str(err.value) and "[3, 4]" in str(err.value) and "duplicated hours" in str(err.value)


def test_missing_and_empty_files(project):
    stages.DATA.unlink()
    with pytest.raises(StageError, match="no such file"):
        stages.validate_stage()
    stages.DATA.write_text("")
    with pytest.raises(StageError, match="empty"):
        stages.validate_stage()


def test_prepare_needs_the_validation_report_and_present_months(project):
    params = stages.load_params()
    with pytest.raises(StageError, match="validate stage first"):
        stages.prepare_stage(params)
    stages.validate_stage()
    params["prepare"]["test_months"] = ["June"]
    with pytest.raises(StageError, match=r"test split is empty.*the data has months"):
        stages.prepare_stage(params)


def test_prepare_writes_numeric_features_split_by_month(project, stage_bikes):
    stages.validate_stage()
    rows = stages.prepare_stage(stages.load_params())
    train = pd.read_csv(stages.TRAIN)
    test = pd.read_csv(stages.TEST)
    assert rows == {"train": len(train), "test": len(test)}
    assert list(train.columns) == [*pipeline.FEATURES, pipeline.TARGET]
    assert len(test) == len(data.select_months(stage_bikes, ["March"]))
    assert "casual" not in train and all(pd.api.types.is_numeric_dtype(train[c]) for c in train)


def test_train_and_evaluate_write_model_metrics_and_plot(project):
    params = stages.load_params()
    stages.validate_stage()
    stages.prepare_stage(params)
    model_path = stages.train_stage(params)
    assert pipeline.model_kind(pipeline.load_model(model_path)) == "random_forest"
    scores = stages.evaluate_stage()
    assert set(scores) == {"mae", "rmse", "r2"} and scores["mae"] > 0
    assert json.loads(stages.METRICS.read_text()) == scores
    assert stages.PLOT.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # same inputs, same metrics: the stages are deterministic
    stages.train_stage(params)
    assert stages.evaluate_stage() == scores


def test_train_and_evaluate_refuse_bad_inputs(project):
    params = stages.load_params()
    with pytest.raises(StageError, match="prepare stage first"):
        stages.train_stage(params)
    with pytest.raises(StageError, match="train stage first"):
        stages.evaluate_stage()
    stages.PREPARED.mkdir(parents=True)
    pd.DataFrame({"hr": [1.0]}).to_csv(stages.TRAIN, index=False)
    with pytest.raises(StageError, match=r"missing column\(s\)"):
        stages.train_stage(params)
    table = pd.DataFrame({c: [1.0] for c in [*pipeline.FEATURES, pipeline.TARGET]})
    table.assign(temp="warm").to_csv(stages.TRAIN, index=False)
    with pytest.raises(StageError, match="column .temp. has dtype .+, expected a number"):
        stages.train_stage(params)
    table.head(0).to_csv(stages.TRAIN, index=False)
    with pytest.raises(StageError, match="no rows"):
        stages.train_stage(params)


def test_main_reports_failures_in_one_line(project, capsys):
    assert stages.main(["prepare"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("stage prepare failed:") and "validate stage first" in err
    assert "Traceback" not in err
    assert stages.main(["validate"]) == 0
    assert capsys.readouterr().out.startswith("validate: ")
    with pytest.raises(StageError, match="unknown stage"):
        stages.run_stage("deploy")


def test_stage_runs_as_a_real_command(project):
    env = {**os.environ, "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"]}
    done = subprocess.run([sys.executable, "-m", "mlops_course.stages", "validate"], cwd=project, env=env,
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("validate: ") and stages.VALIDATION.exists()
    bad = subprocess.run([sys.executable, "-m", "mlops_course.stages", "train", "--params", "nope.yaml"],
                         cwd=project, env=env, capture_output=True, text=True, check=False)
    assert bad.returncode == 1 and "nope.yaml: no such file" in bad.stderr
