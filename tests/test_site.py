"""The static course site: pages, figures, links, search index, offline guarantee, editions, bad input.
(tests/test_browser.py opens the same site in headless Chromium.)"""

import html
import json
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from conftest import LESSON_FILES, NOTEBOOKS
from markupsafe import escape
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from mlops_course.course import editions, lessons, site

ids = [p.stem for p in LESSON_FILES]
REFERENCE = re.compile(r'\b(?:href|src)="([^"]+)"')
# A 1x1 PNG, for lessons made up in these tests.
PIXEL = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")


@pytest.fixture(scope="module")
def learner_site(tmp_path_factory):
    return site.render_site(tmp_path_factory.mktemp("learner") / "site", "learner")


@pytest.fixture(scope="module")
def instructor_site(tmp_path_factory):
    return site.render_site(tmp_path_factory.mktemp("instructor") / "site", "instructor")


def page_of(report, path: Path) -> str:
    return (report.out_dir / f"{path.stem}.html").read_text()


def test_site_has_home_search_and_one_page_per_lesson(learner_site):
    names = sorted(p.name for p in learner_site.out_dir.glob("*.html"))
    assert names == sorted(["index.html", "search.html", *[f"{p.stem}.html" for p in LESSON_FILES]])
    assert len(learner_site.pages) == len(LESSON_FILES) + 1
    home = (learner_site.out_dir / "index.html").read_text()
    for info in lessons.CATALOGUE:
        assert str(escape(info.summary)) in home, f"summary of {info.number}"
        link = f'<a href="{info.stem}.html">{info.title}</a>'
        assert link in home, f"module table row of {info.number}"
    assert 'src="assets/lifecycle.png"' in home and (learner_site.out_dir / "assets/lifecycle.png").stat().st_size
    words = " ".join(re.sub(r"<[^>]+>", "", home).split())
    assert "How to set up" in words and "make site EDITION=instructor" in words and 'id="search-input"' in home


def test_nothing_is_loaded_from_outside(learner_site, instructor_site):
    for report in (learner_site, instructor_site):
        files = [p for p in report.out_dir.rglob("*") if p.suffix in (".html", ".css", ".js")]
        assert len(files) >= len(LESSON_FILES) + 5
        for path in files:
            text = path.read_text()
            assert site.external_loads(text) == [], path.name
            assert not re.search(r'<script[^>]*src="(?!assets/)', text), f"{path.name}: a script from elsewhere"
            assert "mathjax" not in text.lower() and "require.js" not in text.lower(), path.name


def test_every_local_reference_resolves(learner_site):
    for page in learner_site.out_dir.glob("*.html"):
        text = page.read_text()
        anchors = {html.unescape(a) for a in re.findall(r'\bid="([^"]+)"', text)}
        for ref in map(html.unescape, REFERENCE.findall(text)):
            if ref.startswith(("http://", "https://", "data:", "mailto:")):
                continue
            target, _, anchor = ref.partition("#")
            if not target:
                assert anchor in anchors, f"{page.name}: no anchor #{anchor}"
                continue
            assert (learner_site.out_dir / target).is_file(), f"{page.name} refers to missing {ref}"
            if anchor:
                other = html.unescape((learner_site.out_dir / target).read_text())
                assert f'id="{anchor}"' in other, f"{page.name}: {target} has no anchor #{anchor}"


def stored_figures(path: Path) -> int:
    nb = nbformat.read(path, as_version=4)
    return sum(1 for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {}))


@pytest.mark.parametrize("path", LESSON_FILES, ids=ids)
def test_lesson_page_shows_title_outputs_figures_and_navigation(instructor_site, path):
    page = page_of(instructor_site, path)
    heading = nbformat.read(path, as_version=4).cells[0].source.splitlines()[0].lstrip("# ").strip()
    assert f"<title>{heading} · {site.SITE_NAME}</title>" in page
    figures = re.findall(rf'<img[^>]*src="({re.escape(path.stem)}_files/[^"]+\.png)"', page)
    assert len(figures) == stored_figures(path), "the instructor page shows every stored figure"
    for figure in figures:
        assert (instructor_site.out_dir / figure).read_bytes().startswith(b"\x89PNG")
    assert 'class="pager"' in page and '<li class="current">' in page
    position = [p.stem for p in LESSON_FILES].index(path.stem)
    previous = LESSON_FILES[position - 1].stem + ".html" if position else "index.html"
    assert f'<a class="prev" href="{previous}">' in page
    if position + 1 < len(LESSON_FILES):
        assert f'<a class="next" href="{LESSON_FILES[position + 1].stem}.html">' in page


@pytest.mark.parametrize("path", LESSON_FILES, ids=ids)
def test_learner_pages_hide_solutions_and_instructor_pages_show_them(learner_site, instructor_site, path):
    learner, instructor = page_of(learner_site, path), page_of(instructor_site, path)
    assert "celltag_solution" not in learner and "[correct]" not in learner
    assert "celltag_instructor-note" not in learner and "learner edition" in learner
    full = nbformat.read(path, as_version=4)
    solutions = [c for c in full.cells if editions.SOLUTION_TAG in c.metadata.get("tags", [])]
    assert instructor.count("celltag_solution") == len(solutions) >= 3
    assert "celltag_instructor-note" in instructor and "Instructor note" in instructor
    assert instructor.count("[correct]") >= len(solutions)


