import socket
import sys
import time

import pytest

from mlops_course import process

HTTP = [sys.executable, "-m", "http.server", "{port}", "--bind", "127.0.0.1"]


def listening(port):
    return process.port_in_use(port)


def test_start_health_and_clean_stop(tmp_path):
    server = process.BackgroundServer(HTTP, log_file=tmp_path / "http.log", health_path="/")
    with server:
        assert server.running and listening(server.port)
        assert server.url == f"http://127.0.0.1:{server.port}"
        pid = server.process.pid
    assert not server.running
    assert not listening(server.port)
    with pytest.raises(ProcessLookupError):
        import os

        os.kill(pid, 0)


def test_free_port_is_free_and_reusable(tmp_path):
    port = process.free_port()
    assert not listening(port)
    with process.BackgroundServer(HTTP, port=port, log_file=tmp_path / "a.log", health_path="/"):
        assert listening(port)
    with process.BackgroundServer(HTTP, port=port, log_file=tmp_path / "b.log", health_path="/"):
        assert listening(port)


def test_port_in_use_is_refused(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        server = process.BackgroundServer(HTTP, port=port, log_file=tmp_path / "x.log", health_path="/")
        with pytest.raises(process.ServerError, match=f"port {port} .* already in use"):
            server.start()
        assert server.process is None


def test_failure_to_start_reports_log_tail(tmp_path):
    bad = [sys.executable, "-c", "import sys; print('boom: no model here'); sys.exit(3)"]
    server = process.BackgroundServer(bad, log_file=tmp_path / "bad.log", name="bad-server")
    with pytest.raises(process.ServerError, match="(?s)exited with code 3.*boom: no model here"):
        server.start()
    assert not server.running


def test_timeout_stops_the_process(tmp_path):
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    server = process.BackgroundServer(sleeper, log_file=tmp_path / "s.log", startup_timeout=1.0)
    start = time.monotonic()
    with pytest.raises(process.ServerError, match="did not answer"):
        server.start()
    assert time.monotonic() - start < 10
    assert not server.running


def test_stop_all_stops_children(tmp_path):
    # A shell that starts a child server: stopping the group must end both.
    cmd = ["bash", "-c", f"{sys.executable} -m http.server {{port}} --bind 127.0.0.1 & wait"]
    server = process.BackgroundServer(cmd, log_file=tmp_path / "g.log", health_path="/").start()
    assert listening(server.port)
    process.stop_all()
    time.sleep(0.2)
    assert not listening(server.port)
