"""Run one lesson for the reliability tests and write what happened as JSON (see tests/test_reliability.py).

Started by the test inside a fresh network and mount namespace (only loopback up, the repository under an
overlay), this script:

- becomes a child subreaper (``PR_SET_CHILD_SUBREAPER``), so every process the lesson leaves behind is
  re-parented to it and can be found;
- samples the namespace's listening TCP sockets every 0.2 s while the lesson runs (``/proc/net/tcp``/``tcp6``);
- runs the lesson with ``mlops_course.course.runner.execute`` (papermill, as ``mlops-course run`` does), or, with
  ``--interrupt-after TEXT``, first runs it cell by cell and SIGKILLs the kernel after the first cell whose
  source contains TEXT, then runs it again in full;
- after each run lists its leftover descendants and listening sockets, then kills the leftovers;
- lists what the run wrote into the repository (the overlay's upper layer, ``--upper``).

Usage: run_lesson.py NOTEBOOK OUT_DIR RESULT_JSON [--upper DIR] [--interrupt-after TEXT]
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import signal
import stat
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

PR_SET_CHILD_SUBREAPER = 36
SETTLE = 10.0  # seconds a finished run's processes get to exit (the warden gives a server 5 s after its kernel died)
LISTEN = "0A"


# ---------------------------------------------------------------- processes
def _stat(pid: int) -> tuple[int, str] | None:
    """(parent pid, state) of a process, or None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()
    return int(fields[1]), fields[0]


def cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "?"
    return " ".join(a.decode(errors="replace") for a in raw.split(b"\0") if a)[:300]


def descendants(root: int) -> list[int]:
    """Live (non-zombie) descendants of ``root``, found by walking parent links in /proc."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            info = _stat(int(entry.name))
            if info is not None and info[1] != "Z":
                parents[int(entry.name)] = info[0]
    found, frontier = [], [root]
    while frontier:
        pid = frontier.pop()
        kids = [p for p, pp in parents.items() if pp == pid]
        found.extend(kids)
        frontier.extend(kids)
    return sorted(found)


def reap() -> None:
    """Collect exited children (orphans re-parented to this subreaper become our zombies)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def settle(limit: float = SETTLE) -> list[int]:
    """Wait until no descendant is left or ``limit`` seconds pass; return those still alive."""
    deadline = time.monotonic() + limit
    while True:
        reap()
        left = descendants(os.getpid())
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


