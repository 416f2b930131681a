import subprocess
import sys
from pathlib import Path

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


# ---------------------------------------------------------------- latency
def test_compare_latency_table(jan_feb):
    train, test = jan_feb
    model = pipeline.train(train, "random_forest", n_estimators=5)
    session = packaging.onnx_session(packaging.to_onnx(model))
    table = packaging.compare_latency(model, session, pipeline.make_features(test), batch_rows=50, budget=0.02)
    assert list(table.index) == ["1 row", "50 rows"]
    assert (table[["sklearn_ms", "onnx_ms"]] > 0).all().all()
    assert np.allclose(table["speedup"], table["sklearn_ms"] / table["onnx_ms"])
    fig = packaging.plot_latency(table)
    assert len(fig.axes[0].patches) == 4
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_compare_latency_bad_input(jan_feb):
    model = pipeline.train(jan_feb[0], "ridge")
    session = packaging.onnx_session(packaging.to_onnx(model))
    with pytest.raises(ValueError, match="non-empty DataFrame"):
        packaging.compare_latency(model, session, pipeline.make_features(jan_feb[1]).to_numpy())
    with pytest.raises(ValueError, match=r"lacks feature column\(s\) \['hr'\]"):
        packaging.compare_latency(model, session, pipeline.make_features(jan_feb[1]).drop(columns=["hr"]))
    with pytest.raises(ValueError, match="budget"):
        packaging.seconds_per_call(lambda: None, budget=0)


def test_seconds_per_call_counts_calls():
    calls = []
    assert packaging.seconds_per_call(lambda: calls.append(1), budget=0.01, repeats=2) > 0
    assert len(calls) >= 3  # one probe, then at least one call per repeat


# ---------------------------------------------------------------- requirements and Dockerfile
def test_pin_requirements_uses_installed_versions():
    from importlib import metadata

    pinned = packaging.pin_requirements(["numpy", "# a comment", "", "pandas==1.0.0  # kept as written"])
    assert pinned == [f"numpy=={metadata.version('numpy')}", "pandas==1.0.0"]
    assert packaging.unpinned(["numpy", "scikit-learn==1.9.1", "# x", "pandas>=2"]) == ["numpy", "pandas>=2"]


@pytest.mark.parametrize("line,message", [("pandas>=2", "range or a URL"),
                                          ("surely-not-installed-pkg-xyz", "not installed"),
                                          ("==1.0", "==1.0")])
def test_pin_requirements_bad_input(line, message):
    with pytest.raises(ValueError, match=message):
        packaging.pin_requirements([line])


def test_dockerfile_recipe():
    text = packaging.dockerfile(python="3.12", port=9000)
    lines = text.splitlines()
    assert "FROM python:3.12-slim" in lines
    assert lines.index("COPY requirements.txt .") < lines.index("COPY model/ /srv/model/")
    assert "USER 10001" in lines and "EXPOSE 9000" in lines
    cmd = next(line for line in lines if line.startswith("CMD"))
    assert '"mlflow", "models", "serve"' in cmd
    import sys

    assert f"FROM python:{sys.version_info.major}.{sys.version_info.minor}-slim" in packaging.dockerfile()


def test_dockerfile_passes_hadolint(tmp_path):
    from mlops_course import lint

    (tmp_path / "Dockerfile").write_text(packaging.dockerfile())
    verdict = lint.hadolint(tmp_path / "Dockerfile")
    assert verdict.ok, verdict


@pytest.mark.parametrize("kwargs,message", [({"python": "latest"}, "python must be a version"),
                                            ({"port": 0}, "port must be"), ({"port": 70000}, "port must be")])
def test_dockerfile_bad_input(kwargs, message):
    with pytest.raises(ValueError, match=message):
        packaging.dockerfile(**kwargs)


# ---------------------------------------------------------------- model card
@pytest.fixture(scope="module")
def card_inputs():
    bikes = data.load_bikeshare()
    train, _ = pipeline.split_by_month(bikes, ["Jan", "Feb"], ["March"])
    model = pipeline.train(train, "random_forest", n_estimators=5)
    return model, pipeline.evaluate_by_month(model, data.select_months(bikes, ["Jan", "Feb", "March", "April"]))


def test_model_card_sections_and_table(card_inputs):
    model, by_month = card_inputs
    text = packaging.model_card(model, by_month, name="bike-demand", version=3, alias="champion",
                                train_months=["Jan", "Feb"], limitations=["Only winter data."])
    assert text.startswith("# Model card: bike-demand, version 3 (alias `champion`)")
    for section in ("## Intended use", "## Data", "## Model", "## Metrics by month", "## Limitations"):
        assert section in text
    assert "| Feb | training |" in text and "| March | held out |" in text and "| May |" not in text
    assert f"| {by_month.loc['April', 'mae']:.2f} |" in text
    worst = by_month.loc[["March", "April"], "mae"]
    assert f"{worst.max():.1f} bikes per hour ({worst.idxmax()})" in text
    assert "- Only winter data." in text and 'load_model("models:/bike-demand@champion")' in text


