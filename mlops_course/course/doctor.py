"""``mlops-course doctor``: each thing the course needs, checked, with how to fix it."""

from __future__ import annotations

import shutil
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

from mlops_course import data, paths, prometheus_stack

MIN_PYTHON = (3, 11)


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str
    fix: str = ""

    def __str__(self) -> str:
        mark = "ok  " if self.ok else "FAIL"
        text = f"[{mark}] {self.name}: {self.detail}"
        return text if self.ok else f"{text}\n       fix: {self.fix}"


def check_python() -> CheckResult:
    version = ".".join(map(str, sys.version_info[:3]))
    ok = sys.version_info[:2] >= MIN_PYTHON
    return CheckResult("python", ok, f"Python {version}",
                       "install Python 3.11 or newer and run `make clean && make run`")


def check_kernel() -> CheckResult:
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec("python3")
    except NoSuchKernel:
        return CheckResult("kernel", False, "no Jupyter kernel named python3",
                           "install ipykernel in this environment: `pip install ipykernel`")
    return CheckResult("kernel", True, "Jupyter kernel python3 found")


def check_tool(name: str) -> CheckResult:
    bin_dir = Path(sys.executable).parent
    found = shutil.which(name) or shutil.which(name, path=str(bin_dir))
    fixes = {"git": "install git (`sudo apt-get install git`)",
             "dvc": "install the course environment: `make .venv/done` (dvc comes from the lock file)",
             "mlflow": "install the course environment: `make .venv/done` (mlflow comes from the lock file)"}
    return CheckResult(name, bool(found), "on PATH" if found else "not found", fixes.get(name, ""))


def check_monitoring_tool(name: str) -> CheckResult:
    """``prometheus`` or ``prometheus-alertmanager`` (also found as ``alertmanager``), for lesson 09."""
    names = prometheus_stack.PROMETHEUS if name == "prometheus" else prometheus_stack.ALERTMANAGER
    found = prometheus_stack.find_binary(names)
    detail = "installed (lesson 09)" if found else "not found: lesson 09 needs it"
    return CheckResult(name, bool(found), detail, prometheus_stack.INSTALL[name])


def monitoring_checks() -> list[CheckResult]:
    """Lesson 09's monitoring stack: system packages, not Python ones."""
    return [check_monitoring_tool(name) for name in prometheus_stack.INSTALL]


def check_loopback() -> CheckResult:
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
    except OSError as exc:
        return CheckResult("loopback", False, f"cannot bind 127.0.0.1 ({exc})",
                           "bring the loopback interface up (`ip link set lo up`) or free some ports")
    return CheckResult("loopback", True, f"127.0.0.1 accepts servers (a free port: {port})")


def check_data() -> CheckResult:
    path = data.default_path()
    try:
        data.verify_checksum(path)
    except (OSError, data.DataError) as exc:
        return CheckResult("data", False, str(exc).split(". ")[0],
                           f"restore the shipped file: `git checkout -- data/{data.DATA_FILE}`")
    return CheckResult("data", True, f"{path.name} matches its sha256")


def check_workspace() -> CheckResult:
    root = paths.workspaces_dir()
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / ".doctor-probe"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        return CheckResult("workspace", False, f"cannot write to the workspace folder ({exc.strerror})",
                           "set MLOPS_COURSE_WORKSPACE to a folder you can write to")
    return CheckResult("workspace", True, "workspace folder is writable")


def run_checks() -> list[CheckResult]:
    return [check_python(), check_kernel(), check_tool("git"), check_tool("dvc"), check_tool("mlflow"),
            check_loopback(), check_data(), check_workspace(), *monitoring_checks()]
