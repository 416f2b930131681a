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
from pathlib import Path

from mlops_course import editions, lessons, paths

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
    """Lesson links point at the lesson pages; links to lessons not written yet and to repository files
    (``../data/README.md``) become plain text, so the site has no broken link."""

    def lesson(match: re.Match) -> str:
        stem, anchor, text = match.group(1), match.group(2) or "", match.group(3)
        if stem in available:
            return f'<a href="{stem}.html{anchor}">{text}</a>'
        return f'<span class="coming" title="this lesson is not written yet">{text} (coming)</span>'

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

SETUP_MD = """
On a Debian or Ubuntu machine with `python3` (3.11 or newer), `git` and `make`, from the repository root:

```bash
make run    # create .venv from the lock file, execute every lesson, print a table
make lab    # JupyterLab on notebooks/, bound to 127.0.0.1
make test   # the whole test suite: unit tests, notebook hygiene, papermill, nbval, this site in a browser
```

Everything runs offline on a laptop: no cloud account, no downloads while a lesson runs. Each lesson works in a
fresh folder of its own under `workspaces/`, and every server it starts binds 127.0.0.1 and stops with it.

Two editions of the notebooks, and this site:

```bash
.venv/bin/mlops-course edition learner --out build/learner        # solutions removed, checks say "not yet"
.venv/bin/mlops-course edition instructor --out build/instructor  # solutions and instructor notes
make site                                                         # this site (learner edition) in build/site
make site EDITION=instructor                                      # the instructor edition of the site
```
"""


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

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }} · {{ site_name }}</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="assets/pygments.css">
<link rel="stylesheet" href="assets/style.css">
</head>
<body class="edition-{{ edition }}">
<header class="topbar">
  <a class="brand" href="index.html">{{ site_name }}</a>
  <span class="badge" title="{{ edition_help }}">{{ edition }} edition</span>
  <form class="search" action="search.html" role="search" autocomplete="off">
    <input id="search-input" type="search" name="q" placeholder="Search the course" aria-label="Search the course">
    <div id="search-results" class="search-results" hidden></div>
  </form>
</header>
<div class="layout">
<nav class="sidebar" aria-label="Lessons">
  <a class="home{% if current == 'index' %} current{% endif %}" href="index.html">Course overview</a>
  <ol class="lessons">
  {%- for item in nav %}
    <li{% if item.current %} class="current"{% endif %}>
    {%- if item.href %}<a href="{{ item.href }}">{{ item.number }} · {{ item.title }}</a>
    {%- else %}<span class="coming">{{ item.number }} · {{ item.title }} (coming)</span>{% endif %}
    {%- if item.current and toc %}
      <ul class="toc">{% for anchor, text in toc %}<li><a href="#{{ anchor }}">{{ text }}</a></li>{% endfor %}</ul>
    {%- endif %}</li>
  {%- endfor %}
  </ol>
</nav>
<main class="content" id="content">
{{ pager }}
{{ body }}
{{ pager }}
</main>
</div>
<footer class="footer">{{ site_name }} · code and text MIT, data CC BY 4.0 · rendered from the stored notebooks,
works offline</footer>
<script src="assets/search_index.js"></script>
<script src="assets/search.js"></script>
</body>
</html>
"""

PAGER = """<nav class="pager" aria-label="Previous and next lesson">
{%- if prev %}<a class="prev" href="{{ prev.href }}">← {{ prev.label }}</a>{% else %}<span></span>{% endif %}
{%- if next %}<a class="next" href="{{ next.href }}">{{ next.label }} →</a>{% else %}<span></span>{% endif %}
</nav>"""

HOME = """<h1>{{ title }}</h1>
<figure class="diagram">
<img src="assets/lifecycle.png" alt="The MLOps lifecycle: data, model, deployment, monitoring and feedback in a loop">
<figcaption>The loop the course walks around: each lesson takes one or two of its stages.</figcaption>
</figure>
<section class="hero">
{{ intro }}
</section>
<h2 id="lessons">Lessons</h2>
<div class="table-wrap"><table class="modules">
<thead><tr><th>#</th><th>Lesson</th><th>Minutes</th><th>Tools</th><th>What you do</th></tr></thead>
<tbody>
{%- for info in catalogue %}
<tr><td>{{ info.number }}</td>
<td>{% if info.stem in available %}<a href="{{ info.stem }}.html">{{ info.title }}</a>
{%- else %}<span class="coming">{{ info.title }} (coming)</span>{% endif %}</td>
<td class="num">{{ info.minutes }}</td><td>{{ info.tools }}</td><td>{{ info.summary }}</td></tr>
{%- endfor %}
</tbody></table></div>
<h2 id="set-up">How to set up</h2>
{{ setup }}
<h2 id="edition">This edition</h2>
<p>{{ edition_help }}</p>
"""

SEARCH_PAGE = """<h1>Search</h1>
<p id="search-summary">Type in the search box above.</p>
<ol id="search-page-results" class="search-page-results"></ol>
"""

EDITION_HELP = {
    "learner": "The learner edition: solutions are removed and the exercise cells are empty, so you can work "
               "them out yourself. Each check prints [not yet] until your answer is right.",
    "instructor": "The instructor edition: the full lessons with their solutions, and an instructor note "
                  "(timing, common mistakes, discussion questions) at the top of each lesson.",
}

STYLE = """
:root { --fg: #1f2328; --muted: #59636e; --line: #d1d9e0; --bg-code: #f6f8fa; --accent: #2f6f9f;
        --sidebar: 17rem; --mono: "DejaVu Sans Mono", "Liberation Mono", Menlo, Consolas, monospace; }
