"""Checkers of lesson 04: right answers pass, typical wrong answers get the matching hint."""

import json
import os
import threading
import typing
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import mlflow
import pytest
import yaml
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
    assert "400" in evaluate("04.2", 4, fake_service).hint
    assert "status label" in evaluate("04.2", 9, fake_service).hint
    assert "int()" in evaluate("04.2", "3", fake_service).hint
    assert "filter" in evaluate("04.2", 7, fake_service).hint


def test_04_2_a_count_is_a_whole_number(fake_service):
    # The exercise asks for a count ("how many requests"; "an int"). The parser gives every sample value as a
    # float, so a learner who keeps s.value as read writes 3.0: the same count, accepted. A value that is not
    # whole is no count at all (a latency _sum, an average): refused with its own hint, even when it rounds to
    # the right answer.
    import numpy as np

    for same_count in (3.0, np.float64(3.0), np.int64(3)):
        assert evaluate("04.2", same_count, fake_service).ok, same_count
    for not_a_count in (3.5, 2.9999, 3.0000001, float("nan"), float("inf")):
        feedback = evaluate("04.2", not_a_count, fake_service)
        assert not feedback.ok and "not a whole number" in feedback.message, not_a_count
        assert "bike_requests_total" in feedback.hint and "_sum" in feedback.hint
    assert "400" in evaluate("04.2", 4.0, fake_service).hint  # a whole float gets the same hints as the int
    assert "number" in evaluate("04.2", True, fake_service).message  # a bool is not a count


def canary(**changes):
    settings = {"track": "canary", "replicas": 1, "image": "bike-demand-service:2", "alias": "challenger",
                **changes}
    return deploy.to_yaml([deploy.k8s_manifests(**settings)[0]])


HAND_WRITTEN_CANARY = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: bike-demand-canary
spec:
  replicas: 1
  selector:
    matchLabels: {app: bike-demand, track: canary}
  template:
    metadata:
      labels: {track: canary, app: bike-demand, team: ml}
    spec:
      containers:
      - name: service
        image: registry.example:5000/bike-demand-service:2
        args: ["--alias=challenger"]
        ports: [{containerPort: 8000, name: http}]
        resources: {requests: {cpu: 100m, memory: 256Mi}}
        readinessProbe: {httpGet: {path: /health, port: http}}
