import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

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
        with pytest.raises(process.ServerError, match=f"did not start on 127.0.0.1:{port}: port {port} is already in use"):
            server.start()
        assert server.process is None


def test_failure_to_start_reports_log_tail(tmp_path):
    bad = [sys.executable, "-c", "import sys; print('boom: no model here'); sys.exit(3)"]
    server = process.BackgroundServer(bad, log_file=tmp_path / "bad.log", name="bad-server")
    with pytest.raises(process.ServerError,
                       match=r"(?s)bad-server did not start on 127\.0\.0\.1:\d+: it exited with code 3.*boom: no model here"):
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


def _gone(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _wait_until(condition, limit=30.0):
    deadline = time.monotonic() + limit
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.1)
    return condition()


def _wardens(pid):
    """The warden processes whose parent is ``pid``."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes().split(b"\0")
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == pid and any(part.endswith(b"warden.py") for part in command):
                out.append(int(entry.name))
    return out


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_servers_die_with_a_killed_parent(tmp_path):
    # A parent killed with SIGKILL runs no atexit handler: its one warden must stop both servers and their children.
    script = (
        "import sys, time; from mlops_course import process\n"
        "cmd = ['bash', '-c', sys.executable + ' -m http.server {port} --bind 127.0.0.1 & wait']\n"
        "a = process.BackgroundServer(cmd, log_file=sys.argv[1], health_path='/').start()\n"
        "b = process.BackgroundServer(cmd, log_file=sys.argv[1], health_path='/').start()\n"
        "print(a.port, a.process.pid, b.port, b.process.pid, flush=True)\n"
        "time.sleep(120)\n")
    parent = subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "srv.log")], stdout=subprocess.PIPE,
                              text=True)
    try:
        port_a, group_a, port_b, group_b = map(int, parent.stdout.readline().split())
        assert listening(port_a) and listening(port_b)
        members = [int(p.name) for p in Path("/proc").iterdir()
                   if p.name.isdigit() and _pgid(int(p.name)) in (group_a, group_b)]
        assert len(members) >= 4, f"expected bash and http.server in groups {group_a}, {group_b}, found {members}"
        wardens = _wardens(parent.pid)
        assert len(wardens) == 1, f"expected one warden for both servers, found {wardens}"
    finally:
        parent.kill()
        parent.wait()
    assert _wait_until(lambda: all(_gone(pid) for pid in members + wardens)), \
        f"processes {[p for p in members + wardens if not _gone(p)]} outlived their SIGKILLed parent"
    assert not listening(port_a) and not listening(port_b)


def _pgid(pid):
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def test_a_server_outlives_the_thread_that_started_it(tmp_path):
    # PR_SET_PDEATHSIG would kill it here: it fires when the starting *thread* ends (PrefectServer starts
    # its server from a thread that ends once the server is healthy).
    box = {}
    starter = threading.Thread(target=lambda: box.setdefault(
        "server", process.BackgroundServer(HTTP, log_file=tmp_path / "t.log", health_path="/").start()))
    starter.start()
    starter.join()
    server = box["server"]
    try:
        time.sleep(1.5)  # three rounds of the guard's parent check
        assert server.running and listening(server.port)
    finally:
        server.stop()
    assert not listening(server.port)


def test_spawn_returns_the_commands_own_process_and_status():
    proc = process.spawn(["sh", "-c", "exit 7"])
    assert proc.wait(10) == 7
    proc = process.spawn(["sh", "-c", "kill -TERM $$"])
    assert proc.wait(10) == -signal.SIGTERM
    proc = process.spawn(["sleep", "30"])
    try:
        assert os.getpgid(proc.pid) == proc.pid  # its own group, led by the command itself
    finally:
        proc.kill()
        proc.wait()
    with pytest.raises(FileNotFoundError):
        process.spawn(["no-such-command-here"])


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_one_warden_serves_every_server_of_a_process(tmp_path):
    servers = [process.BackgroundServer(HTTP, log_file=tmp_path / f"{i}.log", health_path="/").start()
               for i in range(3)]
    try:
        assert len(_wardens(os.getpid())) == 1
    finally:
        for server in servers:
            server.stop()


def test_missing_command_is_reported_before_starting(tmp_path):
    server = process.BackgroundServer(["no-such-command-here", "{port}"], log_file=tmp_path / "m.log")
    with pytest.raises(FileNotFoundError, match="no-such-command-here"):
        server.start()
    assert server.process is None


def test_a_server_that_is_not_http_says_when_it_is_ready(tmp_path):
    flag = tmp_path / "ready"
    script = f"import pathlib, time; time.sleep(0.3); pathlib.Path({str(flag)!r}).touch(); time.sleep(60)"
    server = process.BackgroundServer([sys.executable, "-c", script], log_file=tmp_path / "log", ready=flag.exists,
                              startup_timeout=20, name="file-flag")
    with server:
        assert server.running and flag.exists()
    assert not server.running
    never = process.BackgroundServer([sys.executable, "-c", "import time; time.sleep(60)"], log_file=tmp_path / "log2",
                             ready=lambda: False, startup_timeout=1, name="never-ready")
    with pytest.raises(process.ServerError, match="never-ready did not start on 127.0.0.1:[0-9]+: it did not become ready within 1 s"):
        never.start()
    assert not never.running


def test_listens_on_names_a_socket_and_an_empty_log_is_said(tmp_path):
    server = process.BackgroundServer([sys.executable, "-c", "import time; time.sleep(60)"], log_file=tmp_path / "q.log",
                                      ready=lambda: False, startup_timeout=1, name="sock",
                                      listens_on="the socket /tmp/x/.s.PGSQL.5432")
    with pytest.raises(process.ServerError) as info:
        server.start()
    text = str(info.value)
    assert text.startswith("sock did not start on the socket /tmp/x/.s.PGSQL.5432: ")
    assert "127.0.0.1" not in text
    assert f"Its log ({tmp_path / 'q.log'}) is empty." in text


def test_stop_signal_is_sent_first(tmp_path):
    # The server says which signal reached it: SIGINT when asked for, not the default SIGTERM.
    flag = tmp_path / "up"
    script = ("import pathlib, signal, sys, time\n"
              "def said(name):\n"
              "    return lambda *a: (print(name, flush=True), sys.exit(0))\n"
              "signal.signal(signal.SIGINT, said('got SIGINT'))\n"
              "signal.signal(signal.SIGTERM, said('got SIGTERM'))\n"
              f"pathlib.Path({str(flag)!r}).touch()\n"
              "time.sleep(60)\n")
    for stop_signal, expected in ((signal.SIGINT, "got SIGINT"), (signal.SIGTERM, "got SIGTERM")):
        flag.unlink(missing_ok=True)
        log = tmp_path / f"{expected[4:]}.log"
        with process.BackgroundServer([sys.executable, "-c", script], log_file=log, ready=flag.exists,
                                      startup_timeout=20, stop_signal=stop_signal):
            pass
        assert log.read_text().split() == expected.split()


class Http(process.ManagedServer):
    """The smallest subclass: Python's http.server, or any command given."""

    def __init__(self, tmp_path, command=HTTP, **options):
        super().__init__(process.BackgroundServer(command, log_file=tmp_path / "managed.log", health_path="/",
                                                  name="http", **options))


