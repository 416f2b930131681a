"""A Prefect API server for a lesson, on loopback, with its state in the lesson's workspace.

Kept apart from :mod:`mlops_course.orchestration` so a lesson can start the server before it imports Prefect
and the rest (about 3 s), and both start-ups overlap. Importing this module only sets environment variables
(telemetry off, no UI, console logs without clock times, Prefect's home out of ``~/.prefect``); it writes no
file. Prefect itself is imported only when a started server points this process's Prefect client at it.

One process talks to one Prefect API at a time, so starting a :class:`PrefectServer` stops the one this
process started before (a learner re-running a lesson's setup cell gets a fresh server, not a second one).
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Self

from mlops_course import empty_stores, process

# ------------------------------------------------------------------ settings, before Prefect is imported
# Console logs without clock times or colours, so stored notebook outputs compare equal on every run.
CONSOLE_LOG_FORMATS = {
    "PREFECT_LOGGING_FORMATTERS_STANDARD_FORMAT": "%(levelname)-7s | %(name)s - %(message)s",
    "PREFECT_LOGGING_FORMATTERS_STANDARD_FLOW_RUN_FMT": "%(levelname)-7s | Flow run %(flow_run_name)r - %(message)s",
    "PREFECT_LOGGING_FORMATTERS_STANDARD_TASK_RUN_FMT": "%(levelname)-7s | Task run %(task_run_name)r - %(message)s",
    "PREFECT_LOGGING_COLORS": "false",
}
# Telemetry and update checks off, no UI, nothing read from or written to ~/.prefect.
OFFLINE_SETTINGS = {
    "DO_NOT_TRACK": "true",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_CLOUD_ENABLE_ORCHESTRATION_TELEMETRY": "false",
    "PREFECT_SERVER_UI_ENABLED": "false",
    "PREFECT_UI_ENABLED": "false",
    "PREFECT_UI_URL": "",  # no UI runs, so no "View at http://..." links (they hold run ids) in the logs
}
# The server only needs to record runs: background loops that schedule, reschedule or clean up are off.
SERVER_SETTINGS = {
    "PREFECT_API_BLOCKS_REGISTER_ON_START": "false",
    "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_LATE_RUNS_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_FOREMAN_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_PAUSE_EXPIRATIONS_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_REPOSSESSOR_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_CANCELLATION_CLEANUP_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_CLEANUP_RECONCILER_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_TRIGGERS_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_DB_VACUUM_ENABLED": "[]",
    "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
}
for _key, _value in {**OFFLINE_SETTINGS, **CONSOLE_LOG_FORMATS}.items():
    os.environ.setdefault(_key, _value)
# Imported before setup_lesson (e.g. by a test module): keep Prefect's home out of ~/.prefect until
# setup_lesson or a PrefectServer points it at a lesson workspace. Only the variable is set here. Prefect
# creates that folder itself when it is imported (it warns if it cannot: hence a folder whose parent exists,
# in the system's temporary folder), and puts nothing in it unless a flow runs without a server.
DEFAULT_PREFECT_HOME = Path(tempfile.gettempdir()) / f"mlops-course-prefect-{getattr(os, 'getuid', lambda: 0)()}"
os.environ.setdefault("PREFECT_HOME", str(DEFAULT_PREFECT_HOME))
# The loggers of flow and task runs: with console_logs=False their records go to the API only.
RUN_LOGGERS = ("prefect.flow_runs", "prefect.task_runs")


# ------------------------------------------------------------------ where Prefect keeps its state
def prefect_home(workspace: os.PathLike | str | None = None) -> Path:
    """Prefect's home folder for a workspace: ``.tools/prefect`` (the same place ``setup_lesson`` uses)."""
    ws = Path(workspace) if workspace is not None else Path.cwd()
    return ws / ".tools" / "prefect"


def _refresh_prefect_settings(console_logs: bool = True) -> None:
    """Make an already imported Prefect re-read its settings (home, API URL, logging) from the environment.

    With ``console_logs=False`` the run loggers stop passing their records on to the console handler; they
    still send them to the server (Prefect's ``api`` handler sits on those loggers themselves).
    """
    import logging

    import prefect.context
    from prefect.logging.configuration import setup_logging

    prefect.context.refresh_global_settings_context()
    setup_logging(incremental=False)
    for name in RUN_LOGGERS:
        logging.getLogger(name).propagate = console_logs


