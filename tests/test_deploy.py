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
    assert deploy.manifest_problems([stable, canary, service]) == []  # the Service selects both


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
    assert '"-m", "mlops_course.serving"' in text and "EXPOSE 8000" in text and "USER app" in text
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


def test_start_together_starts_all_or_none(tmp_path):
    from mlops_course.process import BackgroundServer, ServerError, port_in_use

    http = [sys.executable, "-m", "http.server", "{port}", "--bind", "127.0.0.1"]
    a = BackgroundServer(http, log_file=tmp_path / "a.log", health_path="/")
    b = BackgroundServer(http, log_file=tmp_path / "b.log", health_path="/")
    try:
        assert deploy.start_together(a, b) == (a, b) and a.running and b.running
    finally:
        a.stop()
        b.stop()
    c = BackgroundServer(http, log_file=tmp_path / "c.log", health_path="/")
    bad = BackgroundServer([sys.executable, "-c", "raise SystemExit(4)"], log_file=tmp_path / "d.log")
    with pytest.raises(ServerError, match="exited with code 4"):
        deploy.start_together(c, bad)
    assert not c.running and not port_in_use(c.port)
