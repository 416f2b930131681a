"""Checks for lesson 04 (Model deployment with FastAPI)."""

from __future__ import annotations

import contextlib
import itertools
import math
import numbers

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
    """The number of 422 answers to POST /predict. A count is a whole number: an ``int``, or the float the
    parser gives for a sample (``3.0``) is the same answer; ``3.5`` is not a count and is told so."""
    counts = _requests_by_status(url)
    expected = int(counts.get("422", 0))
    if isinstance(answer, bool) or not isinstance(answer, numbers.Real):
        return wrong(f"expected a number, got {type(answer).__name__}.",
                     "read the sample's value (a float) and convert it with int().")
    if not math.isfinite(answer) or answer != math.floor(answer):
        return wrong(f"{answer} is not a whole number, and a count of requests always is.",
                     "read the bike_requests_total samples (not the latency histogram's _sum or an average) "
                     "and add up their values; int() makes the total an int.")
    count = int(answer)
    if count == expected:
        return correct(f"{expected} POST /predict requests were answered 422 so far.")
    if count == int(sum(v for k, v in counts.items() if k.startswith("4"))):
        return wrong(f"{count} counts every 4xx status.", "invalid JSON is a 400; count only status 422.")
    if count == int(sum(counts.values())):
        return wrong(f"{count} is every /predict request.", "keep only the samples whose status label is '422'.")
    return wrong(f"{count} is not the number of 422 answers to /predict.",
                 "filter bike_requests_total samples on route='/predict' and status='422'.")


STABLE_NAME = "bike-demand"  # the stable Deployment and the Service of section 8


def _canary_documents(answer) -> tuple[list | None, str]:
    """The learner's manifest as a list of documents (YAML text, one dict or a list of dicts), or why not."""
    import yaml

    if isinstance(answer, str):
        try:
            docs = [d for d in yaml.safe_load_all(answer) if d is not None]
        except yaml.YAMLError as exc:
            return None, f"this is not valid YAML ({type(exc).__name__})"
    elif isinstance(answer, dict):
        docs = [answer]
    elif isinstance(answer, (list, tuple)):
        docs = list(answer)
    else:
        return None, f"expected YAML text or the manifest as dicts, got {type(answer).__name__}"
    if not docs or not all(isinstance(d, dict) for d in docs):
        return None, "every YAML document must be a mapping (apiVersion, kind, metadata, spec)"
    return docs, ""


def _canary_serves(args, challenger_version) -> tuple[bool, str, str]:
    """Whether a container's ``args`` make the service serve the challenger, parsed as the service parses
    them: ``(ok, what it serves, hint)``."""
    import argparse
    import contextlib
    import io
    import os

    from mlops_course import registry, serving

    class Refuse(argparse.ArgumentParser):
        def error(self, message):
            raise ValueError(message)

    if args is None:
        return False, "the image's default CMD (--alias champion)", "set args: [--alias, challenger]."
    if not isinstance(args, list) or not all(isinstance(a, (str, int)) for a in args):
        return False, f"args {args!r}", "args is a list of strings, e.g. [--alias, challenger]."
    try:
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            parsed = serving.argument_parser(Refuse).parse_args([str(a) for a in args])
    except (ValueError, SystemExit) as exc:
        return False, f"args {args} that the service refuses ({exc})", (
            "each word is its own list item: [--alias, challenger], or [--alias=challenger].")
    if parsed.model_name != registry.MODEL_NAME:
        return False, f"model {parsed.model_name!r}", f"the canary serves {registry.MODEL_NAME!r}, the default."
    if parsed.version is not None:
        if challenger_version is None:
            try:  # the lesson's store (setup_lesson sets MLFLOW_TRACKING_URI); never a stray ./mlflow.db
                challenger_version = registry.version_by_alias(
                    "challenger", tracking_uri=os.environ["MLFLOW_TRACKING_URI"]).version
            except Exception:  # noqa: BLE001 - no registry, no alias: say what cannot be checked
                return False, f"version {parsed.version}", ("no challenger alias to compare --version with here: "
                                                            "serve --alias challenger, or run section 9 first.")
        if str(parsed.version) != str(challenger_version):
            return False, f"version {parsed.version}", (f"the challenger is version {challenger_version}: pin that "
                                                        f"one, or serve --alias challenger.")
        return True, f"version {parsed.version} (the challenger, pinned)", ""
    if parsed.alias != "challenger":
        return False, f"the alias {parsed.alias!r}", "the canary serves the new model: --alias challenger."
    return True, "@challenger", ""