def test_search_index_covers_every_section(learner_site):
    text = (learner_site.out_dir / "assets/search_index.js").read_text()
    assert text.startswith("window.COURSE_SEARCH_INDEX = ")
    entries = json.loads(text.split("=", 1)[1].strip().rstrip(";"))
    for path in LESSON_FILES:
        mine = [e for e in entries if e["url"].startswith(f"{path.stem}.html")]
        page = page_of(learner_site, path)
        h2 = re.findall(r'<h2 id="([^"]+)"', page)
        assert {f"{path.stem}.html#{a}" for a in h2} <= {e["url"] for e in mine}
        assert all("¶" not in e["text"] and "<" not in e["title"] for e in mine)
    assert any("Learning objectives" in e["text"] for e in entries)


def test_external_loads_finds_what_a_browser_would_fetch():
    page = ('<script src="https://cdn.example.org/x.js"></script><link rel="stylesheet" href="//fonts.example/f">'
            '<style>body { background: url("http://img.example/b.png") }</style>'
            '<a href="https://mlflow.org/docs/">a link is not a load</a><img src="figure.png">')
    assert site.external_loads(page) == ["https://cdn.example.org/x.js", "//fonts.example/f",
                                         "http://img.example/b.png"]


def made_up_lesson(extra_outputs=()):
    code = new_code_cell("plot()", execution_count=1)
    code.outputs = [new_output("display_data", data={"image/png": PIXEL, "text/plain": "<Figure>"}),
                    *extra_outputs]
    stub = new_code_cell("answer = None", execution_count=2)
    solution = new_code_cell("answer = 42", execution_count=3, metadata={"tags": ["solution"]})
    check = new_code_cell('check("00.1", answer)', execution_count=4)
    nb = new_notebook(cells=[
        new_markdown_cell("# 00 · Made up\n\n**Learning objectives**"), code, stub, solution, check,
        new_markdown_cell("## Summary\n\nNext: [01 · DVC](01-Data_Versioning_with_DVC.ipynb), data in "
                          "[the data README](../data/README.md), back to [00](00-Introduction_to_MLOps.ipynb#Setup)"),
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


def test_links_to_missing_lessons_and_repository_files_become_text(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    nbformat.write(made_up_lesson(), source / "00-Introduction_to_MLOps.ipynb")
    report = site.render_site(tmp_path / "site", "learner", source=source)
    page = (report.out_dir / "00-Introduction_to_MLOps.html").read_text()
    assert '<span class="absent" title="not part of this site">01 · DVC</span>' in page
    assert '<span class="repo-file" title="in the course repository: ../data/README.md">' in page
    assert '<a href="00-Introduction_to_MLOps.html#Setup">00</a>' in page
    assert report.images == 1 and (report.out_dir / "00-Introduction_to_MLOps_files").is_dir()


def test_a_print_stored_in_pieces_renders_as_one_block(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    pieces = [new_output("stream", name="stdout", text=t) for t in ("served by", " v4", "\n")]
    nbformat.write(made_up_lesson(pieces), source / "00-Introduction_to_MLOps.ipynb")
    report = site.render_site(tmp_path / "site", "learner", source=source)
    page = (report.out_dir / "00-Introduction_to_MLOps.html").read_text()
    assert "served by v4" in page


def test_an_output_that_loads_from_outside_is_refused(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    bad = new_output("display_data", data={"text/html": '<script src="https://cdn.example.org/plot.js"></script>'})
    nbformat.write(made_up_lesson([bad]), source / "00-Introduction_to_MLOps.ipynb")
    with pytest.raises(site.SiteError, match="would load https://cdn.example.org/plot.js from outside"):
        site.render_site(tmp_path / "site", "learner", source=source)


def test_a_rerender_replaces_the_old_site_but_a_foreign_folder_is_left_alone(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    nbformat.write(made_up_lesson(), source / "00-Introduction_to_MLOps.ipynb")
    out = tmp_path / "site"
    site.render_site(out, "learner", source=source)
    (out / "stale.html").write_text("old")
    site.render_site(out, "instructor", source=source)
    assert not (out / "stale.html").exists() and "instructor edition" in (out / "index.html").read_text()
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("precious")
    with pytest.raises(site.SiteError, match="non-empty folder that is not a site rendered by mlops-course"):
        site.render_site(foreign, "learner", source=source)
    assert (foreign / "thesis.tex").read_text() == "precious"
    with pytest.raises(site.SiteError, match="would overwrite the course's own files"):
        site.render_site(NOTEBOOKS, "learner", source=source)


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "mlops_course", *args], check=False, capture_output=True,
                          text=True, timeout=300)


def test_cli_renders_a_site(tmp_path):
    result = run_cli("render", "--edition", "instructor", "--out", str(tmp_path / "site"))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "instructor edition site: home page and" in result.stdout
    assert (tmp_path / "site" / "index.html").is_file()


@pytest.mark.parametrize("args,message", [
    (["render", "--edition", "teacher"], "unknown edition 'teacher': use one of learner, instructor"),
    (["render", "--out", str(NOTEBOOKS)], "would overwrite the course's own files"),
])
def test_cli_bad_render_input_is_one_line_and_exit_2(args, message):
    result = run_cli(*args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1