def test_managed_server_delegates_and_stops_when_the_block_fails(tmp_path):
    server = Http(tmp_path)
    assert repr(server) == "<Http stopped>" and not server.running
    with pytest.raises(RuntimeError, match="a cell failed"), server as same:
        assert same is server and server.running and listening(server.port)
        assert server.url == f"http://127.0.0.1:{server.port}"
        assert repr(server) == "<Http running>"
        pid = server._server.process.pid
        raise RuntimeError("a cell failed")
    assert not server.running and not listening(server.port) and _gone(pid)
    assert repr(server) == "<Http stopped>"


def test_managed_server_stop_is_idempotent(tmp_path):
    server = Http(tmp_path)
    server.stop()  # never started: nothing to do
    assert server.start() is server and server.start() is server  # a second start keeps the same server
    pid = server._server.process.pid
    server.stop()
    server.stop()
    assert not server.running and not listening(server.port) and _gone(pid)
    assert server.start().running  # and it starts again after a stop
    server.stop()


def test_managed_server_failure_names_host_port_and_log_tail(tmp_path):
    bad = [sys.executable, "-c", "print('listen: bad address'); raise SystemExit(2)"]
    server = Http(tmp_path, bad)
    with pytest.raises(process.ServerError) as info:
        server.start()
    text = str(info.value)
    assert f"http did not start on 127.0.0.1:{server.port}: it exited with code 2" in text
    assert text.endswith("listen: bad address") and server.log_tail() == "listen: bad address"
    assert not server.running
    slow = Http(tmp_path / "slow", [sys.executable, "-c", "print('still loading', flush=True); import time; time.sleep(60)"],
                startup_timeout=1)
    with pytest.raises(process.ServerError, match=rf"(?s)127\.0\.0\.1:{slow.port}: it did not answer / within 1 s.*"
                                                  r"still loading"):
        slow.start()
    assert not slow.running


def test_start_together_starts_all_or_none(tmp_path):
    http = [sys.executable, "-m", "http.server", "{port}", "--bind", "127.0.0.1"]
    a = process.BackgroundServer(http, log_file=tmp_path / "a.log", health_path="/")
    b = process.BackgroundServer(http, log_file=tmp_path / "b.log", health_path="/")
    try:
        assert process.start_together(a, b) == (a, b) and a.running and b.running
    finally:
        a.stop()
        b.stop()
    c = process.BackgroundServer(http, log_file=tmp_path / "c.log", health_path="/")
    bad = process.BackgroundServer([sys.executable, "-c", "raise SystemExit(4)"], log_file=tmp_path / "d.log")
    with pytest.raises(process.ServerError, match="exited with code 4"):
        process.start_together(c, bad)
    assert not c.running and not process.port_in_use(c.port)


def test_an_interrupt_while_servers_start_stops_them_all(tmp_path):
    serve_late = ("import time, runpy, sys; time.sleep(1.5); sys.argv = ['http.server', sys.argv[1], "
                  "'--bind', '127.0.0.1']; runpy.run_module('http.server', run_name='__main__')")
    slow = [sys.executable, "-c", serve_late, "{port}"]
    servers = [process.BackgroundServer(slow, log_file=tmp_path / f"{n}.log", health_path="/") for n in "ab"]
    # Jupyter's stop button sends the kernel SIGINT; a real signal (not _thread.interrupt_main, which cannot wake
    # a thread blocked on a lock) reaches the waiting main thread at once.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            process.start_together(*servers)
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, previous)
    assert not any(s.running for s in servers) and not any(process.port_in_use(s.port) for s in servers)


# ---------------------------------------------------------------- the serving image's build context