def test_write_model_card(card_inputs, tmp_path):
    model, by_month = card_inputs
    path = packaging.write_model_card(tmp_path / "card" / "MODEL_CARD.md", model, by_month, name="m",
                                      version="1", train_months=["Jan"])
    assert path.read_text().startswith("# Model card: m, version 1\n")
    with pytest.raises(ValueError, match="ending in .md"):
        packaging.write_model_card(tmp_path / "card.txt", model, by_month, name="m", version="1",
                                   train_months=["Jan"])


def test_model_card_bad_input(card_inputs):
    model, by_month = card_inputs
    kw = {"name": "m", "version": "1", "train_months": ["Jan"]}
    with pytest.raises(ValueError, match="not fitted"):
        packaging.model_card(pipeline.build_model("random_forest"), by_month, **kw)
    other = pipeline.build_model("ridge").fit(pipeline.make_features(data.load_bikeshare().head(50))[["hr", "temp"]],
                                              np.arange(50.0))
    with pytest.raises(ValueError, match="feature names do not match"):
        packaging.model_card(other, by_month, **kw)
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['r2'\]"):
        packaging.model_card(model, by_month.drop(columns=["r2"]), **kw)
    with pytest.raises(ValueError, match="non-empty DataFrame"):
        packaging.model_card(model, by_month.iloc[0:0], **kw)
    with pytest.raises(ValueError, match="unknown month"):
        packaging.model_card(model, by_month, name="m", version="1", train_months=["January"])
    with pytest.raises(ValueError, match="intended_use is empty"):
        packaging.model_card(model, by_month, intended_use="  ", **kw)
    with pytest.raises(ValueError, match="limitations"):
        packaging.model_card(model, by_month, limitations="one long string", **kw)


# ---------------------------------------------------------------- serving bundle (needs a tracking store)
@pytest.fixture
def registered(lesson_env, jan_feb):
    import mlflow

    from mlops_course import registry, setup_lesson

    lesson = setup_lesson("98", quiet=True)
    model = pipeline.train(jan_feb[0], "random_forest", n_estimators=3)
    with mlflow.start_run():
        logged = registry.log_bike_model(model, pipeline.make_features(jan_feb[0]), onnx=False)
    registry.register(logged, alias="champion")
    return lesson, model


def test_serving_bundle_is_complete_and_loads(registered, jan_feb):
    import mlflow

    lesson, model = registered
    bundle = packaging.write_serving_bundle("models:/bike-demand@champion", lesson.path("bundle"))
    assert sorted(p.name for p in bundle.iterdir()) == ["Dockerfile", "model", "requirements.txt"]
    requirements = (bundle / "requirements.txt").read_text().splitlines()
    assert packaging.unpinned(requirements) == []
    assert any(r.startswith("mlflow==") for r in requirements)
    assert any(r.startswith("scikit-learn==") for r in requirements)
    assert "COPY model/ /srv/model/" in (bundle / "Dockerfile").read_text()
    from mlops_course import lint

    assert lint.hadolint(bundle / "Dockerfile").ok
    X = pipeline.make_features(jan_feb[1])
    assert np.allclose(mlflow.pyfunc.load_model(str(bundle / "model")).predict(X), model.predict(X))
    with pytest.raises(FileExistsError, match="not empty"):
        packaging.write_serving_bundle("models:/bike-demand@champion", bundle)


def test_serving_bundle_command_serves(registered, jan_feb):
    """The Dockerfile's CMD, run here on loopback instead of in a container, answers /ping and /invocations."""
    import json

    import httpx

    from mlops_course.process import BackgroundServer

    lesson, model = registered
    bundle = packaging.write_serving_bundle("models:/bike-demand@champion", lesson.path("bundle"))
    cmd_line = next(line for line in (bundle / "Dockerfile").read_text().replace("\\\n", "").splitlines()
                    if line.startswith("CMD"))
    command = json.loads(cmd_line[len("CMD"):])
    command = [str(bundle / "model") if part == "/srv/model" else part for part in command]
    command[command.index("--host") + 1] = "127.0.0.1"
    command[command.index("--port") + 1] = "{port}"
    X = pipeline.make_features(jan_feb[1]).head(3)
    with BackgroundServer(command, health_path="/ping", log_file=lesson.path("serve.log"),
                          startup_timeout=120) as server:
        body = {"dataframe_split": X.to_dict(orient="split", index=False)}
        answer = httpx.post(f"{server.url}/invocations", json=body, timeout=30).json()
    assert np.allclose(answer["predictions"], model.predict(X))


