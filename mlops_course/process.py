"""Background servers for lessons: start on a free loopback port, wait until healthy, always stop.

``BackgroundServer`` runs a command (``{port}`` in it is replaced by the port) in its own process group,
writes its output to a log file, polls a health URL, and stops the whole group on ``stop()``, at the end of
a ``with`` block, or when the Python process exits. Its errors name the server, where it listens
(``127.0.0.1:PORT``, or what ``listens_on`` says, e.g. a Unix socket) and the last lines of its log.
``ManagedServer`` is the base of the course's named servers (Prometheus, Alertmanager, the S3 store): it owns
one ``BackgroundServer`` and gives them url, port, running, start, stop, log_tail and the ``with`` block.

A process killed outright (``kill -9``, a crashed or force-restarted Jupyter kernel) runs no exit handlers,
so on Linux and macOS every server starts in its own process group through :func:`spawn`, which hands the
group to this process's warden (:mod:`mlops_course.warden`, one small process per kernel): if the kernel dies
first, the warden stops every group it was given (SIGTERM, then SIGKILL after a few seconds).
``PR_SET_PDEATHSIG`` is not enough here: it fires when the *thread* that started the child ends (servers are
started from short-lived threads, e.g. by ``PrefectServer`` and :func:`start_together`), and it never
reaches the server's own children (a Prefect worker's flow runs, PostgreSQL's backends).
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Self

HOST = "127.0.0.1"
WARDEN = Path(__file__).with_name("warden.py")  # run as a script: it imports nothing from this package
_RUNNING: set[BackgroundServer] = set()
_cleanup_installed = False
_warden: tuple[int, subprocess.Popen] | None = None  # (the pid that started it, the warden)
_warden_lock = threading.Lock()


class ServerError(RuntimeError):
    """A background server could not start, or its port was taken."""


def free_port(host: str = HOST) -> int:
    """A TCP port on loopback that nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_in_use(port: int, host: str = HOST) -> bool:
    """True when something already listens on ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


def spawn(command: Sequence[str], **popen_kwargs) -> subprocess.Popen:
    """``subprocess.Popen(command, **popen_kwargs)`` in a new session (its own process group), which this
    process's warden stops if this process dies without stopping it (Linux and macOS; a plain ``Popen`` on
    Windows, which has no process groups)."""
    if not hasattr(os, "killpg"):
        return subprocess.Popen(list(command), **popen_kwargs)
    proc = subprocess.Popen(list(command), start_new_session=True, **popen_kwargs)
    try:
        _tell_warden(proc.pid)
    except OSError:  # no warden: the group would outlive a killed kernel, so it does not run at all
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    return proc


def _tell_warden(group: int) -> None:
    """Add ``group`` to the warden's list, starting the warden first if this process has none running."""
    global _warden
    with _warden_lock:
        for attempt in (1, 2):
            if _warden is None or _warden[0] != os.getpid() or _warden[1].poll() is not None:
                warden = subprocess.Popen([sys.executable, "-I", "-S", str(WARDEN), str(os.getpid())],
                                          stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL, start_new_session=True)
                _warden = (os.getpid(), warden)
                atexit.register(_release_warden, warden)
            try:
                _warden[1].stdin.write(f"+{group}\n".encode())
                _warden[1].stdin.flush()
                return
            except BrokenPipeError:  # the warden ended (killed by hand?): start a new one, once
                if attempt == 2:
                    raise


def _release_warden(warden: subprocess.Popen) -> None:
    """At exit, after ``stop_all``: end the warden's stream, so it stops what is left and exits now."""
    with contextlib.suppress(OSError):
        warden.stdin.close()
    with contextlib.suppress(subprocess.TimeoutExpired):
        warden.wait(1)


def install_cleanup() -> None:
    """Stop every server still running when the interpreter exits (kernel shutdown included)."""
    global _cleanup_installed
    if not _cleanup_installed:
        atexit.register(stop_all)
        _cleanup_installed = True


def stop_all() -> None:
    """Stop every background server this process started."""
    for server in list(_RUNNING):
        server.stop()


