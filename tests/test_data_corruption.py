"""Corrupted copies of data/Bikeshare.csv: each gets a clear error from the loader or the validation stage, and
no file is ever changed by reading it.

Every case is a copy in tmp_path. It goes through the three doors the lessons use: ``data.load_bikeshare``
(checksum first), ``load_bikeshare(verify=False)`` (a data version a lesson made) and lesson 01's validate
stage (``stages.validate_file``, which adds ``pipeline.validate``). The error must have the right type and a
message that names what is wrong (line, column, value or checksum) and what to do. test_data.py covers one
example of several kinds; these extend them (other columns and positions, the stage, the file left alone).
"""

import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from mlops_course import data, pipeline, stages

SHIPPED = data.default_path()
OLD_TIME = 978_307_200  # 2001-01-01: copies get this mtime, so any rewrite shows
RESTORE = r"restore it \(`git checkout -- data/Bikeshare\.csv`"
CUT_LINE = 5210  # file line numbers: the header is line 1
ROW_LINE = 4321


def fingerprint(path: Path) -> tuple[str, int, int]:
    stat = path.stat()
    return data.sha256_file(path), stat.st_mtime_ns, stat.st_size


@pytest.fixture(scope="module", autouse=True)
def shipped_file_untouched():
    before = fingerprint(SHIPPED)
    assert before[0] == data.EXPECTED_SHA256
    yield
    assert fingerprint(SHIPPED) == before, "the shipped data/Bikeshare.csv was changed by this module"


@pytest.fixture(scope="module")
def original() -> bytes:
    return SHIPPED.read_bytes()


# ---------------------------------------------------------------- the corruptions
def lines_of(raw: bytes) -> list[bytes]:
    return raw.split(b"\n")  # the last element is b"" (the file ends with a newline)


def joined(lines: list[bytes]) -> bytes:
    return b"\n".join(lines)


def offset_of_line(raw: bytes, number: int) -> int:
    return sum(len(line) + 1 for line in lines_of(raw)[: number - 1])


def cut_in_line(number: int, after: bytes, occurrence: int = 1):
    """Cut the file inside line ``number``, right after the ``occurrence``-th ``after`` in it."""
    def make(raw: bytes) -> bytes:
        start = offset_of_line(raw, number)
        at = start
        for _ in range(occurrence):
            at = raw.index(after, at) + len(after)
        assert at < start + len(lines_of(raw)[number - 1])
        return raw[:at]
    return make


def set_field(number: int, column: str, value: bytes):
    def make(raw: bytes) -> bytes:
        lines = lines_of(raw)
        fields = lines[number - 1].split(b",")
        fields[data.COLUMNS.index(column)] = value
        lines[number - 1] = b",".join(fields)
        return joined(lines)
    return make


def drop_column(column: str):
    def make(raw: bytes) -> bytes:
        i = data.COLUMNS.index(column)
        return joined([b",".join(f for j, f in enumerate(line.split(b",")) if j != i) if line else line
                       for line in lines_of(raw)])
    return make


def rename_in_header(old: bytes, new: bytes):
    def make(raw: bytes) -> bytes:
        lines = lines_of(raw)
        assert old in lines[0]
        lines[0] = lines[0].replace(old, new)
        return joined(lines)
    return make


def header_again_at(number: int):
    def make(raw: bytes) -> bytes:
        lines = lines_of(raw)
        return joined(lines[: number - 1] + [lines[0]] + lines[number - 1:])
    return make


def second_export_appended(raw: bytes) -> bytes:
    lines = lines_of(raw)
    return raw + joined(lines[:4]) + b"\n"  # header and three rows pasted under the file


def tamper_byte(number: int, column: str, new: int, digit: int = -1):
    """Same size, one byte changed: byte ``digit`` of ``column``'s value on line ``number`` becomes ``new``."""
    def make(raw: bytes) -> bytes:
        lines = lines_of(raw)
        fields = lines[number - 1].split(b",")
        i = data.COLUMNS.index(column)
        value = bytearray(fields[i])
        assert value[digit] != new
        value[digit] = new
        fields[i] = bytes(value)
        lines[number - 1] = b",".join(fields)
        out = joined(lines)
        assert len(out) == len(raw)
        return out
    return make


