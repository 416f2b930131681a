import mlflow
import numpy as np
import pandas as pd
import pytest

from mlops_course import data, packaging, pipeline, registry
from mlops_course.exercises import evaluate


@pytest.fixture(scope="module")
def months():
    return dict(data.monthly_batches(data.load_bikeshare()))


@pytest.fixture
def two_versions(lesson_env, months):
    """Version 1 trained on January, version 2 on January-February; the gate made version 2 champion."""
    from mlops_course import setup_lesson

    setup_lesson("97", quiet=True)
    models = {}
    for version, names in (("1", ["Jan"]), ("2", ["Jan", "Feb"])):
        rows = pd.concat([months[m] for m in names], ignore_index=True)
        models[version] = pipeline.train(rows, n_estimators=4, max_depth=4 + 2 * int(version))
        with mlflow.start_run():
            logged = registry.log_bike_model(models[version], pipeline.make_features(rows), onnx=False)
        registry.register(logged, alias="champion" if version == "1" else None)
    registry.promote_if_better("2", months["June"])
    assert registry.aliases()["champion"] == "2"
    return models


def test_03_1_champion_predictions(two_versions, months):
    X = pipeline.make_features(months["July"]).head(24)
    assert evaluate("03.1", two_versions["2"].predict(X), X).ok
    assert evaluate("03.1", list(two_versions["2"].predict(X).astype(np.float32)), X).ok
    old = evaluate("03.1", two_versions["1"].predict(X), X)
    assert not old.ok and "version 1" in old.message and "@champion" in old.hint
    short = evaluate("03.1", two_versions["2"].predict(X)[:5], X)
    assert not short.ok and "expected 24 predictions" in short.message
    noise = evaluate("03.1", np.zeros(24), X)
    assert not noise.ok and "not the predictions of any registered version" in noise.message


@pytest.fixture(scope="module")
def boosting_file(tmp_path_factory, months):
    import skops.io as sio

    path = tmp_path_factory.mktemp("skops") / "boosting.skops"
    sio.dump(pipeline.train(months["Jan"], "gradient_boosting", max_iter=3), path)
    return path


def test_03_2_trusted_types(boosting_file):
    needed = pipeline.SKOPS_TRUSTED["gradient_boosting"]
    assert evaluate("03.2", needed, boosting_file).ok
    tree = evaluate("03.2", ["sklearn.tree._tree.Tree"], boosting_file)
    assert not tree.ok and "random forest" in tree.message and "get_untrusted_types" in tree.hint
    assert "would still refuse" in evaluate("03.2", [], boosting_file).message
    extra = evaluate("03.2", needed + ["builtins.eval"], boosting_file)
    assert not extra.ok and "builtins.eval" in extra.message
    assert "list of type names" in evaluate("03.2", needed[0], boosting_file).message


def test_03_3_gate_with_margin(two_versions, months):
    rows = pd.concat([months[m] for m in ["Jan", "Feb"]], ignore_index=True)
    model = pipeline.train(rows, n_estimators=4, max_depth=8)
    with mlflow.start_run():
        version = registry.register(registry.log_bike_model(model, pipeline.make_features(rows), onnx=False))
    no_margin = registry.promote_if_better(version, months["June"], challenger_alias=None, margin=0.0)
    if no_margin.promoted:  # put the champion back, so the margin run below compares with version 2 again
        mlflow.MlflowClient().set_registered_model_alias(registry.MODEL_NAME, "champion", "2")
    result = registry.promote_if_better(version, months["June"], margin=0.05)
    feedback = evaluate("03.3", result, 0.05)
    assert feedback.ok, feedback
    wrong_margin = evaluate("03.3", no_margin, 0.05)
    assert not wrong_margin.ok and "margin=0.05" in wrong_margin.hint
    assert "GateResult" in evaluate("03.3", "promoted", 0.05).message
    nobody = registry.GateResult(True, "3", None, 10.0, None, "no champion yet: the challenger is promoted")
    assert "without a champion" in evaluate("03.3", nobody, 0.05).message
    moved = registry.GateResult(False, version, "1", 99.0, 50.0, "challenger MAE 99.00 does not beat champion "
                                "MAE 50.00 (needed below 47.50): champion kept")
    assert "points at version" in evaluate("03.3", moved, 0.05).message


def test_03_4_model_card_v1(two_versions, months, tmp_path):
    year = data.load_bikeshare()
    by_month = pipeline.evaluate_by_month(two_versions["1"], year)
    good = packaging.write_model_card(tmp_path / "v1" / "MODEL_CARD.md", two_versions["1"], by_month,
                                      name=registry.MODEL_NAME, version="1", train_months=["Jan", "Feb", "March",
                                                                                          "April"])
    assert "runs:/" in evaluate("03.4", "MODEL_CARD.md").message
    untagged = evaluate("03.4", "runs:/abc/model_card/MODEL_CARD.md")
    assert not untagged.ok and "not tagged" in untagged.message
    assert evaluate("03.4", registry.log_model_card(good, "1")).ok

    with_may = packaging.write_model_card(tmp_path / "may" / "MODEL_CARD.md", two_versions["1"], by_month,
                                          name=registry.MODEL_NAME, version="1",
                                          train_months=["Jan", "Feb", "March", "April", "May"])
    feedback = evaluate("03.4", registry.log_model_card(with_may, "1"))
    assert not feedback.ok and "May" in feedback.message and "train_months" in feedback.hint

    other = packaging.write_model_card(tmp_path / "v2" / "MODEL_CARD.md", two_versions["2"], by_month,
                                       name=registry.MODEL_NAME, version="2", train_months=["Jan", "Feb"])
    feedback = evaluate("03.4", registry.log_model_card(other, "1"))
    assert not feedback.ok and "another version" in feedback.message

    winter = packaging.write_model_card(tmp_path / "w" / "MODEL_CARD.md", two_versions["1"], by_month.head(3),
                                        name=registry.MODEL_NAME, version="1", train_months=["Jan"])
    feedback = evaluate("03.4", registry.log_model_card(winter, "1"))
    assert not feedback.ok and "every month" in feedback.message
