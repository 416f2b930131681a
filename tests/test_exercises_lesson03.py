import mlflow
import numpy as np
import pandas as pd
import pytest

from mlops_course import data, packaging, pipeline, registry
from mlops_course.exercises import evaluate


@pytest.fixture(scope="module")
def months():
    return dict(data.monthly_batches(data.load_bikeshare()))


def _rows(months, names):
    return pd.concat([months[m] for m in names], ignore_index=True)


def _register(model, rows):
    with mlflow.start_run():
        return registry.register(registry.log_bike_model(model, pipeline.make_features(rows), onnx=False))


@pytest.fixture
def two_versions(lesson_env, months):
    """Version 1 trained on January, version 2 on January-February; the gate made version 2 champion."""
    from mlops_course import setup_lesson

    setup_lesson("97", quiet=True)
    models = {}
    for version, names in (("1", ["Jan"]), ("2", ["Jan", "Feb"])):
        rows = _rows(months, names)
        models[version] = pipeline.train(rows, n_estimators=4, max_depth=4 + 2 * int(version))
        with mlflow.start_run():
            logged = registry.log_bike_model(models[version], pipeline.make_features(rows), onnx=False)
        registry.register(logged, alias="champion" if version == "1" else None)
    registry.promote_if_better("2", months["June"])
    assert registry.aliases()["champion"] == "2"
    return models


# ---------------------------------------------------------------- 03.1 predictions by alias
def test_03_1_accepts_the_champions_predictions_in_any_numeric_form(two_versions, months):
    X = pipeline.make_features(months["July"]).head(24)
    assert evaluate("03.1", two_versions["2"].predict(X), X).ok
    assert evaluate("03.1", list(two_versions["2"].predict(X).astype(np.float32)), X).ok  # the ONNX copy's float32
    assert evaluate("03.1", pd.Series(two_versions["2"].predict(X)), X).ok


def test_03_1_rejects_other_predictions_with_a_hint(two_versions, months):
    X = pipeline.make_features(months["July"]).head(24)
    old = evaluate("03.1", two_versions["1"].predict(X), X)
    assert not old.ok and "version 1" in old.message and "@champion" in old.hint
    short = evaluate("03.1", two_versions["2"].predict(X)[:5], X)
    assert not short.ok and "expected 24 predictions" in short.message
    rounded = evaluate("03.1", np.round(two_versions["2"].predict(X)), X)
    assert not rounded.ok and "rounded" in rounded.message
    noise = evaluate("03.1", np.zeros(24), X)
    assert not noise.ok and "not the predictions of any registered version" in noise.message
    text = evaluate("03.1", ["many"] * 24, X)
    assert not text.ok and "expected numbers" in text.message


# ---------------------------------------------------------------- 03.2 skops trusted types
@pytest.fixture(scope="module")
def boosting_file(tmp_path_factory, months):
    import skops.io as sio

    path = tmp_path_factory.mktemp("skops") / "boosting.skops"
    sio.dump(pipeline.train(months["Jan"], "gradient_boosting", max_iter=3), path)
    return path


def test_03_2_accepts_the_needed_types_in_any_collection(boosting_file):
    import skops.io as sio

    needed = sio.get_untrusted_types(file=boosting_file)
    assert needed == pipeline.SKOPS_TRUSTED["gradient_boosting"]
    for answer in (needed, set(needed), tuple(needed), needed + needed):
        feedback = evaluate("03.2", answer, boosting_file)
        assert feedback.ok and "HistGradientBoostingRegressor" in feedback.message, feedback


def test_03_2_rejects_wrong_lists_with_a_hint(boosting_file):
    needed = pipeline.SKOPS_TRUSTED["gradient_boosting"]
    tree = evaluate("03.2", ["sklearn.tree._tree.Tree"], boosting_file)
    assert not tree.ok and "random forest" in tree.message and "get_untrusted_types" in tree.hint
    assert "would still refuse" in evaluate("03.2", [], boosting_file).message
    extra = evaluate("03.2", needed + ["builtins.eval"], boosting_file)
    assert not extra.ok and "builtins.eval" in extra.message and "only the types" in extra.hint
    assert "list of type names" in evaluate("03.2", needed[0], boosting_file).message
    from sklearn.ensemble._hist_gradient_boosting.predictor import TreePredictor

    classes = evaluate("03.2", [TreePredictor], boosting_file)
    assert not classes.ok and "not strings" in classes.message and "dotted name" in classes.hint


# ---------------------------------------------------------------- 03.3 gate with a margin
def test_03_3_accepts_both_outcomes_of_a_gate_with_the_margin(two_versions, months):
    june = months["June"]
    kept_version = _register(pipeline.train(months["Jan"], n_estimators=4, max_depth=3), months["Jan"])
    kept = registry.promote_if_better(kept_version, june, margin=0.05)
    feedback = evaluate("03.3", kept, 0.05, june)
    assert not kept.promoted and feedback.ok and "kept the champion" in feedback.message, feedback

    spring = _rows(months, ["Jan", "Feb", "March", "April", "May"])
    better_version = _register(pipeline.train(spring, n_estimators=4, max_depth=8), spring)
    promoted = registry.promote_if_better(better_version, june, margin=0.05)
    feedback = evaluate("03.3", promoted, 0.05, june)
    assert promoted.promoted and feedback.ok and "promoted" in feedback.message, feedback
    assert evaluate("03.3", promoted, 0.05).ok  # the held-out month is optional for the check

    feb_may = _rows(months, ["Feb", "March", "April", "May"])  # the exercise's own challenger, full size
    honest_version = _register(pipeline.train(feb_may), feb_may)
    client = mlflow.MlflowClient()
    client.set_registered_model_alias(registry.MODEL_NAME, "champion", "2")
    feedback = evaluate("03.3", registry.promote_if_better(honest_version, june, margin=0.05), 0.05, june)
    assert feedback.ok, feedback


