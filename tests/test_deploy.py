"""Dockerfile and Kubernetes manifests for the service (generated and checked, never applied), and the
``mlflow models serve`` command."""

import copy
import os
import sys
from pathlib import Path

import pytest
import yaml

from mlops_course import deploy


def test_default_manifests_pass_and_hold_the_expected_fields():
    text = deploy.to_yaml(deploy.k8s_manifests(replicas=3))
    docs = deploy.check_manifests(text)
    deployment, service = docs
    assert (deployment["kind"], service["kind"]) == ("Deployment", "Service")
    assert deployment["spec"]["replicas"] == 3
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"] == {"path": "/health", "port": 8000}
    assert container["resources"]["requests"] == {"cpu": "250m", "memory": "384Mi"}
    assert service["spec"]["ports"][0]["targetPort"] == 8000
    assert service["spec"]["selector"] == {"app": "bike-demand"}


def test_canary_track_runs_beside_the_stable_one():
    stable, service = deploy.k8s_manifests()
    canary, _ = deploy.k8s_manifests(track="canary", replicas=1, image="bike-demand-service:2")
    assert canary["metadata"]["name"] == "bike-demand-canary" and stable["metadata"]["name"] == "bike-demand"
    assert canary["spec"]["template"]["metadata"]["labels"] == {"app": "bike-demand", "track": "canary"}
    assert stable["spec"]["template"]["metadata"]["labels"] == {"app": "bike-demand", "track": "stable"}
    assert deploy.manifest_problems([stable, canary, service]) == []  # the Service selects both


def matches(selector, labels):
    return all(labels.get(k) == v for k, v in selector.items())


def test_canary_and_stable_selectors_are_disjoint_and_the_service_selects_both():
    stable, service = deploy.k8s_manifests()
    canary, _ = deploy.k8s_manifests(track="canary", replicas=1, image="bike-demand-service:2")
    pods = {d["metadata"]["name"]: d["spec"]["template"]["metadata"]["labels"] for d in (stable, canary)}
    for d in (stable, canary):
        selector = d["spec"]["selector"]["matchLabels"]
        assert [n for n, labels in pods.items() if matches(selector, labels)] == [d["metadata"]["name"]]
        assert matches(service["spec"]["selector"], pods[d["metadata"]["name"]])
    assert service["spec"]["selector"] == {"app": "bike-demand"}


def test_a_canary_that_claims_the_stable_pods_or_takes_its_name_is_flagged():
    stable, service = deploy.k8s_manifests()
    unlabelled, _ = deploy.k8s_manifests(track=None)  # selector app only: it matches the canary's pods too
    canary, _ = deploy.k8s_manifests(track="canary", replicas=1)
    problems = deploy.manifest_problems([unlabelled, canary, service])
    assert len(problems) == 1 and "Deployment bike-demand: spec.selector.matchLabels" in problems[0]
    assert "also matches the pods of Deployment bike-demand-canary" in problems[0]
    loose = copy.deepcopy(canary)
    loose["spec"]["selector"]["matchLabels"] = {"app": "bike-demand"}
    assert any("Deployment bike-demand-canary: spec.selector" in p and "pods of Deployment bike-demand " in p
               for p in deploy.manifest_problems([stable, loose, service]))
    same_name = copy.deepcopy(canary)
    same_name["metadata"]["name"] = "bike-demand"
    assert any("two Deployments are named 'bike-demand'" in p
               for p in deploy.manifest_problems([stable, same_name, service]))


def test_manifests_pass_kubernetes_validate():
    from mlops_course import lint

    docs = deploy.k8s_manifests() + deploy.k8s_manifests(track="canary", replicas=1, version=2)[:1]
    assert deploy.validation_findings(docs) == []
    assert deploy.check_manifests(deploy.to_yaml(docs)) == docs
    assert lint.KUBERNETES_VERSION.count(".") == 2  # a pinned version, not "latest"


