"""Checks for lesson 04 (Model deployment with FastAPI)."""

from __future__ import annotations

import itertools

from mlops_course.exercises import correct, exercise, wrong

SATURDAY_AFTERNOON = {"hr": 14, "weekday": 6, "workingday": 0, "holiday": 0, "weather": 1, "temp": 0.6,
                      "atemp": 0.55, "hum": 0.4, "windspeed": 0.1}


@exercise("04.1", "a request body for Saturday afternoon")
def saturday_body(answer) -> object:
    from pydantic import ValidationError

    from mlops_course import serving

    if not isinstance(answer, dict):
        return wrong(f"expected the JSON body as a dict, got {type(answer).__name__}.",
                     'write it like {"rows": [{"hr": ..., ...}]}.')
    if "rows" not in answer and "hr" in answer:
        return wrong("this is one row, not a request body.", 'wrap it: {"rows": [your_row]}.')
    try:
        body = serving.PredictRequest.model_validate(answer)
    except ValidationError as exc:
        _, payload = serving.validation_error_body(exc.errors())
        return wrong(f"the service would answer 422: {payload['message']}.",
                     "every feature is a number within the range shown in /openapi.json, and nothing else.")
    if len(body.rows) != 1:
        return wrong(f"the body has {len(body.rows)} rows; the question asks about one hour.", "send one row.")
    row = body.rows[0].model_dump()
    if row["hr"] == 2:
        return wrong("hr=2 is 2 in the night.", "hours run from 0 to 23: 2 pm is 14.")
    if row["weekday"] == 5:
        return wrong("weekday=5 is Friday in this data.", "weekday counts from 0 = Sunday, so Saturday is 6.")
    if row["workingday"] == 1:
        return wrong("workingday=1 says people go to work that day.", "Saturday is a weekend day: workingday 0.")
    off = [k for k, v in SATURDAY_AFTERNOON.items() if abs(row[k] - v) > 1e-9]
    if off:
        return wrong(f"these values do not match the description: {off}.",
                     "read the sentence again, one feature at a time.")
    return correct("the service accepts this body and it describes Saturday at 14:00.")


