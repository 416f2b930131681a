"""The prediction service: routes, validation of every malformed-input class, metrics, request log, reload,
both backends, and the real uvicorn server started and stopped."""

import json
import math
import os
import threading
from datetime import datetime

import httpx
import mlflow
import numpy as np
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from mlops_course import data, pipeline, process, registry, serving
from mlops_course.model_loader import ModelLoadError, load_served_model

ROW = dict(serving.EXAMPLE_ROW)


@pytest.fixture(scope="module")
def bikes():
    return data.load_bikeshare()


@pytest.fixture(scope="module")
def store(tmp_path_factory, bikes):
    """A tracking store with bike-demand v1 as champion (with its ONNX copy), shared by this module's tests."""
    from mlops_course import setup_lesson

    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    os.environ["MLOPS_COURSE_WORKSPACE"] = str(tmp_path_factory.mktemp("ws"))
    lesson = setup_lesson("98", quiet=True)
    mlflow.set_experiment("serving-tests")  # never an experiment id left over from another test's store
    register(bikes, ["Jan", "Feb"], alias="champion", n_estimators=8)
    yield lesson
    process.stop_all()
    os.chdir(saved_cwd)
    os.environ.clear()
    os.environ.update(saved_env)


def register(bikes, months, *, name=registry.MODEL_NAME, alias=None, onnx=True, **params):
    train = data.select_months(bikes, months)
    model = pipeline.train(train, **params)
    with mlflow.start_run():
        logged = registry.log_bike_model(model, pipeline.make_features(train), onnx=onnx)
    return registry.register(logged, name=name, alias=alias)


@pytest.fixture(scope="module")
def client(store):
    app = serving.create_app(tracking_uri=store.tracking_uri, request_log=store.path("requests.jsonl"))
    with TestClient(app) as c:
        yield c


def metric_samples(text):
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def requests_count(text, route, status):
    return sum(v for (name, labels), v in metric_samples(text).items()
               if name == "bike_requests_total" and dict(labels).get("route") == route
               and dict(labels).get("status") == str(status))


# ---------------------------------------------------------------- the happy path
def test_health_names_model_version_alias_backend(client):
    assert client.get("/health").json() == {"status": "ok", "model_name": "bike-demand", "model_version": "1",
                                            "alias": "champion", "backend": "onnx"}


def test_predict_one_row_matches_the_registered_model(client, store, bikes):
    body = client.post("/predict", json={"rows": [ROW]}).json()
    assert set(body) == {"predictions", "model_name", "model_version", "request_id"}
    assert body["model_version"] == "1" and body["model_name"] == "bike-demand" and len(body["request_id"]) >= 8
    expected = registry.load_sklearn("champion").predict(pipeline.make_features(
        __import__("pandas").DataFrame([ROW])))[0]
    assert body["predictions"][0] == pytest.approx(expected, rel=1e-4)


def test_predict_batch_keeps_row_order(client, bikes):
    X = pipeline.make_features(data.select_months(bikes, ["June"]))
    rows = X.head(50).to_dict(orient="records")
    batch = client.post("/predict", json={"rows": rows}).json()["predictions"]
    singles = [client.post("/predict", json={"rows": [r]}).json()["predictions"][0] for r in rows[:5]]
    assert len(batch) == 50 and batch[:5] == pytest.approx(singles)
    assert len(set(np.round(batch, 3))) > 5  # different hours, different predictions


def test_client_request_id_is_kept(client):
    r = client.post("/predict", json={"rows": [ROW]}, headers={"X-Request-ID": "abc-123"})
    assert r.json()["request_id"] == "abc-123" and r.headers["x-request-id"] == "abc-123"


def test_openapi_documents_units_and_ranges(client):
    schema = client.get("/openapi.json").json()
    features = schema["components"]["schemas"]["BikeFeatures"]
    assert sorted(features["required"]) == sorted(pipeline.FEATURES)
    hr = features["properties"]["hr"]
    assert hr["minimum"] == 0 and hr["maximum"] == 23 and "hour of day" in hr["description"]
    assert features["properties"]["weather"]["unit"].startswith("1 clear")
    assert {"/health", "/predict", "/reload", "/metrics"} <= set(schema["paths"])