def _probe_port_problem(container) -> tuple[str, str] | None:
    """Why a probe of ``container`` would call a port the container does not declare, or one the service does
    not listen on, as ``(message, hint)``; ``None`` when each probe's port is ``deploy.SERVICE_PORT``, declared
    as a ``containerPort``, given by number or by the ``name`` of that port."""
    from mlops_course import deploy

    if not isinstance(container, dict):
        return None  # the shape is judged later, with its own message
    ports = [p for p in container.get("ports") or [] if isinstance(p, dict)]
    container_ports = [p.get("containerPort") for p in ports]
    names = [p.get("name") for p in ports if p.get("name")]
    by_name = {p.get("name"): p.get("containerPort") for p in ports if p.get("name")}
    declared = ", ".join(f"{p.get('containerPort')}" + (f" (named {p['name']!r})" if p.get("name") else "")
                         for p in ports) or "no ports"
    number = deploy.SERVICE_PORT
    for probe in ("readinessProbe", "livenessProbe"):
        get = deploy._get(container, probe, "httpGet")
        if not isinstance(get, dict):
            continue  # a missing readiness probe is reported by its path
        port, where = get.get("port"), f"{probe}.httpGet.port"
        resolved = by_name.get(port) if isinstance(port, str) else port
        if resolved in container_ports and resolved != number:
            message = (f"{where} resolves to port {resolved}, but the service in the image listens on {number} "
                       f"(its ENTRYPOINT's --port): the probe would never succeed and no pod would become ready.")
            hint = f"keep the stable Deployment's port: containerPort {number}, and probe {number} or its name."
        elif isinstance(port, int) and not isinstance(port, bool):
            if port in container_ports:
                continue
            message = f"{where} is {port}, which is not a containerPort of the container (it declares {declared})."
            hint = f"probe the port the service listens on: {number}, or the name of that port."
        elif isinstance(port, str) and port.isdigit():
            message = (f"{where} is the string {port!r}: Kubernetes reads a string as the name of a port, and a "
                       f"port name has letters.")
            hint = f"write the number without quotes: port: {port}."
        elif isinstance(port, str):
            if port in names:
                continue
            message = (f"{where} names the port {port!r}, but no port of the container has that name "
                       f"(it declares {declared}).")
            hint = (f"name the container's port (ports: [{{containerPort: {number}, name: {port}}}]) or probe "
                    f"the number {number}.")
        else:
            message = f"{where} is {port!r}, not a port."
            hint = f"give the port number ({number}) or the name of a container port (http)."
        return message, hint
    return None


def _image_tag(image) -> str | None:
    if not isinstance(image, str) or not image:
        return None
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.rsplit(":", 1)[1] if ":" in last else None


