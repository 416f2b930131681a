"""The course dataset: 2011 Capital Bikeshare hourly rentals, loaded with checked dtypes and checksum.

Source and licence: see ``data/README.md``. Nothing here downloads anything.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Iterable, Iterator
from pathlib import Path

import pandas as pd

from mlops_course import paths, schema, train_config

DATA_FILE = "Bikeshare.csv"
EXPECTED_SHA256 = "ac6950ae6f11efcc69c29d6bb13e8881c001e27d36434660d59444a1414f712c"
# The columns, their kinds and categories come from the one declared schema.
MONTHS = list(schema.MONTHS)
WEATHER = list(schema.WEATHER)
INT_COLUMNS = schema.columns("int")
FLOAT_COLUMNS = schema.columns("float")
COLUMNS = schema.columns()
TARGET = schema.TARGET
RESTORE = (f"restore it (`git checkout -- data/{DATA_FILE}` for the shipped file, `dvc checkout` in a DVC "
           f"repository) or export it again")


class DataError(ValueError):
    """A data file is missing, corrupted or does not have the expected shape."""


class ChecksumError(DataError):
    """The bytes of a data file are not the ones the course shipped."""


def default_path() -> Path:
    """The shipped ``data/Bikeshare.csv``."""
    return paths.data_dir() / DATA_FILE


def sha256_file(path: str | Path) -> str:
    """The SHA-256 hex digest of a file's bytes."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def verify_checksum(path: str | Path, expected: str = EXPECTED_SHA256) -> None:
    """Raise ``ChecksumError`` naming the file and both hashes when the file's bytes changed."""
    actual = sha256_file(path)
    if actual != expected:
        raise ChecksumError(
            f"{Path(path).name}: sha256 is {actual}, expected {expected}. The file was changed or damaged; "
            f"restore it with `git checkout -- data/{DATA_FILE}` (or `dvc checkout` in a DVC repository).")


def _rows(mask: pd.Series, limit: int = 5) -> str:
    # Row numbers as a learner sees them in the CSV file: header is line 1, first data row line 2.
    lines = [str(i + 2) for i in mask[mask].index[:limit]]
    more = "" if mask.sum() <= limit else f" and {int(mask.sum()) - limit} more"
    return ", ".join(lines) + more


def coerce_types(raw: pd.DataFrame, name: str = "data") -> pd.DataFrame:
    """Check the columns and turn them into the course dtypes, naming the column and lines of any bad value."""
    missing = [c for c in COLUMNS if c not in raw.columns]
    extra = [c for c in raw.columns if c not in COLUMNS]
    if missing:
        raise DataError(f"{name}: missing column(s) {missing}; unexpected column(s) {extra}. "
                        f"Expected the columns {COLUMNS}.")
    if raw.empty:
        raise DataError(f"{name}: has a header but no rows. The data stops after its header: {RESTORE}.")
    df = raw[COLUMNS].copy()
    if not pd.api.types.is_numeric_dtype(df["season"]):  # read as text (object or pandas 3's str): a second header?
        repeated = df.astype(str).eq(COLUMNS).all(axis=1)
        if repeated.any():
            raise DataError(f"{name}: line(s) {_rows(repeated)} repeat the header row (two exports pasted "
                            f"together?); delete those lines, or {RESTORE}.")
    for col in INT_COLUMNS + FLOAT_COLUMNS:
        numeric = pd.to_numeric(df[col], errors="coerce")
        bad = numeric.isna()
        if bad.any():
            example = df.loc[bad, col].iloc[0]
            raise DataError(f"{name}: column '{col}' must be numeric; bad or missing values at line(s) "
                            f"{_rows(bad)} (e.g. {'an empty field' if pd.isna(example) else repr(example)}).")
        if col in INT_COLUMNS:
            not_whole = numeric.ne(numeric.round())
            if not_whole.any():
                raise DataError(f"{name}: column '{col}' must hold whole numbers; see line(s) {_rows(not_whole)}.")
            df[col] = numeric.astype("int64")
        else:
            df[col] = numeric.astype("float64")
    for col, allowed in (("mnth", MONTHS), ("weathersit", WEATHER)):
        bad = ~df[col].isin(allowed)
        if bad.any():
            raise DataError(f"{name}: column '{col}' has unknown value(s) "
                            f"{sorted(map(str, df.loc[bad, col].unique()))[:5]} at line(s) {_rows(bad)}; "
                            f"allowed: {allowed}.")
        df[col] = pd.Categorical(df[col], categories=allowed, ordered=(col == "mnth"))
    return df


