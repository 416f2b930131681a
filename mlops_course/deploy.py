"""Deployment artefacts for the prediction service: a Dockerfile, Kubernetes manifests and their checks,
and ``mlflow models serve`` as the zero-code alternative.

The course never builds images or talks to a cluster: the Dockerfile and manifests are generated as text,
checked for the fields a rollout depends on, and explained in lesson 04.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from mlops_course import packaging, registry
from mlops_course.process import BackgroundServer

SERVICE_PORT = 8000


class ManifestError(ValueError):
    """Kubernetes manifests that miss a field the rollout depends on; lists every problem."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid manifests:\n- " + "\n- ".join(problems))


# ---------------------------------------------------------------- container image
def service_dockerfile(*, python: str | None = None, port: int = SERVICE_PORT) -> str:
    """A Dockerfile for the course's FastAPI service (``python -m mlops_course.serving``).

    The model is not baked in: at start-up the service loads ``models:/bike-demand@champion`` from the
    tracking server named by ``MLFLOW_TRACKING_URI``, so one image serves every version.
    """
    base = packaging.dockerfile_base(python=python, port=port, requirements="requirements.lock")
    return f"""\
# The bike-demand prediction service: GET /health, POST /predict, POST /reload, GET /metrics.
#   docker build -t bike-demand-service:1 .
#   docker run --rm -p 127.0.0.1:{port}:{port} -e MLFLOW_TRACKING_URI=http://mlflow:5000 bike-demand-service:1
{base}COPY mlops_course/ /srv/mlops_course/

RUN useradd --create-home --uid 10001 app && mkdir /srv/logs && chown app /srv/logs
USER app
EXPOSE {port}
# Inside a container the server listens on all interfaces so the port mapping can reach it.
ENTRYPOINT ["python", "-m", "mlops_course.serving", "--host", "0.0.0.0", "--port", "{port}", \\
            "--request-log", "/srv/logs/requests.jsonl"]
# Arguments that a Kubernetes `args:` may replace.
CMD ["--alias", "champion"]
"""


# ---------------------------------------------------------------- Kubernetes
def k8s_manifests(*, name: str = "bike-demand", image: str = "bike-demand-service:1", replicas: int = 2,
                  port: int = SERVICE_PORT, cpu: str = "250m", memory: str = "384Mi", cpu_limit: str = "1",
                  memory_limit: str = "768Mi", alias: str = "champion",
                  tracking_uri: str = "http://mlflow.mlops.svc:5000", track: str | None = None) -> list[dict]:
    """A Deployment (``replicas`` pods of the service, resource requests and limits, readiness and liveness
    probes on ``/health``) and a Service in front of them. ``track`` (e.g. ``"canary"``) adds a label and a
    name suffix so a second Deployment can run beside the first.
    """
    if int(replicas) < 1:
        raise ValueError(f"replicas must be at least 1; got {replicas}")
    deployment_name = f"{name}-{track}" if track else name

    def labels() -> dict:  # a fresh dict each time: shared objects would turn into YAML anchors
        return {"app": name, **({"track": track} if track else {})}

    def probe(delay: int) -> dict:
        return {"httpGet": {"path": "/health", "port": port}, "initialDelaySeconds": delay, "periodSeconds": 5,
                "timeoutSeconds": 2}

    container = {
        "name": "service", "image": image, "ports": [{"containerPort": port, "name": "http"}],
        "env": [{"name": "MLFLOW_TRACKING_URI", "value": tracking_uri}],
        "args": ["--alias", alias],  # replaces the image's CMD, keeps its ENTRYPOINT
        "resources": {"requests": {"cpu": cpu, "memory": memory},
                      "limits": {"cpu": cpu_limit, "memory": memory_limit}},
        "readinessProbe": probe(5),
        "livenessProbe": {**probe(30), "failureThreshold": 3},
    }
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": deployment_name, "labels": labels()},
        "spec": {"replicas": int(replicas), "selector": {"matchLabels": labels()},
                 "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
                 "template": {"metadata": {"labels": labels()}, "spec": {"containers": [container]}}},
    }
    service = {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"selector": {"app": name}, "ports": [{"port": 80, "targetPort": port, "name": "http"}]},
    }
    return [deployment, service]


def to_yaml(manifests: Iterable[Mapping[str, Any]]) -> str:
    """Manifests as one multi-document YAML text (what ``kubectl apply -f`` reads)."""
    return yaml.safe_dump_all(list(manifests), sort_keys=False, default_flow_style=False)


def _get(doc: Any, *keys: Any) -> Any:
    for key in keys:
        if isinstance(doc, Mapping):
            doc = doc.get(key)
        elif isinstance(doc, list) and isinstance(key, int) and len(doc) > key:
            doc = doc[key]
        else:
            return None
    return doc


