"""Checkers of lesson 04: right answers pass, typical wrong answers get the matching hint."""

import json
import os
import threading
import typing
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import mlflow
import pytest
from conftest import module_lesson, small_champion

from mlops_course import data, deploy, pipeline, registry
from mlops_course.exercises import evaluate
from mlops_course.exercises.lesson04 import SATURDAY_AFTERNOON

METRICS = """# TYPE bike_requests_total counter
bike_requests_total{method="POST",route="/predict",status="200"} 5.0
bike_requests_total{method="POST",route="/predict",status="422"} 3.0
bike_requests_total{method="POST",route="/predict",status="400"} 1.0
bike_requests_total{method="GET",route="/health",status="200"} 2.0
"""


class Fake(BaseHTTPRequestHandler):
    """/metrics and /health answers of a service, set by the test."""

    answers: typing.ClassVar[dict] = {}

    def do_GET(self):
        body = self.answers.get(self.path, "").encode()
        self.send_response(200 if body else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_service():
    Fake.answers = {"/metrics": METRICS}
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Fake)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def body(**changes):
    return {"rows": [{**SATURDAY_AFTERNOON, **changes}]}


def test_04_1_request_body():
    assert evaluate("04.1", body()).ok
    assert "0 = Sunday" in evaluate("04.1", body(weekday=5)).hint
    assert "weekend" in evaluate("04.1", body(workingday=1)).hint
    assert "14" in evaluate("04.1", body(hr=2)).hint
    assert "wrap it" in evaluate("04.1", dict(SATURDAY_AFTERNOON)).hint
    feedback = evaluate("04.1", body(hr="14"))
    assert not feedback.ok and "422" in feedback.message and "rows[0].hr" in feedback.message
    assert "rows[0].casual" in evaluate("04.1", body(casual=3)).message
    assert "one hour" in evaluate("04.1", {"rows": body()["rows"] * 2}).message
    assert "['temp']" in evaluate("04.1", body(temp=0.5)).message
    assert "dict" in evaluate("04.1", [SATURDAY_AFTERNOON]).message


def test_04_2_rejected_count(fake_service):
    assert evaluate("04.2", 3, fake_service).ok
    assert evaluate("04.2", 3.0, fake_service).ok
    assert "400" in evaluate("04.2", 4, fake_service).hint
    assert "status label" in evaluate("04.2", 9, fake_service).hint
    assert "int()" in evaluate("04.2", "3", fake_service).hint
    assert "filter" in evaluate("04.2", 7, fake_service).hint


def canary(**changes):
    settings = {"track": "canary", "replicas": 1, "image": "bike-demand-service:2", "alias": "challenger",
                **changes}
    return deploy.to_yaml([deploy.k8s_manifests(**settings)[0]])