def _requests_by_status(url: str, route: str = "/predict") -> dict[str, float]:
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    counts: dict[str, float] = {}
    text = httpx.get(f"{url}/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "bike_requests_total" and s.labels.get("route") == route:
                counts[s.labels["status"]] = counts.get(s.labels["status"], 0) + s.value
    return counts


@exercise("04.2", "count the rejected requests in /metrics")
def rejected_requests(answer, url: str) -> object:
    counts = _requests_by_status(url)
    expected = int(counts.get("422", 0))
    if isinstance(answer, bool) or not isinstance(answer, (int, float)):
        return wrong(f"expected a number, got {type(answer).__name__}.",
                     "read the sample's value (a float) and convert it with int().")
    if answer == expected:
        return correct(f"{expected} POST /predict requests were answered 422 so far.")
    if answer == int(sum(v for k, v in counts.items() if k.startswith("4"))):
        return wrong(f"{answer} counts every 4xx status.", "invalid JSON is a 400; count only status 422.")
    if answer == int(sum(counts.values())):
        return wrong(f"{answer} is every /predict request.", "keep only the samples whose status label is '422'.")
    return wrong(f"{answer} is not the number of 422 answers to /predict.",
                 "filter bike_requests_total samples on route='/predict' and status='422'.")


@exercise("04.3", "a canary Deployment")
def canary_manifest(answer) -> object:
    import yaml

    from mlops_course import deploy

    try:
        docs = [d for d in yaml.safe_load_all(answer) if d is not None] if isinstance(answer, str) else list(answer)
    except yaml.YAMLError as exc:
        return wrong(f"this is not valid YAML ({type(exc).__name__}).", "use deploy.to_yaml(...) to write it.")
    deployments = [d for d in docs if isinstance(d, dict) and d.get("kind") == "Deployment"]
    if len(deployments) != 1:
        return wrong(f"expected exactly one Deployment, found {len(deployments)}.",
                     "the canary is one extra Deployment; the stable one and the Service stay as they are.")
    d = deployments[0]
    service = deploy.k8s_manifests()[1]
    problems = deploy.manifest_problems([d, service])
    if problems:
        return wrong(f"the manifest has problems: {problems[0]}", "start from deploy.k8s_manifests(...).")
    labels = d["spec"]["template"]["metadata"]["labels"]
    container = d["spec"]["template"]["spec"]["containers"][0]
    if labels.get("track") != "canary":
        return wrong(f"the pods carry labels {labels}, without track=canary.", "pass track='canary'.")
    if d["spec"]["replicas"] != 1:
        return wrong(f"replicas is {d['spec']['replicas']}.", "a canary gets a small share of traffic: 1 replica.")
    if not str(container.get("image", "")).endswith(":2"):
        return wrong(f"the image is {container.get('image')!r}.", "the canary runs the new image, tag :2.")
    if container.get("args") != ["--alias", "challenger"]:
        return wrong(f"the container serves {container.get('args')}.", "the canary serves alias='challenger'.")
    return correct("1 canary pod with the new image serving @challenger; the Service sends it a share of traffic "
                   "because it also carries app=bike-demand.")


@exercise("04.4", "roll back to version 1")
def rollback(answer, url: str, name: str = "bike-demand") -> object:
    import httpx

    from mlops_course import registry

    if not isinstance(answer, dict) or "model_version" not in answer:
        return wrong("expected the JSON body of /health or /reload (a dict with model_version).",
                     "use httpx.post(f'{svc.url}/reload').json().")
    champion = str(registry.version_by_alias("champion", name).version)
    live = httpx.get(f"{url}/health", timeout=10).json()
    if champion != "1":
        return wrong(f"the champion alias still points at version {champion}.",
                     "client.set_registered_model_alias('bike-demand', 'champion', '1').")
    if live["model_version"] != "1":
        return wrong(f"the registry says version 1, but the service still serves version {live['model_version']}.",
                     "the service only moves when told to: POST /reload.")
    if str(answer["model_version"]) != "1":
        return wrong(f"your answer shows version {answer['model_version']}, the service serves 1.",
                     "take the body returned by the reload (or a fresh GET /health).")
    return correct("the alias points at version 1 again and the service serves it: rolled back without a restart.")


_IMPORTS = itertools.count(1)  # a new module name per import


def import_app_file(path) -> object:
    """``path`` (a learner's ``app.py``) imported as a new module every time, so the latest edit is the one run;
    nothing is added to ``sys.modules``."""
    import importlib.util
    from pathlib import Path

    path = Path(path)
    name = f"learner_app_{next(_IMPORTS)}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module



def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__


@exercise("04.5", "add POST /predict_one to your app")
def predict_one_route(answer) -> object:
    """``answer``: the path of the learner's app.py. Judged by calling it: POST /predict_one with one row
    must answer 200 and {"prediction": x}, x the same as POST /predict gives for that row; a row out of range
    must get a 422."""
    import warnings
    from pathlib import Path

    path = Path(answer)
    if not path.is_file():
        return wrong(f"there is no file {path.name} in the workspace.", "run the %%writefile app.py cell first.")
    try:
        module = import_app_file(path)
    except SyntaxError as exc:
        return wrong(f"{path.name} does not compile: {exc.msg} on line {exc.lineno}.",
                     "fix that line (in the cell that writes it) and run the cells again.")
    except Exception as exc:  # noqa: BLE001 - the learner's module may raise anything at import
        return wrong(f"importing {path.name} raised {_one_line(exc)}.", "run the file's cells again from the top.")
    from fastapi import FastAPI

    app = getattr(module, "app", None)
    if not isinstance(app, FastAPI):
        return wrong(f"{path.name} defines no FastAPI object named app.", "keep app = FastAPI(...) in the file.")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

        try:
            client = TestClient(app, raise_server_exceptions=True).__enter__()
        except Exception as exc:  # noqa: BLE001 - a lifespan that fails (no champion, say)
            return wrong(f"your app did not start: {_one_line(exc)}.",
                         "the lifespan handler loads models:/bike-demand@champion: register it first (section 2).")
        try:
            return _judge_predict_one(client)
        finally:
            client.__exit__(None, None, None)


def _judge_predict_one(client) -> object:
    row = dict(SATURDAY_AFTERNOON)
    try:
        r = client.post("/predict_one", json=row)
    except Exception as exc:  # noqa: BLE001 - TestClient re-raises what the route raised: a server answers 500
        return wrong(f"POST /predict_one answered 500: the route raised {_one_line(exc)}.",
                     "the route received one Hour; build a one-row DataFrame from hour.model_dump() and "
                     "return a plain float, e.g. float(served['model'].predict(X)[0]).")
    if r.status_code == 404:
        return wrong("your app has no POST /predict_one route yet.",
                     "append one to app.py: @app.post(\"/predict_one\") on a function that takes one Hour.")
    if r.status_code == 405:
        return wrong("/predict_one exists but not for POST (405).", "declare it with @app.post, not @app.get.")
    if r.status_code == 422:
        fields = ", ".join(".".join(str(p) for p in e.get("loc", ())) for e in r.json().get("detail", [])[:3])
        return wrong(f"a valid row got 422 (FastAPI looked for {fields}): the route's request model is not one row.",
                     "the body is one row, not {\"rows\": [...]}: type the parameter as Hour, e.g. "
                     "def predict_one(hour: Hour).")
    if r.status_code >= 500:
        return wrong(f"POST /predict_one answered {r.status_code}: the route failed.",
                     "call the route yourself with TestClient and read the exception it raises.")
    if r.status_code != 200:
        return wrong(f"POST /predict_one answered {r.status_code}.", "it should answer 200 with the prediction.")
    body = r.json()
    if not isinstance(body, dict) or "prediction" not in body:
        return wrong(f"the answer is {str(body)[:80]}, without a 'prediction' key.",
                     "return {\"prediction\": value}: one number, not a list.")
    value = body["prediction"]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return wrong(f"'prediction' is {type(value).__name__} {str(value)[:40]}, not one number.",
                     "take the first (only) prediction and convert it with float().")
    expected = client.post("/predict", json={"rows": [row]})
    if expected.status_code == 200:
        reference = expected.json()["predictions"][0]
        if abs(float(value) - float(reference)) > 1e-6 * max(1.0, abs(reference)):
            return wrong(f"/predict_one says {value:.1f} bikes, /predict says {reference:.1f} for the same row.",
                         "predict with the same model and the same columns as /predict.")
    bad = client.post("/predict_one", json={**row, "hr": 25})
    if bad.status_code != 422:
        return wrong(f"a row with hr=25 got {bad.status_code}, not 422: the route does not validate its input.",
                     "type the parameter as Hour, so FastAPI checks the ranges before the route runs.")
    return correct(f"POST /predict_one answers {value:.1f} bikes for Saturday 14:00, the same as /predict, "
                   "and refuses hr=25 with a 422.")