# ---------------------------------------------------------------- malformed input: 4xx naming the field, never 500
BAD_BODIES = {
    "missing field": ({"rows": [{k: v for k, v in ROW.items() if k != "temp"}]}, 422, "rows[0].temp"),
    "wrong type": ({"rows": [{**ROW, "hum": "wet"}]}, 422, "rows[0].hum"),
    "numeric string": ({"rows": [{**ROW, "hr": "8"}]}, 422, "rows[0].hr"),
    "boolean": ({"rows": [{**ROW, "holiday": True}]}, 422, "rows[0].holiday"),
    "null": ({"rows": [{**ROW, "atemp": None}]}, 422, "rows[0].atemp"),
    "out of range high": ({"rows": [{**ROW, "hr": 24}]}, 422, "rows[0].hr"),
    "out of range low": ({"rows": [ROW, {**ROW, "weather": 0}]}, 422, "rows[1].weather"),
    "unknown column": ({"rows": [{**ROW, "casual": 12}]}, 422, "rows[0].casual"),
    "empty batch": ({"rows": []}, 422, "rows"),
    "oversized batch": ({"rows": [ROW] * (serving.MAX_BATCH + 1)}, 422, "rows"),
    "rows not a list": ({"rows": ROW}, 422, "rows"),
    "no rows key": ({"data": [ROW]}, 422, "rows"),
    "body is a list": ([ROW], 422, "body"),
}


@pytest.mark.parametrize("case", list(BAD_BODIES))
def test_malformed_json_body_is_a_4xx_naming_the_field(client, case):
    body, status, field = BAD_BODIES[case]
    r = client.post("/predict", json=body)
    assert r.status_code == status, r.text
    payload = r.json()
    assert field in payload["message"] and field in [d["field"] for d in payload["detail"]]


RAW_BODIES = {
    "NaN": (json.dumps({"rows": [{**ROW, "hr": math.nan}]}).encode(), "application/json", 422, "rows[0].hr"),
    "Infinity": (json.dumps({"rows": [{**ROW, "windspeed": math.inf}]}).encode(), "application/json", 422,
                 "rows[0].windspeed"),
    "invalid JSON": (b'{"rows": [{"hr": 8,', "application/json", 400, "body"),
    "empty body": (b"", "application/json", 422, "body"),
    "not JSON at all": (b"hr=8&temp=0.3", "application/x-www-form-urlencoded", 422, "body"),
}


@pytest.mark.parametrize("case", list(RAW_BODIES))
def test_malformed_raw_body_is_a_4xx_naming_the_field(client, case):
    content, content_type, status, field = RAW_BODIES[case]
    r = client.post("/predict", content=content, headers={"content-type": content_type})
    assert r.status_code == status, r.text
    assert field in r.json()["message"]


def test_every_problem_is_listed(client):
    r = client.post("/predict", json={"rows": [{**ROW, "hr": -1, "temp": 2}]})
    fields = [d["field"] for d in r.json()["detail"]]
    assert r.status_code == 422 and fields == ["rows[0].hr", "rows[0].temp"]


def test_smaller_batch_limit(store):
    app = serving.create_app(tracking_uri=store.tracking_uri, max_batch=3)
    with TestClient(app) as c:
        assert c.post("/predict", json={"rows": [ROW] * 3}).status_code == 200
        r = c.post("/predict", json={"rows": [ROW] * 4})
        assert r.status_code == 422 and "at most 3" in r.json()["message"]


# ---------------------------------------------------------------- metrics
def test_metrics_count_requests_latency_predictions_and_version(store):
    app = serving.create_app(tracking_uri=store.tracking_uri)
    with TestClient(app) as c:
        for _ in range(3):
            c.post("/predict", json={"rows": [ROW, ROW]})
        c.post("/predict", json={"rows": [{**ROW, "hr": 99}]})
        c.get("/health")
        c.get("/no-such-route")
        text = c.get("/metrics").text
    samples = metric_samples(text)
    assert requests_count(text, "/predict", 200) == 3 and requests_count(text, "/predict", 422) == 1
    assert requests_count(text, "/health", 200) == 1 and requests_count(text, "other", 404) == 1
    assert samples[("bike_request_latency_seconds_count", (("route", "/predict"), ("status", "200")))] == 3
    assert samples[("bike_request_latency_seconds_count", (("route", "/predict"), ("status", "422")))] == 1
    assert samples[("bike_request_latency_seconds_count", (("route", "other"), ("status", "404")))] == 1
    assert samples[("bike_prediction_value_count", ())] == 6  # 3 requests x 2 rows; rejected rows not counted
    assert samples[("bike_model_info", (("alias", "champion"), ("backend", "onnx"), ("name", "bike-demand"),
                                        ("version", "1")))] == 1


def test_two_apps_keep_separate_metrics(store):
    a = TestClient(serving.create_app(tracking_uri=store.tracking_uri))
    b = TestClient(serving.create_app(tracking_uri=store.tracking_uri))
    a.post("/predict", json={"rows": [ROW]})
    assert requests_count(a.get("/metrics").text, "/predict", 200) == 1
    assert requests_count(b.get("/metrics").text, "/predict", 200) == 0