"""


def test_04_3_accepts_different_correct_canaries():
    assert evaluate("04.3", canary()).ok  # the course's generator
    assert evaluate("04.3", HAND_WRITTEN_CANARY).ok  # by hand: another name order, --alias=, a named port
    pinned = deploy.k8s_manifests(track="canary", replicas=1, image="bike-demand-service:2", alias="challenger",
                                  version=2)
    feedback = evaluate("04.3", pinned[0], challenger_version="2")  # a dict, the challenger's version pinned
    assert feedback.ok and "version 2" in feedback.message
    whole_file = deploy.k8s_manifests() + pinned[:1]  # stable, Service and canary together
    assert evaluate("04.3", deploy.to_yaml(whole_file), challenger_version=2).ok
    only_version = canary().replace("- --alias\n        - challenger\n", "- --version\n        - '2'\n")
    assert "--version" in only_version and evaluate("04.3", only_version, challenger_version=2).ok


def test_04_3_probe_ports_must_be_declared_ports():
    # A probe's port is a containerPort number or the name of one of the container's ports (ports[].name).
    as_number = HAND_WRITTEN_CANARY.replace("port: http}", "port: 8000}")
    assert evaluate("04.3", as_number).ok
    renamed = HAND_WRITTEN_CANARY.replace("name: http}", "name: web}").replace("port: http}", "port: web}")
    assert evaluate("04.3", renamed).ok  # any name, as long as a port carries it
    generated = yaml.safe_load(canary())  # numeric probes in both readiness and liveness
    assert evaluate("04.3", generated).ok

    unnamed = HAND_WRITTEN_CANARY.replace("{containerPort: 8000, name: http}", "{containerPort: 8000}")
    feedback = evaluate("04.3", unnamed)
    assert not feedback.ok and "readinessProbe.httpGet.port names the port 'http'" in feedback.message
    assert "no port of the container has that name" in feedback.message and "name: http" in feedback.hint
    other_name = HAND_WRITTEN_CANARY.replace("name: http}", "name: web}")
    assert "names the port 'http'" in evaluate("04.3", other_name).message
    no_ports = HAND_WRITTEN_CANARY.replace("        ports: [{containerPort: 8000, name: http}]\n", "")
    assert "no ports" in evaluate("04.3", no_ports).message

    undeclared = HAND_WRITTEN_CANARY.replace("port: http}", "port: 9000}")
    feedback = evaluate("04.3", undeclared)
    assert not feedback.ok and "is 9000, which is not a containerPort" in feedback.message
    assert "8000" in feedback.hint
    quoted = HAND_WRITTEN_CANARY.replace("port: http}", "port: '8000'}")
    assert "without quotes" in evaluate("04.3", quoted).hint
    liveness = yaml.safe_load(canary())
    container = liveness["spec"]["template"]["spec"]["containers"][0]
    container["livenessProbe"]["httpGet"]["port"] = "metrics"
    assert "livenessProbe.httpGet.port names the port 'metrics'" in evaluate("04.3", liveness).message


def test_04_3_the_probe_must_reach_the_port_the_service_listens_on():
    # Declared and probed consistently, but the image's service listens on deploy.SERVICE_PORT: never ready.
    moved = HAND_WRITTEN_CANARY.replace("containerPort: 8000", "containerPort: 9000")
    for answer in (moved, moved.replace("port: http}", "port: 9000}")):
        feedback = evaluate("04.3", answer)
        assert not feedback.ok and f"listens on {deploy.SERVICE_PORT}" in feedback.message, feedback
        assert f"containerPort {deploy.SERVICE_PORT}" in feedback.hint


def test_04_3_names_the_mistake():
    takes_the_name = yaml.safe_load(canary())
    takes_the_name["metadata"]["name"] = "bike-demand"
    feedback = evaluate("04.3", takes_the_name)
    assert not feedback.ok and "replace the stable one" in feedback.message and "bike-demand-canary" in feedback.hint
    loose = HAND_WRITTEN_CANARY.replace("matchLabels: {app: bike-demand, track: canary}", "matchLabels: {app: bike-demand}")
    feedback = evaluate("04.3", loose)
    assert not feedback.ok and "also matches the stable pods" in feedback.message
    assert "spec.selector.matchLabels" in feedback.hint
    assert "replace the stable one" in evaluate("04.3", canary(track=None)).message  # no track: stable's name
    no_track = yaml.safe_load(canary())
    for labels in (no_track["spec"]["selector"]["matchLabels"], no_track["spec"]["template"]["metadata"]["labels"]):
        labels.pop("track")
    assert "track: canary" in evaluate("04.3", no_track).hint
    assert "1 replica" in evaluate("04.3", canary(replicas=2)).hint
    assert "challenger" in evaluate("04.3", canary(alias="champion")).hint
    assert ":2" in evaluate("04.3", canary(image="bike-demand-service:1")).hint
    one_string = HAND_WRITTEN_CANARY.replace('["--alias=challenger"]', '["--alias challenger"]')
    assert "its own list item" in evaluate("04.3", one_string).hint
    wrong_version = deploy.k8s_manifests(track="canary", replicas=1, image="x:2", alias="challenger", version=1)
    assert "the challenger is version 2" in evaluate("04.3", wrong_version[:1], challenger_version=2).hint
    assert "no challenger alias" in evaluate("04.3", wrong_version[:1]).hint  # no registry to ask here
    typo = HAND_WRITTEN_CANARY.replace("replicas: 1", "replica: 1")
    feedback = evaluate("04.3", typo)
    assert "Kubernetes would refuse it" in feedback.message and "replica" in feedback.message
    no_app = HAND_WRITTEN_CANARY.replace("app: bike-demand, team: ml", "team: ml").replace(
        "{app: bike-demand, track: canary}", "{track: canary}")
    assert "Service selects" in evaluate("04.3", no_app).message
    docs = deploy.k8s_manifests(track="canary", replicas=1, image="x:2", alias="challenger")
    docs[0]["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["path"] = "/"
    assert "/health" in evaluate("04.3", deploy.to_yaml(docs[:1])).message
    both = deploy.to_yaml(deploy.k8s_manifests(track="canary", replicas=1) + deploy.k8s_manifests(track="beta"))
    assert "found 2" in evaluate("04.3", both).message


@pytest.mark.parametrize("garbage", [
    "kind: [", "", "just words", 42, 3.5, [1, 2], ["a"], {}, {"kind": "Deployment"}, {"kind": "Service"},
    {"kind": "Deployment", "metadata": "x", "spec": []}, {"kind": "Deployment", "spec": {"template": [1]}},
    [{"kind": "Deployment", "apiVersion": "apps/v9", "metadata": {"name": "c"}}], b"kind: Deployment",
    {"kind": "Deployment", "apiVersion": "apps/v1", "metadata": {"name": "c"}, "spec": {
        "selector": {"matchLabels": ["app"]}, "template": {"metadata": {"labels": "x"}, "spec": {"containers": 5}}}},
])
def test_04_3_never_raises_on_garbage(garbage):
    from mlops_course.exercises.lesson04 import canary_manifest

    feedback = canary_manifest(garbage)  # the checker itself, not evaluate's safety net
    assert not feedback.ok and feedback.message and feedback.hint


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


def test_04_3_a_pinned_version_is_compared_with_the_registrys_challenger(two_versions):
    mlflow.MlflowClient().set_registered_model_alias("bike-demand", "challenger", "2")
    settings = {"track": "canary", "replicas": 1, "image": "bike-demand-service:2", "alias": "challenger"}
    assert evaluate("04.3", deploy.k8s_manifests(**settings, version=2)[:1]).ok
    assert "the challenger is version 2" in evaluate("04.3", deploy.k8s_manifests(**settings, version=1)[:1]).hint


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

# The exercise's file: it imports the app of app.py and adds the route (the notebook's stub cell has this
# header and a comment; its solution cell the header and a route).
HEADER = "import pandas as pd\n\nfrom app import Hour, PredictRequest, app, predict, served\n"

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


def app_with(lesson, route: str, app: str = APP):
    """app.py as section 3 writes it, app_one.py as exercise 5's cell writes it (the whole file each time)."""
    lesson.path("app.py").write_text(app)
    path = lesson.path("app_one.py")
    path.write_text(HEADER + route)
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


