"""Lessons run through JupyterLab itself, the way a learner's browser drives it (issue 21).

JupyterLab is started as ``make lab`` starts it (``lab.lab_command``: 127.0.0.1, a token, a free port) with a
learner's environment (none of make's telemetry switches or CI markers; a fresh HOME). For each lesson in
``LESSONS`` the test creates a session through the REST API (kernel cwd: ``notebooks/``) and sends every code
cell over the kernel websocket as ``execute_request`` messages, as the front end does, then:

- fails on any error output, and on outputs that nbval's own comparison rejects against the stored lesson;
- lesson 00: interrupts its longest cell mid-run (the kernel answers KeyboardInterrupt and the cell then runs
  again with the stored output), restarts the kernel and runs every cell again, outputs compared again;
- each lesson that starts servers (``SERVER_CELLS`` of the reliability suite): re-runs the setup cell and then the
  server cell directly (it works, or its error's first line says which cell to run first), then the setup cell
  and every cell up to the server cell in order (a learner re-running a section), with no error;
- after the session is shut down, no process the kernel started is alive and none of them listens.

One headless-Chromium page load of ``/lab`` checks that JupyterLab renders, requests nothing beyond
127.0.0.1, and that its notification settings keep the news and update checks off.
"""

from __future__ import annotations

import ctypes
import json
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import nbformat
import psutil
import pytest
from chromium import browser_session, problems
from conftest import NOTEBOOKS
from reliability import lesson_harness as harness
from reliability.test_reliability_failures import SERVER_CELLS, lesson_file

from mlops_course import process
from mlops_course.course import lab

LESSONS = ("00", "04", "08")
CELL_TIMEOUT = 300
PR_SET_CHILD_SUBREAPER = 36


@pytest.fixture(scope="module")
def learner_home(tmp_path_factory) -> Path:
    """A fresh HOME in which matplotlib built its font cache (otherwise its first import prints a notice)."""
    home = tmp_path_factory.mktemp("lab-home")
    subprocess.run([sys.executable, "-c", "import matplotlib.font_manager"], env=harness._base_env(home),
                   check=True, capture_output=True, timeout=300)
    return home


@pytest.fixture(scope="module")
def jupyterlab(learner_home, tmp_path_factory):
    """JupyterLab as ``make lab`` starts it, on a free port, with a learner's environment."""
    # Orphans of a lesson (a server whose kernel died) are re-parented to this process, so none escapes the
    # leftover check.
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    env = harness._base_env(learner_home)
    env["MLOPS_COURSE_WORKSPACE"] = str(tmp_path_factory.mktemp("lab-workspaces"))
    token = uuid.uuid4().hex
    port = process.free_port()
    server = process.BackgroundServer(lab.lab_command(NOTEBOOKS, port=port, token=token, port_retries=0),
                                      port=port, log_file=learner_home / "jupyterlab.log", health_path="/api",
                                      env=env, startup_timeout=90, name="jupyterlab")
    server.env = env  # exactly the learner's environment, not this process's plus it
    with server:
        yield Lab(server, token)


class Lab:
    """JupyterLab's REST API with the token."""

    def __init__(self, server: process.BackgroundServer, token: str):
        self.server, self.token = server, token
        self.http = httpx.Client(base_url=server.url, headers={"Authorization": f"token {token}"}, timeout=60)

    def api(self, method: str, url: str, **body):
        response = self.http.request(method, url, json=body or None)
        response.raise_for_status()
        return response.json() if response.content else None

    def open(self, notebook: Path) -> KernelSession:
        session = self.api("POST", "/api/sessions", path=notebook.name, type="notebook", name=notebook.name,
                           kernel={"name": "python3"})
        return KernelSession(self, session)


