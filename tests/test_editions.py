"""Learner and instructor editions: no solution leaks into the learner edition, the instructor edition has all
of it plus a note per lesson, and every learner notebook still runs top to bottom with "not yet" feedback."""

import subprocess
import sys

import nbformat
import pytest
from conftest import LESSON_FILES, NOTEBOOKS
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from mlops_course.course import editions, lessons

ids = [p.stem for p in LESSON_FILES]


def tags(cell):
    return cell.get("metadata", {}).get("tags", [])


def text_of(nb) -> str:
    """Every source and every textual output of a notebook, as one string."""
    parts = []
    for cell in nb.cells:
        parts.append(cell.source)
        for out in cell.get("outputs", []):
            parts.append("".join(out.get("text", "")))
            parts.extend("".join(v) for k, v in out.get("data", {}).items() if k.startswith("text/"))
    return "\n".join(parts)


def distinctive_lines(nb) -> dict[int, list[str]]:
    """Per solution cell, its lines that appear in no other cell's source: what would give the solution away."""
    others = "\n".join(c.source for c in nb.cells if editions.SOLUTION_TAG not in tags(c))
    found = {}
    for i, cell in enumerate(nb.cells):
        if editions.SOLUTION_TAG in tags(cell):
            lines = [line.strip() for line in cell.source.splitlines()]
            found[i] = [line for line in lines if len(line) >= 6 and not line.startswith("#") and line not in others]
    return found


# ------------------------------------------------------------------------------------------ a small lesson


