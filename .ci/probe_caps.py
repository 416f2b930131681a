"""Probe one step past every version cap the course lives with, and say which still binds and why.

    .venv/bin/python .ci/probe_caps.py [--unit-tests] [--work DIR]

For each cap, a fresh virtual environment is made from ``requirements.lock`` with uv, with one override that
steps past the cap, and the thing the cap protects is tried:

- ``pandas<3`` (ours, for Evidently): pandas 3 installed; ``import evidently`` must work for the cap to go.
  With ``--unit-tests`` the course's unit tests (those that do not need Evidently) also run under pandas 3.
- ``fastapi<X`` (Prefect's own bound, no longer the course's): the next FastAPI installed over it; Prefect's
  server must import and a flow run. The course cannot lift it, so a pass is reported as ``upstream only``.
- ``mlflow!=3.18.0`` (a release that was half published): the release must resolve with the rest.

Prints one line per cap (``binds`` or ``can be lifted``) and the evidence. Exit status 0 when every cap still
binds, 1 when at least one can be lifted (the weekly job marks that step allowed to fail, so it shows up
without turning the run red).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from importlib.metadata import requires
from pathlib import Path

from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]
LOCK = REPO / "requirements.lock"
PYTHON = sys.executable


@dataclass
class Verdict:
    """What one probe found: a cap that ``binds`` or ``can be lifted``, or a check that ``passes`` or ``fails``."""

    subject: str
    status: str
    why: str

    @property
    def needs_action(self) -> bool:
        return self.status in ("can be lifted", "fails")

    def __str__(self) -> str:
        return f"{self.subject}: {self.status}: {self.why}"


def cap(subject: str, binds: bool, why: str) -> Verdict:
    return Verdict(subject, "binds" if binds else "can be lifted", why)


def uv() -> str:
    found = shutil.which("uv", path=str(Path(PYTHON).parent)) or shutil.which("uv")
    if not found:
        sys.exit("probe_caps: uv not found; run `make .venv/done` first")
    return found


# Probes run offline and quiet, as the lessons do (the course's own switches), with room for slow machines.
OFFLINE = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true", "DVC_NO_ANALYTICS": "1",
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120"}
EXCEPTION_LINE = re.compile(r"^[A-Za-z_.]*(Error|Exception|Interrupt)\b")


def run(*command: str, cwd: Path | None = None, timeout: int = 1800, env: dict | None = None
        ) -> subprocess.CompletedProcess:
    return subprocess.run(list(command), capture_output=True, text=True, cwd=cwd, timeout=timeout, check=False,
                          env={**os.environ, **OFFLINE, **(env or {})})


def tail(result: subprocess.CompletedProcess, lines: int = 3) -> str:
    """The exception line of a failed command if it printed one, else its last lines."""
    text = [line.strip() for line in (result.stderr + "\n" + result.stdout).splitlines() if line.strip()]
    raised = [line for line in text if EXCEPTION_LINE.match(line)]
    return raised[-1] if raised else (" | ".join(text[-lines:]) or f"exit status {result.returncode}")


def venv_with(work: Path, name: str, override: str) -> tuple[Path | None, str]:
    """A venv from the lock with ``override``, the course installed without dependencies; its python."""
    folder = work / name
    made = run(uv(), "venv", "-q", "--seed", "--python", PYTHON, str(folder))
    if made.returncode != 0:
        return None, f"could not create a venv: {tail(made)}"
    python = folder / "bin" / "python"
    overrides = work / f"{name}-override.txt"
    overrides.write_text(override + "\n")
    installed = run(uv(), "pip", "install", "-q", "--python", str(python), "-r", str(LOCK), "--override",
                    str(overrides))
    if installed.returncode != 0:
        return None, f"{override} does not install with the lock: {tail(installed)}"
    run(uv(), "pip", "install", "-q", "--python", str(python), "--no-deps", "-e", str(REPO))
    return python, ""


def version_in(python: Path, package: str) -> str:
    done = run(str(python), "-c", f"from importlib.metadata import version; print(version({package!r}))")
    return done.stdout.strip() or "?"


def probe_pandas(work: Path, unit_tests: bool) -> list[Verdict]:
    python, problem = venv_with(work, "pandas3", "pandas>=3")
    if python is None:
        return [cap("pandas<3", True, problem)]
    pandas = version_in(python, "pandas")
    evidently = version_in(python, "evidently")
    imported = run(str(python), "-c", "import evidently")
    verdicts = [cap("pandas<3", imported.returncode != 0,
                        f"with pandas {pandas}, `import evidently` ({evidently}) "
                        + ("works" if imported.returncode == 0 else f"fails: {tail(imported, 1)}"))]
    if unit_tests:
        skip = ("test_reliability", "test_notebooks", "test_editions", "test_browser", "test_jupyterlab",
                "test_fuzz_service")
        files = [str(p) for p in sorted((REPO / "tests").glob("test_*.py")) if p.stem not in skip]
        tested = run(str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "2", "-k", "not evidently",
                     *files, cwd=REPO, timeout=3600)
        summary = tested.stdout.strip().splitlines()[-1] if tested.stdout.strip() else tail(tested)
        verdicts.append(Verdict(f"course code under pandas {pandas}", "fails" if tested.returncode else "passes",
                                f"unit tests without Evidently: {summary}"))
    return verdicts


def prefect_fastapi_bound() -> Requirement | None:
    for text in requires("prefect") or []:
        requirement = Requirement(text)
        if requirement.name == "fastapi" and not requirement.marker:
            return requirement
    return None


FLOW_SMOKE = """
from prefect import flow
import prefect.server.api.server  # the API server Prefect serves with FastAPI
@flow
def probe():
    return 42