def test_a_wrong_field_is_reported_by_kubernetes_validate_naming_the_field():
    docs = deploy.k8s_manifests()
    container(docs[0])["imagePullPolicyy"] = "Always"  # a typo the course's own checks do not look at
    assert deploy.manifest_problems(docs) == []
    with pytest.raises(deploy.ManifestError) as raised:
        deploy.check_manifests(deploy.to_yaml(docs))
    [problem] = raised.value.problems
    assert problem.startswith("kubernetes-validate (Kubernetes ")
    assert "Deployment/bike-demand: spec.template.spec.containers[0]" in problem and "imagePullPolicyy" in problem
    docs = deploy.k8s_manifests()
    docs[1]["spec"]["ports"][0]["port"] = "eighty"
    assert any("Service/bike-demand: spec.ports[0].port" in p for p in deploy.validation_findings(docs))


def test_the_version_is_pinned_per_deployment():
    stable, _ = deploy.k8s_manifests(version=3)
    canary, _ = deploy.k8s_manifests(track="canary", alias="challenger", version="4", replicas=1)
    assert container(stable)["args"] == ["--alias", "champion", "--version", "3"]
    assert container(canary)["args"] == ["--alias", "challenger", "--version", "4"]
    with pytest.raises(ValueError, match="version must be a model version number"):
        deploy.k8s_manifests(version="latest")


def broken(change):
    docs = copy.deepcopy(deploy.k8s_manifests())
    change(*docs)
    return docs


def container(d):
    return d["spec"]["template"]["spec"]["containers"][0]


@pytest.mark.parametrize("change,expected", [
    (lambda d, s: d["spec"].update(replicas="3"), "spec.replicas must be a whole number"),
    (lambda d, s: d["spec"].update(replicas=0), "spec.replicas must be a whole number"),
    (lambda d, s: container(d)["readinessProbe"]["httpGet"].update(path="/predict"), "must be /health"),
    (lambda d, s: container(d).pop("readinessProbe"), "must be /health"),
    (lambda d, s: container(d)["readinessProbe"]["httpGet"].update(port=9000), "port 9000 is not a container port"),
    (lambda d, s: container(d)["resources"]["requests"].pop("memory"), "requests.memory is missing"),
    (lambda d, s: d["spec"]["selector"]["matchLabels"].update(app="other"), "must match the pod labels"),
    (lambda d, s: s["spec"].update(selector={"app": "nope"}), "selects no pod"),
    (lambda d, s: s["spec"]["ports"][0].update(targetPort=80), "targetPort 80 is not a container port"),
    (lambda d, s: d.update(apiVersion="v1"), "apiVersion must be apps/v1"),
    (lambda d, s: container(d).pop("image"), "no image"),
])
def test_each_broken_field_is_reported(change, expected):
    docs = broken(change)
    problems = deploy.manifest_problems(docs)
    assert any(expected in p for p in problems), problems
    with pytest.raises(deploy.ManifestError, match="invalid manifests"):
        deploy.check_manifests(deploy.to_yaml(docs))


def test_ports_are_referred_to_by_number_or_by_a_name_a_port_carries():
    def with_ports(probe, declared, target):
        d, s = copy.deepcopy(deploy.k8s_manifests())
        container(d)["ports"] = declared
        container(d)["readinessProbe"]["httpGet"]["port"] = probe
        if target is None:
            s["spec"]["ports"][0].pop("targetPort")
        else:
            s["spec"]["ports"][0]["targetPort"] = target
        return deploy.manifest_problems([d, s])

    assert with_ports("web", [{"containerPort": 8000, "name": "web"}], "web") == []
    assert with_ports(8000, [{"containerPort": 8000}], 8000) == []
    unnamed = with_ports("http", [{"containerPort": 8000}], "http")  # "http" names no port here
    assert any("readinessProbe port 'http' is not a container port" in p for p in unnamed), unnamed
    assert any("targetPort 'http' is not a container port" in p for p in unnamed), unnamed
    d, s = deploy.k8s_manifests()
    s["spec"]["ports"][0].pop("targetPort")  # defaults to port, which is 80 in the course's Service
    assert any("targetPort 80 is not a container port" in p for p in deploy.manifest_problems([d, s]))