* { box-sizing: border-box; }
html { scroll-padding-top: 4rem; }
body { margin: 0; color: var(--fg); background: #fff; line-height: 1.6; font-size: 16px;
       font-family: system-ui, -apple-system, "Segoe UI", "DejaVu Sans", "Liberation Sans", sans-serif; }
a { color: var(--accent); }
.topbar { position: sticky; top: 0; z-index: 10; display: flex; align-items: center; gap: 1rem;
          padding: .55rem 1.25rem; background: #24313d; color: #fff; }
.topbar .brand { color: #fff; font-weight: 700; text-decoration: none; font-size: 1.05rem; }
.badge { font-size: .75rem; padding: .1rem .55rem; border-radius: 1rem; background: #e8b339; color: #24313d;
         font-weight: 600; white-space: nowrap; }
.edition-instructor .badge { background: #e46f5a; color: #fff; }
.search { margin-left: auto; position: relative; }
.search input { width: 19rem; max-width: 45vw; padding: .35rem .6rem; border-radius: .35rem; border: 0;
                font-size: .95rem; }
.search-results { position: absolute; right: 0; top: 2.4rem; width: 30rem; max-width: 92vw; max-height: 70vh;
                  overflow: auto; background: #fff; color: var(--fg); border: 1px solid var(--line);
                  border-radius: .4rem; box-shadow: 0 8px 24px rgba(0,0,0,.18); padding: .3rem 0; }
.search-results a, .search-page-results a { display: block; padding: .35rem .8rem; text-decoration: none;
                  color: var(--fg); }
.search-results a:hover, .search-results a.active { background: #eef4f9; }
.hit-title { font-weight: 600; color: var(--accent); }
.hit-page { font-size: .8rem; color: var(--muted); }
.hit-text { display: block; font-size: .85rem; color: var(--muted); }
.search-empty { padding: .35rem .8rem; color: var(--muted); }
.layout { display: flex; align-items: flex-start; }
.sidebar { position: sticky; top: 3rem; flex: 0 0 var(--sidebar); max-height: calc(100vh - 3rem);
           overflow-y: auto; padding: 1.2rem 1rem 2rem 1.25rem; border-right: 1px solid var(--line);
           font-size: .92rem; }
.sidebar a { text-decoration: none; }
.sidebar .home { display: block; font-weight: 600; margin-bottom: .6rem; }
.sidebar .home.current, .sidebar li.current > a { color: var(--fg); font-weight: 700; }
.sidebar ol { list-style: none; padding: 0; margin: 0; }
.sidebar li { margin: .3rem 0; }
.sidebar .toc { list-style: none; padding-left: .8rem; margin: .3rem 0 .5rem; border-left: 2px solid var(--line);
                font-size: .85rem; }
.sidebar .toc a { color: var(--muted); }
.coming { color: var(--muted); }
.content { flex: 1 1 auto; min-width: 0; max-width: 60rem; padding: 1rem 2rem 3rem; }
.footer { border-top: 1px solid var(--line); color: var(--muted); font-size: .8rem; padding: .8rem 1.25rem; }
h1, h2, h3 { line-height: 1.25; }
h1 { font-size: 2rem; margin-top: .6rem; }
h2 { margin-top: 2.2rem; padding-bottom: .25rem; border-bottom: 1px solid var(--line); }
.anchor-link { visibility: hidden; margin-left: .35rem; text-decoration: none; color: var(--muted); }
h1:hover .anchor-link, h2:hover .anchor-link, h3:hover .anchor-link { visibility: visible; }
code, pre { font-family: var(--mono); }
code { font-size: .86em; background: var(--bg-code); padding: .1em .3em; border-radius: .25rem; }
pre { margin: 0; font-size: 13px; line-height: 1.45; white-space: pre; overflow-x: auto; }
pre code { background: none; padding: 0; font-size: inherit; }
.rendered_html pre, .highlight { background: var(--bg-code); border-radius: .35rem; }
.rendered_html > pre { padding: .7rem .9rem; border: 1px solid var(--line); }
table { border-collapse: collapse; font-size: .9rem; margin: .8rem 0; }
th, td { border: 1px solid var(--line); padding: .3rem .6rem; text-align: left; vertical-align: top; }
thead th { background: #f0f3f6; }
td.num, .dataframe td { text-align: right; font-variant-numeric: tabular-nums; }
.rendered_html table { display: block; max-width: 100%; overflow-x: auto; }
.table-wrap { max-width: 100%; overflow-x: auto; }
img { max-width: 100%; height: auto; }
.cell { margin: .9rem 0; }
.prompt { display: none; }
.input_area { border: 1px solid var(--line); border-radius: .35rem; overflow: hidden; }
div.highlight { padding: .6rem .85rem; margin: .8rem 0; border: 1px solid var(--line); overflow-x: auto; }
.input_area div.highlight { margin: 0; border: 0; border-radius: 0; }
.output_wrapper { margin-top: .35rem; }
.output_area { margin: .25rem 0; }
.output_subarea { padding: .15rem 0 .15rem .85rem; border-left: 3px solid #c8d7e3; max-width: 100%;
                  overflow-x: auto; }
.output_text pre { max-height: 34rem; overflow: auto; font-size: 12.5px; }
.output_stderr { border-left-color: #e0a96d; background: #fff8ee; }
.output_error { border-left-color: #d1242f; }
table.dataframe { border: 0; }
.output_png img { max-width: min(100%, 52rem); display: block; }
.output_html { font-size: .92rem; }
.celltag_solution .input_area { border-color: #8cc08f; }
.celltag_solution .input_area::before { content: "Solution"; display: block; padding: .15rem .85rem;
                  font-size: .75rem; font-weight: 700; color: #2f6b33; background: #e7f3e8; }
.celltag_instructor-note blockquote { margin: 1rem 0; padding: .4rem 1.1rem; background: #fdf1ee;
                  border-left: 4px solid #e46f5a; border-radius: .25rem; }
blockquote { margin: 1rem 0; padding: .2rem 1rem; border-left: 4px solid var(--line); color: #3d454d; }
.hero p { font-size: 1.08rem; }
figure.diagram { float: right; width: 24rem; max-width: 45%; margin: 0 0 1rem 1.5rem; text-align: center; }
figure.diagram img { width: 100%; }
h2#lessons { clear: both; }
figcaption { color: var(--muted); font-size: .9rem; }
.pager { display: flex; justify-content: space-between; gap: 1rem; margin: 1rem 0; font-size: .92rem; }
.pager a { text-decoration: none; border: 1px solid var(--line); border-radius: .35rem; padding: .3rem .7rem; }
.search-page-results { padding-left: 1.2rem; }
.search-page-results li { margin: .4rem 0; }
@media (max-width: 900px) {
  .layout { display: block; }
  .sidebar { position: static; max-height: none; border-right: 0; border-bottom: 1px solid var(--line); }
  .content { padding: 1rem; }
  .search input { width: 12rem; }
}
"""

SEARCH_JS = r"""
(function () {
  "use strict";
  var INDEX = window.COURSE_SEARCH_INDEX || [];

  function terms(query) {
    return query.toLowerCase().split(/\s+/).filter(function (t) { return t.length > 0; });
  }
  function count(text, term) {
    var n = 0, at = text.indexOf(term);
    while (at >= 0 && n < 50) { n += 1; at = text.indexOf(term, at + term.length); }
    return n;
  }
  // Entries that contain every term, best first: title hits weigh most, then how often the terms occur.
  function search(query) {
    var wanted = terms(query), hits = [];
    if (!wanted.length) { return hits; }
    INDEX.forEach(function (entry) {
      var title = (entry.page + " " + entry.title).toLowerCase(), text = entry.text.toLowerCase(), score = 0;
      for (var i = 0; i < wanted.length; i += 1) {
        var inTitle = title.indexOf(wanted[i]) >= 0, n = count(text, wanted[i]);
        if (!inTitle && !n) { return; }
        score += (inTitle ? 20 : 0) + n;
      }
      hits.push({ entry: entry, score: score });
    });
    hits.sort(function (a, b) { return b.score - a.score; });
    return hits.map(function (h) { return h.entry; });
  }
  // About 160 characters around the first term, cut at spaces.
  function snippet(text, query) {
    var first = terms(query)[0] || "", at = Math.max(0, text.toLowerCase().indexOf(first));
    var start = at > 60 ? text.indexOf(" ", at - 60) + 1 : 0, end = text.indexOf(" ", start + 160);
    if (end < 0) { end = text.length; }
    return (start > 0 ? "… " : "") + text.slice(start, end) + (end < text.length ? " …" : "");
  }
  function hitLink(entry, query) {
    var a = document.createElement("a"), title = document.createElement("span"),
        page = document.createElement("span"), text = document.createElement("span");
    a.href = entry.url;
    title.className = "hit-title"; title.textContent = entry.title;
    page.className = "hit-page"; page.textContent = entry.title === entry.page ? "" : " · " + entry.page;
    text.className = "hit-text"; text.textContent = snippet(entry.text, query);
    a.appendChild(title); a.appendChild(page); a.appendChild(text);
    return a;
  }
  function fill(box, query, limit) {
    var hits = search(query).slice(0, limit);
    box.textContent = "";
    if (!hits.length) {
      var none = document.createElement("div");
      none.className = "search-empty"; none.textContent = "No match for “" + query + "”.";
      box.appendChild(none);
    }
    hits.forEach(function (entry) { box.appendChild(hitLink(entry, query)); });
    return hits.length;
  }

  var input = document.getElementById("search-input"), box = document.getElementById("search-results");
  if (input && box) {
    input.addEventListener("input", function () {
      var query = input.value.trim();
      if (!query) { box.hidden = true; return; }
      fill(box, query, 8);
      box.hidden = false;
    });
    input.addEventListener("keydown", function (event) {
      if (event.key === "Escape") { box.hidden = true; input.blur(); }
    });
    document.addEventListener("click", function (event) {
      if (!box.contains(event.target) && event.target !== input) { box.hidden = true; }
    });
  }

  var list = document.getElementById("search-page-results");
  if (list) {
    var query = (new URLSearchParams(window.location.search).get("q") || "").trim();
    var summary = document.getElementById("search-summary");
    if (input) { input.value = query; }
    if (query) {
      var hits = search(query);
      summary.textContent = hits.length + " section(s) match “" + query + "”.";
      hits.forEach(function (entry) {
        var li = document.createElement("li");
        li.appendChild(hitLink(entry, query));
        list.appendChild(li);
      });
    }
  }
  window.courseSearch = search;
})();
"""


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
    page_tpl, pager_tpl = env.from_string(PAGE), env.from_string(PAGER)

    converter = _Converter()
    available = {info.stem for info, _ in books}
    pages = [converter.convert(nb, info, out_dir, available) for info, nb in books]
    common = {"site_name": SITE_NAME, "edition": edition, "edition_help": EDITION_HELP[edition]}

    def nav(current: str) -> list[dict]:
        made = {page.info.stem: page for page in pages}
        return [{"number": info.number, "title": info.title, "current": info.stem == current,
                 "href": made[info.stem].href if info.stem in made else ""} for info in lessons.CATALOGUE]

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
    home = env.from_string(HOME).render(
        title=title, intro=jinja2.utils.markupsafe.Markup(_markdown(intro)), catalogue=lessons.CATALOGUE,
        available=available, setup=jinja2.utils.markupsafe.Markup(_markdown(SETUP_MD)), **common)
    first = {"href": pages[0].href, "label": pages[0].title}
    report.pages.append(write("index.html", "Course overview", home, "index", next=first))
    for i, page in enumerate(pages):
        prev = ({"href": pages[i - 1].href, "label": pages[i - 1].title} if i else
                {"href": "index.html", "label": "Course overview"})
        nxt = {"href": pages[i + 1].href, "label": pages[i + 1].title} if i + 1 < len(pages) else None
        report.pages.append(write(page.href, page.title, page.body, page.info.stem, page.toc, prev, nxt))
        report.images += page.images
    write("search.html", "Search", SEARCH_PAGE, "search")

    assets = out_dir / ASSETS
    assets.mkdir()
    _lifecycle_png(assets / "lifecycle.png")
    (assets / "style.css").write_text(STYLE.lstrip(), encoding="utf-8")
    (assets / "pygments.css").write_text(HtmlFormatter(style="default").get_style_defs(".highlight"),
                                         encoding="utf-8")
    index = [entry for page in pages for entry in search_entries(page)]
    (assets / "search_index.js").write_text(
        "window.COURSE_SEARCH_INDEX = " + json.dumps(index, ensure_ascii=False, separators=(",", ":")) + ";\n",
        encoding="utf-8")
    (assets / "search.js").write_text(SEARCH_JS.lstrip(), encoding="utf-8")
    report.seconds = time.perf_counter() - start
    return report