def _skip_heartbeats() -> None:
    """Send no flow-run heartbeats from this process (they cost up to 1 s at the end of every flow run).

    Prefect 3.9 ends each flow run by joining its heartbeat thread, which sleeps in 1 s steps. Heartbeats let a
    server's automations mark crashed runs; a lesson's server runs none (its triggers service is off). The
    setting cannot be switched off through the environment (it must be >= 30 s there), so it is set on the
    settings object Prefect just loaded; a Prefect without the setting is left as it is.
    """
    from prefect.settings import get_current_settings

    flows = getattr(get_current_settings(), "flows", None)
    if flows is not None and hasattr(flows, "heartbeat_frequency"):
        with contextlib.suppress(Exception):
            flows.heartbeat_frequency = None


class PrefectServer:
    """A Prefect API server for one lesson: loopback port, database and results in the workspace.

    ``start()`` launches ``prefect server start`` in the background and returns at once, so the server's
    ~10 s of start-up (imports, database migrations; a copy of a cached empty database skips the migrations,
    see :mod:`mlops_course.empty_stores`) overlaps with the lesson's next cells; ``wait()`` blocks
    until ``/api/health`` answers and points this process's Prefect client at it. ``stop()`` ends the server
    and restores the environment; the server process is also stopped at interpreter exit (and by the warden
    when the kernel is killed), like every :class:`mlops_course.process.BackgroundServer`. Starting a
    server stops the one this process started before.

    ``console_logs=False`` keeps the log lines of flow and task runs off the console (they still reach the
    server, where ``client.read_logs`` returns them): their wording is Prefect's and changes between releases,
    so a lesson whose outputs are compared prints what it reads back from the API instead.
    """

    _current: PrefectServer | None = None  # the server this process's Prefect client points at

    def __init__(self, workspace: os.PathLike | str | None = None, *, startup_timeout: float = 180.0,
                 console_logs: bool = True):
        self.workspace = Path(workspace) if workspace is not None else Path.cwd()
        self.console_logs = console_logs
        self.home = prefect_home(self.workspace)
        self.database = self.home / "prefect.db"
        self.settings = {
            **OFFLINE_SETTINGS,
            **CONSOLE_LOG_FORMATS,
            "PREFECT_HOME": str(self.home),
            "PREFECT_SERVER_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{self.database}",
            "PREFECT_RESULTS_LOCAL_STORAGE_PATH": str(self.home / "storage"),
        }
        command = [sys.executable, "-m", "prefect", "server", "start", "--host", process.HOST,
                   "--port", "{port}", "--no-ui", "--analytics-off"]
        self._server = process.BackgroundServer(
            command, log_file=self.home / "server.log", health_path="/api/health",
            env={**self.settings, **SERVER_SETTINGS}, cwd=self.workspace, startup_timeout=startup_timeout,
            name="prefect server")
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._saved_env: dict[str, str | None] = {}
        self._fresh_database = False
        self.ready = False

    @property
    def api_url(self) -> str:
        return f"{self._server.url}/api"

    @property
    def running(self) -> bool:
        return self._server.running

    def start(self) -> Self:
        """Launch the server process in the background (returns immediately; see :meth:`wait`)."""
        if self._thread is not None:
            return self
        previous = PrefectServer._current
        if previous is not None and previous is not self:
            # E.g. the lesson's setup cell run again: one server per process. The environment goes back to
            # what it would be without the previous server (keeping what others, like setup_lesson, set since).
            _apply_env(previous._detach())
        PrefectServer._current = self
        self.home.mkdir(parents=True, exist_ok=True)
        self._fresh_database = not empty_stores.restore("prefect", self.database)
        self._saved_env = {k: os.environ.get(k) for k in [*self.settings, "PREFECT_API_URL"]}
        os.environ.update(self.settings)
        os.environ["PREFECT_API_URL"] = self.api_url

        def launch() -> None:
            try:
                self._server.start()
            except Exception as exc:  # noqa: BLE001 - kept and raised by wait() (also if stop() came first)
                self._error = exc

        self._thread = threading.Thread(target=launch, name="prefect-server-start", daemon=True)
        self._thread.start()
        return self

    def wait(self) -> Self:
        """Block until the server is healthy; raise ``ServerError`` with its log tail if it failed."""
        if self._thread is None:
            self.start()
        self._thread.join()
        if self._error is None and not self._server.running:
            self._error = process.ServerError(f"the Prefect server is not running. Last lines of its log:\n"
                                              f"{self.log_tail()}")
        if self._error is not None:
            error, self._error = self._error, None
            self.stop()
            raise error
        if not self.ready:
            if self._fresh_database:  # migrated by this server and still empty: later workspaces copy it
                empty_stores.keep("prefect", self.database)
            _refresh_prefect_settings(console_logs=self.console_logs)
            _skip_heartbeats()
            self.ready = True
        return self

    def stop(self) -> None:
        """Flush Prefect's client-side log and event queues, stop the server, restore the environment."""
        saved = self._saved_env
        self._end()
        _apply_env(saved)
        if saved:
            _refresh_prefect_settings()

    def _end(self) -> None:
        """Stop the server process (after flushing what the client queues); leave the environment alone."""
        if self.ready and self.running:
            flush_client()
        self._server.stop()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._saved_env, self.ready, self._thread = {}, False, None
        if PrefectServer._current is self:
            PrefectServer._current = None

    def _detach(self) -> dict[str, str | None]:
        """End this server for a new one: the environment without it, keeping values others changed since."""
        applied = {**self.settings, "PREFECT_API_URL": self.api_url}
        without = {key: (saved if os.environ.get(key) == applied.get(key) else os.environ.get(key))
                   for key, saved in self._saved_env.items()}
        self._end()
        return without

    def describe(self) -> str:
        """One line for the learner: where the server keeps its state (no port, no path)."""
        return (f"Prefect API server on 127.0.0.1 (a free port), database {self.database.name} and task results "
                f"in {self.home.relative_to(self.workspace)}/ of the workspace")

    def log_tail(self, lines: int = 20) -> str:
        return self._server.log_tail(lines)

    def __enter__(self) -> Self:
        return self.start().wait()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "ready" if self.ready else ("running" if self.running else "stopped")
        return f"<PrefectServer {state}, database {self.database.name} in the workspace>"


