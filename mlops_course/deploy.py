"""Deployment artefacts for the prediction service: a Dockerfile, Kubernetes manifests and their checks,
and ``mlflow models serve`` as the zero-code alternative.

The course never builds images or talks to a cluster: the Dockerfile and manifests are generated as text,
checked for the fields a rollout depends on, and explained in lesson 04.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
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
    """The Dockerfile for the course's FastAPI service (``python -m mlops_course.serving``), as
    :func:`write_build_context` writes it beside the files it copies (use that to get a folder that builds).

    The model is not baked in: at start-up the service loads ``models:/bike-demand@champion`` (or the version
    a Kubernetes ``args: [--version, N]`` pins) from the tracking server named by ``MLFLOW_TRACKING_URI``, so
    one image serves every version.
    """
    from mlops_course import __version__

    return build_context_dockerfile(f"mlops_course-{__version__}-py3-none-any.whl", python=python, port=port)


# ---------------------------------------------------------------- a self-contained build context
# The distributions the service's own code imports at run time (serving.py, model_loader.py, registry.py and
# the modules they import); everything else in the image is what these require, read from their installed
# metadata by serving_requirements(). mlflow-skinny is MLflow's client without the tracking server, its UI and
# the SQL store: the image talks to a tracking server over HTTP (MLFLOW_TRACKING_URI), so it needs no more.
SERVING_DISTRIBUTIONS = ("fastapi", "uvicorn", "pydantic", "prometheus-client", "numpy", "pandas", "mlflow-skinny",
                         "scikit-learn", "skops", "onnx", "onnxruntime")
SERVING_REQUIREMENTS = "requirements-serving.txt"
LOCK_FILE = "requirements.lock"


class BuildContextError(FileNotFoundError):
    """A build context lacks a file its Dockerfile copies (or the Dockerfile itself); names the file."""


def _canonical(name: str) -> str:
    import re

    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(lock: os.PathLike | str) -> dict[str, str]:
    """The pinned lines of a ``uv pip compile`` lock file, by canonical distribution name (``# via`` comments
    and blank lines left out; an environment marker after ``;`` stays on its line)."""
    path = Path(lock)
    if not path.is_file():
        raise FileNotFoundError(f"no lock file at {path.name}: run `make lock` in the course repository")
    pins = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if "==" not in line:
            raise ValueError(f"{path.name}: {line!r} is not pinned with ==")
        pins[_canonical(line.split("==", 1)[0].split("[", 1)[0].strip())] = line
    return pins


def requirement_closure(roots: Iterable[str] = SERVING_DISTRIBUTIONS) -> list[str]:
    """The canonical names of ``roots`` and of everything they require, transitively, read from the installed
    distributions' metadata (``importlib.metadata``): extras left out, environment markers evaluated for this
    interpreter (the image's base uses the same Python version)."""
    from importlib import metadata

    from packaging.requirements import Requirement

    seen: set[str] = set()
    todo = [_canonical(r) for r in roots]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        try:
            requires = metadata.distribution(name).requires or []
        except metadata.PackageNotFoundError:
            raise ValueError(f"{name} is not installed here, so what it requires is unknown: "
                             f"`make .venv/done` installs the lock") from None
        seen.add(name)
        for text in requires:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(_canonical(req.name))
    return sorted(seen)


def serving_requirements(lock: os.PathLike | str, roots: Iterable[str] = SERVING_DISTRIBUTIONS) -> list[str]:
    """The lock's lines for the closure of ``roots`` (:func:`requirement_closure`): what the serving image
    installs, at exactly the versions the course is tested with."""
    pins = read_lock(lock)
    closure = requirement_closure(roots)
    missing = [name for name in closure if name not in pins]
    if missing:
        raise ValueError(f"{Path(lock).name} has no pin for {missing}: re-run `make lock`")
    return [pins[name] for name in closure]


def build_context_dockerfile(wheel: str, *, python: str | None = None, port: int = SERVICE_PORT,
                             requirements: str = SERVING_REQUIREMENTS) -> str:
    """The Dockerfile of a build context from :func:`write_build_context`: the serving requirements in one
    cached layer, the course package from its wheel (``--no-deps``: its dependencies are the layer before), a
    numeric non-root user, a HEALTHCHECK on ``/health``, JSON-form ``ENTRYPOINT`` and ``CMD``."""
    from mlops_course import templates

    base = packaging.dockerfile_base(python=python, port=port, requirements=requirements)
    return templates.render("service.Dockerfile", port=port, base=base, wheel=wheel)


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """A Dockerfile as ``(INSTRUCTION, arguments)`` pairs: comments dropped, ``\\`` continuations joined."""
    steps, current = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            current += line[:-1].rstrip() + " "
            continue
        current += line
        instruction, _, args = current.partition(" ")
        steps.append((instruction.upper(), args.strip()))
        current = ""
    if current:
        instruction, _, args = current.partition(" ")
        steps.append((instruction.upper(), args.strip()))
    return steps


def copy_sources(args: str) -> list[str]:
    """The sources of one ``COPY`` instruction (flags such as ``--chown`` left out; JSON form understood)."""
    import json
    import shlex

    parts = json.loads(args) if args.startswith("[") else shlex.split(args)
    parts = [p for p in parts if not p.startswith("--")]
    return parts[:-1]


def check_build_context(context: os.PathLike | str) -> list[str]:
    """Every file the context's Dockerfile copies, after checking each is there; :class:`BuildContextError`
    names the first that is not (or the Dockerfile, if that is missing)."""
    root = Path(context)
    dockerfile = root / "Dockerfile"
    if not dockerfile.is_file():
        raise BuildContextError(f"build context {root.name}: no Dockerfile")
    copied = []
    for instruction, args in dockerfile_instructions(dockerfile.read_text(encoding="utf-8")):
        if instruction in ("COPY", "ADD"):
            for source in copy_sources(args):
                if not (root / source).exists():
                    raise BuildContextError(f"build context {root.name}: the Dockerfile copies {source!r}, "
                                            f"which is not in the context")
                copied.append(source)
    return copied


@dataclass(frozen=True)
class BuildContext:
    """A written build context: its folder, the files in it, and how many packages the image installs."""

    path: Path
    wheel: str
    requirements: tuple[str, ...]
    lock_packages: int

    @property
    def serving_packages(self) -> int:
        return len(self.requirements)

    def __str__(self) -> str:
        return (f"build context {self.path.name}/: {', '.join(sorted(p.name for p in self.path.iterdir()))}\n"
                f"the image installs {self.serving_packages} packages (+ the course wheel); "
                f"the full lock has {self.lock_packages}")


def build_wheel(out_dir: os.PathLike | str, *, source: os.PathLike | str | None = None) -> Path:
    """Build the course package as a wheel into ``out_dir`` and return its path.

    The sources (``pyproject.toml``, ``README.md``, ``LICENSE``, ``mlops_course/``) are copied to a temporary
    folder first, so the build leaves nothing in the repository; the build uses this environment's setuptools
    (no build isolation, so it works offline).
    """
    import shutil
    import subprocess
    import tempfile

    source = Path(source) if source is not None else Path(__file__).resolve().parents[1]
    if not (source / "pyproject.toml").is_file():
        raise FileNotFoundError(f"no pyproject.toml in {source.name}: build the wheel from the course repository")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("pyproject.toml", "README.md", "LICENSE"):
            if (source / name).is_file():
                shutil.copy2(source / name, Path(tmp) / name)
        shutil.copytree(source / "mlops_course", Path(tmp) / "mlops_course",
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
        # setuptools' PEP 517 hook called directly: `pip wheel` would also run `rustc --version` for its
        # user agent, which with rustup installed writes ~/.rustup/settings.toml.
        build = "import sys; from setuptools import build_meta; build_meta.build_wheel(sys.argv[1])"
        done = subprocess.run([sys.executable, "-c", build, str(out.resolve())], cwd=tmp,
                              capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"building the course wheel failed:\n{done.stderr.strip()[-2000:]}")
    wheels = sorted(out.glob("mlops_course-*.whl"))
    if not wheels:
        raise RuntimeError("building the course wheel produced no mlops_course-*.whl")
    return wheels[-1]


def write_build_context(out_dir: os.PathLike | str, *, lock: os.PathLike | str | None = None,
                        python: str | None = None, port: int = SERVICE_PORT,
                        roots: Iterable[str] = SERVING_DISTRIBUTIONS, replace: bool = False) -> BuildContext:
    """A folder to run ``docker build`` in, holding everything its Dockerfile copies and nothing more:

    - ``requirements-serving.txt``: the lock's pins for what the service needs at run time
      (:func:`serving_requirements`), not the course's whole development lock;
    - ``mlops_course-<version>-py3-none-any.whl``: the course package (:func:`build_wheel`);
    - ``Dockerfile`` (:func:`build_context_dockerfile`), checked against the folder (:func:`check_build_context`).

    ``lock`` defaults to the course repository's ``requirements.lock``. ``replace=True`` first removes a build
    context written there before (a folder holding only a Dockerfile, a requirements file and wheels), so a
    lesson cell can run twice. Returns a :class:`BuildContext`.
    """
    import shutil

    out = Path(out_dir)
    if replace and out.is_dir() and (out / "Dockerfile").is_file() and all(
            p.name in ("Dockerfile", SERVING_REQUIREMENTS) or p.suffix == ".whl" for p in out.iterdir()):
        shutil.rmtree(out)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out.name} already exists and is not empty: pick a new folder")
    lock = Path(lock) if lock is not None else Path(__file__).resolve().parents[1] / LOCK_FILE
    lines = serving_requirements(lock, roots)
    lock_packages = len(read_lock(lock))
    out.mkdir(parents=True, exist_ok=True)
    header = (f"# What the prediction service needs at run time, pinned as in {lock.name}: the distributions\n"
              f"# {', '.join(roots)} and everything they require (mlops_course.deploy.serving_requirements).\n")
    (out / SERVING_REQUIREMENTS).write_text(header + "\n".join(lines) + "\n", encoding="utf-8")
    wheel = build_wheel(out)
    (out / "Dockerfile").write_text(build_context_dockerfile(wheel.name, python=python, port=port),
                                    encoding="utf-8")
    check_build_context(out)
    return BuildContext(out, wheel.name, tuple(lines), lock_packages)


# ---------------------------------------------------------------- Kubernetes
def k8s_manifests(*, name: str = "bike-demand", image: str = "bike-demand-service:1", replicas: int = 2,
                  port: int = SERVICE_PORT, cpu: str = "250m", memory: str = "384Mi", cpu_limit: str = "1",
                  memory_limit: str = "768Mi", alias: str = "champion", version: str | int | None = None,
                  tracking_uri: str = "http://mlflow.mlops.svc:5000", track: str | None = "stable") -> list[dict]:
    """A Deployment (``replicas`` pods of the service, resource requests and limits, readiness and liveness
    probes on ``/health``) and a Service in front of them.

    ``track`` (``"stable"`` by default, e.g. ``"canary"`` for a second Deployment beside it) is a label in the
    Deployment's selector and in its pod labels, so two Deployments never claim each other's pods; the Service
    selects by ``app`` only, so it sends traffic to both. A track other than ``"stable"`` is added to the
    Deployment's name. ``version``: the model version the pods serve, pinned (``--version``), e.g. the one
    ``alias`` points at when the manifest is written (``registry.version_by_alias``): a pod that restarts
    later loads the same model instead of whatever the alias names by then.
    """
    if int(replicas) < 1:
        raise ValueError(f"replicas must be at least 1; got {replicas}")
    if version is not None and not str(version).isdigit():
        raise ValueError(f"version must be a model version number like 3; got {version!r}")
    deployment_name = f"{name}-{track}" if track and track != "stable" else name

    def labels() -> dict:  # a fresh dict each time: shared objects would turn into YAML anchors
        return {"app": name, **({"track": track} if track else {})}

    def probe(delay: int) -> dict:
        return {"httpGet": {"path": "/health", "port": port}, "initialDelaySeconds": delay, "periodSeconds": 5,
                "timeoutSeconds": 2}

    args = ["--alias", alias] + (["--version", str(version)] if version is not None else [])
    container = {
        "name": "service", "image": image, "ports": [{"containerPort": port, "name": "http"}],
        "env": [{"name": "MLFLOW_TRACKING_URI", "value": tracking_uri}],
        "args": args,  # replaces the image's CMD, keeps its ENTRYPOINT
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
            probe_path = _get(c, "readinessProbe", "httpGet", "path")
            probe_port = _get(c, "readinessProbe", "httpGet", "port")
            if probe_path != "/health":
                problems.append(f"{cname}: readinessProbe.httpGet.path must be /health, got {probe_path!r}")
            if not _names_a_port(probe_port, c.get("ports") or []):
                problems.append(f"{cname}: readinessProbe port {probe_port!r} is not a container port "
                                f"{_port_list(c.get('ports') or [])}")
    names = [_get(d, "metadata", "name") for d in deployments]
    for dup in sorted({n for n in names if names.count(n) > 1}, key=str):
        problems.append(f"two Deployments are named {dup!r}: applying the second replaces the first; "
                        f"give the canary a name of its own (e.g. {dup}-canary)")
    for i, a in enumerate(deployments):
        selector = _get(a, "spec", "selector", "matchLabels") or {}
        for j, b in enumerate(deployments):
            pods = _get(b, "spec", "template", "metadata", "labels") or {}
            if i != j and selector and all(pods.get(k) == v for k, v in selector.items()):
                problems.append(f"Deployment {names[i] or '?'}: spec.selector.matchLabels {selector} also matches "
                                f"the pods of Deployment {names[j] or '?'} {pods}; put a track label "
                                f"(stable, canary) in each selector and its pod labels")
    pod_label_sets = [_get(d, "spec", "template", "metadata", "labels") or {} for d in deployments]
    container_ports = [p for d in deployments for c in _get(d, "spec", "template", "spec", "containers") or []
                       for p in c.get("ports") or []]
    for s in services:
        where = f"Service {_get(s, 'metadata', 'name') or '?'}"
        selector = _get(s, "spec", "selector") or {}
        if not selector or not any(all(labels.get(k) == v for k, v in selector.items()) for labels in pod_label_sets):
            problems.append(f"{where}: spec.selector {selector} selects no pod of the Deployment")
        for p in _get(s, "spec", "ports") or [{}]:
            target = p.get("targetPort", p.get("port"))  # Kubernetes: targetPort defaults to port
            if not _names_a_port(target, container_ports):
                problems.append(f"{where}: targetPort {target!r} is not a container port "
                                f"{_port_list(container_ports)}")
    return problems


def _names_a_port(ref: Any, ports: Iterable[Mapping[str, Any]]) -> bool:
    """True when ``ref`` (a number, or the name of a port) is one of ``ports``: a name only counts when a
    port carries it, as Kubernetes resolves it."""
    return any(ref is not None and ref in (p.get("containerPort"), p.get("name")) for p in ports)


def _port_list(ports: Iterable[Mapping[str, Any]]) -> list:
    """The declared ports as the error shows them: numbers, with names beside them where given."""
    return [f"{p.get('containerPort')} ({p['name']})" if p.get("name") else p.get("containerPort") for p in ports]


def validation_findings(manifests: str | Iterable[Mapping[str, Any]], *,
                        version: str | None = None) -> list[str]:
    """What ``kubernetes-validate`` says about the manifests (strict, against ``lint.KUBERNETES_VERSION``):
    one line per finding, naming the resource and the field; empty when the API server would accept them."""
    import tempfile

    from mlops_course import lint

    text = manifests if isinstance(manifests, str) else to_yaml(manifests)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "k8s.yaml"
        path.write_text(text, encoding="utf-8")
        verdict = lint.kubernetes_validate(path, version=version or lint.KUBERNETES_VERSION)
    return [f"{verdict.tool}: {finding}" for finding in verdict.findings]


def check_manifests(manifests: str | Iterable[Mapping[str, Any]]) -> list[dict]:
    """The manifests as dicts when they pass :func:`manifest_problems` and ``kubernetes-validate``
    (:func:`validation_findings`); ``ManifestError`` listing every problem otherwise."""
    problems = manifest_problems(manifests)
    docs = None
    if isinstance(manifests, str):
        try:
            docs = [d for d in yaml.safe_load_all(manifests) if d is not None]
        except yaml.YAMLError:
            pass
    else:
        docs = list(manifests)
    if docs is not None and all(isinstance(d, Mapping) for d in docs):
        problems += [p for p in validation_findings(docs) if p not in problems]
    if problems:
        raise ManifestError(problems)
    return docs


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
           "TQDM_DISABLE": "1", "MLFLOW_DISABLE_TELEMETRY": "true"}
    return BackgroundServer(command, log_file=Path(log_file).resolve(), port=port, health_path="/health",
                            startup_timeout=startup_timeout, name="mlflow-models-serve", env=env)


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
