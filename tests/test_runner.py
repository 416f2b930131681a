import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from mlops_course.course import lessons, runner


def test_parse_parameters_types_values():
    assert runner.parse_parameters(["n=3", "rate=0.5", "months=[Jan, Feb]", "name=forest", "empty="]) == {
        "n": 3, "rate": 0.5, "months": ["Jan", "Feb"], "name": "forest", "empty": ""}


@pytest.mark.parametrize("bad", ["n", "=3", "1x=2", "a b=1"])
def test_parse_parameters_rejects(bad):
    with pytest.raises(runner.ParameterError, match="NAME=VALUE"):
        runner.parse_parameters([bad])


def test_lesson_parameters_and_check():
    info = lessons.find("00")
    params = runner.lesson_parameters(info.path)
    assert "n_estimators" in params
    runner.check_parameters(info, {"n_estimators": 3})
    with pytest.raises(runner.ParameterError, match="no parameter"):
        runner.check_parameters(info, {"nope": 1})


def fake_lesson(tmp_path, cells, monkeypatch):
    nb = new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                            "language": "python"}})
    path = tmp_path / "00-Fake.ipynb"
    nbformat.write(nb, path)
    monkeypatch.setattr(lessons.LessonInfo, "path", property(lambda self: path))
    return lessons.LessonInfo("00", "00-Fake", 1, "", "")


def test_execute_reports_failing_cell(tmp_path, monkeypatch):
    info = fake_lesson(tmp_path, [new_markdown_cell("# x"), new_code_cell("x = 1"),
                                  new_code_cell("raise ValueError('broken on purpose')")], monkeypatch)
    result = runner.execute(info, tmp_path / "out", progress=False)
    assert result.status == "failed"
    assert "cell [2]" in result.error and "ValueError" in result.error and "broken on purpose" in result.error
    written = nbformat.read(result.output, as_version=4)  # the output is kept for reading, error included
    assert [o["ename"] for c in written.cells for o in c.get("outputs", []) if "ename" in o] == ["ValueError"]
    table = runner.summary_table([result])
    assert "failed" in table and "broken on purpose" in table and "0/1" in table


def test_refresh_keeps_source_on_failure_and_strips_metadata(tmp_path, monkeypatch):
    info = fake_lesson(tmp_path, [new_code_cell("print(6 * 7)")], monkeypatch)
    result = runner.refresh(info, progress=False)
    assert result.status == "ok"
    nb = nbformat.read(info.path, as_version=4)
    assert nb.cells[0].outputs[0]["text"] == "42\n" and nb.cells[0].execution_count == 1
    assert "papermill" not in nb.metadata and "papermill" not in nb.cells[0].metadata
    bad = fake_lesson(tmp_path, [new_code_cell("1/0")], monkeypatch)
    before = info.path.read_text()
    assert runner.refresh(bad, progress=False).status == "failed"
    assert info.path.read_text() == before