def _apply_env(values: dict[str, str | None]) -> None:
    """Set these environment variables (``None``: remove it)."""
    for key, value in values.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def flush_client() -> None:
    """Send the run logs and events this process still queues to the server, and wait until they are sent.

    Prefect ships them from background workers in batches (every 2 s by default). Called from a notebook,
    where an event loop is already running, Prefect's drain methods would return coroutines, so the drain
    runs in a helper thread that has no loop.
    """

    def drain() -> None:
        with contextlib.suppress(Exception):
            from prefect.logging.handlers import APILogWorker

            APILogWorker.drain_all(timeout=5)
        with contextlib.suppress(Exception):
            from prefect.events.worker import EventsWorker

            EventsWorker.drain_all(timeout=5)

    worker = threading.Thread(target=drain, name="prefect-flush", daemon=True)
    worker.start()
    worker.join(timeout=12)


def worker(pool: str, workspace: os.PathLike | str | None = None, *, name: str = "worker-1",
           query_seconds: float = 1.0, startup_timeout: float = 120.0,
           start: bool = True) -> process.BackgroundServer:
    """``prefect worker start --pool POOL``, started in the background and healthy, for the running server
    (``start=False``: not started yet; its ``start()`` waits for the health page).

    The worker polls the server (``PREFECT_API_URL`` of this process, so start a :class:`PrefectServer` first)
    every ``query_seconds`` (Prefect's default is 10 s) and runs each flow run of the pool as a process of its
    own. ``--with-healthcheck`` gives it a ``/health`` page, on 127.0.0.1 and a free port, that answers once it
    polls. Its log (``worker-NAME.log`` in Prefect's home) holds what its flow runs print.
    """
    if not os.environ.get("PREFECT_API_URL"):
        raise process.ServerError("no Prefect server for the worker: start one first "
                                  "(PrefectServer(lesson.workspace).start().wait())")
    port = process.free_port()
    env = {"PREFECT_WORKER_WEBSERVER_HOST": process.HOST, "PREFECT_WORKER_WEBSERVER_PORT": str(port),
           "PREFECT_WORKER_QUERY_SECONDS": str(query_seconds), "PREFECT_WORKER_PREFETCH_SECONDS": "0"}
    home = prefect_home(workspace)
    command = [sys.executable, "-m", "prefect", "worker", "start", "--pool", pool, "--type", "process",
               "--name", name, "--with-healthcheck"]
    server = process.BackgroundServer(command, log_file=home / f"worker-{name}.log", port=port, health_path="/health",
                                      env=env, cwd=home, startup_timeout=startup_timeout,
                                      name=f"prefect worker {name}")
    return server.start() if start else server


@contextlib.contextmanager
def prefect_server(workspace: os.PathLike | str | None = None) -> Iterator[PrefectServer]:
    """``with prefect_server(ws) as server:`` a ready server for the block, stopped afterwards, also on error."""
    server = PrefectServer(workspace)
    try:
        yield server.start().wait()
    finally:
        server.stop()