# ---------------------------------------------------------------- request log
def test_request_log_has_one_line_per_request(store, bikes):
    log_path = store.path("log-test.jsonl")
    app = serving.create_app(tracking_uri=store.tracking_uri, request_log=log_path)
    rows = pipeline.make_features(data.select_months(bikes, ["July"])).head(3).to_dict(orient="records")
    with TestClient(app) as c:
        answers = [c.post("/predict", json={"rows": rows[: i + 1]}).json() for i in range(3)]
        c.post("/predict", json={"rows": []})  # rejected: not logged
        records = serving.read_request_log(log_path, expect=3)
    assert [r["request_id"] for r in records] == [a["request_id"] for a in answers]
    last = records[-1]
    assert set(last) == {"request_id", "time", "model_version", "inputs", "predictions"}
    assert last["inputs"] == rows and last["predictions"] == answers[-1]["predictions"]
    assert last["model_version"] == "1" and datetime.fromisoformat(last["time"]).tzinfo is not None
    assert len(serving.read_request_log(log_path)) == 3  # closing the app wrote nothing twice


def test_request_log_writer_flushes_and_closes(tmp_path):
    log = serving.RequestLog(tmp_path / "sub" / "r.jsonl")
    X = np.ones((2, len(pipeline.FEATURES)))
    writers = [threading.Thread(target=lambda i=i: log.write({"request_id": str(i), "time": "t", "model_version": "1",
                                                              "inputs": X, "predictions": np.array([1.0, 2.0])}))
               for i in range(50)]
    for t in writers:
        t.start()
    for t in writers:
        t.join()
    assert log.flush()
    assert sorted(int(r["request_id"]) for r in serving.read_request_log(log.path)) == list(range(50))
    writer = log._thread
    log.close()
    assert writer is not None and not writer.is_alive()


# ---------------------------------------------------------------- backends and reload
def test_onnx_and_sklearn_backends_agree(store, bikes):
    rows = pipeline.make_features(data.select_months(bikes, ["Aug"])).to_dict(orient="records")
    out = {}
    for backend in ("onnx", "sklearn"):
        with TestClient(serving.create_app(tracking_uri=store.tracking_uri, backend=backend)) as c:
            assert c.get("/health").json()["backend"] == backend
            out[backend] = np.array(c.post("/predict", json={"rows": rows}).json()["predictions"])
    assert len(out["onnx"]) == len(rows)
    np.testing.assert_allclose(out["onnx"], out["sklearn"], rtol=1e-5, atol=1e-3)


def test_auto_uses_sklearn_without_onnx_copy_and_onnx_refuses(store, bikes):
    register(bikes, ["Jan"], name="no-onnx", alias="champion", onnx=False, n_estimators=3)
    app = serving.create_app("no-onnx", tracking_uri=store.tracking_uri)
    assert TestClient(app).get("/health").json()["backend"] == "sklearn"
    with pytest.raises(ModelLoadError, match="no ONNX copy"):
        serving.create_app("no-onnx", tracking_uri=store.tracking_uri, backend="onnx")


def test_missing_alias_and_bad_backend_are_clear(store):
    with pytest.raises(ModelLoadError, match=r"no alias 'prod'.*champion"):
        serving.create_app(alias="prod", tracking_uri=store.tracking_uri)
    with pytest.raises(ValueError, match="unknown backend 'tf'"):
        serving.create_app(tracking_uri=store.tracking_uri, backend="tf")


def test_a_model_whose_signature_is_not_the_schema_is_refused(store, bikes):
    from mlflow.models import infer_signature
    from sklearn.linear_model import LinearRegression

    X = pipeline.make_features(data.select_months(bikes, ["Jan"]))[["temp", "hr"]]
    other = LinearRegression().fit(X, np.arange(len(X), dtype=float))
    with mlflow.start_run():
        logged = mlflow.sklearn.log_model(other, name="two-columns", signature=infer_signature(X),
                                          serialization_format="skops", skops_trusted_types=[])
    version = mlflow.register_model(logged.model_uri, "two-columns").version
    mlflow.MlflowClient().set_registered_model_alias("two-columns", "champion", version)
    with pytest.raises(ModelLoadError, match=rf"version {version} of 'two-columns' expects inputs \['temp', 'hr'\]"):
        serving.create_app("two-columns", tracking_uri=store.tracking_uri)
    app = serving.create_app(tracking_uri=store.tracking_uri)  # the champion of bike-demand matches: served
    with TestClient(app) as c:
        assert c.get("/health").status_code == 200


