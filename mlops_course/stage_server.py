"""A warm process for DVC stage commands: ``python -m mlops_course.stages ...`` without the import cost.

A stage command spends most of its time importing pandas, scikit-learn and skops (about 3-4 s on a small
machine) and well under a second on its work. :class:`StageServer` keeps one background process with those
libraries imported; while it runs (``MLOPS_COURSE_STAGE_SERVER`` names its Unix socket), each stage command
hands its arguments, working directory, environment and output streams to it (:func:`run_on_server`), and a
copy of that process (``os.fork``) runs the stage. Output, exit codes and files are the same as without it;
when no server answers, the command simply runs the stage itself. Linux only.

This module imports nothing heavy at the top: the stage command calls :func:`run_on_server` before it imports
pandas.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Self

from mlops_course.process import BackgroundServer

SERVER_ENV = "MLOPS_COURSE_STAGE_SERVER"


def run_on_server(argv: Sequence[str]) -> int | None:
    """Hand a stage command to a running :class:`StageServer`; ``None`` when there is none to ask."""
    address = os.environ.get(SERVER_ENV)
    if not address or not os.path.exists(address):
        return None
    import socket

    if len(address.encode()) > 100:  # a socket path must be short; a relative one usually is
        address = os.path.relpath(address)
    try:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.connect(address)
    except OSError:
        return None
    request = {"argv": list(argv), "cwd": os.getcwd(), "env": dict(os.environ)}
    with conn:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
            socket.send_fds(conn, [b"S"], [1, 2])  # our stdout and stderr, for the stage's output
            conn.sendall(json.dumps(request).encode() + b"\n")
        except OSError:
            return None  # nothing ran yet: run the stage here instead
        reply = b""
        while not reply.endswith(b"\n"):
            chunk = conn.recv(64)
            if not chunk:
                break
            reply += chunk
    try:
        return int(reply)
    except ValueError:
        print("stage failed: the stage server stopped while it ran the stage", file=sys.stderr)
        return 1




# ---------------------------------------------------------------- warm start
def _serve_one(listener, conn) -> None:
    """In a forked copy of the server: run one stage command with the client's streams, cwd and env."""
    import signal
    import socket

    listener.close()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    code = 1
    try:
        _, fds, _, _ = socket.recv_fds(conn, 1, 2)
        payload = b""
        while not payload.endswith(b"\n"):
            chunk = conn.recv(1 << 16)
            if not chunk:
                raise ConnectionError("the stage command went away")
            payload += chunk
        request = json.loads(payload)
        os.dup2(fds[0], 1)
        os.dup2(fds[1], 2)
        for fd in fds:
            os.close(fd)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.argv = ["python -m mlops_course.stages", *request["argv"]]
        try:
            from mlops_course.stages import main

            code = main(request["argv"])
        except SystemExit as exc:  # argparse: a bad stage name or flag
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:  # noqa: BLE001 - report anything, as a crashing command would
            import traceback

            traceback.print_exc()
            code = 1
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        conn.sendall(f"{code}\n".encode())
    finally:
        os._exit(code if isinstance(code, int) else 1)


def serve_stages(address: str) -> None:
    """Import the stages' libraries, then serve stage commands on the Unix socket ``address`` until the
    process that started this server exits (see :class:`StageServer`)."""
    import signal
    import socket

    import matplotlib.figure  # noqa: F401 - imported now, so forked stages need not
    import skops.io  # noqa: F401
    from matplotlib.backends import backend_agg  # noqa: F401
    from sklearn import ensemble, linear_model  # noqa: F401

    path = Path(address)
    os.chdir(path.parent)  # bind a short relative name: socket paths have a length limit
    ready = path.name + ".binding"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(ready)
        listener.listen(16)
        os.rename(ready, path.name)  # the socket appears under its name only once it accepts
        signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # finished stages are reaped by the system
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # stop() and the warden: remove the socket first
        parent = os.getppid()
        listener.settimeout(0.5)
        try:
            while os.getppid() == parent:
                try:
                    conn, _ = listener.accept()
                except TimeoutError:
                    continue
                conn.setblocking(True)
                sys.stdout.flush()
                sys.stderr.flush()
                if os.fork() == 0:
                    _serve_one(listener, conn)
                conn.close()
        finally:
            Path(path.name).unlink(missing_ok=True)


class StageServer:
    """A background process with pandas, scikit-learn, skops and matplotlib imported, serving stage commands.

    ``start()`` launches it under the course's server supervision (``process.BackgroundServer``: its log
    file, the warden that stops it with this process, ``process.stop_all`` at exit) and sets
    ``MLOPS_COURSE_STAGE_SERVER`` in this process's environment, which the stage commands (and ``dvc``, which
    starts them) inherit; ``stop()`` or the end of a ``with`` block stops it. Until the server is ready, and
    on systems without ``fork`` and Unix sockets (or on macOS, where forking such a process is unsafe), stage
    commands run on their own as usual.
    """

    def __init__(self, folder: str | os.PathLike, name: str = "stages.sock"):
        self.address = Path(folder).resolve() / name
        self.log_file = self.address.with_suffix(".log")
        self.server: BackgroundServer | None = None

    @staticmethod
    def supported() -> bool:
        import socket

        return hasattr(os, "fork") and hasattr(socket, "AF_UNIX") and sys.platform.startswith("linux")

    @property
    def process(self):
        return self.server.process if self.server is not None else None

    @property
    def ready(self) -> bool:
        return self.server is not None and self.server.running and self.address.exists()

    def start(self, wait: bool = False, timeout: float = 60.0) -> Self:
        """Start the server; with ``wait=True`` block until it answers (``ServerError`` with its log if not)."""
        if self.server is not None or not self.supported():
            return self
        self.address.parent.mkdir(parents=True, exist_ok=True)
        self.address.unlink(missing_ok=True)
        code = "import sys; from mlops_course.stage_server import serve_stages; serve_stages(sys.argv[1])"
        self.server = BackgroundServer(
            [sys.executable, "-c", code, str(self.address)], log_file=self.log_file, name="stage server",
            env={"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
            ready=self.address.exists if wait else (lambda: True), startup_timeout=timeout)
        self.server.start()
        os.environ[SERVER_ENV] = str(self.address)
        return self

    def stop(self) -> None:
        """Stop the server (and any stage it is still running); stage commands then run on their own."""
        server, self.server = self.server, None
        if os.environ.get(SERVER_ENV) == str(self.address):
            del os.environ[SERVER_ENV]
        if server is not None:
            server.stop()
        self.address.unlink(missing_ok=True)

    def __enter__(self) -> Self:
        return self.start(wait=True)

    def __exit__(self, *exc) -> None:
        self.stop()