class BackgroundServer:
    """A command run in the background on a loopback port, with a health check and a log file.

    >>> with BackgroundServer(["python", "-m", "http.server", "{port}", "--bind", "127.0.0.1"],
    ...                       health_path="/", log_file=Path("http.log")) as srv:
    ...     urllib.request.urlopen(srv.url).status
    200
    """

    def __init__(self, command: Sequence[str], *, log_file: os.PathLike | str, port: int | None = None,
                 health_path: str = "/health", env: Mapping[str, str] | None = None,
                 cwd: os.PathLike | str | None = None, startup_timeout: float = 30.0, name: str | None = None,
                 ready: Callable[[], bool] | None = None, listens_on: str | None = None,
                 stop_signal: int = signal.SIGTERM):
        """``ready``: how to tell the server is up when it is not HTTP (e.g. a Unix socket exists); by default
        ``GET health_path`` on the port must answer 200. ``listens_on``: where errors say the server listens
        (default ``127.0.0.1:PORT``). ``stop_signal``: what ``stop()`` sends first (PostgreSQL: SIGINT)."""
        self.port = port if port is not None else free_port()
        self.listens_on = listens_on or f"{HOST}:{self.port}"
        self.stop_signal = stop_signal
        self.command = [str(part).replace("{port}", str(self.port)) for part in command]
        self.log_file = Path(log_file)
        self.health_path = health_path
        self.env = {**os.environ, **(env or {})}
        self.cwd = cwd
        self.startup_timeout = startup_timeout
        self.name = name or Path(self.command[0]).name
        self.ready_check = ready
        self.process: subprocess.Popen | None = None
        self._log_handle = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        """The last lines the server wrote (stdout and stderr together)."""
        if not self.log_file.exists():
            return ""
        return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])

    def _failed(self, why: str) -> ServerError:
        """The error for a start that failed: the server, where, why, and the tail of its log."""
        tail = self.log_tail()
        log = (f"Last lines of its log ({self.log_file}):\n{tail}" if tail
               else f"Its log ({self.log_file}) is empty.")
        return ServerError(f"{self.name} did not start on {self.listens_on}: {why}. {log}")

    def start(self) -> BackgroundServer:
        """Start the server and wait for its health URL to answer 200; raise ``ServerError`` otherwise."""
        if self.running:
            return self
        if self.ready_check is None and port_in_use(self.port):
            raise ServerError(f"{self.name} did not start on {self.listens_on}: port {self.port} is already in "
                              f"use. Stop what listens there, or leave the port out so a free one is chosen.")
        if shutil.which(self.command[0], path=self.env.get("PATH")) is None:
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), self.command[0])
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self._log_handle = open(self.log_file, "ab")  # noqa: SIM115 - open while the server runs; stop() closes it
        self.process = spawn(self.command, stdout=self._log_handle, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, env=self.env, cwd=self.cwd)
        _RUNNING.add(self)
        install_cleanup()
        try:
            self._wait_healthy()
        except BaseException:
            self.stop()
            raise
        return self

    def _answers(self) -> bool:
        if self.ready_check is not None:
            return self.ready_check()
        try:
            with urllib.request.urlopen(self.url + self.health_path, timeout=1) as response:
                return response.status == 200
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            return False

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise self._failed(f"it exited with code {self.process.returncode} before it was ready")
            if self._answers():
                return
            time.sleep(0.05 if self.ready_check is not None else 0.1)
        waited = "become ready" if self.ready_check is not None else f"answer {self.health_path}"
        raise self._failed(f"it did not {waited} within {self.startup_timeout:.0f} s")

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server and every process it started (``stop_signal``, then SIGKILL after ``timeout``)."""
        proc, self.process = self.process, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, self.stop_signal)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout)
        if proc is not None:
            # Children that outlived the leader (workers) go too.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        if self._log_handle is not None:
            self._log_handle.close()
            self._log_handle = None
        _RUNNING.discard(self)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<BackgroundServer {self.name} {state}>"


def start_together(*servers: BackgroundServer | ManagedServer) -> tuple[BackgroundServer | ManagedServer, ...]:
    """Start several background servers at once (each waits for its own health check in a thread).

    Servers spend their start-up importing libraries, so on two cores two of them start in about the time
    of one. If any fails, all are stopped and the first error is raised. An interrupt while they start (the
    notebook's stop button) stops them all too, once each start has returned, and is then raised again.
    """
    from concurrent.futures import ThreadPoolExecutor, wait

    pool = ThreadPoolExecutor(max_workers=max(1, len(servers)))
    futures = [pool.submit(server.start) for server in servers]
    try:
        errors = [f.exception() for f in futures]
    except BaseException:
        wait(futures)  # a start cannot be called off from here; each returns once its server answers or fails
        for server in servers:
            server.stop()
        raise
    finally:
        pool.shutdown(wait=False)
    failed = [e for e in errors if e is not None]
    if failed:
        for server in servers:
            server.stop()
        raise failed[0]
    return servers


class ManagedServer:
    """The base of a named course server that runs one :class:`BackgroundServer`.

    A subclass builds its command and config, passes the ``BackgroundServer`` to ``__init__`` and adds only
    what is its own (``describe``, API helpers); url, port, running, start, stop, log_tail, the ``with``
    block and the repr come from here.
    """

    def __init__(self, server: BackgroundServer):
        self._server = server

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return self._server.url

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def running(self) -> bool:
        return self._server.running

    def start(self) -> Self:
        """Start and wait until healthy; ``ServerError`` naming host:port and the log tail if not."""
        self._server.start()
        return self

    def stop(self) -> None:
        """Stop the server (nothing happens when it is not running)."""
        self._server.stop()

    def log_tail(self, lines: int = 20) -> str:
        """The last lines the server wrote."""
        return self._server.log_tail(lines)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {'running' if self.running else 'stopped'}>"

