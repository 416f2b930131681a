"""Peak memory of the processes below this one (a kernel and what it starts), sampled in a thread."""

from __future__ import annotations

import ctypes
import os
import sys
import threading
import time
from collections import defaultdict
from typing import Self

import psutil

PR_SET_CHILD_SUBREAPER = 36  # linux/prctl.h


def adopt_orphans() -> bool:
    """Make this process the subreaper of its descendants (Linux), so a daemon that detaches from its
    parent is re-parented here instead of to init, and stays in the measured tree."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def label(proc: psutil.Process) -> str:
    """A short name for a process: ``kernel``, the module of ``python -m X``, a script or program name."""
    try:
        cmd = proc.cmdline() or [proc.name()]
    except psutil.Error:
        return "?"
    if any("ipykernel" in part for part in cmd):
        return "kernel"
    program = os.path.basename(cmd[0])
    if not program.startswith("python"):
        return program
    args = iter(cmd[1:])
    for arg in args:  # skip interpreter flags such as -I -S -u
        if arg == "-m":
            return next(args, program)
        if arg == "-c":
            return "python -c"
        if not arg.startswith("-"):
            return os.path.basename(arg)
    return program


class TreeSampler:
    """While active, sum the PSS of every process below this one every ``interval`` seconds; keep the peak.

    Processes that already existed when the sampler started are left out, so one notebook's figure does
    not include another's leftovers. ``cpu_seconds`` is the sampling thread's own CPU time.
    """

    def __init__(self, interval: float = 0.1):
        self.interval = interval
        self.root = psutil.Process()
        self.before: set[int] = set()
        self.peak_bytes = 0
        self.peak_parts: list[tuple[str, int]] = []
        self.samples = 0
        self.cpu_seconds = 0.0
        self._labels: dict[psutil.Process, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tree-sampler", daemon=True)

    def __enter__(self) -> Self:
        adopt_orphans()
        self.before = {p.pid for p in self.root.children(recursive=True)}
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def tree(self) -> list[psutil.Process]:
        """The processes below this one that appeared since the sampler started (zombies included)."""
        try:
            return [p for p in self.root.children(recursive=True) if p.pid not in self.before]
        except psutil.Error:
            return []

    def sample(self) -> int:
        """One sample: the summed PSS in bytes of the tree right now (updates the peak)."""
        total, parts = 0, []
        for proc in self.tree():
            try:
                pss = proc.memory_full_info().pss
            except psutil.Error:  # ended meanwhile, a zombie, or unreadable
                continue
            total += pss
            parts.append((proc, pss))
        self.samples += 1
        if total > self.peak_bytes:
            self.peak_bytes = total
            self.peak_parts = [(self._label(proc), pss) for proc, pss in parts]
        return total

    def _label(self, proc: psutil.Process) -> str:
        if proc not in self._labels:
            self._labels[proc] = label(proc)
        return self._labels[proc]

    def _run(self) -> None:
        while True:
            self.sample()
            if self._stop.wait(self.interval):
                break
        self.cpu_seconds = time.thread_time()

    def describe_peak(self, top: int = 4) -> str:
        """The largest contributors at the peak, e.g. ``kernel 310, mlflow 250, uvicorn x2 180`` (MiB)."""
        sizes: dict[str, int] = defaultdict(int)
        counts: dict[str, int] = defaultdict(int)
        for name, pss in self.peak_parts:
            sizes[name] += pss
            counts[name] += 1
        ranked = sorted(sizes, key=sizes.get, reverse=True)
        parts = [f"{name}{f' x{counts[name]}' if counts[name] > 1 else ''} {sizes[name] / 2**20:.0f}"
                 for name in ranked[:top]]
        if len(ranked) > top:
            parts.append(f"{len(ranked) - top} more")
        return ", ".join(parts) or "-"

    def new_processes(self) -> list[psutil.Process]:
        return self.tree()


def stop_leftovers(procs: list[psutil.Process], grace: float = 5.0) -> list[str]:
    """Wait up to ``grace`` s for these processes to end (reaping adopted ones); stop and name the rest."""
    _, alive = psutil.wait_procs(procs, timeout=grace) if procs else ([], [])
    left, stopping = [], []
    for proc in alive:
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
            left.append(f"{label(proc)} (pid {proc.pid})")
            proc.terminate()
            stopping.append(proc)
        except psutil.Error:
            continue
    _, still = psutil.wait_procs(stopping, timeout=3) if stopping else ([], [])
    for proc in still:
        try:
            proc.kill()
        except psutil.Error:
            pass
    return left