def test_serving_bundle_refuses_what_is_not_a_model(registered):
    import mlflow

    lesson, _ = registered
    with mlflow.start_run():
        mlflow.log_text("not a model", "notes/readme.txt")
        uri = mlflow.get_artifact_uri("notes")
    with pytest.raises(ValueError, match="not an MLflow model"):
        packaging.write_serving_bundle(uri, lesson.path("bundle"))


def _lesson_03_explains() -> set[str]:
    """The hadolint rule codes lesson 03 explains, one list item each (``- `DL3008` ...``)."""
    import json
    import re
    from pathlib import Path

    notebook = next((Path(__file__).parents[1] / "notebooks").glob("03-*.ipynb"))
    cells = json.loads(notebook.read_text())["cells"]
    text = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    return set(re.findall(r"^- `(DL\d{4})`", text, flags=re.MULTILINE))


def test_mlflow_generated_dockerfile_findings_are_the_ones_the_lesson_explains(registered):
    """`mlflow models generate-dockerfile` (the real CLI, in its own process), then hadolint, as lesson 03 does."""
    import os
    import re
    import subprocess
    import sys
    from pathlib import Path

    from mlops_course import lint

    lesson, _ = registered
    out = lesson.path("mlflow-image")
    mlflow_cli = Path(sys.executable).with_name("mlflow")
    done = subprocess.run([str(mlflow_cli), "models", "generate-dockerfile", "-m", "models:/bike-demand@champion",
                           "-d", str(out)], capture_output=True, text=True, check=False, timeout=300,
                          env={**os.environ, "TQDM_DISABLE": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    dockerfile = (out / "Dockerfile").read_text()
    assert list((out / "model_dir").rglob("MLmodel"))  # the model is copied next to the Dockerfile
    verdict = lint.hadolint(out / "Dockerfile")
    found = {re.search(r"\b(DL\d{4})\b", f).group(1) for f in verdict.findings}
    # What MLflow's generator does that a hand-written file would not; lesson 03 explains each one.
    assert found == {"DL3008", "DL3009", "DL3042", "DL3059"}, verdict
    assert found == _lesson_03_explains()
    # What hadolint does not flag but the lesson points out: no USER line (root), the exact Python patch version.
    assert not re.search(r"^USER\b", dockerfile, flags=re.MULTILINE)
    assert re.search(r"^FROM python:\d+\.\d+\.\d+-slim$", dockerfile, flags=re.MULTILINE)


LOAD_IN_THREADS = '''
import re, sys, threading
from mlops_course import data, packaging, pipeline
import onnx

def pss():
    return int(re.search(r"^Pss:\\s+(\\d+)", open("/proc/self/smaps_rollup").read(), re.M).group(1)) / 1024

model = pipeline.train(data.select_months(data.load_bikeshare(), ["Jan", "Feb", "March", "April", "May"]),
                       n_estimators=40, max_depth=16)
blob = packaging.to_onnx(model).SerializeToString()
import skl2onnx  # noqa: F401 - imported before the baseline: an import is not scratch
if sys.argv[1] == "keep":
    packaging.release_free_memory = lambda: False
box, base = {}, pss()
if sys.argv[2] == "convert":
    box["converted"] = packaging.to_onnx(model)


def reload():  # what a service's /reload does in its worker thread: a new session, the old one dropped, released
    box.update(session=packaging.onnx_session(onnx.load_from_string(blob)))
    packaging.release_free_memory()


for _ in range(2 if sys.argv[2] == "session" else 0):
    worker = threading.Thread(target=reload)
    worker.start()
    worker.join()
print(pss() - base)
'''


@pytest.mark.skipif(not Path("/proc/self/smaps_rollup").exists(), reason="reads PSS from /proc (Linux)")
@pytest.mark.parametrize("what", ["session", "convert"])
def test_building_a_session_or_converting_hands_the_scratch_memory_back(what):
    def growth(mode):
        out = subprocess.run([sys.executable, "-c", LOAD_IN_THREADS, mode, what], capture_output=True, text=True,
                             check=True, timeout=120).stdout
        return float(out.split()[-1])

    kept, released = growth("keep"), growth("release")
    assert kept > 30, f"the scenario no longer leaves freed heap behind ({kept:.0f} MiB): the test shows nothing"
    assert released < kept / 2, f"{released:.0f} MiB grown with release_free_memory, {kept:.0f} MiB without"


def test_release_says_false_where_the_c_library_has_no_trim(monkeypatch):
    class NoTrim:
        def __init__(self, name):
            pass

        def __getattr__(self, name):
            raise AttributeError(name)

    monkeypatch.setattr(packaging.ctypes, "CDLL", NoTrim)
    assert packaging.release_free_memory() is False