def test_reload_follows_the_alias(store, bikes):
    name = "reload-demo"
    register(bikes, ["Jan"], name=name, alias="champion", n_estimators=3, max_depth=2)
    app = serving.create_app(name, tracking_uri=store.tracking_uri)
    with TestClient(app) as c:
        before = c.post("/predict", json={"rows": [ROW]}).json()
        assert before["model_version"] == "1"
        v2 = register(bikes, ["Jan", "Feb", "March"], name=name, alias="challenger", n_estimators=10)
        assert c.post("/reload").json()["model_version"] == "1"  # alias unchanged: same version
        mlflow.MlflowClient().set_registered_model_alias(name, "champion", v2)
        assert c.get("/health").json()["model_version"] == "1"  # nothing moves until reload
        assert c.post("/reload").json() == {"status": "ok", "model_name": name, "model_version": v2,
                                            "alias": "champion", "backend": "onnx"}
        after = c.post("/predict", json={"rows": [ROW]}).json()
        assert after["model_version"] == v2 and after["predictions"] != before["predictions"]
        assert c.post("/reload", params={"backend": "sklearn"}).json()["backend"] == "sklearn"
        info = [labels for (metric, labels) in metric_samples(c.get("/metrics").text) if metric == "bike_model_info"]
        assert [dict(labels)["version"] for labels in info] == [v2]
        mlflow.MlflowClient().delete_registered_model_alias(name, "champion")
        r = c.post("/reload")
        assert r.status_code == 409 and f"still serving version {v2}" in r.json()["message"]
        assert c.post("/predict", json={"rows": [ROW]}).json()["model_version"] == v2
        assert c.post("/reload", params={"backend": "tensorflow"}).status_code == 422


def test_pinned_version_ignores_the_alias(store, bikes):
    name = "pinned-demo"
    v1 = register(bikes, ["Jan"], name=name, alias="champion", n_estimators=3, max_depth=2)
    v2 = register(bikes, ["Feb"], name=name, n_estimators=3, max_depth=2)
    app = serving.create_app(name, "challenger", version=v1, tracking_uri=store.tracking_uri)
    with TestClient(app) as c:
        assert c.get("/health").json() == {"status": "ok", "model_name": name, "model_version": v1,
                                           "alias": "challenger", "backend": "onnx"}
        mlflow.MlflowClient().set_registered_model_alias(name, "champion", v2)
        assert c.post("/reload").json()["model_version"] == v1  # pinned: the alias move is not followed
        assert c.post("/predict", json={"rows": [ROW]}).json()["model_version"] == v1
    assert load_served_model(name, version=v2, backend="sklearn", tracking_uri=store.tracking_uri).version == v2
    with pytest.raises(ModelLoadError, match="has no version 99"):
        load_served_model(name, version=99, tracking_uri=store.tracking_uri)
    with pytest.raises(ModelLoadError, match="whole number"):
        load_served_model(name, version="latest", tracking_uri=store.tracking_uri)


def test_cli_passes_a_pinned_version(monkeypatch):
    import uvicorn

    seen = {}
    monkeypatch.setattr(serving, "create_app", lambda *a, **k: seen.update(args=a, kwargs=k) or "app")
    monkeypatch.setattr(uvicorn, "run", lambda app, **k: seen.update(app=app, run=k))
    serving.main(["--alias", "challenger", "--version", "2", "--tracking-uri", "sqlite:///x.db", "--port", "9"])
    assert seen["args"] == ("bike-demand", "challenger") and seen["kwargs"]["version"] == "2"
    assert seen["app"] == "app" and seen["run"]["port"] == 9
    serving.main(["--tracking-uri", "sqlite:///x.db"])
    assert seen["kwargs"]["version"] is None


def test_loader_restores_the_tracking_uri(store):
    before = mlflow.get_tracking_uri()
    model = load_served_model(tracking_uri=store.tracking_uri, backend="sklearn")
    assert mlflow.get_tracking_uri() == before and model.version == "1"
    with pytest.raises(ValueError, match="9 columns"):
        model.predict(np.ones((2, 3)))


