"""The real-tool checks: each tool's findings reach the verdict with the file and the field or line."""

import pytest

from mlops_course import lint

GOOD_DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: "web:1"}]
"""


def test_hadolint_clean_and_findings(tmp_path):
    good = tmp_path / "Dockerfile"
    good.write_text('FROM python:3.11-slim\nUSER 10001\nCMD ["python", "-V"]\n')
    assert lint.hadolint(good).ok
    bad = tmp_path / "Bad.Dockerfile"
    bad.write_text("FROM python:3.11-slim\nCMD python -V\n")
    verdict = lint.hadolint(bad)
    assert not verdict.ok and any("DL3025" in f and f.startswith("line 2") for f in verdict.findings)
    assert "DL3025" not in str(lint.hadolint(bad, ignore=("DL3025",)))


def test_kubernetes_validate_names_the_resource_and_field(tmp_path):
    good = tmp_path / "k8s.yaml"
    good.write_text(GOOD_DEPLOYMENT)
    assert lint.kubernetes_validate(good).ok
    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD_DEPLOYMENT.replace("replicas: 2", 'replicas: "two"').replace('image: "web:1"',
                                                                                    'image: "web:1", imagee: x'))
    verdict = lint.kubernetes_validate(bad)
    assert not verdict.ok and verdict.findings[0].startswith("Deployment/web: spec.")
    assert "bad.yaml" in str(verdict)
    with pytest.raises(lint.LintError, match="Deployment/web"):
        verdict.raise_for_findings()


def test_kubernetes_validate_every_document(tmp_path):
    two = tmp_path / "two.yaml"
    two.write_text(GOOD_DEPLOYMENT + "---\napiVersion: v1\nkind: Service\nmetadata: {name: web}\n"
                   "spec: {selector: {app: web}, ports: [{port: 80, targetPort: 8000, bogus: 1}]}\n")
    verdict = lint.kubernetes_validate(two)
    assert len(verdict.findings) == 1 and verdict.findings[0].startswith("Service/web: spec.ports[0]")


def test_check_workflow(tmp_path):
    good = tmp_path / "ci.yml"
    good.write_text("name: ci\non: push\njobs:\n  t:\n    runs-on: ubuntu-latest\n    steps:\n"
                    "      - uses: actions/checkout@v4\n")
    assert lint.check_workflow(good).ok
    bad = tmp_path / "bad.yml"
    bad.write_text(good.read_text().replace("uses: actions/checkout@v4", "use: actions/checkout@v4"))
    verdict = lint.check_workflow(bad)
    assert not verdict.ok and "$.jobs.t.steps[0]" in verdict.findings[0]


RULES = """\
groups:
- name: bike
  rules:
  - alert: TooManyErrors
    expr: sum(rate(errors_total[5m])) > 1
    for: 5m
"""


def test_promtool_check_and_test_rules(tmp_path):
    rules = tmp_path / "rules.yml"
    rules.write_text(RULES)
    assert lint.promtool_check_rules(rules).ok
    tests = tmp_path / "rules_test.yml"
    tests.write_text("rule_files: [rules.yml]\nevaluation_interval: 1m\ntests:\n- interval: 1m\n"
                     "  input_series:\n  - series: errors_total\n    values: '0+120x30'\n"
                     "  alert_rule_test:\n  - eval_time: 15m\n    alertname: TooManyErrors\n"
                     "    exp_alerts: [{exp_labels: {}}]\n")
    assert lint.promtool_test_rules(tests).ok
    tests.write_text(tests.read_text().replace("0+120x30", "0+1x30"))  # 1/60 per second: stays quiet
    assert not lint.promtool_test_rules(tests).ok
    broken = tmp_path / "broken.yml"
    broken.write_text(RULES.replace("> 1", "> "))
    verdict = lint.promtool_check_rules(broken)
    assert not verdict.ok and "TooManyErrors" in verdict.findings[0]


def test_missing_file_and_missing_tool(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="write the file first"):
        lint.hadolint(tmp_path / "Dockerfile")
    monkeypatch.setattr(lint.shutil, "which", lambda *a, **k: None)
    (tmp_path / "rules.yml").write_text(RULES)
    with pytest.raises(lint.ToolMissing, match="apt-get install prometheus"):
        lint.promtool_check_rules(tmp_path / "rules.yml")


def test_kubernetes_validate_without_api_version_or_with_odd_metadata(tmp_path):
    odd = tmp_path / "odd.yaml"
    odd.write_text("kind: Deployment\nmetadata: {name: web}\n---\napiVersion: apps/v1\nkind: Deployment\n"
                   "metadata: just-a-string\nspec: {}\n")
    verdict = lint.kubernetes_validate(odd)
    assert verdict.findings[0] == "Deployment/web: (top level): apiVersion required"
    assert len(verdict.findings) == 2 and verdict.findings[1].startswith("Deployment/?: metadata")