@exercise("04.3", "a canary Deployment")
def canary_manifest(answer, challenger_version: str | int | None = None) -> object:
    """Judges the canary by meaning: a Deployment of its own (name, ``track: canary`` in selector and pod
    labels), 1 replica of image tag 2 serving the challenger (``--alias challenger`` in any form the service
    parses, or ``--version`` of the challenger), still selected by the Service, accepted by kubernetes-validate.
    """
    from mlops_course import deploy

    docs, why = _canary_documents(answer)
    if docs is None:
        return wrong(f"{why}.", "write the Deployment as YAML (deploy.to_yaml([...]) writes dicts as YAML).")
    kinds = [d.get("kind") for d in docs]
    deployments = [d for d in docs if d.get("kind") == "Deployment"]
    if not deployments:
        return wrong(f"there is no Deployment in the manifest (kinds: {kinds}).",
                     "the canary is a Deployment: kind: Deployment, apiVersion: apps/v1.")
    canaries = [d for d in deployments if deploy._get(d, "metadata", "name") != STABLE_NAME
                or deploy._get(d, "spec", "template", "metadata", "labels", "track") == "canary"]
    if len(canaries) > 1:
        return wrong(f"expected one canary Deployment, found {len(canaries)}.",
                     "the canary is one extra Deployment; the stable one and the Service stay as they are.")
    canary = (canaries or deployments)[0]
    findings = deploy.validation_findings([canary])
    if findings:
        return wrong(f"Kubernetes would refuse it: {findings[0].split(': ', 1)[1]}.",
                     "fix the field named there (compare with the stable Deployment of section 8).")
    name = deploy._get(canary, "metadata", "name")
    if name == STABLE_NAME:
        return wrong(f"the canary is named {name!r}, like the stable Deployment: kubectl apply would replace the "
                     f"stable one instead of adding a canary.", f"give it a name of its own: {STABLE_NAME}-canary.")
    selector = deploy._get(canary, "spec", "selector", "matchLabels") or {}
    pods = deploy._get(canary, "spec", "template", "metadata", "labels") or {}
    if pods.get("track") != "canary":
        return wrong(f"the pods carry labels {pods}, without track: canary.",
                     "label the pod template track: canary (and app: bike-demand).")
    if selector.get("track") != "canary":
        return wrong(f"the selector {selector} has no track: canary, so it also matches the stable pods.",
                     "put track: canary in spec.selector.matchLabels too.")
    service = next((d for d in docs if d.get("kind") == "Service"), deploy.k8s_manifests()[1])
    service_selector = deploy._get(service, "spec", "selector") or {}
    if not isinstance(service_selector, dict) or any(pods.get(k) != v for k, v in service_selector.items()):
        return wrong(f"the Service selects {service_selector}, which the canary's pods {pods} do not match: it "
                     f"would get no traffic.", "keep app: bike-demand on the pods (the Service selects by app).")
    declared = deploy._get(canary, "spec", "template", "spec", "containers")
    for container in declared if isinstance(declared, list) else []:
        problem = _probe_port_problem(container)
        if problem:
            return wrong(*problem)
    stable = deploy.k8s_manifests()[0]
    problems = deploy.manifest_problems([stable, canary, service])
    if problems:
        return wrong(f"the manifest has problems: {problems[0]}", "compare with the stable Deployment of section 8.")
    replicas = deploy._get(canary, "spec", "replicas")
    if replicas != 1:
        return wrong(f"replicas is {replicas}.", "a canary gets a small share of traffic: 1 replica.")
    containers = deploy._get(canary, "spec", "template", "spec", "containers") or []
    if len(containers) != 1 or not isinstance(containers[0], dict):
        return wrong(f"the pod has {len(containers)} containers.", "one container: the service.")
    container = containers[0]
    if _image_tag(container.get("image")) != "2":
        return wrong(f"the image is {container.get('image')!r}.", "the canary runs the new image, tag :2.")
    if container.get("command") is not None:
        return wrong("the container sets command, which replaces the image's ENTRYPOINT (the service).",
                     "leave command out and set only args.")
    ok, serves, hint = _canary_serves(container.get("args"), challenger_version)
    if not ok:
        return wrong(f"the container serves {serves}.", hint)
    return correct(f"1 canary pod of the new image serving {serves}, its own name and track: canary; the Service "
                   f"sends it a share of traffic because it also carries app: bike-demand.")


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


def _in_folder(module, folder) -> bool:
    from pathlib import Path

    file = getattr(module, "__file__", None)
    return bool(file) and Path(file).resolve().parent == folder