# ---------------------------------------------------------------- the real server
def test_real_server_starts_answers_and_stops(store):
    log_path = store.path("served.jsonl")
    svc = serving.start_service(tracking_uri=store.tracking_uri, request_log=log_path,
                                log_file=store.path("service.log"))
    try:
        assert svc.running and svc.url.startswith("http://127.0.0.1:")
        assert httpx.get(f"{svc.url}/health").json()["model_version"] == "1"
        body = httpx.post(f"{svc.url}/predict", json={"rows": [ROW, ROW]}).json()
        assert len(body["predictions"]) == 2
        bad = httpx.post(f"{svc.url}/predict", content=b"{", headers={"content-type": "application/json"})
        assert bad.status_code == 400
        assert requests_count(httpx.get(f"{svc.url}/metrics").text, "/predict", 200) == 1
        pid = svc.process.pid
    finally:
        svc.stop()
    assert not svc.running and not process.port_in_use(svc.port)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    records = serving.read_request_log(log_path)
    assert [r["request_id"] for r in records] == [body["request_id"]]


def test_nothing_to_serve_is_refused_before_a_process_starts(store, tmp_path):
    with pytest.raises(serving.NothingToServe, match="no alias 'nope'.*champion") as refused:
        serving.start_service(alias="nope", tracking_uri=store.tracking_uri, log_file=store.path("bad.log"))
    # One line that says what to run first: what a learner who re-ran only the setup cell needs to read.
    first_line = str(refused.value).splitlines()[0]
    assert first_line == str(refused.value) and "first" in first_line and len(first_line) <= 240
    empty = f"sqlite:///{tmp_path / 'empty.db'}"
    with pytest.raises(serving.NothingToServe, match="no registered model named 'bike-demand'"):
        serving.start_service(tracking_uri=empty, log_file=tmp_path / "never.log")
    assert not process._RUNNING and not store.path("bad.log").exists() and not (tmp_path / "never.log").exists()


def test_start_service_failure_is_reported_and_cleaned_up(store, bikes):
    # The alias resolves but the version cannot be served (no ONNX copy with backend="onnx"): the process
    # starts, exits before it is ready, and the error carries the end of its log.
    version = register(bikes, ["March"], name="sklearn-only", alias="champion", onnx=False, n_estimators=4)
    with pytest.raises(process.ServerError, match=f"version {version} of 'sklearn-only' has no ONNX copy"):
        serving.start_service("sklearn-only", backend="onnx", tracking_uri=store.tracking_uri,
                              log_file=store.path("bad.log"))
    assert not process._RUNNING


def test_start_service_needs_a_store(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(ValueError, match="tracking_uri"):
        serving.start_service(tracking_uri=None)


def test_loader_leaves_an_unset_tracking_uri_unset(store, monkeypatch):
    from mlflow.tracking._tracking_service import utils as tracking_utils

    monkeypatch.setattr(tracking_utils, "_tracking_uri", None)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///elsewhere.db")
    assert load_served_model(tracking_uri=store.tracking_uri).version == "1"
    assert tracking_utils._tracking_uri is None
    assert os.environ["MLFLOW_TRACKING_URI"] == "sqlite:///elsewhere.db"


def test_reload_survives_an_unreachable_registry(store, monkeypatch):
    app = serving.create_app(tracking_uri=store.tracking_uri)

    def broken(*args, **kwargs):
        raise OSError("database is locked")

    with TestClient(app) as c:
        monkeypatch.setattr(serving, "load_served_model", broken)
        r = c.post("/reload")
        assert r.status_code == 503 and "OSError: database is locked" in r.json()["message"]
        assert c.post("/predict", json={"rows": [ROW]}).json()["model_version"] == "1"


def test_serving_state_swaps_on_reload_and_keeps_the_model_when_a_load_fails(monkeypatch):
    from mlops_course.model_loader import ModelLoadError, ServedModel

    loads = []

    def fake_load(name, alias, *, tracking_uri, backend, version):
        loads.append((alias, backend, version))
        if len(loads) == 3:
            raise ModelLoadError("version 9 expects other inputs")
        if len(loads) == 4:
            raise ConnectionError("registry unreachable")
        return ServedModel(name, alias, str(len(loads)), "onnx" if backend == "auto" else backend, lambda X: X)

    monkeypatch.setattr(serving, "load_served_model", fake_load)
    swapped = []
    state = serving.ServingState("bike-demand", "champion", tracking_uri=None, backend="auto",
                                 on_swap=lambda model: swapped.append(model.version))
    assert state.model.version == "1"
    assert state.reload(backend="sklearn").version == "2" and state.backend == "sklearn"
    for status in (409, 503):  # the model's fault, then the registry's
        with pytest.raises(serving.ReloadFailed) as failed:
            state.reload()
        assert failed.value.status == status and failed.value.version == "2" and failed.value.backend == "sklearn"
        assert state.model.version == "2"  # still serving what it served
    assert loads[1:] == [("champion", "sklearn", None)] * 3  # each reload kept the backend it was asked for last
    assert swapped == ["1", "2"]  # the failed reloads swapped nothing in
