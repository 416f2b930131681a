"""The package's layers (see ``mlops_course/__init__.py``): nothing outside ``mlops_course.course`` imports it."""

import ast
from pathlib import Path

import mlops_course

PACKAGE = Path(mlops_course.__file__).parent
TOOLING = {"cli", "runner", "lessons", "editions", "site", "doctor", "lab"}


def imported_modules(path: Path) -> set[str]:
    """Every ``mlops_course...`` module a file imports, at its top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
            found.add(node.module)
    return {name for name in found if name.startswith("mlops_course")}


def test_the_tooling_lives_in_its_own_subpackage():
    assert {p.stem for p in (PACKAGE / "course").glob("*.py")} == TOOLING | {"__init__"}
    assert not TOOLING & {p.stem for p in PACKAGE.glob("*.py")}, "a tooling module is back at the top level"


def test_no_lesson_module_imports_the_course_tooling():
    offenders = {}
    for path in PACKAGE.rglob("*.py"):
        if path.parent == PACKAGE / "course" or path == PACKAGE / "__main__.py":  # python -m mlops_course: the CLI
            continue
        bad = sorted(m for m in imported_modules(path) if m.split(".")[:2] == ["mlops_course", "course"])
        if bad:
            offenders[str(path.relative_to(PACKAGE))] = bad
    assert not offenders, f"lifecycle or plumbing modules importing mlops_course.course: {offenders}"


def test_no_notebook_imports_the_course_tooling():
    notebooks = PACKAGE.parent / "notebooks"
    found = [nb.name for nb in notebooks.glob("*.ipynb") if "mlops_course.course" in nb.read_text()]
    assert not found, f"lessons importing the course's tooling: {found}"


def test_the_checker_sees_a_tooling_import(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    from mlops_course.course import lessons\n")
    assert "mlops_course.course.lessons" in imported_modules(sample)