def kill_all(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    time.sleep(0.2)
    reap()


# ---------------------------------------------------------------- sockets
def listening() -> list[dict]:
    """Listening TCP sockets of this network namespace: address, port and socket inode."""
    found = []
    for name, width in (("tcp", 8), ("tcp6", 32)):
        try:
            lines = Path(f"/proc/net/{name}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] != LISTEN:
                continue
            address, port = fields[1].split(":")
            found.append({"address": _address(address, width), "port": int(port, 16), "inode": fields[9]})
    return found


def _address(hexed: str, width: int) -> str:
    import ipaddress

    raw = bytes.fromhex(hexed)
    if width == 8:
        return str(ipaddress.IPv4Address(raw[::-1]))
    # /proc/net/tcp6 prints four 32-bit words, each in host (little-endian) order.
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
    return str(ipaddress.IPv6Address(words))


def socket_owner(inode: str) -> str:
    """The command line of a process that holds socket ``inode`` (for failure messages)."""
    target = f"socket:[{inode}]"
    for pid in [os.getpid(), *descendants(os.getpid())]:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                    return f"pid {pid}: {cmdline(pid)}"
            except OSError:
                continue
    return "unknown process"


def is_python(pid: int) -> bool:
    try:
        return "python" in os.path.basename(os.readlink(f"/proc/{pid}/exe"))
    except OSError:
        return False


class Sampler(threading.Thread):
    """Every 0.2 s while a run goes: each listening socket not bound to 127.0.0.1 (with its process), and
    the Python processes of the run (to check that each carried the network audit hook)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.halt = threading.Event()
        self.samples = 0
        self.ports_seen: set[int] = set()
        self.outside: dict[tuple[str, int], str] = {}
        self.python: dict[int, str] = {}
        self.python_seen: dict[int, int] = {}

    def run(self) -> None:
        while not self.halt.is_set():
            for sock in listening():
                self.ports_seen.add(sock["port"])
                key = (sock["address"], sock["port"])
                if sock["address"] != "127.0.0.1" and key not in self.outside:
                    self.outside[key] = socket_owner(sock["inode"])
            for pid in descendants(os.getpid()):
                if is_python(pid):
                    self.python[pid] = cmdline(pid)  # the latest: a fork shows its parent's until it execs
                    self.python_seen[pid] = self.python_seen.get(pid, 0) + 1
            self.samples += 1
            self.halt.wait(0.2)

    def stop(self) -> dict:
        self.halt.set()
        self.join()
        return {"samples": self.samples, "ports_seen": len(self.ports_seen),
                "not_loopback": [f"{a}:{p} ({who})" for (a, p), who in sorted(self.outside.items())],
                # Seen in two samples at least: a process caught between fork and exec (still "python",
                # about to become git or sh) is not a Python process of the run.
                "python_processes": {str(pid): cmd for pid, cmd in sorted(self.python.items())
                                     if self.python_seen[pid] >= 2}}


def no_route_counters() -> dict[str, int]:
    """This namespace's kernel counters of packets that could not leave (no route but loopback) or found no
    listener: they count attempts from any process, C code included, which the Python audit cannot see."""
    counts = {}
    lines = Path("/proc/net/snmp").read_text().splitlines()
    for head, values in zip(lines[::2], lines[1::2]):
        table = dict(zip(head.split()[1:], values.split()[1:]))
        prefix = head.split(":")[0]
        for key in ("OutNoRoutes", "NoPorts"):
            if key in table:
                counts[prefix + key] = int(table[key])
    for line in Path("/proc/net/snmp6").read_text().splitlines():
        name, value = line.split()
        if name in ("Ip6OutNoRoutes", "Udp6NoPorts"):
            counts[name] = int(value)
    return counts


def counter_delta(before: dict[str, int]) -> dict[str, int]:
    after = no_route_counters()
    return {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}


# ---------------------------------------------------------------- runs
def after_run(report: dict) -> dict:
    """Leftover processes and listening sockets once a run is over; leftovers are then killed."""
    left = settle()
    report["leftover_processes"] = [f"pid {pid}: {cmdline(pid)}" for pid in left]
    report["leftover_listening"] = [f"{s['address']}:{s['port']} ({socket_owner(s['inode'])})" for s in listening()]
    kill_all(left)
    return report


def full_run(notebook: Path, out_dir: Path) -> dict:
    from mlops_course.course import runner

    lesson = SimpleNamespace(path=notebook, filename=notebook.name)  # what runner.execute reads of a lesson
    counters = no_route_counters()
    sampler = Sampler()
    sampler.start()
    result = runner.execute(lesson, out_dir, progress=False)
    report = {"status": result.status, "error": result.error, "seconds": round(result.seconds, 1),
              "output": str(result.output), "sampled": sampler.stop()}
    report = after_run(report)
    report["no_route"] = counter_delta(counters)
    return report


def interrupted_run(notebook: Path, marker: str) -> dict:
    """Run cells until the first whose source contains ``marker``, then SIGKILL the kernel."""
    import nbformat
    from nbclient import NotebookClient

    from mlops_course import paths
    from mlops_course.course import runner

    nb = nbformat.read(notebook, as_version=4)
    client = NotebookClient(nb, kernel_name=runner.KERNEL, resources={"metadata": {"path": str(paths.notebooks_dir())}})
    report: dict = {"marker": marker, "killed_after_cell": None}
    counters = no_route_counters()
    sampler = Sampler()
    sampler.start()
    with client.setup_kernel():
        kernel = client.km.provisioner.process.pid
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            client.execute_cell(cell, index)
            if marker in cell.source:
                report["killed_after_cell"] = cell.execution_count
                report["kernel_children"] = [f"pid {p}: {cmdline(p)}" for p in descendants(kernel)]
                os.kill(kernel, signal.SIGKILL)
                break
        with_kernel_gone = time.monotonic()
        report["kernel_pid"] = kernel
        report["workspace_root"] = str(paths.workspaces_dir())
    report["sampled"] = sampler.stop()
    report = after_run(report)
    report["settle_seconds"] = round(time.monotonic() - with_kernel_gone, 1)
    report["no_route"] = counter_delta(counters)
    return report


def repo_writes(upper: Path) -> list[str]:
    """Paths the run wrote in the repository: everything in the overlay's upper layer, leaves only.

    A file written, created, touched or chmod-ed is copied up; a deleted one leaves a whiteout (a 0/0
    character device), listed with ``(deleted)``.
    """
    found = []
    for folder, dirs, files in os.walk(upper):
        rel = Path(folder).relative_to(upper)
        for name in files:
            path = Path(folder) / name
            mode = path.lstat().st_mode
            deleted = stat.S_ISCHR(mode) and path.lstat().st_rdev == 0
            found.append(f"{rel / name}{' (deleted)' if deleted else ''}")
        if not dirs and not files and rel != Path("."):
            found.append(f"{rel}/")
    return sorted(found)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("notebook", type=Path)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("result", type=Path)
    parser.add_argument("--upper", type=Path, help="the overlay's upper layer over the repository")
    parser.add_argument("--interrupt-after", help="first run: kill the kernel after the cell containing this")
    parser.add_argument("--learner", type=Path, help="after the full run, run this notebook too (the learner "
                        "edition): a second run in the same checkout, with the same checks")
    args = parser.parse_args(argv)

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER) failed")
    result: dict = {"netns": os.readlink("/proc/self/ns/net"), "runner_pid": os.getpid()}
    args.result.with_suffix(".started").write_text(json.dumps(result))  # for the test's clean-up sweep
    if args.interrupt_after:
        result["interrupted"] = interrupted_run(args.notebook, args.interrupt_after)
    result.update(full_run(args.notebook, args.out_dir))
    if args.learner is not None:
        result["learner"] = full_run(args.learner, args.out_dir / "learner")
    if args.upper is not None:
        result["repo_writes"] = repo_writes(args.upper)
    args.result.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
