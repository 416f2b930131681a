"""A static, offline HTML site of the course, rendered from the stored (executed) notebooks without running them.

``render_site(out_dir, edition)`` writes a home page (overview, lifecycle diagram, module table, set-up), one
page per lesson of the chosen edition with its stored outputs and figures, a sidebar and previous/next links
between lessons, and a search box that works from a local index (``assets/search_index.js``). Nothing on any
page loads from outside the site: no CDN scripts, no web fonts, no MathJax (LaTeX stays as typed).
Notebook cells become HTML with nbconvert's ``basic`` template (body only, no scripts); figures are written
next to the pages as PNG files.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from mlops_course import paths
from mlops_course.course import editions, lessons

SITE_NAME = "MLOps, hands-on"
MARKER = ".mlops-course-site"  # a folder with this file may be wiped and rebuilt; any other is left alone
ASSETS = "assets"


class SiteError(ValueError):
    """The site cannot be built as asked: a bad output folder, a lesson output that would load from outside."""


@dataclass
class Page:
    """One lesson page: where it goes, its title, its HTML body and its section headings."""

    info: lessons.LessonInfo
    title: str
    body: str
    toc: list[tuple[str, str]]  # (anchor id, heading text) of the h2 sections
    images: int

    @property
    def href(self) -> str:
        return f"{self.info.stem}.html"


@dataclass
class SiteReport:
    edition: str
    out_dir: Path
    pages: list[Path] = field(default_factory=list)
    images: int = 0
    seconds: float = 0.0

    def __str__(self) -> str:
        return (f"{self.edition} edition site: home page and {len(self.pages) - 1} lesson page(s) with "
                f"{self.images} figure(s) in {self.seconds:.1f} s; open {self.out_dir / 'index.html'}")


# -------------------------------------------------------------------------------------- offline guarantees

EXTERNAL_LOAD = re.compile(
    r"""<(?:script|img|iframe|link|source|video|audio|embed|object)\b[^>]*?\b(?:src|href|data)\s*=\s*["']?"""
    r"""((?:https?:)?//[^"'\s>]+)|url\(\s*["']?((?:https?:)?//[^"')\s]+)|@import\s+["']((?:https?:)?//[^"']+)""",
    re.IGNORECASE)


def external_loads(text: str) -> list[str]:
    """URLs outside the site that a page, stylesheet or script would load (links one clicks do not count)."""
    return [next(g for g in match.groups() if g) for match in EXTERNAL_LOAD.finditer(text)]


# ------------------------------------------------------------------------------------------ lesson pages

LESSON_LINK = re.compile(r'<a href="(\d\d-[A-Za-z0-9_]+)\.ipynb(#[^"]*)?">(.*?)</a>', re.DOTALL)
RELATIVE_LINK = re.compile(r'<a href="(?!https?:|mailto:|#|[^"]*\.html)([^"]+)">(.*?)</a>', re.DOTALL)
ANCHOR = re.compile(r'<a class="anchor-link"[^>]*>.*?</a>', re.DOTALL)
HEADING = re.compile(r'<h([1-3]) id="([^"]+)">(.*?)(?:<a class="anchor-link"[^>]*>.*?</a>)?</h\1>', re.DOTALL)
INLINE_TAG = re.compile(r"</?(?:a|b|code|em|i|span|strong|sub|sup)\b[^>]*>")
TAG = re.compile(r"<[^>]+>")


def _plain(fragment: str) -> str:
    return " ".join(html.unescape(TAG.sub(" ", INLINE_TAG.sub("", ANCHOR.sub("", fragment)))).split())


def _rewrite_links(body: str, available: set[str]) -> str:
    """Lesson links point at the lesson pages; links to lessons outside this site (a site rendered from some of
    the lessons) and to repository files (``../data/README.md``) become plain text, so no link is broken."""

    def lesson(match: re.Match) -> str:
        stem, anchor, text = match.group(1), match.group(2) or "", match.group(3)
        if stem in available:
            return f'<a href="{stem}.html{anchor}">{text}</a>'
        return f'<span class="absent" title="not part of this site">{text}</span>'

    def repo_file(match: re.Match) -> str:
        target, text = match.group(1), match.group(2)
        return f'<span class="repo-file" title="in the course repository: {target}">{text}</span>'

    return RELATIVE_LINK.sub(repo_file, LESSON_LINK.sub(lesson, body))