def drop_field(number: int, column: str):
    def make(raw: bytes) -> bytes:
        lines = lines_of(raw)
        fields = lines[number - 1].split(b",")
        del fields[data.COLUMNS.index(column)]
        lines[number - 1] = b",".join(fields)
        return joined(lines)
    return make


@dataclass(frozen=True)
class Corruption:
    make: object  # bytes of the shipped file -> corrupted bytes
    error: type[Exception] | None  # what loading without the checksum raises (None: it loads)
    words: list[str] = field(default_factory=list)  # regexes the message must contain
    stage_error: type[Exception] | None = None  # what lesson 01's validate stage raises, when not StageError


CASES = {
    # truncated: the copy stopped while it was written
    "cut mid-row": Corruption(cut_in_line(CUT_LINE, b",", 6), data.DataError, [
        rf"the last line \(line {CUT_LINE}\) stops after 7 of 15 fields", "cut off", RESTORE]),
    "cut inside a quoted month": Corruption(cut_in_line(CUT_LINE, b'"', 1), data.DataError, [
        rf"the last line \(line {CUT_LINE}\) stops after 2 of 15 fields", "truncated", RESTORE]),
    "cut inside the header": Corruption(cut_in_line(1, b'"day"'), data.DataError, [
        r"the last line \(line 1\) stops after 3 of 15 fields", "cut off", RESTORE]),
    # a column renamed or missing
    "column dropped": Corruption(drop_column("windspeed"), data.DataError, [
        r"missing column\(s\) \['windspeed'\]", r"Expected the columns \['season'"]),
    "column renamed (case)": Corruption(rename_in_header(b'"casual"', b'"Casual"'), data.DataError, [
        r"missing column\(s\) \['casual'\]", r"unexpected column\(s\) \['Casual'\]", "Expected the columns"]),
    "header lost a name": Corruption(rename_in_header(b'"season",', b""), data.DataError, [
        "line 2 has 15 fields, the header has 14", "fix that line", RESTORE]),
    # a wrong type in a numeric column
    "text in an int column": Corruption(set_field(ROW_LINE, "hr", b'"noon"'), data.DataError, [
        rf"column 'hr' must be numeric; bad or missing values at line\(s\) {ROW_LINE} \(e\.g\. 'noon'\)"]),
    "text in a float column": Corruption(set_field(ROW_LINE, "windspeed", b"calm"), data.DataError, [
        rf"column 'windspeed' must be numeric; .*line\(s\) {ROW_LINE} \(e\.g\. 'calm'\)"]),
    "decimal in a count": Corruption(set_field(ROW_LINE, "registered", b"12.5"), data.DataError, [
        rf"column 'registered' must hold whole numbers; see line\(s\) {ROW_LINE}"]),
    "empty field in a count": Corruption(set_field(ROW_LINE, "bikers", b""), data.DataError, [
        rf"column 'bikers' must be numeric; .*line\(s\) {ROW_LINE} \(e\.g\. an empty field\)"]),
    "a field missing on one line": Corruption(drop_field(ROW_LINE, "temp"), data.DataError, [
        f"line {ROW_LINE} has 14 fields, the header has 15", "fix that line"]),
    # the header line again inside the file
    "header repeated mid-file": Corruption(header_again_at(CUT_LINE), data.DataError, [
        rf"line\(s\) {CUT_LINE} repeat the header row", "delete those lines", RESTORE]),
    "second export appended": Corruption(second_export_appended, data.DataError, [
        r"line\(s\) 8647 repeat the header row", "delete those lines"]),
    # empty
    "0 bytes": Corruption(lambda raw: b"", data.DataError, ["the file is empty", RESTORE]),
    "blank lines only": Corruption(lambda raw: b"\n\n\r\n", data.DataError, ["the file is empty", RESTORE]),
    "header only": Corruption(lambda raw: lines_of(raw)[0] + b"\n", data.DataError, [
        "has a header but no rows", RESTORE]),
    "header only, no newline": Corruption(lambda raw: lines_of(raw)[0], data.DataError, [
        "has a header but no rows", RESTORE]),
    # tampered: same size, one byte changed
    "tampered: NUL byte": Corruption(tamper_byte(ROW_LINE, "hum", 0), data.DataError, [
        rf"line {ROW_LINE} holds a NUL byte", "binary damage", RESTORE]),
    "tampered: not UTF-8": Corruption(tamper_byte(ROW_LINE, "mnth", 0xE9, digit=2), data.DataError, [
        rf"line {ROW_LINE} is not UTF-8 text \(byte 0xe9", "save it as UTF-8", RESTORE]),
    "tampered: a count": Corruption(tamper_byte(ROW_LINE, "registered", ord("8"), digit=0), pipeline.ValidationError,
                                    [rf"column 'bikers' is not casual \+ registered at rows \[{ROW_LINE - 2}\]"],
                                    stage_error=pipeline.ValidationError),
    "tampered: humidity out of range": Corruption(tamper_byte(ROW_LINE, "hum", ord("7"), digit=0),
                                                  pipeline.ValidationError,
                                                  [rf"column 'hum': 1 value\(s\) outside \[0, 1\].*rows \[{ROW_LINE - 2}\]"],
                                                  stage_error=pipeline.ValidationError),
    "tampered: plausible temperature": Corruption(tamper_byte(ROW_LINE, "temp", ord("9")), None),
}


