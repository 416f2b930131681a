"""The bike table's schema, declared once: each column's kind, valid range or categories, and unit.

Everything that checks a table reads it from here: ``data.coerce_types`` (a CSV becoming the course dtypes),
``pipeline.check_schema`` (a loaded table validated), ``stages.read_table`` (a stage's CSV), and the service's
request model through ``pipeline.FEATURE_RANGES``. ``shape_problems`` is the one structural check (columns
present, rows present, numeric where the schema says so) that all of them share; the byte-level checks of the
loader (encoding, NUL bytes, cut lines) stay in ``data``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

MONTHS = ("Jan", "Feb", "March", "April", "May", "June", "July", "Aug", "Sept", "Oct", "Nov", "Dec")
WEATHER = ("clear", "cloudy/misty", "light rain/snow", "heavy rain/snow")


@dataclass(frozen=True)
class Column:
    """One column: ``kind`` is ``"int"``, ``"float"`` or ``"category"``; ``low``/``high`` bound numbers
    (``None``: open), ``categories`` lists a category's allowed values."""

    name: str
    kind: str
    low: float | None = None
    high: float | None = None
    unit: str = ""
    categories: tuple[str, ...] = ()

    @property
    def numeric(self) -> bool:
        return self.kind in ("int", "float")


# The raw table (data/Bikeshare.csv), in file order.
RAW = (
    Column("season", "int", 1, 4, "1 winter, 2 spring, 3 summer, 4 fall"),
    Column("mnth", "category", categories=MONTHS),
    Column("day", "int", 1, 366, "day of the year"),
    Column("hr", "int", 0, 23, "hour of day"),
    Column("holiday", "int", 0, 1, "1 on a public holiday"),
    Column("weekday", "int", 0, 6, "day of week, 0 = Sunday"),
    Column("workingday", "int", 0, 1, "1 if neither weekend nor holiday"),
    Column("weathersit", "category", categories=WEATHER),
    Column("temp", "float", 0, 1, "temperature, normalised: (t - (-8 C)) / 47"),
    Column("atemp", "float", 0, 1, "feels-like temperature, normalised: (t - (-16 C)) / 66"),
    Column("hum", "float", 0, 1, "relative humidity, fraction"),
    Column("windspeed", "float", 0, 1, "wind speed, normalised: divided by 67"),
    Column("casual", "int", 0, None, "rentals by casual users"),
    Column("registered", "int", 0, None, "rentals by registered users"),
    Column("bikers", "int", 0, None, "all rentals in the hour (the target)"),
)
# The model's inputs, all float64: the raw numeric columns it uses, and weathersit as its code 1-4.
FEATURES = (
    *(next(c for c in RAW if c.name == name) for name in ("hr", "weekday", "workingday", "holiday")),
    Column("weather", "float", 1, 4, "1 clear, 2 cloudy/misty, 3 light rain/snow, 4 heavy rain/snow"),
    *(next(c for c in RAW if c.name == name) for name in ("temp", "atemp", "hum", "windspeed")),
)
TARGET = "bikers"


def columns(kind: str | None = None, table: Sequence[Column] = RAW) -> list[str]:
    """The names of a table's columns, optionally of one kind."""
    return [c.name for c in table if kind is None or c.kind == kind]


def shape_problems(df: pd.DataFrame, names: Sequence[str]) -> list[str]:
    """Missing columns, no rows, or a numeric column (by the schema; unknown names: must be numeric) that is
    not numeric; empty when the table has the shape. One message per problem, without the table's name."""
    missing = [c for c in names if c not in df.columns]
    if missing:
        return [f"missing column(s) {missing}"]
    if df.empty:
        return ["the table has no rows"]
    kinds = {c.name: c.kind for c in (*RAW, *FEATURES)}
    return [f"column '{c}' has dtype {df[c].dtype}, expected a number" for c in names
            if kinds.get(c, "float") != "category" and not pd.api.types.is_numeric_dtype(df[c])]