def test_04_5_a_corrected_route_is_judged_not_the_first_attempt(champion_store):
    # With %%writefile -a, a fixed route was appended after the wrong one, and FastAPI answered with the first
    # one registered. Now the exercise's cell writes its whole file, and each check imports both files afresh.
    assert "422" in app_with(champion_store, ROWS_BODY).message
    assert app_with(champion_store, DATAFRAME).ok
    assert app_with(champion_store, DATAFRAME).ok  # the cell run twice: one route, still right


def test_04_5_the_notebooks_modules_are_left_alone(champion_store):
    # The notebook imported app.py as `app` (section 3's TestClient cell). The checks import the files afresh
    # and put that module back, with its routes as they were: nothing piles up on the notebook's app.
    import importlib
    import sys

    champion_store.path("app.py").write_text(APP)
    sys.path.insert(0, str(champion_store.workspace))
    try:
        notebooks_app = importlib.import_module("app")
        routes = [r.path for r in notebooks_app.app.routes]
        for _ in range(2):
            assert app_with(champion_store, DATAFRAME).ok
        assert sys.modules["app"] is notebooks_app and [r.path for r in notebooks_app.app.routes] == routes
        assert "/predict_one" not in routes
    finally:
        sys.path.remove(str(champion_store.workspace))
        sys.modules.pop("app", None)
    assert str(champion_store.workspace) not in sys.path and "app" not in sys.modules


def test_04_5_a_route_written_into_app_py_counts_too(champion_store):
    assert app_with(champion_store, STUB, app=APP + DATAFRAME).ok  # judged by what the app answers


def test_04_5_problems_in_app_py_are_named(champion_store):
    feedback = app_with(champion_store, DATAFRAME, app=APP + "\ndef broken(:\n")
    assert "app.py does not compile" in feedback.message and "%%writefile app.py" in feedback.hint
    alone = champion_store.path("alone")
    alone.mkdir(exist_ok=True)
    (alone / "app_one.py").write_text(HEADER + DATAFRAME)
    feedback = evaluate("04.5", alone / "app_one.py")
    assert "no app.py next to it" in feedback.message and "section 3" in feedback.hint
