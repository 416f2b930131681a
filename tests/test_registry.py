from pathlib import Path

import mlflow
import numpy as np
import pytest

from mlops_course import data, pipeline, registry


@pytest.fixture(scope="module")
def months():
    bikes = data.load_bikeshare()
    return {m: b for m, b in data.monthly_batches(bikes)}


@pytest.fixture
def store(lesson_env):
    from mlops_course import setup_lesson

    return setup_lesson("99", quiet=True)


def log_and_register(train_df, alias=None, **params):
    model = pipeline.train(train_df, **params)
    with mlflow.start_run():
        logged = registry.log_bike_model(model, pipeline.make_features(train_df))
    return model, registry.register(logged, alias=alias, tags={"months": "test"})


def test_log_register_and_load_both_flavours(store, months):
    model, version = log_and_register(months["Jan"], alias="champion", n_estimators=5)
    assert version == "1" and registry.aliases() == {"champion": "1"}
    X = pipeline.make_features(months["Feb"])
    loaded = registry.load_sklearn("champion")
    assert np.array_equal(loaded.predict(X), model.predict(X))
    session = registry.load_onnx_session("champion")
    assert session is not None
    assert np.max(np.abs(registry.packaging.onnx_predict(session, X) - model.predict(X))) < 1e-3
    assert registry.version_by_alias("champion").tags["months"] == "test"


def test_helper_logs_what_the_lesson_writes_by_hand(store, months):
    """Lesson 03 writes both log_model calls on the page, then says log_bike_model makes the same ones."""
    import pandas as pd
    from mlflow.models import infer_signature

    model = pipeline.train(months["Jan"], n_estimators=3)
    example = pipeline.make_features(months["Jan"]).head(5)
    with mlflow.start_run():
        logged = registry.log_bike_model(model, pipeline.make_features(months["Jan"]).assign(extra=1.0))
    info = mlflow.models.get_model_info(logged.model_uri)
    assert info.signature == infer_signature(example, pd.Series(model.predict(example)))
    assert set(info.flavors) == {"python_function", "sklearn"}
    assert info.flavors["sklearn"]["skops_trusted_types"] == ["sklearn.tree._tree.Tree"]
    assert set(mlflow.models.get_model_info(logged.onnx_model_uri).flavors) == {"python_function", "onnx"}
    local = Path(mlflow.artifacts.download_artifacts(logged.model_uri))
    stored = pd.read_json(local / "input_example.json", orient="split")
    pd.testing.assert_frame_equal(stored, example.reset_index(drop=True), check_dtype=False)


def test_missing_alias_lists_existing(store, months):
    log_and_register(months["Jan"], alias="champion", n_estimators=3)
    with pytest.raises(registry.AliasError, match=r"no alias 'prod'.*champion"):
        registry.load_sklearn("prod")
    with pytest.raises(registry.AliasError, match="no registered model named 'nope'"):
        registry.version_by_alias("champion", name="nope")


def test_log_needs_a_run(store, months):
    model = pipeline.train(months["Jan"], n_estimators=3)
    with pytest.raises(RuntimeError, match="active run"):
        registry.log_bike_model(model, pipeline.make_features(months["Jan"]))


@pytest.mark.parametrize("challenger,champion,margin,expected", [
    (10.0, None, 0.0, True), (9.0, 10.0, 0.0, True), (10.0, 10.0, 0.0, False),
    (9.5, 10.0, 0.1, False), (8.9, 10.0, 0.1, True)])
def test_gate_rule(challenger, champion, margin, expected):
    promoted, reason = registry.gate(challenger, champion, margin)
    assert promoted is expected and ("promoted" in reason) is expected


def test_gate_rejects_bad_margin():
    with pytest.raises(ValueError, match="margin"):
        registry.gate(1.0, 2.0, margin=1.5)


def test_promote_only_when_better(store, months):
    holdout = months["May"]
    _, v1 = log_and_register(months["Jan"], n_estimators=5)
    first = registry.promote_if_better(v1, holdout)
    assert first.promoted and registry.aliases()["champion"] == v1
    _, v2 = log_and_register(pipeline_concat(months, ["Jan", "Feb", "March", "April"]), n_estimators=5)
    second = registry.promote_if_better(v2, holdout)
    assert second.promoted and second.challenger_mae < second.champion_mae
    assert registry.aliases() == {"challenger": v2, "champion": v2}
    _, v3 = log_and_register(months["Jan"], n_estimators=2, max_depth=2)
    third = registry.promote_if_better(v3, holdout, margin=0.1)
    assert not third.promoted and registry.aliases()["champion"] == v2 and "champion kept" in str(third)
    assert (first.margin, third.margin) == (0.0, 0.1)  # the result records the margin it was judged with


def pipeline_concat(months, names):
    import pandas as pd

    return pd.concat([months[m] for m in names], ignore_index=True)


@pytest.mark.parametrize("challenger,champion", [(float("nan"), 10.0), (-1.0, 10.0), (9.0, float("inf")),
                                                 ("9", 10.0)])
def test_gate_rejects_values_that_are_not_errors(challenger, champion):
    with pytest.raises(ValueError, match="finite number >= 0"):
        registry.gate(challenger, champion)


def test_logged_requirements_are_pinned_and_logging_is_quiet(store, months, caplog):
    import logging

    model = pipeline.train(months["Jan"], n_estimators=3)
    mlflow_logger = logging.getLogger("mlflow")  # MLflow's loggers do not propagate to the root logger
    mlflow_logger.addHandler(caplog.handler)
    try:
        with mlflow.start_run():
            logged = registry.log_bike_model(model, pipeline.make_features(months["Jan"]))
    finally:
        mlflow_logger.removeHandler(caplog.handler)
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    for uri in (logged.model_uri, logged.onnx_model_uri):
        local = mlflow.artifacts.download_artifacts(uri)
        requirements = Path(local, "requirements.txt").read_text().splitlines()
        assert requirements and registry.packaging.unpinned(requirements) == []


def test_log_model_card(store, months, tmp_path):
    _, version = log_and_register(months["Jan"], alias="champion", n_estimators=3)
    card = tmp_path / "MODEL_CARD.md"
    card.write_text("# Model card: bike-demand, version 1\n")
    uri = registry.log_model_card(card, version)
    assert uri.endswith("/model_card/MODEL_CARD.md")
    assert registry.version_by_alias("champion").tags[registry.MODEL_CARD_TAG] == uri
    assert Path(mlflow.artifacts.download_artifacts(uri)).read_text() == card.read_text()


def test_log_model_card_bad_input(store, months, tmp_path):
    _, version = log_and_register(months["Jan"], n_estimators=3)
    with pytest.raises(FileNotFoundError, match="no model card at missing.md"):
        registry.log_model_card(tmp_path / "missing.md", version)
    card = tmp_path / "card.md"
    card.write_text("# card\n")
    with pytest.raises(LookupError, match=r"has no version 7; versions: \[1\]"):
        registry.log_model_card(card, 7)