class _Converter:
    """nbconvert's ``basic`` HTML template (cells only, no head, no scripts), figures extracted to files."""

    def __init__(self):
        from nbconvert import HTMLExporter
        from nbconvert.preprocessors import CoalesceStreamsPreprocessor, ExtractOutputPreprocessor

        self.exporter = HTMLExporter(template_name="basic", exclude_input_prompt=True,
                                     exclude_output_prompt=True)
        # A print stored as several stream pieces (a kernel flushes when it likes) reads as one block.
        self.exporter.register_preprocessor(CoalesceStreamsPreprocessor(), enabled=True)
        self.exporter.register_preprocessor(ExtractOutputPreprocessor(), enabled=True)

    def convert(self, nb, info: lessons.LessonInfo, out_dir: Path, available: set[str]) -> Page:
        figure = 0
        for cell in nb.cells:
            for output in cell.get("outputs", []):
                data = output.get("data", {})
                data.pop("application/javascript", None)  # it would run in the reader's browser: not shown
                for mime in [m for m in data if m in ("image/png", "image/jpeg")]:
                    figure += 1
                    meta = output.setdefault("metadata", {}).setdefault(mime, {})
                    meta.setdefault("alt", f"Figure {figure} of lesson {info.number}, {info.title}")
        files_dir = f"{info.stem}_files"
        body, resources = self.exporter.from_notebook_node(
            nb, resources={"output_files_dir": files_dir, "unique_key": "figure"})
        for name, data in resources.get("outputs", {}).items():
            target = out_dir / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        body = _rewrite_links(body, available)
        outside = external_loads(body)
        if outside:
            raise SiteError(f"{info.filename}: a stored output would load {outside[0]} from outside the site; "
                            "show a static summary (text, table or PNG) instead")
        headings = HEADING.findall(body)
        title = next((_plain(text) for level, _, text in headings if level == "1"), info.title)
        toc = [(anchor, _plain(text)) for level, anchor, text in headings if level == "2"]
        return Page(info, title, body, toc, len(resources.get("outputs", {})))


def search_entries(page: Page) -> list[dict]:
    """One search entry per section of a lesson page: the heading, its anchor and the text below it."""
    matches = list(HEADING.finditer(page.body))
    sections = [("", page.title, 0, matches[0].start() if matches else len(page.body))]
    for i, match in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(page.body)
        sections.append((f"#{match.group(2)}", _plain(match.group(3)), match.end(), end))
    entries = []
    for anchor, heading, start, end in sections:
        text = _plain(page.body[start:end])
        if text or anchor:
            entries.append({"url": page.href + anchor, "page": page.title, "title": heading, "text": text})
    return entries


# ------------------------------------------------------------------------------------------ home page



def _readme_intro() -> tuple[str, str]:
    """The course title and first paragraph of the repository README (one source for both)."""
    readme = paths.REPO_ROOT / "README.md"
    text = readme.read_text(encoding="utf-8") if readme.is_file() else ""
    title = next((line[2:].strip() for line in text.splitlines() if line.startswith("# ")), SITE_NAME)
    after = text.split("\n", 1)[1] if "\n" in text else ""
    paragraph = next((p.strip() for p in after.split("\n\n") if p.strip() and not p.lstrip().startswith("#")),
                     "A numbered series of Jupyter notebooks through the whole machine-learning lifecycle.")
    return title, paragraph


def _markdown(text: str) -> str:
    from nbconvert.filters.markdown_mistune import markdown2html_mistune

    return markdown2html_mistune(text)


def _lifecycle_png(target: Path) -> None:
    import matplotlib.pyplot as plt

    from mlops_course.diagrams import lifecycle_diagram

    fig = lifecycle_diagram()
    try:
        fig.savefig(target, dpi=100, bbox_inches="tight")
    finally:
        plt.close(fig)


# ------------------------------------------------------------------------------------------ templates

def site_file(name: str) -> str:
    """A template, stylesheet or script of the site (package data in ``mlops_course/course/site_files/``)."""
    return resources.files("mlops_course.course").joinpath("site_files", name).read_text(encoding="utf-8")






EDITION_HELP = {
    "learner": "The learner edition: solutions are removed and the exercise cells are empty, so you can work "
               "them out yourself. Each check prints [not yet] until your answer is right.",
    "instructor": "The instructor edition: the full lessons with their solutions, and an instructor note "
                  "(timing, common mistakes, discussion questions) at the top of each lesson.",
}




# ------------------------------------------------------------------------------------------ rendering


