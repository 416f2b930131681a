"""Learner and instructor editions of the lessons, made from the stored notebooks without running them.

- **learner**: every ``solution``-tagged cell removed, and the outputs of the exercise cells around it (the stub
  before it, the check after it) cleared, so no answer or ``[correct]`` verdict gives the solution away. All
  other cells keep their stored outputs. The stubs stay ``None``, so the checks print ``[not yet]`` feedback and
  the notebook still runs top to bottom.
- **instructor**: the full lessons with solutions, plus the lesson's instructor note (timing, common mistakes,
  discussion questions) from ``notebooks/instructor_notes.yml`` as a markdown cell after the title and in the
  notebook metadata. The learner edition never contains the notes.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

from mlops_course import paths
from mlops_course.course import lessons

EDITIONS = ("learner", "instructor")
SOLUTION_TAG = "solution"
NOTE_TAG = "instructor-note"
NOTE_FIELDS = ("timing", "mistakes", "discussion")


class EditionError(ValueError):
    """Bad input for an edition: unknown edition name, a malformed note file, a misplaced output folder."""


def notes_file() -> Path:
    """The side file with one instructor note per lesson."""
    return paths.notebooks_dir() / "instructor_notes.yml"


def check_edition(name: str) -> str:
    """Return ``name`` if it is an edition, else raise ``EditionError`` naming the editions."""
    if name not in EDITIONS:
        raise EditionError(f"unknown edition {name!r}: use one of {', '.join(EDITIONS)}")
    return name


# ---------------------------------------------------------------------------------------------------- notes


@dataclass(frozen=True)
class InstructorNote:
    """What an instructor should know before teaching one lesson."""

    number: str
    timing: str
    mistakes: tuple[str, ...]
    discussion: tuple[str, ...]

    def markdown(self) -> str:
        """The note as a markdown block (the cell the instructor edition inserts after the title)."""
        lines = [f"> **Instructor note (lesson {self.number})**", ">", f"> **Timing.** {self.timing}", ">",
                 "> **Common mistakes**", ">"]
        lines += [f"> - {item}" for item in self.mistakes]
        lines += [">", "> **Discussion questions**", ">"]
        lines += [f"> - {item}" for item in self.discussion]
        return "\n".join(lines)

    def as_dict(self) -> dict:
        return {"timing": self.timing, "mistakes": list(self.mistakes), "discussion": list(self.discussion)}


def _text(value, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        hint = " (quote a text that contains ': ')" if isinstance(value, dict) else ""
        raise EditionError(f"{where} must be a non-empty text, got {value!r}{hint}")
    return " ".join(value.split())


def load_notes(path: Path | None = None) -> dict[str, InstructorNote]:
    """Read the instructor notes: a mapping of lesson number (``"00"``) to timing, mistakes, discussion."""
    import yaml

    path = Path(path) if path else notes_file()
    if not path.is_file():
        raise EditionError(f"no instructor notes at {path}: write one note per lesson there")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise EditionError(f"{path.name} is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise EditionError(f"{path.name} must map lesson numbers (\"00\", \"01\" ...) to notes")
    known = {info.number for info in lessons.CATALOGUE}
    notes = {}
    for key, body in raw.items():
        number = f"{key:02d}" if isinstance(key, int) else str(key)
        where = f"{path.name}, lesson {number}"
        if number not in known:
            raise EditionError(f"{where}: no such lesson; use one of {', '.join(sorted(known))} (quoted)")
        if not isinstance(body, dict) or set(body) != set(NOTE_FIELDS):
            got = sorted(body) if isinstance(body, dict) else type(body).__name__
            raise EditionError(f"{where}: needs exactly the fields {list(NOTE_FIELDS)}, got {got}")
        lists = {}
        for name in ("mistakes", "discussion"):
            items = body[name]
            if not isinstance(items, list) or not items:
                raise EditionError(f"{where}: {name} must be a non-empty list")
            lists[name] = tuple(_text(item, f"{where}: an item of {name}") for item in items)
        notes[number] = InstructorNote(number, _text(body["timing"], f"{where}: timing"), **lists)
    return notes


# ------------------------------------------------------------------------------------------------ exercises


@dataclass(frozen=True)
class Exercise:
    """Cell positions of one exercise in a full notebook: stub, solution and check."""

    stub: int
    solution: int
    check: int


def _tags(cell) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def exercises(nb, name: str = "notebook") -> list[Exercise]:
    """The exercises of a full notebook; raise ``EditionError`` when a solution cell is not between a stub
    code cell and a ``check(...)`` cell (the learner edition could not be made safely then)."""
    found = []
    for i, cell in enumerate(nb.cells):
        if SOLUTION_TAG not in _tags(cell):
            continue
        before = nb.cells[i - 1] if i > 0 else None
        after = nb.cells[i + 1] if i + 1 < len(nb.cells) else None
        if cell.cell_type != "code" or before is None or before.cell_type != "code":
            raise EditionError(f"{name}: solution cell {i} must be a code cell after the exercise's stub cell")
        if after is None or after.cell_type != "code" or "check(" not in after.source:
            raise EditionError(f"{name}: solution cell {i} must be followed by a cell that calls check(...)")
        found.append(Exercise(i - 1, i, i + 1))
    return found


def _clear(cell) -> None:
    cell.outputs = []
    cell.execution_count = None


def _stamp(nb, edition: str, **extra) -> None:
    nb.metadata["mlops_course"] = {"edition": edition, **extra}


def learner_notebook(nb, name: str = "notebook"):
    """A copy of a full lesson without solutions: solution cells removed, exercise outputs cleared."""
    learner = copy.deepcopy(nb)
    found = exercises(learner, name)
    for ex in found:
        _clear(learner.cells[ex.stub])
        _clear(learner.cells[ex.check])
    drop = {ex.solution for ex in found}
    learner.cells = [cell for i, cell in enumerate(learner.cells) if i not in drop]
    _stamp(learner, "learner")
    return learner


def instructor_notebook(nb, note: InstructorNote, name: str = "notebook"):
    """A copy of a full lesson with its instructor note after the title cell and in the metadata."""
    import nbformat

    exercises(nb, name)  # the same structural checks as the learner edition
    full = copy.deepcopy(nb)
    cell = nbformat.v4.new_markdown_cell(note.markdown())
    cell.metadata["tags"] = [NOTE_TAG]
    cell["id"] = NOTE_TAG
    full.cells.insert(1, cell)
    _stamp(full, "instructor", instructor_note=note.as_dict())
    return full


# --------------------------------------------------------------------------------------------------- output


@dataclass
class EditionReport:
    edition: str
    out_dir: Path
    notebooks: list[Path] = field(default_factory=list)
    solutions_removed: int = 0

    def __str__(self) -> str:
        what = (f"{self.solutions_removed} solution cells removed" if self.edition == "learner"
                else "solutions and instructor notes included")
        return (f"{self.edition} edition: {len(self.notebooks)} lesson(s) written to {self.out_dir} ({what})")


def lesson_files(source: Path | None = None) -> list[Path]:
    """The lesson notebooks of a folder (default ``notebooks/``) in course order."""
    source = Path(source) if source else paths.notebooks_dir()
    if not source.is_dir():
        raise EditionError(f"no lessons folder at {source}")
    return sorted(source.glob("[0-9][0-9]-*.ipynb"))


def build(edition: str, path: Path, notes: dict[str, InstructorNote] | None = None):
    """One lesson file in the given edition, as a notebook object (nothing is executed or written)."""
    import nbformat

    check_edition(edition)
    nb = nbformat.read(path, as_version=4)
    if edition == "learner":
        return learner_notebook(nb, path.name)
    number = path.name[:2]
    notes = load_notes() if notes is None else notes
    if number not in notes:
        raise EditionError(f"{path.name} has no instructor note: add lesson \"{number}\" to {notes_file().name}")
    return instructor_notebook(nb, notes[number], path.name)


def _check_out_dir(out_dir: Path) -> Path:
    out_dir = Path(out_dir).resolve()
    protected = paths.notebooks_dir().resolve()
    if out_dir == protected or protected in out_dir.parents:
        raise EditionError(f"--out {out_dir} is inside notebooks/: choose a folder outside it (e.g. build/)")
    if out_dir.exists() and not out_dir.is_dir():
        raise EditionError(f"--out {out_dir} is a file, not a folder")
    return out_dir


EDITION_README = {
    "learner": (
        "# MLOps course: learner edition\n\n"
        "These lessons have their solutions removed. Run each notebook from the top; fill in the exercise\n"
        "cells (`answer = None`) and run the check below each one: it prints `[correct]` or `[not yet]` with a\n"
        "hint. Unanswered exercises never stop the notebook.\n"),
    "instructor": (
        "# MLOps course: instructor edition\n\n"
        "The full lessons with solutions. Each notebook starts with an instructor note (timing, common\n"
        "mistakes, discussion questions); all notes are also in `INSTRUCTOR_NOTES.md`. Do not hand this\n"
        "edition to learners: `mlops-course edition learner` makes theirs.\n"),
}


def write_edition(edition: str, out_dir: Path, source: Path | None = None,
                  notes_path: Path | None = None) -> EditionReport:
    """Write every lesson of ``source`` (default ``notebooks/``) in one edition to ``out_dir``."""
    import nbformat

    check_edition(edition)
    out_dir = _check_out_dir(out_dir)
    files = lesson_files(source)
    if not files:
        raise EditionError(f"no lessons (NN-Title.ipynb) in {source or paths.notebooks_dir()}")
    notes = load_notes(notes_path) if edition == "instructor" else None
    books = [(path, build(edition, path, notes)) for path in files]  # all checks pass before anything is written
    out_dir.mkdir(parents=True, exist_ok=True)
    report = EditionReport(edition, out_dir)
    for path, nb in books:
        nbformat.validate(nb)
        target = out_dir / path.name
        nbformat.write(nb, target)
        report.notebooks.append(target)
        if edition == "learner":
            report.solutions_removed += len(exercises(nbformat.read(path, as_version=4), path.name))
    (out_dir / "README.md").write_text(EDITION_README[edition], encoding="utf-8")
    if edition == "instructor":
        parts = ["# Instructor notes\n"]
        for path, _ in books:
            parts.append(f"## {path.stem}\n\n{notes[path.name[:2]].markdown()}\n")
        (out_dir / "INSTRUCTOR_NOTES.md").write_text("\n".join(parts), encoding="utf-8")
    return report
