import pandas as pd
import pytest

from mlops_course import data

CSV = data.default_path()


@pytest.fixture(scope="module")
def bikes():
    return data.load_bikeshare()


def test_shipped_file_loads_with_dtypes(bikes):
    assert len(bikes) == 8645
    assert list(bikes.columns) == data.COLUMNS
    assert bikes["mnth"].cat.ordered and list(bikes["mnth"].cat.categories) == data.MONTHS
    assert bikes["hr"].dtype == "int64" and bikes["temp"].dtype == "float64"
    assert (bikes["casual"] + bikes["registered"] == bikes["bikers"]).all()


def test_checksum_mismatch_names_file_and_hash(tmp_path):
    copy = tmp_path / data.DATA_FILE
    raw = bytearray(CSV.read_bytes())
    raw[500] = ord("9") if raw[500] != ord("9") else ord("8")
    copy.write_bytes(bytes(raw))
    with pytest.raises(data.ChecksumError) as err:
        data.verify_checksum(copy)
    assert data.EXPECTED_SHA256 in str(err.value) and data.DATA_FILE in str(err.value)
    before = copy.read_bytes()
    with pytest.raises(data.ChecksumError):
        data.load_bikeshare(copy)
    assert copy.read_bytes() == before


def write(tmp_path, text, name="bad.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_missing_file_is_clear(tmp_path):
    with pytest.raises(data.DataError, match="no such file"):
        data.load_bikeshare(tmp_path / "nope.csv")


def test_empty_file(tmp_path):
    with pytest.raises(data.DataError, match="empty"):
        data.load_bikeshare(write(tmp_path, ""), verify=False)


def test_wrong_column_is_named(tmp_path):
    text = CSV.read_text().replace('"temp"', '"temperature"', 1)
    with pytest.raises(data.DataError, match=r"missing column\(s\) \['temp'\]"):
        data.load_bikeshare(write(tmp_path, text), verify=False)


def test_wrong_type_names_column_and_line(tmp_path):
    lines = CSV.read_text().splitlines()
    fields = lines[3].split(",")
    fields[8] = "warm"  # temp
    lines[3] = ",".join(fields)
    with pytest.raises(data.DataError, match=r"'temp' must be numeric.*line\(s\) 4"):
        data.load_bikeshare(write(tmp_path, "\n".join(lines)), verify=False)


def test_duplicated_header_row(tmp_path):
    lines = CSV.read_text().splitlines()
    lines.insert(10, lines[0])
    with pytest.raises(data.DataError, match="line"):
        data.load_bikeshare(write(tmp_path, "\n".join(lines)), verify=False)


def test_truncated_file(tmp_path):
    text = CSV.read_text()
    with pytest.raises(data.DataError):
        data.load_bikeshare(write(tmp_path, text[: len(text) // 2 - 7]), verify=False)


def test_unknown_category(tmp_path):
    text = CSV.read_text().replace('"clear"', '"sunny"', 1)
    with pytest.raises(data.DataError, match="weathersit.*sunny"):
        data.load_bikeshare(write(tmp_path, text), verify=False)


def test_monthly_batches_in_order(bikes):
    batches = list(data.monthly_batches(bikes))
    assert [m for m, _ in batches] == data.MONTHS
    assert sum(len(b) for _, b in batches) == len(bikes)
    assert set(batches[1][1]["mnth"]) == {"Feb"}


def test_select_months_rejects_unknown(bikes):
    with pytest.raises(data.DataError, match="unknown month"):
        data.select_months(bikes, ["January"])
    assert data.month_number(data.select_months(bikes, ["Dec"])).eq(12).all()


def test_header_only(tmp_path):
    header = CSV.read_text().splitlines()[0]
    with pytest.raises(data.DataError, match="no rows"):
        data.load_bikeshare(write(tmp_path, header + "\n"), verify=False)


def test_coerce_types_on_frame():
    frame = pd.read_csv(CSV, nrows=5)
    assert data.coerce_types(frame)["weathersit"].dtype.name == "category"
