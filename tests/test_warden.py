import os
import signal
import subprocess
import sys
import time

import pytest

from mlops_course import warden

pytestmark = pytest.mark.skipif(not hasattr(os, "killpg"), reason="process groups are POSIX")


def group(*command):
    """A command in a new process group (led by itself)."""
    return subprocess.Popen(list(command), start_new_session=True)


def ended_within(proc, seconds):
    try:
        proc.wait(seconds)
    except subprocess.TimeoutExpired:
        return False
    return True


def test_alive_follows_the_group():
    proc = group("sleep", "30")
    assert warden.alive(proc.pid)
    proc.kill()
    proc.wait()
    assert not warden.alive(proc.pid)


def test_a_group_that_ignores_sigterm_is_killed_after_the_grace():
    stubborn = group("sh", "-c", "trap '' TERM; while :; do sleep 0.1; done")
    polite = group("sleep", "30")
    time.sleep(0.3)  # let sh install its trap
    started = time.monotonic()
    warden.stop_groups({stubborn.pid, polite.pid}, grace=0.5)
    assert ended_within(polite, 2) and polite.returncode == -signal.SIGTERM
    assert ended_within(stubborn, 2) and stubborn.returncode == -signal.SIGKILL
    assert time.monotonic() - started < 3


def test_watch_keeps_the_groups_it_was_given_that_still_live():
    live, ended = group("sleep", "30"), group("true")
    ended.wait()
    read, write = os.pipe()
    try:
        os.write(write, f"+{live.pid}\n+{ended.pid}\n+not-a-pid\nnoise\n+{live.pid}".encode())
        os.close(write)  # the end of the stream: the parent is gone
        assert warden.watch(os.getppid(), read) == {live.pid}
    finally:
        os.close(read)
        live.kill()
        live.wait()


def test_the_warden_stops_its_groups_on_sigterm_and_exits():
    proc = subprocess.Popen([sys.executable, "-I", "-S", warden.__file__, str(os.getpid())], stdin=subprocess.PIPE,
                            start_new_session=True)
    server = group("sleep", "30")
    try:
        proc.stdin.write(f"+{server.pid}\n".encode())
        proc.stdin.flush()
        time.sleep(0.8)  # one poll round: the line is read
        proc.send_signal(signal.SIGTERM)
        assert ended_within(server, 5) and server.returncode == -signal.SIGTERM
        assert ended_within(proc, 5) and proc.returncode == 0
    finally:
        for p in (server, proc):
            if p.poll() is None:
                p.kill()
                p.wait()


def imported(*args):
    """The modules a ``python -I -S -X importtime`` run imports, by name."""
    err = subprocess.run([sys.executable, "-I", "-S", "-X", "importtime", *args], check=False, stdin=subprocess.DEVNULL,
                         capture_output=True, text=True, timeout=30).stderr
    return {line.rsplit("|", 1)[1].strip() for line in err.splitlines() if line.startswith("import time:")} - {
        "package"}


def test_the_warden_imports_nothing_beyond_the_standard_few():
    # With its stdin at its end the warden exits at once, having imported all it ever imports.
    allowed = imported("-c", "import os, select, signal, sys, time")  # signal brings enum and its own few
    used = imported(warden.__file__, str(os.getpid()))
    assert used <= allowed, sorted(used - allowed)
    assert "select" in used  # the probe sees the warden's own imports