@contextlib.contextmanager
def fresh_folder_modules(folder):
    """While active, ``folder`` is first on ``sys.path`` and none of its modules is in ``sys.modules``, so a
    file that imports a sibling (``from app import app``) runs that sibling afresh: routes added to its app
    never pile up across checks. Afterwards ``sys.modules`` holds the folder's modules it held before (the
    notebook's ``import app``), and ``sys.path`` is restored."""
    import sys
    from pathlib import Path

    folder = Path(folder).resolve()
    kept = {name: m for name, m in list(sys.modules.items()) if _in_folder(m, folder)}
    for name in kept:
        del sys.modules[name]
    sys.path.insert(0, str(folder))
    try:
        yield
    finally:
        if str(folder) in sys.path:
            sys.path.remove(str(folder))
        for name, m in list(sys.modules.items()):
            if _in_folder(m, folder):
                del sys.modules[name]
        sys.modules.update(kept)


def import_app_file(path) -> object:
    """``path`` (a learner's ``app_one.py`` or ``app.py``) imported as a new module every time, so the latest
    edit is the one run; call it inside :func:`fresh_folder_modules` so the modules it imports from its folder
    are fresh too. The module is not added to ``sys.modules``."""
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
    """``answer``: the path of the learner's ``app_one.py`` (which imports the app of ``app.py`` and adds the
    route). Judged by calling it: POST /predict_one with one row must answer 200 and {"prediction": x}, x the
    same as POST /predict gives for that row; a row out of range must get a 422. Both files are imported afresh
    at each check, so what is judged is what the files say now, however often their cells ran."""
    from pathlib import Path

    path = Path(answer)
    if not path.is_file():
        return wrong(f"there is no file {path.name} in the workspace.",
                     f"run the cell that starts with %%writefile {path.name} first.")
    with fresh_folder_modules(path.parent):
        return _import_and_judge(path)


def _import_and_judge(path) -> object:
    import warnings
    from pathlib import Path

    try:
        module = import_app_file(path)
    except SyntaxError as exc:
        where = Path(exc.filename).name if exc.filename else path.name
        return wrong(f"{where} does not compile: {exc.msg} on line {exc.lineno}.",
                     f"fix that line in the cell that writes {where} (%%writefile {where}) and run that cell again.")
    except ModuleNotFoundError as exc:
        if exc.name and not (path.parent / f"{exc.name}.py").exists() and exc.name == "app":
            return wrong(f"importing {path.name} raised {_one_line(exc)}: there is no app.py next to it.",
                         "run section 3's %%writefile app.py cell, then this exercise's cell again.")
        return wrong(f"importing {path.name} raised {_one_line(exc)}.", "import only what app.py and the course use.")
    except Exception as exc:  # noqa: BLE001 - the learner's module may raise anything at import
        return wrong(f"importing {path.name} raised {_one_line(exc)}.",
                     "run section 3's %%writefile app.py cell and this exercise's cell again, then read the error.")
    from fastapi import FastAPI

    app = getattr(module, "app", None)
    if not isinstance(app, FastAPI):
        return wrong(f"{path.name} has no FastAPI object named app.",
                     "keep the line that imports it: from app import Hour, app, served.")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

        try:
            client = TestClient(app, raise_server_exceptions=True).__enter__()
        except Exception as exc:  # noqa: BLE001 - a lifespan that fails (no champion, say)
            return wrong(f"your app did not start: {_one_line(exc)}.",
                         "the lifespan handler loads models:/bike-demand@champion: register it first (section 2).")
        try:
            return _judge_predict_one(client, path.name)
        finally:
            client.__exit__(None, None, None)


def _judge_predict_one(client, filename: str) -> object:
    row = dict(SATURDAY_AFTERNOON)
    try:
        r = client.post("/predict_one", json=row)
    except Exception as exc:  # noqa: BLE001 - TestClient re-raises what the route raised: a server answers 500
        return wrong(f"POST /predict_one answered 500: the route raised {_one_line(exc)}.",
                     "the route received one Hour; build a one-row DataFrame from hour.model_dump() and "
                     "return a plain float, e.g. float(served['model'].predict(X)[0]).")
    if r.status_code == 404:
        return wrong("your app has no POST /predict_one route yet.",
                     f"add one to {filename}: @app.post(\"/predict_one\") on a function that takes one Hour.")
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