class KernelSession:
    """One notebook's session: its kernel's websocket, as the front end opens it."""

    def __init__(self, lab_: Lab, session: dict):
        import websocket

        self.lab, self.id, self.kernel_id = lab_, session["id"], session["kernel"]["id"]
        self.client_session = uuid.uuid4().hex
        url = (f"ws://127.0.0.1:{lab_.server.port}/api/kernels/{self.kernel_id}/channels"
               f"?session_id={self.client_session}&token={lab_.token}")
        self.ws = websocket.create_connection(url, timeout=CELL_TIMEOUT)
        self.seen: set[tuple[int, float]] = set()
        self._sampling = True
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()
        self.wait_ready()

    def _kernel_tree(self) -> list[psutil.Process]:
        """The kernels JupyterLab runs and every process below them."""
        found = []
        for proc in psutil.Process(self.lab.server.process.pid).children(recursive=True):
            try:
                if "ipykernel_launcher" in proc.cmdline():
                    found += [proc, *proc.children(recursive=True)]
            except psutil.Error:
                continue
        return found

    def _sample(self) -> None:
        while self._sampling:
            for proc in self._kernel_tree():
                try:
                    self.seen.add((proc.pid, proc.create_time()))
                except psutil.Error:
                    pass
            time.sleep(0.2)

    def execute(self, code: str, *, interrupt_after: float | None = None) -> tuple[list, str]:
        """Run ``code`` as the front end does; return the outputs (nbformat dicts) and the reply status."""
        msg_id = uuid.uuid4().hex
        self.ws.send(json.dumps({
            "header": {"msg_id": msg_id, "msg_type": "execute_request", "session": self.client_session,
                       "username": "learner", "version": "5.3", "date": ""},
            "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
            "content": {"code": code, "silent": False, "store_history": True, "user_expressions": {},
                        "allow_stdin": False, "stop_on_error": True}}))
        if interrupt_after is not None:
            interrupt = f"/api/kernels/{self.kernel_id}/interrupt"
            threading.Timer(interrupt_after, lambda: self.lab.api("POST", interrupt)).start()
        outputs, status, idle = [], None, False
        deadline = time.monotonic() + CELL_TIMEOUT
        while status is None or not idle:
            left = deadline - time.monotonic()
            if left <= 0:  # checked here too: unrelated messages arriving would keep recv from timing out
                missing = "its execute_reply" if status is None else "the kernel's idle status on iopub"
                raise AssertionError(f"cell {code[:60]!r}: no {missing} within {CELL_TIMEOUT} s")
            self.ws.settimeout(left)
            message = json.loads(self.ws.recv())
            if message.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind, content = message["header"]["msg_type"], message["content"]
            if message["channel"] == "shell" and kind == "execute_reply":
                status = content["status"]
            elif kind == "status" and content["execution_state"] == "idle":
                idle = True
            elif kind == "clear_output":
                outputs.clear()
            elif kind in ("stream", "display_data", "execute_result", "error"):
                output = {"output_type": kind, **{k: v for k, v in content.items() if k != "transient"}}
                outputs.append(nbformat.from_dict(output))
        return outputs, status

    def run_cells(self, cells) -> list[list]:
        results = []
        for cell in cells:
            outputs, _ = self.execute(cell.source)
            errors = [o for o in outputs if o.output_type == "error"]
            assert not errors, f"cell {cell.source[:60]!r} failed: {errors[0].ename}: {errors[0].evalue}"
            results.append(outputs)
        return results

    def restart(self) -> None:
        self.lab.api("POST", f"/api/kernels/{self.kernel_id}/restart")
        self.wait_ready()

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Ask for kernel_info until the kernel answers on both channels, as the front end does on connecting
        and after a restart.

        A request sent before the restarted kernel's channels are connected can be dropped, and so can iopub
        messages: the reply on shell alone does not prove that iopub is connected, and a cell whose idle status
        is lost would wait for it forever. The idle status of the kernel_info request on iopub does."""
        import websocket

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg_id = uuid.uuid4().hex
            self.ws.send(json.dumps({
                "header": {"msg_id": msg_id, "msg_type": "kernel_info_request", "session": self.client_session,
                           "username": "learner", "version": "5.3", "date": ""},
                "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [], "content": {}}))
            replied = idle = False
            answer_by = time.monotonic() + 2.0
            try:
                while not (replied and idle) and time.monotonic() < answer_by:
                    self.ws.settimeout(max(0.05, answer_by - time.monotonic()))
                    message = json.loads(self.ws.recv())
                    if message.get("parent_header", {}).get("msg_id") != msg_id:
                        continue
                    kind = message["header"]["msg_type"]
                    replied |= message["channel"] == "shell" and kind == "kernel_info_reply"
                    idle |= kind == "status" and message["content"].get("execution_state") == "idle"
            except websocket.WebSocketTimeoutException:
                pass
            if replied and idle:
                return
        raise AssertionError(f"the kernel did not answer kernel_info on shell and iopub within {timeout:.0f} s")

    def close(self) -> list[str]:
        """Shut the session down; return what it left behind (live processes, listening sockets)."""
        self.ws.close()
        self.lab.api("DELETE", f"/api/sessions/{self.id}")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and self._alive():
            time.sleep(0.2)
        self._sampling = False
        self._sampler.join()
        left = []
        for proc in self._alive():
            try:
                listening = [c.laddr for c in proc.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
                left.append(f"{' '.join(proc.cmdline())[:120]} (pid {proc.pid})"
                            + (f" listening on {listening}" if listening else ""))
            except psutil.Error:
                continue
        for proc in self._alive():  # leave nothing for the next test
            proc.kill()
        return left

    def _alive(self) -> list[psutil.Process]:
        alive = []
        for pid, created in self.seen:
            try:
                proc = psutil.Process(pid)
                if proc.create_time() == created and proc.status() != psutil.STATUS_ZOMBIE:
                    alive.append(proc)
            except psutil.Error:
                continue
        return alive


def code_cells(path: Path):
    return [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]


def mismatches(path: Path, ran: list[list], tmp_path: Path, session) -> list[str]:
    """nbval's comparison of what ran with the stored lesson (see ``lesson_harness.nbval_mismatches``)."""
    nb = nbformat.read(path, as_version=4)
    for cell, outputs in zip([c for c in nb.cells if c.cell_type == "code"], ran, strict=True):
        cell.outputs = outputs
    executed = tmp_path / path.name
    nbformat.write(nb, executed)
    return harness.nbval_mismatches(executed, path, session)


