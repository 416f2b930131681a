import numpy as np
import pytest

from mlops_course import data, packaging, pipeline


@pytest.fixture(scope="module")
def jan_feb():
    bikes = data.load_bikeshare()
    return pipeline.split_by_month(bikes, ["Jan"], ["Feb"])


@pytest.mark.parametrize("kind", ["random_forest", "ridge"])
def test_onnx_parity(jan_feb, kind):
    train, test = jan_feb
    model = pipeline.train(train, kind)
    session = packaging.onnx_session(packaging.to_onnx(model))
    assert packaging.parity(model, session, pipeline.make_features(test)) < 1e-3
    one = packaging.onnx_predict(session, pipeline.make_features(test).head(1).to_numpy())
    assert one.shape == (1,)


def test_unfitted_model_is_refused():
    with pytest.raises(ValueError, match="not fitted"):
        packaging.to_onnx(pipeline.build_model("random_forest"))


def test_mismatched_feature_names(jan_feb):
    model = pipeline.train(jan_feb[0], "ridge")
    with pytest.raises(ValueError, match="feature names do not match"):
        packaging.to_onnx(model, ["hr", "temp"])


def test_gradient_boosting_fails_clearly(jan_feb):
    model = pipeline.train(jan_feb[0], "gradient_boosting", max_iter=5)
    with pytest.raises(ValueError, match="cannot be converted to ONNX"):
        packaging.to_onnx(model)
    assert np.isfinite(model.predict(pipeline.make_features(jan_feb[1]))).all()