assert probe() == 42
"""


def probe_fastapi(work: Path) -> list[Verdict]:
    bound = prefect_fastapi_bound()
    upper = [s.version for s in (bound.specifier if bound else []) if s.operator == "<"]
    if not upper:
        return [cap("fastapi (Prefect's bound)", False, "Prefect declares no upper bound on fastapi")]
    bound_text = f"fastapi<{upper[0]}"
    python, problem = venv_with(work, "fastapi-next", f"fastapi>={upper[0]}")
    if python is None:
        return [cap(f"{bound_text} (Prefect's bound)", True, problem)]
    fastapi = version_in(python, "fastapi")
    smoke = run(str(python), "-c", FLOW_SMOKE, timeout=600, env={"PREFECT_HOME": str(work / "prefect-home")})
    subject = f"{bound_text} (declared by prefect {version_in(python, 'prefect')}, not by the course)"
    if smoke.returncode != 0:
        return [cap(subject, True, f"with fastapi {fastapi}, Prefect fails: {tail(smoke, 1)}")]
    # The bound is Prefect's: the course has nothing to lift; it goes when a Prefect release drops it.
    return [Verdict(subject, "upstream only", f"with fastapi {fastapi} (installed over the bound), Prefect's "
                    "server imports and a flow runs; the bound lifts with a Prefect release that drops it")]


def probe_mlflow(work: Path) -> list[Verdict]:
    wanted = work / "mlflow-3.18.in"
    wanted.write_text("mlflow==3.18.0\n")
    resolved = run(uv(), "pip", "compile", "-q", "--python-version", "3.11", str(wanted))
    ok = resolved.returncode == 0
    return [cap("mlflow!=3.18.0 (removed from pyproject.toml)", not ok,
                    "mlflow 3.18.0 resolves now: try it" if ok else
                    f"mlflow 3.18.0 still cannot be installed: {tail(resolved, 2)}")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--unit-tests", action="store_true", help="also run the unit tests under pandas 3")
    parser.add_argument("--work", type=Path, default=None, help="folder for the probe venvs (default: a temp one)")
    args = parser.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="probe-caps-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"probe_caps: Python {sys.version.split()[0]}, lock {LOCK.name}, venvs in {work}")
    verdicts = probe_pandas(work, args.unit_tests) + probe_fastapi(work) + probe_mlflow(work)
    for verdict in verdicts:
        print(verdict, flush=True)
    return 1 if any(v.needs_action for v in verdicts) else 0


if __name__ == "__main__":
    sys.exit(main())
