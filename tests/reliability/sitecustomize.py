"""Network audit for the reliability tests: every Python process started with this folder first on
``PYTHONPATH`` logs its non-loopback network use.

With ``MLOPS_NET_AUDIT_LOG`` set, a ``sys.addaudithook`` hook appends one JSON line per ``socket.connect``,
``socket.bind``, ``socket.sendto``, ``socket.getaddrinfo`` or ``socket.gethostbyname`` whose address is not
loopback (binding to all interfaces counts as non-loopback) to that file: pid, argv, event, address. With
``MLOPS_NET_AUDIT_PROCS`` set, each process also appends one line (pid, argv) when it starts, so a test can
see which processes carried the hook. Another ``sitecustomize`` further down ``sys.path`` still runs.
"""

import json
import os
import sys

_LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}
_SOCKET_EVENTS = {"socket.connect", "socket.bind", "socket.sendto"}
_NAME_EVENTS = {"socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyname_ex"}


def _loopback(host) -> bool:
    """True for loopback hosts; ``None`` (no host: getaddrinfo answers loopback) counts as loopback."""
    if host is None:
        return True
    if isinstance(host, bytes):
        host = host.decode(errors="replace")
    host = str(host).strip().lower().strip("[]")
    if host in _LOOPBACK_NAMES or host.endswith(".localhost"):
        return True
    host = host.removeprefix("::ffff:")
    return host.startswith("127.") or host == "::1"


def _argv() -> list:
    """This process's command line (the interpreter included), cut to a readable length."""
    try:
        with open("/proc/self/cmdline", "rb") as f:
            argv = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        argv = [sys.executable, *sys.argv]
    return [a if len(a) <= 120 else a[:117] + "..." for a in argv[:8]]


def _append(path: str, record: dict) -> None:
    line = (json.dumps(record, default=repr) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)  # one write per line with O_APPEND: lines from many processes do not interleave
    finally:
        os.close(fd)


def _install(log: str) -> None:
    import socket

    inet = {socket.AF_INET, socket.AF_INET6}
    busy = []  # re-entrance guard: writing the log must not be audited

    def hook(event, args):
        if busy or (event not in _SOCKET_EVENTS and event not in _NAME_EVENTS):
            return
        if event in _SOCKET_EVENTS:
            sock, address = args[0], args[1]
            if getattr(sock, "family", None) not in inet or not isinstance(address, tuple):
                return  # Unix sockets, netlink: not the network
            host = address[0]
            if _loopback(host):  # binding "" / 0.0.0.0 / :: (all interfaces) is not loopback
                return
        else:
            host = args[0]
            if _loopback(host):
                return
            address = list(args[:2])
        busy.append(1)
        try:
            _append(log, {"pid": os.getpid(), "argv": _argv(), "event": event,
                          "address": address})
        except OSError:
            pass
        finally:
            busy.pop()

    sys.addaudithook(hook)


def _chain() -> None:
    """Run the next ``sitecustomize`` on ``sys.path`` (e.g. a distribution's), which this file shadows."""
    import importlib.machinery
    import importlib.util

    here = os.path.dirname(os.path.abspath(__file__))
    rest = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is not None and spec.loader is not None:
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)


if os.environ.get("MLOPS_NET_AUDIT_LOG"):
    _install(os.environ["MLOPS_NET_AUDIT_LOG"])
if os.environ.get("MLOPS_NET_AUDIT_PROCS"):
    _procs = os.environ["MLOPS_NET_AUDIT_PROCS"]
    _append(_procs, {"pid": os.getpid(), "argv": _argv()})
    # A forked copy (multiprocessing, the stage server's workers) keeps the hook: record it as well.
    os.register_at_fork(after_in_child=lambda: _append(_procs, {"pid": os.getpid(), "argv": _argv(), "forked": True}))
_chain()
