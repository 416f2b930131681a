"""schema: the one declaration the loader, the validator, the stages and the service read."""

import pandas as pd

from mlops_course import data, pipeline, schema


def test_every_consumer_reads_the_same_declaration():
    assert data.COLUMNS == [c.name for c in schema.RAW] and data.MONTHS == list(schema.MONTHS)
    assert set(data.INT_COLUMNS) | set(data.FLOAT_COLUMNS) == {c.name for c in schema.RAW if c.numeric}
    assert pipeline.FEATURES == [c.name for c in schema.FEATURES]
    assert pipeline.FEATURE_RANGES["hr"] == (0, 23, "hour of day")
    assert pipeline.RAW_RANGES["bikers"] == (0, None) and "hr" not in pipeline.RAW_RANGES


def test_shape_problems_names_each_problem():
    good = pd.DataFrame({"hr": [1.0], "temp": [0.2]})
    assert schema.shape_problems(good, ["hr", "temp"]) == []
    assert schema.shape_problems(good, ["hr", "hum"]) == ["missing column(s) ['hum']"]
    assert schema.shape_problems(good.iloc[0:0], ["hr"]) == ["the table has no rows"]
    text = pd.DataFrame({"hr": ["8"], "mnth": ["Jan"]})
    [problem] = schema.shape_problems(text, ["hr", "mnth"])  # the dtype is object, or str with pandas 3
    assert problem.startswith("column 'hr' has dtype ") and problem.endswith(", expected a number")