def test_03_3_rejects_wrong_gates_with_a_hint(two_versions, months):
    june, client = months["June"], mlflow.MlflowClient()
    spring = _rows(months, ["Jan", "Feb", "March", "April", "May"])
    version = _register(pipeline.train(spring, n_estimators=4, max_depth=8), spring)

    no_margin = registry.promote_if_better(version, june, challenger_alias=None, margin=0.0)
    client.set_registered_model_alias(registry.MODEL_NAME, "champion", "2")  # undo, so each case starts alike
    feedback = evaluate("03.3", no_margin, 0.05, june)
    assert not feedback.ok and "margin of 0" in feedback.message and "margin=0.05" in feedback.hint

    on_may = registry.promote_if_better(version, months["May"], margin=0.05)
    client.set_registered_model_alias(registry.MODEL_NAME, "champion", "2")
    feedback = evaluate("03.3", on_may, 0.05, june)
    assert not feedback.ok and "other data" in feedback.message and "june" in feedback.hint

    itself = registry.promote_if_better("2", june, margin=0.05)
    feedback = evaluate("03.3", itself, 0.05, june)
    assert not feedback.ok and "against itself" in feedback.message and "registry.register" in feedback.hint

    jan_feb = _rows(months, ["Jan", "Feb"])  # version 2's months and settings again: the very same model
    twin = _register(pipeline.train(jan_feb, n_estimators=4, max_depth=8), jan_feb)
    feedback = evaluate("03.3", registry.promote_if_better(twin, june, margin=0.05), 0.05, june)
    assert not feedback.ok and "same model" in feedback.message and "February to May" in feedback.hint

    leaked_rows = _rows(months, ["Feb", "March", "April", "May", "June"])  # it learned the month that judges it
    leaked = _register(pipeline.train(leaked_rows, n_estimators=10, max_depth=14), leaked_rows)
    feedback = evaluate("03.3", registry.promote_if_better(leaked, june, margin=0.05), 0.05, june)
    assert not feedback.ok and "learned that month" in feedback.message and "February to May" in feedback.hint
    client.set_registered_model_alias(registry.MODEL_NAME, "champion", "2")

    assert "GateResult" in evaluate("03.3", "promoted", 0.05).message
    nobody = registry.GateResult(True, "3", None, 10.0, None, "no champion yet: the challenger is promoted", 0.05)
    assert "without a champion" in evaluate("03.3", nobody, 0.05).message
    edited = registry.GateResult(True, version, "2", 99.0, 50.0, "promoted", 0.05)
    feedback = evaluate("03.3", edited, 0.05)
    assert not feedback.ok and "should have kept the champion" in feedback.message
    moved = registry.GateResult(False, version, "1", 99.0, 50.0, "champion kept", 0.05)
    assert "points at version 2" in evaluate("03.3", moved, 0.05).message


# ---------------------------------------------------------------- 03.4 model card of version 1
SPRING = ["Jan", "Feb", "March", "April"]


def _card(tmp_path, folder, model, by_month, **kwargs):
    kwargs = {"name": registry.MODEL_NAME, "version": "1", "train_months": SPRING, **kwargs}
    return registry.log_model_card(packaging.write_model_card(tmp_path / folder / "MODEL_CARD.md", model, by_month,
                                                              **kwargs), "1")


def test_03_4_accepts_version_1s_card_written_either_way(two_versions, tmp_path):
    by_month = pipeline.evaluate_by_month(two_versions["1"], data.load_bikeshare())
    assert evaluate("03.4", _card(tmp_path, "plain", two_versions["1"], by_month)).ok
    other_words = _card(tmp_path, "worded", two_versions["1"], by_month, version=1, train_months=tuple(SPRING),
                        limitations=["Only one year of data."], extra="Reviewed by the course.")
    feedback = evaluate("03.4", other_words)
    assert feedback.ok and "every month" in feedback.message, feedback


def test_03_4_rejects_wrong_cards_with_a_hint(two_versions, tmp_path):
    year = data.load_bikeshare()
    by_month = pipeline.evaluate_by_month(two_versions["1"], year)
    assert "runs:/" in evaluate("03.4", "MODEL_CARD.md").message
    untagged = evaluate("03.4", "runs:/abc/model_card/MODEL_CARD.md")
    assert not untagged.ok and "not tagged" in untagged.message

    feedback = evaluate("03.4", _card(tmp_path, "may", two_versions["1"], by_month, train_months=SPRING + ["May"]))
    assert not feedback.ok and "May" in feedback.message and "train_months" in feedback.hint

    feedback = evaluate("03.4", _card(tmp_path, "v2", two_versions["2"], by_month, version="2"))
    assert not feedback.ok and "another version" in feedback.message

    feedback = evaluate("03.4", _card(tmp_path, "winter", two_versions["1"], by_month.head(3), train_months=["Jan"]))
    assert not feedback.ok and "every month" in feedback.message and "whole year" in feedback.hint

    champions_metrics = pipeline.evaluate_by_month(two_versions["2"], year)
    feedback = evaluate("03.4", _card(tmp_path, "metrics", two_versions["1"], champions_metrics))
    assert not feedback.ok and "another model" in feedback.message and "models:/bike-demand/1" in feedback.hint
