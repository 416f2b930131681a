"""stage_server: stage commands served by one warm process give the same output, files and exit codes, and the
server goes when its starter does."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mlops_course import stage_server, stages

needs_server = pytest.mark.skipif(not stage_server.StageServer.supported(), reason="the stage server needs Linux")


@pytest.fixture
def server(project, monkeypatch):
    monkeypatch.delenv(stage_server.SERVER_ENV, raising=False)
    with stage_server.StageServer(project / ".tools") as running:
        yield running
    assert stage_server.SERVER_ENV not in os.environ and not running.address.exists()


def stage_command(project, *args):
    env = {**os.environ, "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"]}
    return subprocess.run([sys.executable, "-m", "mlops_course.stages", *args], cwd=project, env=env,
                          capture_output=True, text=True, check=False)


@needs_server
def test_stage_server_gives_the_same_output_files_and_exit_codes(project, server, capfd):
    assert os.environ[stage_server.SERVER_ENV] == str(server.address) and server.ready
    # served: the stage runs in a copy of the server, writing to our own stdout
    assert stage_server.run_on_server(["validate"]) == 0
    assert capfd.readouterr().out.startswith("validate: ")
    served = [stage_command(project, name) for name in ("prepare", "train", "evaluate")]
    assert [r.returncode for r in served] == [0, 0, 0], [r.stderr for r in served]
    scores = json.loads(stages.METRICS.read_text())
    assert served[2].stdout.strip() == "evaluate: " + ", ".join(f"{k}={v}" for k, v in scores.items())
    failed = stage_command(project, "train", "--params", "nope.yaml")
    assert failed.returncode == 1 and "stage train failed: nope.yaml: no such file" in failed.stderr
    unknown = stage_command(project, "deploy")
    assert unknown.returncode == 2 and "invalid choice: 'deploy'" in unknown.stderr


@needs_server
def test_without_a_server_the_command_runs_by_itself(project, monkeypatch):
    monkeypatch.setenv(stage_server.SERVER_ENV, str(project / "no-such.sock"))
    assert stage_server.run_on_server(["validate"]) is None
    done = stage_command(project, "validate")
    assert done.returncode == 0 and done.stdout.startswith("validate: ")


def alive(pid: int) -> bool:
    """True while ``pid`` runs; a zombie (dead, waiting for a parent that never reaps it, as under some
    container inits) counts as stopped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@needs_server
def test_stage_server_stops_when_its_parent_dies(tmp_path):
    script = ("import os, sys; from mlops_course.stage_server import StageServer; "
              "s = StageServer(sys.argv[1]).start(wait=True); print(s.process.pid, flush=True); os._exit(0)")
    started = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True,
                             check=True, timeout=120)
    pid = int(started.stdout)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if not alive(pid):
            break
        time.sleep(0.1)
    else:
        os.kill(pid, 9)
        pytest.fail("the stage server outlived the process that started it")
    assert not (tmp_path / "stages.sock").exists()