def test_missing_documents_and_bad_yaml():
    deployment, service = deploy.k8s_manifests()
    assert deploy.manifest_problems([deployment]) == ["no Service (kind: Service)"]
    assert "no Deployment (kind: Deployment)" in deploy.manifest_problems([service])
    assert deploy.manifest_problems("kind: [unclosed")[0].startswith("not valid YAML")
    assert "must be a mapping" in deploy.manifest_problems("- a\n- b\n")[0]


def test_bad_arguments():
    with pytest.raises(ValueError, match="replicas"):
        deploy.k8s_manifests(replicas=0)
    with pytest.raises(ValueError, match="python must be a version"):
        deploy.service_dockerfile(python="latest")
    with pytest.raises(ValueError, match="port"):
        deploy.service_dockerfile(port=70000)


def test_service_dockerfile_runs_the_service_and_lets_k8s_args_replace_cmd():
    text = deploy.service_dockerfile(python="3.11", port=8000)
    assert text.splitlines()[3] == "FROM python:3.11-slim"
    assert '"-m", "mlops_course.serving"' in text and "EXPOSE 8000" in text and "USER 10001" in text
    assert "requirements.lock" not in text and "COPY mlops_course/" not in text  # nothing outside its context
    entry = [line for line in text.splitlines() if line.startswith("ENTRYPOINT")]
    cmd = [line for line in text.splitlines() if line.startswith("CMD")]
    assert entry and cmd == ['CMD ["--alias", "champion"]']
    assert container(deploy.k8s_manifests(alias="challenger")[0])["args"] == ["--alias", "challenger"]


def test_yaml_round_trip_keeps_order():
    text = deploy.to_yaml(deploy.k8s_manifests())
    assert text.startswith("apiVersion: apps/v1\nkind: Deployment\n") and text.count("\n---\n") == 1
    assert "&id" not in text and "*id" not in text  # no YAML anchors: every mapping written out
    assert list(yaml.safe_load_all(text)) == deploy.k8s_manifests()


def test_mlflow_serve_command(tmp_path, monkeypatch):
    server = deploy.mlflow_serve("models:/bike-demand@champion", tracking_uri="sqlite:///x.db",
                                 log_file=tmp_path / "m.log")
    cmd = server.command
    assert cmd[1:5] == ["models", "serve", "-m", "models:/bike-demand@champion"]
    assert cmd[cmd.index("--env-manager") + 1] == "local" and cmd[cmd.index("--host") + 1] == "127.0.0.1"
    assert int(cmd[cmd.index("--port") + 1]) == server.port and not server.running
    assert server.env["PATH"].split(os.pathsep)[0] == str(Path(sys.executable).parent)
    assert server.env["MLFLOW_TRACKING_URI"] == "sqlite:///x.db"
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(ValueError, match="tracking_uri"):
        deploy.mlflow_serve()


def test_readable_command_hides_paths_and_port(tmp_path):
    ws = tmp_path / "lesson"
    cmd = [sys.executable, "-m", "mlops_course.serving", "--tracking-uri", f"sqlite:///{ws}/mlflow.db",
           "--request-log", str(ws / "requests.jsonl"), "--port", "40123"]
    text = deploy.readable_command(cmd, workspace=ws, port=40123)
    assert text == ("python -m mlops_course.serving --tracking-uri sqlite:///mlflow.db --request-log requests.jsonl "
                    "--port <port>")


@pytest.fixture(scope="module")
def build_context(tmp_path_factory):
    return deploy.write_build_context(tmp_path_factory.mktemp("image") / "context", python="3.11")


