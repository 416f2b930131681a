"""Headless Chromium (Debian's ``chromium``) driven over the Chrome DevTools Protocol, for the tests that
load pages in a real browser (the course site, JupyterLab). If Chromium is missing and cannot be installed,
the tests fail (never skip)."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from mlops_course.process import BackgroundServer

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
         "--disable-default-apps", "--disable-extensions", "--disable-dev-shm-usage", "--hide-scrollbars",
         "--mute-audio", "--no-default-browser-check", "--window-size=1280,900"]


def ensure_chromium() -> str:
    """Chromium's path; installs Debian's ``chromium`` package when it is missing (needs root)."""
    if os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    if os.geteuid() != 0:
        pytest.fail(f"{CHROMIUM} is missing and this test is not root, so it cannot install it: run "
                    "`apt-get update && apt-get install -y chromium` as root (or `make test` as root)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update"], ["apt-get", "install", "-y", "chromium"]):
        try:
            done = subprocess.run(command, check=False, capture_output=True, text=True, env=env,
                                  timeout=1200)
        except (OSError, subprocess.TimeoutExpired) as exc:
            pytest.fail(f"could not install Chromium for the browser test: `{' '.join(command)}` failed: {exc}")
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).splitlines()[-8:])
            pytest.fail(f"could not install Chromium for the browser test: `{' '.join(command)}` exited "
                        f"{done.returncode}:\n{tail}")
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"apt-get installed `chromium` but {CHROMIUM} is not there")
    return CHROMIUM


class DevTools:
    """A minimal Chrome DevTools Protocol client for one page target (commands and the events they cause)."""

    def __init__(self, port: int):
        import websocket  # websocket-client, installed with jupyter-server

        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as response:
            targets = json.load(response)
        page = next(t for t in targets if t["type"] == "page")
        self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=60, suppress_origin=True)
        self.next_id = 0
        self.events: list[dict] = []

    def send(self, method: str, **params) -> dict:
        self.next_id += 1
        self.ws.settimeout(60)
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            if "method" in message:
                self.events.append(message)

    def wait_for(self, event: str, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        seen = len(self.events)
        while time.monotonic() < deadline:
            for message in self.events[seen:]:
                if message["method"] == event:
                    return message
            seen = len(self.events)
            self.ws.settimeout(max(0.1, deadline - time.monotonic()))
            message = json.loads(self.ws.recv())
            if "method" in message:
                self.events.append(message)
        raise TimeoutError(f"no {event} within {timeout} s")

    def evaluate(self, expression: str):
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression[:80]}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def open(self, url: str) -> list[dict]:
        """Navigate and wait for the load event; return the events the page caused."""
        self.events.clear()
        self.send("Page.navigate", url=url)
        self.wait_for("Page.loadEventFired")
        self.evaluate("new Promise(r => requestAnimationFrame(() => setTimeout(r, 50)))")
        return list(self.events)

    def screenshot(self, target: Path) -> Path:
        data = self.send("Page.captureScreenshot", format="png")["data"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(base64.b64decode(data))
        return target

    def close(self) -> None:
        self.ws.close()


def problems(events: list[dict], origin: str) -> list[str]:
    """Requests that left the local server, console errors, exceptions and failed or 4xx/5xx loads."""
    found = []
    for event in events:
        method, params = event["method"], event.get("params", {})
        if method == "Network.requestWillBeSent":
            url = params["request"]["url"]
            if not url.startswith((origin + "/", "data:", "about:")):
                found.append(f"request left 127.0.0.1: {url}")
        elif method == "Network.responseReceived" and params["response"]["status"] >= 400:
            found.append(f"HTTP {params['response']['status']} for {params['response']['url']}")
        elif method == "Network.loadingFailed":
            found.append(f"load failed: {params.get('errorText')} ({params.get('type')})")
        elif method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
            found.append("console error: " + " ".join(str(a.get("value", a.get("description", "")))
                                                       for a in params.get("args", [])))
        elif method == "Runtime.exceptionThrown":
            found.append(f"exception: {params['exceptionDetails'].get('text')}")
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            found.append(f"console error: {params['entry'].get('text')} {params['entry'].get('url', '')}")
    return found


@contextlib.contextmanager
def browser_session(profile: Path):
    """Chromium on a fresh profile, remote debugging on 127.0.0.1, with Page, Network, Runtime and Log events on."""
    command = [ensure_chromium(), *FLAGS, f"--user-data-dir={profile}", "--remote-debugging-address=127.0.0.1",
               "--remote-debugging-port={port}", "about:blank"]
    server = BackgroundServer(command, log_file=profile.parent / f"{profile.name}-chromium.log",
                              health_path="/json/version", startup_timeout=60, name="chromium")
    with server:
        tools = DevTools(server.port)
        try:
            for domain in ("Page", "Network", "Runtime", "Log"):
                tools.send(f"{domain}.enable")
            tools.send("Emulation.setDeviceMetricsOverride", width=1280, height=900, deviceScaleFactor=1,
                       mobile=False)
            yield tools
        finally:
            tools.close()