def manifest_problems(manifests: str | Iterable[Mapping[str, Any]]) -> list[str]:
    """Every problem that would make the rollout fail or be unsafe; empty when the manifests are fine."""
    if isinstance(manifests, str):
        try:
            docs = [d for d in yaml.safe_load_all(manifests) if d is not None]
        except yaml.YAMLError as exc:
            return [f"not valid YAML: {exc}"]
    else:
        docs = list(manifests)
    if not all(isinstance(d, Mapping) for d in docs):
        return ["every YAML document must be a mapping with apiVersion, kind, metadata and spec"]
    deployments = [d for d in docs if d.get("kind") == "Deployment"]
    services = [d for d in docs if d.get("kind") == "Service"]
    problems = []
    if not deployments:
        problems.append("no Deployment (kind: Deployment)")
    if not services:
        problems.append("no Service (kind: Service)")
    for d in deployments:
        name = _get(d, "metadata", "name") or "?"
        where = f"Deployment {name}"
        if d.get("apiVersion") != "apps/v1":
            problems.append(f"{where}: apiVersion must be apps/v1, got {d.get('apiVersion')!r}")
        replicas = _get(d, "spec", "replicas")
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 1:
            problems.append(f"{where}: spec.replicas must be a whole number >= 1, got {replicas!r}")
        selector = _get(d, "spec", "selector", "matchLabels") or {}
        pod_labels = _get(d, "spec", "template", "metadata", "labels") or {}
        if not selector or any(pod_labels.get(k) != v for k, v in selector.items()):
            problems.append(f"{where}: spec.selector.matchLabels {selector} must match the pod labels {pod_labels}")
        containers = _get(d, "spec", "template", "spec", "containers") or []
        if not containers:
            problems.append(f"{where}: no containers")
        for c in containers:
            cname = f"{where} container {c.get('name', '?')}"
            if not c.get("image"):
                problems.append(f"{cname}: no image")
            requests = _get(c, "resources", "requests") or {}
            for res in ("cpu", "memory"):
                if not requests.get(res):
                    problems.append(f"{cname}: resources.requests.{res} is missing (the scheduler needs it)")
            ports = [p.get("containerPort") for p in c.get("ports") or []]
            probe_path = _get(c, "readinessProbe", "httpGet", "path")
            probe_port = _get(c, "readinessProbe", "httpGet", "port")
            if probe_path != "/health":
                problems.append(f"{cname}: readinessProbe.httpGet.path must be /health, got {probe_path!r}")
            if probe_port not in ports and probe_port != "http":
                problems.append(f"{cname}: readinessProbe port {probe_port!r} is not a container port {ports}")
    pod_label_sets = [_get(d, "spec", "template", "metadata", "labels") or {} for d in deployments]
    container_ports = {p.get("containerPort") for d in deployments
                       for c in _get(d, "spec", "template", "spec", "containers") or [] for p in c.get("ports") or []}
    for s in services:
        where = f"Service {_get(s, 'metadata', 'name') or '?'}"
        selector = _get(s, "spec", "selector") or {}
        if not selector or not any(all(labels.get(k) == v for k, v in selector.items()) for labels in pod_label_sets):
            problems.append(f"{where}: spec.selector {selector} selects no pod of the Deployment")
        for p in _get(s, "spec", "ports") or [{}]:
            if p.get("targetPort") not in container_ports and p.get("targetPort") != "http":
                problems.append(f"{where}: targetPort {p.get('targetPort')!r} is not a container port "
                                f"{sorted(x for x in container_ports if x is not None)}")
    return problems


def check_manifests(manifests: str | Iterable[Mapping[str, Any]]) -> list[dict]:
    """The manifests as dicts when they pass :func:`manifest_problems`; ``ManifestError`` otherwise."""
    problems = manifest_problems(manifests)
    if problems:
        raise ManifestError(problems)
    return list(yaml.safe_load_all(manifests)) if isinstance(manifests, str) else list(manifests)


# ---------------------------------------------------------------- mlflow models serve
def mlflow_serve(model_uri: str = f"models:/{registry.MODEL_NAME}@champion", *, tracking_uri: str | None = None,
                 log_file: os.PathLike | str = "mlflow-serve.log", port: int | None = None,
                 startup_timeout: float = 180.0) -> BackgroundServer:
    """``mlflow models serve`` for ``model_uri`` on 127.0.0.1 (a free port), not started yet.

    Uses the current environment (``--env-manager local``) and one uvicorn worker. MLflow starts ``uvicorn``
    by name, so this interpreter's ``bin`` folder goes first on ``PATH``.
    """
    tracking_uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not tracking_uri:
        raise ValueError("no tracking store: pass tracking_uri=lesson.tracking_uri (or set MLFLOW_TRACKING_URI)")
    bin_dir = str(Path(sys.executable).parent)
    command = [str(Path(bin_dir) / "mlflow"), "models", "serve", "-m", model_uri, "--env-manager", "local",
               "--host", "127.0.0.1", "--port", "{port}", "--workers", "1"]
    env = {"MLFLOW_TRACKING_URI": tracking_uri, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
           "PYTHONWARNINGS": "ignore", "TQDM_DISABLE": "1", "MLFLOW_DISABLE_TELEMETRY": "true"}
    return BackgroundServer(command, log_file=Path(log_file).resolve(), port=port, health_path="/health",
                            startup_timeout=startup_timeout, name="mlflow-models-serve", env=env)


def start_together(*servers: BackgroundServer) -> tuple[BackgroundServer, ...]:
    """Start several background servers at once (each waits for its own health check in a thread).

    Servers spend their start-up importing libraries, so on two cores two of them start in about the time
    of one. If any fails, all are stopped and the first error is raised.
    """
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=max(1, len(servers))) as pool:
        futures = [pool.submit(server.start) for server in servers]
        errors = [f.exception() for f in futures]
    failed = [e for e in errors if e is not None]
    if failed:
        for server in servers:
            server.stop()
        raise failed[0]
    return servers


def readable_command(command: list[str], *, workspace: os.PathLike | str, port: int | None = None) -> str:
    """A server's command line as a learner should see it: no paths of this machine, no random port."""
    workspace = str(Path(workspace).resolve())
    shown = []
    for part in command:
        part = part.replace(f"sqlite:///{workspace}/", "sqlite:///").replace(workspace + os.sep, "")
        if port is not None and part == str(port):
            part = "<port>"
        shown.append(Path(part).name if part.startswith(os.sep) else part)
    return " ".join(shown)