def test_build_context_holds_what_the_dockerfile_copies_and_lints_clean(build_context):
    from mlops_course import lint

    ctx = build_context
    assert sorted(p.name for p in ctx.path.iterdir()) == ["Dockerfile", ctx.wheel, deploy.SERVING_REQUIREMENTS]
    assert ctx.wheel.startswith("mlops_course-") and ctx.wheel.endswith("-py3-none-any.whl")
    assert sorted(deploy.check_build_context(ctx.path)) == sorted([deploy.SERVING_REQUIREMENTS, ctx.wheel])
    assert lint.hadolint(ctx.path / "Dockerfile").findings == ()
    steps = deploy.dockerfile_instructions((ctx.path / "Dockerfile").read_text())
    kinds = [k for k, _ in steps]
    assert kinds[0] == "FROM" and dict(steps)["FROM"] == "python:3.11-slim"
    assert dict(steps)["USER"] == "10001" and "HEALTHCHECK" in kinds
    entrypoint = yaml.safe_load(dict(steps)["ENTRYPOINT"])  # JSON form: a list, which YAML reads too
    assert entrypoint[:3] == ["python", "-m", "mlops_course.serving"]
    assert yaml.safe_load(dict(steps)["CMD"]) == ["--alias", "champion"]
    assert f"installs {ctx.serving_packages} packages" in str(ctx) and f"has {ctx.lock_packages}" in str(ctx)


def test_serving_requirements_are_the_locks_pins_for_what_the_service_needs(build_context):
    ctx = build_context
    lock = deploy.read_lock(Path(__file__).resolve().parents[1] / deploy.LOCK_FILE)
    assert ctx.lock_packages == len(lock) and ctx.serving_packages < ctx.lock_packages / 3
    assert set(ctx.requirements) <= set(lock.values())  # the lock's lines, markers and all
    names = {line.split("==")[0] for line in ctx.requirements}
    for needed in ("fastapi", "uvicorn", "pydantic", "mlflow-skinny", "scikit-learn", "skops", "onnxruntime",
                   "onnx", "prometheus-client", "pandas", "numpy", "starlette", "h11"):
        assert needed in names, needed
    for dev_only in ("jupyterlab", "prefect", "dvc", "evidently", "mlflow", "papermill", "pytest", "sqlalchemy"):
        assert dev_only not in names, dev_only
    written = (ctx.path / deploy.SERVING_REQUIREMENTS).read_text().splitlines()
    assert [line for line in written if line and not line.startswith("#")] == list(ctx.requirements)


SERVICE_ONLY_MODULES = ("serving", "model_loader")  # every import counts, however deep in a function
MODULES_THE_SERVICE_LOADS = ("registry", "packaging", "pipeline", "data", "schema", "process", "request_log",
                             "paths", "offline", "workspace", "empty_stores", "__init__")
LOADED_LAZILY = ("mlflow", "sklearn", "skops", "onnx", "onnxruntime")  # by the flavours when a model loads


def _imported_top_levels(path, *, module_level_only):
    import ast

    tree = ast.parse(path.read_text())
    nodes = tree.body if module_level_only else ast.walk(tree)
    names = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_the_closure_covers_every_import_of_the_service():
    from importlib import metadata

    package = Path(deploy.__file__).parent
    names = set(LOADED_LAZILY)
    for module in SERVICE_ONLY_MODULES:
        names |= _imported_top_levels(package / f"{module}.py", module_level_only=False)
    for module in MODULES_THE_SERVICE_LOADS:
        names |= _imported_top_levels(package / f"{module}.py", module_level_only=True)
    closure = set(deploy.requirement_closure())
    owners = metadata.packages_distributions()
    uncovered = {name for name in names - set(sys.stdlib_module_names) - {"mlops_course", "__future__"}
                 if not {deploy._canonical(d) for d in owners.get(name, [])} & closure}
    assert not uncovered, f"the service imports {uncovered}, which the serving requirements do not install"