def test_04_3_canary():
    assert evaluate("04.3", canary()).ok
    assert "1 replica" in evaluate("04.3", canary(replicas=2)).hint
    assert "track='canary'" in evaluate("04.3", canary(track=None)).hint
    assert "challenger" in evaluate("04.3", canary(alias="champion")).hint
    assert ":2" in evaluate("04.3", canary(image="bike-demand-service:1")).hint
    assert "not valid YAML" in evaluate("04.3", "kind: [").message
    both = deploy.to_yaml(deploy.k8s_manifests(track="canary", replicas=1) + deploy.k8s_manifests())
    assert "found 2" in evaluate("04.3", both).message
    docs = deploy.k8s_manifests(track="canary", replicas=1, image="x:2", alias="challenger")
    docs[0]["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["path"] = "/"
    assert "/health" in evaluate("04.3", deploy.to_yaml(docs[:1])).message


@pytest.fixture
def two_versions(lesson_env):
    from mlops_course import setup_lesson

    setup_lesson("97", quiet=True)
    mlflow.set_experiment("lesson04-checks")  # never an experiment id left over from another test's store
    jan = data.select_months(data.load_bikeshare(), ["Jan"])
    for _ in range(2):
        model = pipeline.train(jan, n_estimators=2, max_depth=2)
        with mlflow.start_run():
            logged = registry.log_bike_model(model, pipeline.make_features(jan), onnx=False)
        registry.register(logged, alias="champion")
    yield
    os.environ.pop("MLFLOW_TRACKING_URI", None)


def health(version):
    return json.dumps({"status": "ok", "model_name": "bike-demand", "model_version": version,
                       "alias": "champion", "backend": "sklearn"})


def test_04_4_rollback(two_versions, fake_service):
    client = mlflow.MlflowClient()
    Fake.answers["/health"] = health("2")
    assert "still points at version 2" in evaluate("04.4", json.loads(health("2")), fake_service).message
    client.set_registered_model_alias("bike-demand", "champion", "1")
    feedback = evaluate("04.4", json.loads(health("2")), fake_service)
    assert "still serves version 2" in feedback.message and "POST /reload" in feedback.hint
    Fake.answers["/health"] = health("1")
    assert "take the body" in evaluate("04.4", json.loads(health("2")), fake_service).hint
    assert evaluate("04.4", json.loads(health("1")), fake_service).ok
    assert "model_version" in evaluate("04.4", "1", fake_service).message


# ---------------------------------------------------------------- 04.5: the learner's app gets POST /predict_one
APP = '''
from contextlib import asynccontextmanager

import mlflow
import pandas as pd
from fastapi import FastAPI
from pydantic import BaseModel, Field

served = {}


class Hour(BaseModel):
    hr: float = Field(ge=0, le=23)
    weekday: float = Field(ge=0, le=6)
    workingday: float = Field(ge=0, le=1)
    holiday: float = Field(ge=0, le=1)
    weather: float = Field(ge=1, le=4)
    temp: float = Field(ge=0, le=1)
    atemp: float = Field(ge=0, le=1)
    hum: float = Field(ge=0, le=1)
    windspeed: float = Field(ge=0, le=1)


class PredictRequest(BaseModel):
    rows: list[Hour] = Field(min_length=1)


@asynccontextmanager
async def lifespan(app: FastAPI):
    served["model"] = mlflow.pyfunc.load_model("models:/bike-demand@champion")
    yield


app = FastAPI(lifespan=lifespan)


@app.post("/predict")
def predict(request: PredictRequest):
    X = pd.DataFrame([row.model_dump() for row in request.rows])
    return {"predictions": [float(y) for y in served["model"].predict(X)]}
'''

# Two different correct routes: a one-row DataFrame, and reuse of the /predict function.
DATAFRAME = '''
@app.post("/predict_one")
def predict_one(hour: Hour):
    X = pd.DataFrame([hour.model_dump()])
    return {"prediction": float(served["model"].predict(X)[0])}
'''
REUSE = '''
@app.post("/predict_one", status_code=200)
async def one(row: Hour) -> dict:
    return {"prediction": predict(PredictRequest(rows=[row]))["predictions"][0]}
'''
# Plausible wrong ones.
ROWS_BODY = '''
@app.post("/predict_one")
def predict_one(request: PredictRequest):
    return {"prediction": predict(request)["predictions"][0]}
'''
RAISES = '''
@app.post("/predict_one")
def predict_one(hour: Hour):
    return {"prediction": float(served["model"].predict(hour)[0])}
'''
UNCHECKED = '''
@app.post("/predict_one")
def predict_one(hour: dict):
    return {"prediction": float(served["model"].predict(pd.DataFrame([hour]).astype(float))[0])}
'''
AS_LIST = '''
@app.post("/predict_one")
def predict_one(hour: Hour):
    return {"prediction": predict(PredictRequest(rows=[hour]))["predictions"]}
'''
AS_GET = '''
@app.get("/predict_one")
def predict_one():
    return {"prediction": 0.0}
'''
STUB = "\n# Exercise 5: add POST /predict_one here.\n"


@pytest.fixture(scope="module")
def champion_store(tmp_path_factory):
    with module_lesson(tmp_path_factory, "93", "lesson04-apps") as lesson:
        small_champion()
        yield lesson


def app_with(lesson, route: str):
    path = lesson.path("app.py")
    path.write_text(APP + route)
    return evaluate("04.5", path)


@pytest.mark.parametrize("route", [DATAFRAME, REUSE], ids=["dataframe", "reuse-predict"])
def test_04_5_correct_routes_are_accepted(champion_store, route):
    feedback = app_with(champion_store, route)
    assert feedback.ok, feedback
    assert "hr=25" in feedback.message


def test_04_5_the_stub_says_not_yet(champion_store):
    feedback = app_with(champion_store, STUB)
    assert str(feedback).startswith("[not yet]") and "no POST /predict_one" in feedback.message


def test_04_5_a_rows_body_gets_the_422_hint(champion_store):
    feedback = app_with(champion_store, ROWS_BODY)
    assert not feedback.ok and "422" in feedback.message and "rows" in feedback.message
    assert "def predict_one(hour: Hour)" in feedback.hint


def test_04_5_an_exception_gets_the_500_hint(champion_store):
    feedback = app_with(champion_store, RAISES)
    assert not feedback.ok and "answered 500" in feedback.message and "the route raised" in feedback.message
    assert "model_dump()" in feedback.hint


@pytest.mark.parametrize(("route", "message", "hint"), [
    (UNCHECKED, "does not validate", "type the parameter as Hour"),
    (AS_LIST, "not one number", "first (only) prediction"),
    (AS_GET, "405", "@app.post"),
    ("\n@app.post(\"/predict_one\"\ndef broken(:\n", "does not compile", "fix that line"),
], ids=["no-validation", "a-list", "get", "syntax-error"])
def test_04_5_other_mistakes(champion_store, route, message, hint):
    feedback = app_with(champion_store, route)
    assert not feedback.ok and message in feedback.message and hint in feedback.hint, feedback


def test_04_5_each_check_imports_the_latest_file(champion_store):
    assert not app_with(champion_store, STUB).ok
    assert app_with(champion_store, DATAFRAME).ok  # the edit is seen: no stale module
    assert not app_with(champion_store, STUB).ok
    assert "no file" in evaluate("04.5", champion_store.path("missing.py")).message
