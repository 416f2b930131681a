"""The rendered course site in a real browser: headless Chromium (Debian's ``chromium``) driven over the Chrome
DevTools Protocol opens every page from a local HTTP server on 127.0.0.1.

Per page: the title, every image loaded (lesson pages with figures show at least one), no request leaving
127.0.0.1, no console error or failed load. The search box finds lessons offline. Screenshots go to
``build/screenshots/``. If Chromium is missing and cannot be installed, the tests fail (never skip).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest
from conftest import LESSON_FILES

from mlops_course import editions, lessons, paths, site
from mlops_course.process import BackgroundServer

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
         "--disable-default-apps", "--disable-extensions", "--disable-dev-shm-usage", "--hide-scrollbars",
         "--mute-audio", "--no-default-browser-check", "--window-size=1280,900"]
SCREENSHOTS = paths.build_dir() / "screenshots"


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


@pytest.fixture(scope="module")
def chromium_path():
    return ensure_chromium()


@pytest.fixture(scope="module")
def served_site(tmp_path_factory):
    """The learner site rendered into a temp folder and served by ``python -m http.server`` on 127.0.0.1."""
    root = tmp_path_factory.mktemp("site")
    report = site.render_site(root / "site", "learner")
    server = BackgroundServer([sys.executable, "-m", "http.server", "{port}", "--bind", "127.0.0.1",
                               "--directory", str(report.out_dir)],
                              log_file=root / "http.log", health_path="/index.html", name="http.server")
    with server:
        yield report, server.url


@pytest.fixture(scope="module")
def browser(chromium_path, tmp_path_factory):
    profile = tmp_path_factory.mktemp("chromium-profile")  # a fresh --user-data-dir for every run
    command = [chromium_path, *FLAGS, f"--user-data-dir={profile}", "--remote-debugging-address=127.0.0.1",
               "--remote-debugging-port={port}", "about:blank"]
    server = BackgroundServer(command, log_file=profile.parent / "chromium.log", health_path="/json/version",
                              startup_timeout=60, name="chromium")
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


def expected_images(path: Path) -> int:
    """Figures a lesson page of the learner edition should show (image outputs of the kept cells)."""
    nb = editions.build("learner", path)
    return sum(1 for cell in nb.cells for out in cell.get("outputs", [])
               if any(kind.startswith("image/") for kind in out.get("data", {})))


IMAGES = "Array.from(document.images).map(i => ({src: i.getAttribute('src'), w: i.naturalWidth}))"


def test_home_page(browser, served_site):
    _, url = served_site
    events = browser.open(url + "/index.html")
    assert problems(events, url) == []
    assert browser.evaluate("document.title") == f"Course overview · {site.SITE_NAME}"
    images = browser.evaluate(IMAGES)
    assert [i["src"] for i in images] == ["assets/lifecycle.png"] and images[0]["w"] > 0
    links = browser.evaluate("Array.from(document.querySelectorAll('table.modules a')).map(a => a.textContent)")
    assert links == [lessons.find(p.name).title for p in LESSON_FILES]
    browser.screenshot(SCREENSHOTS / "home.png")


@pytest.mark.parametrize("path", LESSON_FILES, ids=[p.stem for p in LESSON_FILES])
def test_lesson_page(browser, served_site, path):
    _, url = served_site
    events = browser.open(f"{url}/{path.stem}.html")
    assert problems(events, url) == []
    heading = nbformat.read(path, as_version=4).cells[0].source.splitlines()[0].lstrip("# ").strip()
    assert browser.evaluate("document.title") == f"{heading} · {site.SITE_NAME}"
    assert browser.evaluate("document.querySelector('main h1').textContent.replace('¶', '').trim()") == heading
    images = browser.evaluate(IMAGES)
    broken = [i["src"] for i in images if i["w"] == 0]
    assert not broken, f"images that did not load: {broken}"
    figures = [i for i in images if i["src"].startswith(f"{path.stem}_files/")]
    assert len(figures) == expected_images(path), "every stored figure of the lesson should be on its page"
    if expected_images(path):
        assert figures, "the lesson has figures but none loaded"
    current = browser.evaluate("document.querySelector('.sidebar li.current a').getAttribute('href')")
    assert current == f"{path.stem}.html"
    pager = browser.evaluate("Array.from(document.querySelectorAll('.pager a')).map(a => a.getAttribute('href'))")
    assert pager, "no previous/next links"
    browser.screenshot(SCREENSHOTS / f"lesson-{path.name[:2]}.png")
    if figures:
        browser.evaluate(f"document.querySelector('img[src^=\"{path.stem}_files/\"]')"
                         ".scrollIntoView({block: 'center'})")
        browser.screenshot(SCREENSHOTS / f"lesson-{path.name[:2]}-figure.png")


def test_the_lessons_have_figures_to_check(served_site):
    report, _ = served_site
    assert report.images >= 1, "no lesson page shows a figure: the browser test could not check one loaded"


def test_search_box_finds_lessons_offline(browser, served_site):
    _, url = served_site
    last = lessons.find(LESSON_FILES[-1].name)
    browser.open(url + "/index.html")
    search = """(query => {
        const input = document.getElementById('search-input');
        input.value = query;
        input.dispatchEvent(new Event('input'));
        const box = document.getElementById('search-results');
        return {hidden: box.hidden, links: Array.from(box.querySelectorAll('a')).map(a => a.getAttribute('href'))};
    })"""
    hits = browser.evaluate(f"{search}({json.dumps(last.title.lower())})")
    assert not hits["hidden"] and hits["links"]
    assert all(link.split("#")[0].endswith(".html") for link in hits["links"])
    assert hits["links"][0].startswith(f"{last.stem}.html"), "a lesson's title finds that lesson first"
    browser.screenshot(SCREENSHOTS / "search.png")
    events = browser.open(url + "/search.html?q=nonexistentwordxyz")
    assert problems(events, url) == []
    assert browser.evaluate("document.getElementById('search-summary').textContent") == \
        "0 section(s) match “nonexistentwordxyz”."
    events = browser.open(url + "/search.html?q=lifecycle")
    assert problems(events, url) == []
    assert browser.evaluate("document.querySelectorAll('#search-page-results a').length") >= 1


def test_a_request_to_the_internet_is_caught(browser, served_site, tmp_path):
    """The check itself can fail: a page that loads a script from another host is reported. (The other host
    is 127.0.0.2, still loopback, so this test sends nothing off the machine.)"""
    report, url = served_site
    bad = report.out_dir / "bad.html"
    bad.write_text('<html><head><script src="http://127.0.0.2:9/cdn.js"></script></head>'
                   '<body><img src="missing.png"></body></html>')
    try:
        events = browser.open(url + "/bad.html")
    finally:
        bad.unlink()
    found = problems(events, url)
    assert "request left 127.0.0.1: http://127.0.0.2:9/cdn.js" in found
    assert any("HTTP 404" in p and "missing.png" in p for p in found)