def test_a_missing_file_in_the_context_is_named(build_context, tmp_path):
    import shutil

    ctx = shutil.copytree(build_context.path, tmp_path / "ctx")
    (ctx / build_context.wheel).unlink()
    with pytest.raises(deploy.BuildContextError, match=rf"copies '{build_context.wheel}', which is not in"):
        deploy.check_build_context(ctx)
    (ctx / "Dockerfile").write_text("FROM python:3.11-slim\nCOPY --chown=10001 model/ config.yaml /srv/\n")
    (ctx / "model").mkdir()
    with pytest.raises(deploy.BuildContextError, match="copies 'config.yaml'"):
        deploy.check_build_context(ctx)
    (ctx / "Dockerfile").unlink()
    with pytest.raises(deploy.BuildContextError, match="no Dockerfile"):
        deploy.check_build_context(ctx)
    with pytest.raises(FileExistsError, match="not empty"):
        deploy.write_build_context(build_context.path)
    (ctx / "notes.txt").write_text("mine")  # not a build context any more: replace=True leaves it alone
    with pytest.raises(FileExistsError, match="not empty"):
        deploy.write_build_context(ctx, replace=True)


def test_a_build_context_can_be_written_again_in_place(tmp_path):
    first = deploy.write_build_context(tmp_path / "image")
    again = deploy.write_build_context(tmp_path / "image", replace=True)
    assert again.requirements == first.requirements and deploy.check_build_context(again.path)


def test_a_lock_without_a_needed_pin_is_refused(tmp_path):
    lock = tmp_path / "requirements.lock"
    lock.write_text("fastapi==0.150.0\n    # via mlops-course\n")
    with pytest.raises(ValueError, match=r"requirements.lock has no pin for \[.*'uvicorn'"):
        deploy.serving_requirements(lock)
    lock.write_text("fastapi>=0.1\n")
    with pytest.raises(ValueError, match="not pinned"):
        deploy.read_lock(lock)
    with pytest.raises(FileNotFoundError, match="no lock file"):
        deploy.read_lock(tmp_path / "nope.lock")


def test_dockerfile_instructions_join_continuations():
    text = 'FROM a\n# c\nRUN x \\\n    && y\nCOPY ["a b", "c", "/d/"]\nCOPY --chown=1 e f /g/\n'
    steps = deploy.dockerfile_instructions(text)
    assert steps == [("FROM", "a"), ("RUN", "x && y"), ("COPY", '["a b", "c", "/d/"]'),
                     ("COPY", "--chown=1 e f /g/")]
    assert deploy.copy_sources(steps[2][1]) == ["a b", "c"] and deploy.copy_sources(steps[3][1]) == ["e", "f"]


# ---------------------------------------------------------------- build rehearsal: the image's steps, no Docker
def _uv():
    found = Path(sys.executable).parent / "uv"
    if not found.is_file():
        pytest.skip("uv is not in this environment (make .venv/done installs it)")
    return str(found)