def corrupted_copy(tmp_path: Path, original: bytes, case: str) -> Path:
    path = tmp_path / data.DATA_FILE
    path.write_bytes(CASES[case].make(original))
    os.utime(path, (OLD_TIME, OLD_TIME))
    return path


def load_validated(path: Path):
    """Load without the checksum, then the schema check: what a lesson does with a data version it made."""
    return pipeline.validate(data.load_bikeshare(path, verify=False))


@pytest.mark.parametrize("case", list(CASES))
def test_every_corruption_fails_the_checksum_and_the_file_stays_as_it_was(tmp_path, original, case):
    path = corrupted_copy(tmp_path, original, case)
    before, listing = fingerprint(path), sorted(tmp_path.iterdir())
    assert before[0] != data.EXPECTED_SHA256
    with pytest.raises(data.ChecksumError) as err:
        data.load_bikeshare(path)
    message = str(err.value)
    assert f"sha256 is {before[0]}, expected {data.EXPECTED_SHA256}" in message
    assert "changed or damaged" in message and "git checkout -- data/Bikeshare.csv" in message
    assert fingerprint(path) == before and sorted(tmp_path.iterdir()) == listing


@pytest.mark.parametrize("case", list(CASES))
def test_loader_and_validation_name_the_problem_and_leave_the_file_alone(tmp_path, original, case):
    corruption = CASES[case]
    path = corrupted_copy(tmp_path, original, case)
    before, listing = fingerprint(path), sorted(tmp_path.iterdir())
    if corruption.error is None:
        # A plausible value changed: nothing but the checksum can tell (the previous test shows it does).
        assert len(load_validated(path)) == 8645
    else:
        with pytest.raises(corruption.error) as err:
            load_validated(path)
        message = str(err.value)
        assert message.startswith(data.DATA_FILE) or corruption.error is pipeline.ValidationError, message
        for word in corruption.words:
            assert re.search(word, message), f"{word!r} not in: {message}"
        # Lesson 01's validate stage gives the same message (as a StageError for unreadable files).
        with pytest.raises(corruption.stage_error or stages.StageError) as stage_err:
            stages.validate_file(path)
        assert str(stage_err.value) == message
    assert fingerprint(path) == before and sorted(tmp_path.iterdir()) == listing


def test_the_validate_stage_command_reports_a_truncated_file_in_one_line(tmp_path, original):
    project = tmp_path / "project"
    (project / "data").mkdir(parents=True)
    bikes = project / stages.DATA
    bikes.write_bytes(cut_in_line(CUT_LINE, b",", 6)(original))
    before = fingerprint(bikes)
    env = {k: v for k, v in os.environ.items() if k != "MLOPS_COURSE_STAGE_SERVER"}
    done = subprocess.run([sys.executable, "-m", "mlops_course.stages", "validate"], cwd=project, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr.startswith(f"stage validate failed: bikes.csv: the last line (line {CUT_LINE}) stops")
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not (project / stages.VALIDATION).exists() and fingerprint(bikes) == before
