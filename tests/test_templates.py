import pytest

from mlops_course import cicd, templates


def test_render_fills_every_placeholder_once():
    text = templates.render("image-base.Dockerfile", python="3.12", requirements="<<python>>.txt")
    assert text.startswith("FROM python:3.12-slim")
    assert "COPY <<python>>.txt ." in text  # a value is not searched for placeholders


def test_render_names_what_is_missing_or_unused():
    with pytest.raises(ValueError, match=r"no value for \['requirements'\]"):
        templates.render("image-base.Dockerfile", python="3.12")
    with pytest.raises(ValueError, match=r"no placeholder for \['port'\]"):
        templates.render("image-base.Dockerfile", python="3.12", requirements="r.txt", port=80)


def test_an_unknown_template_is_named():
    with pytest.raises(FileNotFoundError, match="no template 'nope.yml'"):
        templates.read("nope.yml")


def test_the_suite_written_is_the_packaged_files_with_the_ci_window(tmp_path):
    for path in cicd.write_test_suite(tmp_path):
        text = path.read_text()
        assert "<<" not in text
        if path.name == "conftest.py":
            assert 'os.environ.get("BIKE_TRAIN_MONTHS", "Jan,Feb,March,April,May")' in text
            assert 'os.environ.get("BIKE_TEST_MONTH", "June")' in text
        else:
            assert text == templates.read(f"ci_suite/{path.name}")
