"""The warden: one small process per kernel that stops the kernel's servers when the kernel dies.

``process.spawn`` starts it once per Python process, as ``python -I -S warden.py PARENT`` with a pipe on its
stdin, and writes ``+PGID`` on it for every process group it starts. When the parent dies (its pidfd turns
readable, the warden is re-parented, or the pipe's last writer is gone) or the warden itself gets SIGTERM,
SIGINT or SIGHUP, every listed group still alive gets SIGTERM, then SIGKILL after ``GRACE`` seconds, and the
warden exits. Groups that ended are dropped from the list twice a second.

It imports only ``os``, ``select``, ``signal``, ``sys`` and ``time``: about 5 MiB (PSS, measured in lesson 09),
once per kernel instead of once per server.
"""

import os
import select
import signal
import sys
import time

GRACE = 5.0  # seconds a group gets to exit on SIGTERM before SIGKILL
POLL = 0.5  # seconds between checks of the parent and of the groups


class _Stop(Exception):
    """Raised by the signal handler: stop the groups now."""


def alive(group: int) -> bool:
    """True while any process of ``group`` exists."""
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_groups(groups, grace: float = GRACE) -> None:
    """SIGTERM every group, wait up to ``grace`` seconds for them to end, SIGKILL what is left."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for group in groups:
            try:
                os.killpg(group, sig)
            except (ProcessLookupError, PermissionError):
                pass
        deadline = time.monotonic() + grace
        while any(alive(g) for g in groups) and time.monotonic() < deadline:
            time.sleep(0.05)


def _pidfd(pid: int):
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):  # not Linux, or a kernel before 5.3
        return None


def watch(parent: int, fd: int = 0) -> set:
    """Read ``+PGID`` lines from ``fd`` until ``parent`` dies or the stream ends; return the live groups."""
    groups = set()
    parent_fd = _pidfd(parent)
    watched = [fd] + ([parent_fd] if parent_fd is not None else [])
    pending = b""
    try:
        while os.getppid() == parent:
            ready = select.select(watched, [], [], POLL)[0]
            if parent_fd is not None and parent_fd in ready:
                break
            if fd in ready:
                chunk = os.read(fd, 4096)
                if not chunk:
                    break
                *lines, pending = (pending + chunk).split(b"\n")
                groups.update(int(line[1:]) for line in lines if line[:1] == b"+" and line[1:].isdigit())
            groups = {g for g in groups if alive(g)}
    except _Stop:
        pass
    return {g for g in groups if alive(g)}


def _raise_stop(signum, frame):
    raise _Stop


if __name__ == "__main__":  # python -I -S warden.py PARENT
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, _raise_stop)
    left = watch(int(sys.argv[1]))
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)  # finish stopping the groups whatever arrives now
    stop_groups(left)
