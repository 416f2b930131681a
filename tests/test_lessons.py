import pytest

from mlops_course.course import lessons


def test_catalogue_is_numbered_and_named_in_one_style():
    numbers = [info.number for info in lessons.CATALOGUE]
    assert numbers == [f"{i:02d}" for i in range(10)]
    for info in lessons.CATALOGUE:
        assert info.stem.startswith(info.number + "-") and " " not in info.stem


@pytest.mark.parametrize("name", ["0", "00", "00-Introduction_to_MLOps", "00-Introduction_to_MLOps.ipynb",
                                  "notebooks/00-Introduction_to_MLOps.ipynb"])
def test_find(name):
    assert lessons.find(name).number == "00"


def test_unknown_lesson():
    with pytest.raises(lessons.UnknownLessonError, match="unknown lesson 'nine'"):
        lessons.find("nine")


def test_module_table_links_every_lesson():
    text = lessons.module_table()
    md = lessons.module_table(markdown=True)
    for info in lessons.CATALOGUE:
        assert info.title in text and f"[{info.title}]({info.filename})" in md
    assert lessons.find("06").title == "CI/CD for ML"


def test_notebooks_readme_has_current_table():
    from conftest import NOTEBOOKS

    readme = (NOTEBOOKS / "README.md").read_text()
    assert lessons.module_table(markdown=True) in readme, "run `python -m mlops_course.course.lessons` and paste it"


@pytest.mark.parametrize("info", lessons.CATALOGUE, ids=lambda info: info.number)
def test_one_estimate_of_minutes_per_lesson(info):
    """The catalogue's minutes (the module table), the lesson's own "Estimated time" and the instructor note's
    timing say the same number."""
    import re

    import yaml
    from conftest import NOTEBOOKS

    stated = re.findall(r"Estimated time:\*\* (\d+) minutes", info.path.read_text())
    note = yaml.safe_load((NOTEBOOKS / "instructor_notes.yml").read_text())[info.number]["timing"]
    assert stated == [str(info.minutes)], f"{info.filename} states {stated}, the catalogue {info.minutes}"
    assert note.startswith(f"{info.minutes} minutes"), f"the instructor note says {note.split(':')[0]!r}"