def read_text(raw: bytes, name: str) -> str:
    """The text of a CSV file's bytes, after checks that pandas does not make: no NUL byte, valid UTF-8, and
    every line with as many fields as the header (a short last line means the file was cut off)."""
    if b"\x00" in raw:
        at = raw.index(b"\x00")
        line = raw.count(b"\n", 0, at) + 1
        raise DataError(f"{name}: line {line} holds a NUL byte (offset {at}): binary damage in a text file; "
                        f"{RESTORE}.")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise DataError(f"{name}: line {line} is not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset "
                        f"{exc.start}): the file is damaged or saved in another encoding; save it as UTF-8, or "
                        f"{RESTORE}.") from None
    if not text.strip():
        raise DataError(f"{name}: the file is empty (no header, no rows); {RESTORE}.")
    try:
        rows = [(number, len(row)) for number, row in enumerate(csv.reader(text.splitlines()), start=1) if row]
    except csv.Error as exc:
        raise DataError(f"{name}: not a readable CSV file ({exc}); {RESTORE}.") from None
    expected = rows[0][1] if len(rows) > 1 else len(COLUMNS)  # the header's fields
    last, count = rows[-1]
    if not text.endswith(("\n", "\r")) and count < expected:
        raise DataError(f"{name}: the last line (line {last}) stops after {count} of {expected} fields: the file "
                        f"is cut off (truncated while it was written or copied); {RESTORE}.")
    for number, count in rows:
        if count != expected:
            raise DataError(f"{name}: line {number} has {count} fields, the header has {expected}: a value or a "
                            f"comma is missing or extra there; fix that line, or {RESTORE}.")
    return text


def load_bikeshare(path: str | Path | None = None, *, verify: bool = True) -> pd.DataFrame:
    """Load the bike-rental table with proper dtypes.

    The shipped file is checked against its SHA-256 first (``verify=False`` skips that, e.g. for a newer data
    version a lesson made); every file gets the column and type checks of :func:`coerce_types`.
    """
    path = Path(path) if path is not None else default_path()
    if not path.is_file():
        raise DataError(f"{path.name}: no such file. The course data lives in data/{DATA_FILE}; "
                        f"pass the path of a CSV with the columns {COLUMNS}.")
    if verify:
        verify_checksum(path)
    text = read_text(path.read_bytes(), path.name)
    try:
        raw = pd.read_csv(io.StringIO(text))
    except pd.errors.EmptyDataError:
        raise DataError(f"{path.name}: the file is empty (no header, no rows); {RESTORE}.") from None
    except pd.errors.ParserError as exc:
        raise DataError(f"{path.name}: not a readable CSV file ({exc}); {RESTORE}.") from None
    return coerce_types(raw, path.name)


def month_number(df: pd.DataFrame) -> pd.Series:
    """1 for January ... 12 for December."""
    return df["mnth"].cat.codes.astype("int64") + 1


def select_months(df: pd.DataFrame, months: Iterable[str]) -> pd.DataFrame:
    """The rows of the given months (names as in the data: ``"Jan"``, ``"March"``, ``"Sept"`` ...)."""
    months = list(months)
    problem = train_config.month_problem(months)
    if problem:
        raise DataError(f"{problem}.")
    return df[df["mnth"].isin(months)]


def monthly_batches(df: pd.DataFrame, months: Iterable[str] | None = None) -> Iterator[tuple[str, pd.DataFrame]]:
    """Yield ``(month, rows)`` in calendar order: the course's stand-in for production traffic."""
    for month in (list(months) if months is not None else MONTHS):
        batch = select_months(df, [month])
        if len(batch):
            yield month, batch.reset_index(drop=True)
