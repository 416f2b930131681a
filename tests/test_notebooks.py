"""Every lesson: well-formed, executed in order with stored outputs, one parameters cell, exercises with checks.

Running the lessons is tested elsewhere: ``tests/test_reliability.py`` executes each one with papermill (offline,
checked for leftovers and stray writes, outputs compared with nbval's comparison), and nbval
(``pytest --nbval notebooks``, part of ``make test``) compares each stored output with a fresh run.
"""

import re

import nbformat
import pytest
from conftest import LESSON_FILES

from mlops_course.course import lessons

IGNORE_TAGS = {"nbval-ignore-output", "nbval-skip", "raises-exception"}
ABSOLUTE_PATH = re.compile(r"(/work/|/root/|/home/|/tmp/|/private/var/|[A-Z]:\\\\Users)")
ids = [p.stem for p in LESSON_FILES]


def test_there_are_lessons():
    assert LESSON_FILES, "notebooks/ has no lessons"
    assert LESSON_FILES[0].name == "00-Introduction_to_MLOps.ipynb"


def test_the_notebooks_are_the_catalogue():
    # every notebook is in the module table, and every lesson of the table has its notebook
    assert {p.name for p in LESSON_FILES} == {info.filename for info in lessons.CATALOGUE}


@pytest.fixture(params=LESSON_FILES, ids=ids)
def nb(request):
    return request.param, nbformat.read(request.param, as_version=4)


def test_valid_nbformat_and_kernel(nb):
    _, book = nb
    nbformat.validate(book)
    assert book.metadata["kernelspec"]["name"] == "python3"


def test_code_cells_executed_in_order_with_outputs(nb):
    path, book = nb
    code = [c for c in book.cells if c.cell_type == "code"]
    counts = [c.execution_count for c in code]
    assert counts == list(range(1, len(code) + 1)), f"{path.name}: execution counts {counts}"
    errors = [c.execution_count for c in code for o in c.outputs if o.output_type == "error"]
    assert not errors, f"{path.name}: error outputs stored in cells {errors}"


def test_one_parameters_cell(nb):
    path, book = nb
    tagged = [c for c in book.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and tagged[0].cell_type == "code", f"{path.name}: {len(tagged)} parameters cells"


def test_first_and_last_cells(nb):
    path, book = nb
    first, last = book.cells[0], book.cells[-1]
    assert first.cell_type == "markdown" and first.source.startswith("# ")
    assert "learning objectives" in first.source.lower()
    assert last.cell_type == "markdown" and "summary" in last.source.lower()
    stems = [info.stem for info in lessons.CATALOGUE]
    position = stems.index(path.stem)
    if position + 1 < len(stems):
        assert f"({stems[position + 1]}.ipynb)" in last.source, f"{path.name}: no link to the next lesson"


def test_at_most_two_cells_escape_nbval(nb):
    path, book = nb
    escaping = [i for i, c in enumerate(book.cells) if IGNORE_TAGS & set(c.metadata.get("tags", []))]
    assert len(escaping) <= 2, f"{path.name}: cells {escaping} escape nbval"


def test_no_absolute_paths_stored(nb):
    path, book = nb
    for cell in book.cells:
        texts = [cell.source]
        for out in cell.get("outputs", []):
            texts.append(out.get("text", ""))
            texts.extend(v for k, v in out.get("data", {}).items() if k.startswith("text/"))
        for text in texts:
            text = "".join(text) if isinstance(text, list) else text
            match = ABSOLUTE_PATH.search(text)
            assert not match, f"{path.name}: absolute path {match.group(0)!r} in a cell: {text[:200]!r}"


def test_exercises_have_solution_and_check(nb):
    path, book = nb
    solutions = [i for i, c in enumerate(book.cells) if "solution" in c.metadata.get("tags", [])]
    assert len(solutions) >= 3, f"{path.name}: {len(solutions)} solution cells, need at least 3 exercises"
    for i in solutions:
        after = book.cells[i + 1]
        assert after.cell_type == "code" and "check(" in after.source, f"{path.name}: no check after cell {i}"
        outputs = "".join(o.get("text", "") for o in after.outputs)
        assert "[correct]" in outputs, f"{path.name}: the check after cell {i} did not pass: {outputs!r}"