def small_lesson():
    """A lesson-shaped notebook: title, a figure-less output, one exercise with stored (correct) outputs."""
    stub = new_code_cell("answer = None", execution_count=2)
    stub.outputs = [new_output("stream", name="stdout", text="stub ran\n")]
    solution = new_code_cell("answer = 6 * 7  # the secret", execution_count=3, metadata={"tags": ["solution"]})
    check = new_code_cell('check("00.1", answer)', execution_count=4)
    check.outputs = [new_output("stream", name="stdout", text="Exercise 00.1: [correct] 42 it is.\n")]
    kept = new_code_cell("print('kept')", execution_count=1)
    kept.outputs = [new_output("stream", name="stdout", text="kept\n")]
    nb = new_notebook(cells=[new_markdown_cell("# 00 · Small\n\n**Learning objectives**"), kept, stub, solution,
                             check, new_markdown_cell("## Summary")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


def test_learner_notebook_removes_solutions_and_clears_exercise_outputs():
    nb = small_lesson()
    learner = editions.learner_notebook(nb)
    assert [c.source for c in learner.cells] == [c.source for i, c in enumerate(nb.cells) if i != 3]
    stub, check = learner.cells[2], learner.cells[3]
    assert stub.outputs == [] and stub.execution_count is None
    assert check.outputs == [] and check.execution_count is None
    assert learner.cells[1].outputs[0]["text"] == "kept\n" and learner.cells[1].execution_count == 1
    assert "6 * 7" not in text_of(learner) and "[correct]" not in text_of(learner)
    assert learner.metadata["mlops_course"] == {"edition": "learner"}
    assert len(nb.cells) == 6 and nb.cells[4].outputs, "the full notebook must not be changed"
    nbformat.validate(learner)


def test_instructor_notebook_adds_the_note_after_the_title():
    note = editions.InstructorNote("00", "10 minutes.", ("mixing up A and B",), ("why A?",))
    full = editions.instructor_notebook(small_lesson(), note)
    assert full.cells[1].cell_type == "markdown" and full.cells[1].metadata["tags"] == [editions.NOTE_TAG]
    assert "mixing up A and B" in full.cells[1].source and "why A?" in full.cells[1].source
    assert full.metadata["mlops_course"]["instructor_note"]["timing"] == "10 minutes."
    assert "6 * 7" in text_of(full) and "[correct]" in text_of(full)
    nbformat.validate(full)


@pytest.mark.parametrize("broken,message", [
    (lambda nb: nb.cells.pop(4), "must be followed by a cell that calls check"),
    (lambda nb: nb.cells.__setitem__(2, new_markdown_cell("stub?")), "must be a code cell after the exercise's"),
])
def test_misplaced_solution_cell_is_refused(broken, message):
    nb = small_lesson()
    broken(nb)
    with pytest.raises(editions.EditionError, match=message):
        editions.learner_notebook(nb, "00-Small.ipynb")


def test_unknown_edition():
    with pytest.raises(editions.EditionError, match="unknown edition 'teacher': use one of learner, instructor"):
        editions.check_edition("teacher")


# ------------------------------------------------------------------------------------------ notes


def test_every_lesson_of_the_course_has_a_note():
    notes = editions.load_notes()
    assert sorted(notes) == [info.number for info in lessons.CATALOGUE]


@pytest.mark.parametrize("path", LESSON_FILES, ids=ids)
def test_every_lesson_in_notebooks_has_a_full_note(path):
    notes = editions.load_notes()
    number = path.name[:2]
    assert number in notes, f"{path.name} has no instructor note in notebooks/instructor_notes.yml"
    note = notes[number]
    assert "minutes" in note.timing and len(note.mistakes) >= 2 and len(note.discussion) >= 2


@pytest.mark.parametrize("text,message", [
    ("- just a list", "must map lesson numbers"),
    ("'42': {timing: t, mistakes: [a], discussion: [b]}", "lesson 42: no such lesson"),
    ("'00': {timing: t, mistakes: [a]}", "needs exactly the fields"),
    ("'00': {timing: t, mistakes: [], discussion: [b]}", "mistakes must be a non-empty list"),
    ("'00': {timing: '', mistakes: [a], discussion: [b]}", "timing must be a non-empty text"),
    ("'00':\n  timing: t\n  mistakes: [a]\n  discussion:\n    - why: because\n", "quote a text that contains"),
    ("'00': [unclosed", "is not valid YAML"),
])
def test_malformed_notes_get_a_clear_error(tmp_path, text, message):
    path = tmp_path / "notes.yml"
    path.write_text(text)
    with pytest.raises(editions.EditionError, match=message):
        editions.load_notes(path)


def test_missing_notes_file(tmp_path):
    with pytest.raises(editions.EditionError, match="no instructor notes at"):
        editions.load_notes(tmp_path / "nope.yml")


def test_instructor_edition_refuses_a_lesson_without_note(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    nbformat.write(small_lesson(), source / "00-Introduction_to_MLOps.ipynb")
    notes = tmp_path / "notes.yml"
    notes.write_text("'01': {timing: t, mistakes: [a], discussion: [b]}\n")
    with pytest.raises(editions.EditionError, match="00-Introduction_to_MLOps.ipynb has no instructor note"):
        editions.write_edition("instructor", tmp_path / "out", source=source, notes_path=notes)
    assert not (tmp_path / "out").exists(), "nothing is written when a lesson cannot be made"


# ------------------------------------------------------------------------------------------ the real lessons


@pytest.fixture(scope="module")
def both_editions(tmp_path_factory):
    root = tmp_path_factory.mktemp("editions")
    learner = editions.write_edition("learner", root / "learner")
    instructor = editions.write_edition("instructor", root / "instructor")
    return learner, instructor


def test_write_edition_writes_every_lesson_and_a_readme(both_editions):
    learner, instructor = both_editions
    assert [p.name for p in learner.notebooks] == [p.name for p in LESSON_FILES]
    assert [p.name for p in instructor.notebooks] == [p.name for p in LESSON_FILES]
    assert learner.solutions_removed >= 3 * len(LESSON_FILES)
    assert "solutions removed" in (learner.out_dir / "README.md").read_text()
    notes = (instructor.out_dir / "INSTRUCTOR_NOTES.md").read_text()
    assert all(f"## {p.stem}" in notes for p in LESSON_FILES)
    assert not (learner.out_dir / "INSTRUCTOR_NOTES.md").exists()


@pytest.mark.parametrize("path", LESSON_FILES, ids=ids)
def test_learner_edition_has_no_solution_and_instructor_edition_has_all(both_editions, path):
    learner_dir, instructor_dir = both_editions[0].out_dir, both_editions[1].out_dir
    full = nbformat.read(path, as_version=4)
    learner = nbformat.read(learner_dir / path.name, as_version=4)
    instructor = nbformat.read(instructor_dir / path.name, as_version=4)
    secrets = distinctive_lines(full)
    assert len(secrets) >= 3
    learner_text, instructor_text = text_of(learner), text_of(instructor)
    for index, lines in secrets.items():
        assert lines, f"{path.name}: solution cell {index} has no line of its own, so a leak could not be seen"
        leaked = [line for line in lines if line in learner_text]
        assert not leaked, f"{path.name}: the learner edition contains solution lines {leaked}"
        assert full.cells[index].source in instructor_text, f"{path.name}: solution cell {index} missing"
    assert not any(editions.SOLUTION_TAG in tags(c) for c in learner.cells)
    assert "[correct]" not in learner_text
    note = editions.load_notes()[path.name[:2]]
    assert note.timing in instructor.cells[1].source and note.timing not in learner_text
    assert "instructor_note" not in learner.metadata.get("mlops_course", {})
    kept = [c for c in full.cells if editions.SOLUTION_TAG not in tags(c)]
    assert [c.source for c in learner.cells] == [c.source for c in kept], "everything else is kept"


# ------------------------------------------------------------------------------------------ command line


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "mlops_course", *args], check=False, capture_output=True,
                          text=True, timeout=300)


def test_cli_writes_an_edition(tmp_path):
    result = run_cli("edition", "learner", "--out", str(tmp_path / "learner"))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "learner edition:" in result.stdout and "solution cells removed" in result.stdout
    written = sorted(p.name for p in (tmp_path / "learner").glob("*.ipynb"))
    assert written == [p.name for p in editions.lesson_files()]


@pytest.mark.parametrize("args,message", [
    (["edition", "teacher", "--out", "x"], "unknown edition 'teacher': use one of learner, instructor"),
    (["edition", "learner", "--out", str(NOTEBOOKS / "learner")], "is inside notebooks/"),
])
def test_cli_bad_edition_input_is_one_line_and_exit_2(args, message):
    result = run_cli(*args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
