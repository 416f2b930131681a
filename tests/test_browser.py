"""The rendered course site in a real browser: headless Chromium (Debian's ``chromium``) driven over the Chrome
DevTools Protocol opens every page from a local HTTP server on 127.0.0.1.

Per page: the title, every image loaded (lesson pages with figures show at least one), no request leaving
127.0.0.1, no console error or failed load. The search box finds lessons offline. Screenshots go to
``build/screenshots/``. If Chromium is missing and cannot be installed, the tests fail (never skip).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
import pytest
from chromium import browser_session, problems
from conftest import LESSON_FILES

from mlops_course import paths
from mlops_course.course import editions, lessons, site
from mlops_course.process import BackgroundServer

SCREENSHOTS = paths.build_dir() / "screenshots"


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
def browser(tmp_path_factory):
    with browser_session(tmp_path_factory.mktemp("chromium-profile")) as tools:  # a fresh profile every run
        yield tools


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