def _prepare_out_dir(out_dir: Path) -> Path:
    out_dir = Path(out_dir).resolve()
    protected = {paths.REPO_ROOT.resolve(), paths.notebooks_dir().resolve()}
    if out_dir in protected or paths.notebooks_dir().resolve() in out_dir.parents:
        raise SiteError(f"--out {out_dir} would overwrite the course's own files: use e.g. build/site")
    if out_dir.exists():
        if not out_dir.is_dir():
            raise SiteError(f"--out {out_dir} is a file, not a folder")
        if any(out_dir.iterdir()) and not (out_dir / MARKER).exists():
            raise SiteError(f"--out {out_dir} is a non-empty folder that is not a site rendered by "
                            "mlops-course: choose a new or empty folder")
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    (out_dir / MARKER).write_text("rendered by `mlops-course render`; the next render replaces this folder\n")
    return out_dir


def render_site(out_dir: Path, edition: str = "learner", source: Path | None = None,
                notes_path: Path | None = None) -> SiteReport:
    """Render every lesson of ``source`` (default ``notebooks/``) in one edition as a static site."""
    import jinja2
    from pygments.formatters import HtmlFormatter

    start = time.perf_counter()
    editions.check_edition(edition)
    files = editions.lesson_files(source)
    if not files:
        raise SiteError(f"no lessons (NN-Title.ipynb) in {source or paths.notebooks_dir()}")
    notes = editions.load_notes(notes_path) if edition == "instructor" else None
    books = [(lessons.find(path.name), editions.build(edition, path, notes)) for path in files]
    out_dir = _prepare_out_dir(out_dir)
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    page_tpl, pager_tpl = env.from_string(site_file("page.html")), env.from_string(site_file("pager.html"))

    converter = _Converter()
    available = {info.stem for info, _ in books}
    pages = [converter.convert(nb, info, out_dir, available) for info, nb in books]
    common = {"site_name": SITE_NAME, "edition": edition, "edition_help": EDITION_HELP[edition]}

    def nav(current: str) -> list[dict]:
        return [{"number": page.info.number, "title": page.info.title, "current": page.info.stem == current,
                 "href": page.href} for page in pages]

    def write(name: str, title: str, body: str, current: str, toc=(), prev=None, next=None) -> Path:
        pager = pager_tpl.render(prev=prev, next=next) if (prev or next) else ""
        text = page_tpl.render(title=title, body=jinja2.utils.markupsafe.Markup(body),
                               pager=jinja2.utils.markupsafe.Markup(pager), nav=nav(current), toc=list(toc),
                               current=current, **common)
        target = out_dir / name
        target.write_text(text, encoding="utf-8")
        return target

    report = SiteReport(edition, out_dir)
    title, intro = _readme_intro()
    home = env.from_string(site_file("home.html")).render(
        title=title, intro=jinja2.utils.markupsafe.Markup(_markdown(intro)), catalogue=[info for info, _ in books], setup=jinja2.utils.markupsafe.Markup(_markdown(site_file("setup.md"))), **common)
    first = {"href": pages[0].href, "label": pages[0].title}
    report.pages.append(write("index.html", "Course overview", home, "index", next=first))
    for i, page in enumerate(pages):
        prev = ({"href": pages[i - 1].href, "label": pages[i - 1].title} if i else
                {"href": "index.html", "label": "Course overview"})
        nxt = {"href": pages[i + 1].href, "label": pages[i + 1].title} if i + 1 < len(pages) else None
        report.pages.append(write(page.href, page.title, page.body, page.info.stem, page.toc, prev, nxt))
        report.images += page.images
    write("search.html", "Search", site_file("search.html"), "search")

    assets = out_dir / ASSETS
    assets.mkdir()
    _lifecycle_png(assets / "lifecycle.png")
    (assets / "style.css").write_text(site_file("style.css"), encoding="utf-8")
    (assets / "pygments.css").write_text(HtmlFormatter(style="default").get_style_defs(".highlight"),
                                         encoding="utf-8")
    index = [entry for page in pages for entry in search_entries(page)]
    (assets / "search_index.js").write_text(
        "window.COURSE_SEARCH_INDEX = " + json.dumps(index, ensure_ascii=False, separators=(",", ":")) + ";\n",
        encoding="utf-8")
    (assets / "search.js").write_text(site_file("search.js"), encoding="utf-8")
    report.seconds = time.perf_counter() - start
    return report