@pytest.mark.parametrize("number", LESSONS)
def test_lesson_runs_through_jupyterlab(number, jupyterlab, tmp_path, request):
    path = lesson_file(number)
    cells = code_cells(path)
    kernel = jupyterlab.open(path)
    try:
        differ = mismatches(path, kernel.run_cells(cells), tmp_path, request.session)
        assert not differ, f"{path.stem} through JupyterLab:\n" + "\n".join(differ)
        if number == "00":
            check_interrupt_restart_and_rerun(kernel, path, cells, tmp_path, request.session)
        if number in SERVER_CELLS:
            check_rerun_from_setup_through_server_cell(kernel, number, cells)
    finally:
        left = kernel.close()
    assert not left, f"{path.stem}: left behind after the session was shut down:\n  " + "\n  ".join(left)


def check_interrupt_restart_and_rerun(kernel, path, cells, tmp_path, session):
    # The lesson's slowest cell (the comparison over many splits), interrupted half a second in.
    slowest = next(i for i, c in enumerate(cells) if "test_accuracies(" in c.source and "def " in c.source)
    outputs, status = kernel.execute(cells[slowest].source, interrupt_after=0.5)
    assert status == "error" and any(o.output_type == "error" and o.ename == "KeyboardInterrupt" for o in outputs)
    again, _ = kernel.execute(cells[slowest].source)
    # Only the re-run cell is new: the others keep their stored outputs for the comparison.
    filled = [again if i == slowest else cell.outputs for i, cell in enumerate(cells)]
    differ = mismatches(path, filled, tmp_path, session)
    assert not differ, "the interrupted cell, run again:\n" + "\n".join(differ)
    kernel.restart()
    rerun = kernel.run_cells(cells)
    problems_after_restart = mismatches(path, rerun, tmp_path, session)
    assert not problems_after_restart, "after a kernel restart:\n" + "\n".join(problems_after_restart)


def check_rerun_from_setup_through_server_cell(kernel, number, cells):
    marker, _ = SERVER_CELLS[number]
    setup = next(i for i, c in enumerate(cells) if "setup_lesson(" in c.source)
    server = next((i for i, c in enumerate(cells) if marker in c.source), None)
    assert server is not None, f"lesson {number}: no cell contains {marker!r} (update SERVER_CELLS)"
    # The setup cell again, then straight to the server cell: it works, or says in its first line which
    # cell to run first (the new workspace has none of the earlier cells' state).
    kernel.run_cells([cells[setup]])
    outputs, status = kernel.execute(cells[server].source)
    if status != "ok":
        error = next(o for o in outputs if o.output_type == "error")
        first_line = str(error.evalue).strip().splitlines()[0] if str(error.evalue).strip() else ""
        assert "first" in first_line and len(first_line) <= 240, (
            f"lesson {number}: after re-running the setup cell, the server cell fails with {error.ename} whose "
            f"first line does not say what to run first: {first_line[:300]!r}")
    # The whole section again, in order, from the setup cell: no error.
    kernel.run_cells(cells[setup:server + 1])


def test_jupyterlab_page_renders_offline_with_news_and_updates_off(jupyterlab, tmp_path):
    settings = jupyterlab.api("GET", "/lab/api/settings/@jupyterlab/apputils-extension:notification")
    defaults = {name: spec["default"] for name, spec in settings["schema"]["properties"].items()}
    assert defaults["fetchNews"] == "false" and defaults["checkForUpdates"] is False
    assert jupyterlab.api("GET", "/lab/api/news") == {"news": []}
    with browser_session(tmp_path / "profile") as browser:
        events = browser.open(f"{jupyterlab.server.url}/lab?token={jupyterlab.token}")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not browser.evaluate(
                "!!document.querySelector('#jp-main-dock-panel') && !!document.querySelector('.jp-LauncherCard')"):
            time.sleep(0.5)
        assert browser.evaluate("!!document.querySelector('#jp-main-dock-panel')"), "JupyterLab did not render"
        events += list(browser.events)
    left = [p for p in problems(events, jupyterlab.server.url) if p.startswith("request left")]
    assert not left, "\n".join(left)


def test_the_leftover_check_sees_a_process_the_kernel_left(jupyterlab):
    kernel = jupyterlab.open(NOTEBOOKS / "leftover-probe.ipynb")  # a session needs no file on disk
    outputs, status = kernel.execute(
        "import subprocess, sys\n"
        "stray = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'], start_new_session=True)")
    assert status == "ok", outputs
    time.sleep(0.5)  # one sampling round
    left = kernel.close()
    assert any("time.sleep(120)" in line for line in left), left