def _uv_pip(args, venv):
    """``pip install ...`` of a RUN step as uv runs it into ``venv``, from uv's cache (the index if it must)."""
    import subprocess

    args = [a for a in args if a != "--no-cache-dir"]
    base = [_uv(), "pip", "install", "--quiet", "--compile-bytecode", "--python", str(venv / "bin" / "python")]
    done = subprocess.run(base + ["--offline"] + args, capture_output=True, text=True, check=False)
    if done.returncode != 0:  # a package missing from the cache: fetch it as docker build would
        done = subprocess.run(base + args, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def rehearse(context, root):
    """Follow the context's Dockerfile step by step in ``root`` (container paths mapped into it): FROM gives
    the Python version, ENV the environment, WORKDIR/COPY the files, RUN's ``pip install`` goes into a fresh
    venv made from the context alone. Returns the entrypoint command (``python`` is the venv's, ``{port}`` the
    port), the environment, the working directory and the HEALTHCHECK command."""
    import json
    import shlex
    import shutil
    import subprocess

    venv = root / "venv"
    subprocess.run([_uv(), "venv", "--quiet", "--offline", "--python", sys.executable, str(venv)], check=True)
    env, workdir, entrypoint, cmd, healthcheck, port = {}, root, [], [], [], None

    def inside(path):
        return root / path.lstrip("/") if path.startswith("/") else workdir / path

    for instruction, args in deploy.dockerfile_instructions((context / "Dockerfile").read_text()):
        if instruction == "FROM":
            assert args == f"python:{sys.version_info.major}.{sys.version_info.minor}-slim"
        elif instruction == "ENV":
            env.update(part.split("=", 1) for part in shlex.split(args))
        elif instruction == "WORKDIR":
            workdir = inside(args)
            workdir.mkdir(parents=True, exist_ok=True)
        elif instruction == "COPY":
            *sources, dest = shlex.split(args)
            for source in sources:
                assert (context / source).exists(), f"COPY {source}: not in the build context"
                shutil.copy2(context / source, inside(dest) / source if dest.endswith(("/", ".")) else inside(dest))
        elif instruction == "RUN":
            for command in args.split("&&"):
                words = shlex.split(command)
                if words[:2] == ["pip", "install"]:
                    _uv_pip([str(workdir / w) if (workdir / w).is_file() else w for w in words[2:]], venv)
                elif words[0] == "mkdir":
                    for folder in words[1:]:
                        inside(folder).mkdir(parents=True, exist_ok=True)
                else:
                    assert words[0] in ("useradd", "chown"), f"RUN {command}: no rehearsal for this step"
        elif instruction == "EXPOSE":
            port = args
        elif instruction == "HEALTHCHECK":
            healthcheck = json.loads(args.split(" CMD ", 1)[1])
        elif instruction == "ENTRYPOINT":
            entrypoint = json.loads(args)
        elif instruction == "CMD":
            cmd = json.loads(args)
    python = str(venv / "bin" / "python")

    def local(words):
        shown = [python if w == "python" else w for w in words]
        shown = ["127.0.0.1" if w == "0.0.0.0" else w for w in shown]
        shown = [w.replace(f":{port}/", ":{port}/") if "127.0.0.1:" in w else w for w in shown]
        shown = ["{port}" if w == port else w for w in shown]
        return [str(inside(w)) if w.startswith("/srv/") else w for w in shown]

    return local(entrypoint + cmd), env, workdir, local(healthcheck)


def test_build_rehearsal_serves_health_and_predict(build_context, lesson_env):
    """The image's build, rehearsed without Docker: a venv from the context alone, the Dockerfile's steps,
    then its ENTRYPOINT + CMD started on 127.0.0.1 against a tracking server with a champion."""
    import subprocess

    import httpx
    import mlflow
    from conftest import small_champion

    from mlops_course import process, serving, setup_lesson, tracking

    lesson = setup_lesson("97", quiet=True)
    mlflow.set_experiment("build-rehearsal")
    small_champion()
    command, env, workdir, healthcheck = rehearse(build_context.path, lesson_env / "image")
    venv_python = command[0]
    probe = ("import mlops_course, mlflow; print(mlops_course.__file__); "
             "import importlib.util as u; print(u.find_spec('sqlalchemy') is None)")
    where = subprocess.run([venv_python, "-c", probe],
                           capture_output=True, text=True, cwd=workdir, env={**env, "PATH": os.environ["PATH"]},
                           check=True).stdout.split()
    assert where[0].startswith(str(lesson_env / "image" / "venv")) and where[1] == "True"  # the wheel, no SQL store
    with tracking.tracking_server(lesson.workspace, backend_store_uri=lesson.tracking_uri) as registry_server:
        service = process.BackgroundServer(
            command, log_file=lesson_env / "image" / "service.log", cwd=workdir, startup_timeout=120,
            name="rehearsed-image", env={**env, "MLFLOW_TRACKING_URI": registry_server.url, "PYTHONPATH": "",
                                         "VIRTUAL_ENV": ""})
        with service:
            health = httpx.get(f"{service.url}/health", timeout=10)
            assert health.status_code == 200 and health.json()["model_version"] == "1", service.log_tail()
            answer = httpx.post(f"{service.url}/predict", json={"rows": [serving.EXAMPLE_ROW]}, timeout=10)
            assert answer.status_code == 200 and len(answer.json()["predictions"]) == 1
            check = subprocess.run([w.replace("{port}", str(service.port)) for w in healthcheck], env=env,
                                   capture_output=True, text=True, timeout=30, check=False)
            assert check.returncode == 0, check.stderr  # the image's HEALTHCHECK passes
        assert (workdir / "logs" / "requests.jsonl").is_file()
