"""What a benchmark ran on: host, cores, CPU model, memory, Python, load average, course commit."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo (Linux), else whatever platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def memory_gib() -> float:
    """Total physical memory in GiB (0.0 when it cannot be read)."""
    try:
        import psutil

        return psutil.virtual_memory().total / 2**30
    except (ImportError, OSError):  # a missing psutil must not stop a benchmark from saying where it ran
        return 0.0


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, e.g. ``0.4, 0.8, 1.6``."""
    if not hasattr(os, "getloadavg"):
        return "n/a"
    return ", ".join(f"{x:.1f}" for x in os.getloadavg())


def commit() -> str:
    """The course's HEAD commit, with a note when the working tree has uncommitted changes."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True,
                              check=False).stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return f"{head} (plus uncommitted changes)" if dirty else head


def describe() -> str:
    """One line: host, OS, cores, CPU, memory, Python, and the load average right now."""
    return (f"{platform.node() or 'host'}: {platform.system()} {platform.machine()}, {os.cpu_count()} cores "
            f"({cpu_model()}), {memory_gib():.1f} GiB RAM, Python {platform.python_version()}, "
            f"load average {load_average()} (1/5/15 min) at start")
