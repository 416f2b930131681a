"""Which months a model learns from and which it is judged on: the course's two windows, declared once.

- ``EXAMPLE``, the running example: January-April, judged on May (lesson 01's ``params.yaml``, lessons 02-05).
- ``CI``, the same window one month on (``EXAMPLE.next()``): January-May, judged on June (lesson 06's
  workflow and test suite, lesson 07's retraining).

A :class:`TrainConfig` comes from arguments, from a ``params.yaml`` (:meth:`TrainConfig.from_params`) or from
the ``BIKE_TRAIN_MONTHS``/``BIKE_TEST_MONTH`` variables a CI job sets (:meth:`TrainConfig.from_env`); every one
is checked the same way when it is made.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from mlops_course import schema


def month_problem(months: Iterable[str]) -> str | None:
    """What is wrong with ``months`` as month names of the data (``"unknown month name(s) ..."``), or None."""
    unknown = [m for m in months if m not in schema.MONTHS]
    return f"unknown month name(s) {unknown}; use {list(schema.MONTHS)}" if unknown else None


@dataclass(frozen=True)
class TrainConfig:
    """Months to train on and months to test on (names as in the data)."""

    train_months: tuple[str, ...]
    test_months: tuple[str, ...]

    def __post_init__(self) -> None:
        for name in ("train_months", "test_months"):
            value = getattr(self, name)
            if isinstance(value, str) or not value:
                raise ValueError(f"{name} must be a non-empty list of month names like ['Jan', 'Feb']; "
                                 f"got {value!r}")
            object.__setattr__(self, name, tuple(value))
        problem = month_problem([*self.train_months, *self.test_months])
        if problem:
            raise ValueError(problem)
        # A test month that is also trained on is allowed here: lesson 06's leakage test is what catches it.

    @property
    def test_month(self) -> str:
        """The one test month (a window with several has none)."""
        if len(self.test_months) != 1:
            raise ValueError(f"this window tests on {list(self.test_months)}, not on one month")
        return self.test_months[0]

    def next(self) -> TrainConfig:
        """The window a month later: the test months join the training months, the next month is tested."""
        last = max(schema.MONTHS.index(m) for m in (*self.train_months, *self.test_months))
        if last + 1 == len(schema.MONTHS):
            raise ValueError("the window already reaches December: the data holds no later month")
        return TrainConfig((*self.train_months, *self.test_months), (schema.MONTHS[last + 1],))

    def as_params(self) -> dict[str, list[str]]:
        """The ``prepare`` section of a ``params.yaml``."""
        return {"train_months": list(self.train_months), "test_months": list(self.test_months)}

    @classmethod
    def from_params(cls, path: os.PathLike | str = "params.yaml") -> TrainConfig:
        """The window of a ``params.yaml``'s ``prepare`` section (lesson 01)."""
        import yaml

        params = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        prepare = params.get("prepare") if isinstance(params, Mapping) else None
        if not isinstance(prepare, Mapping) or {"train_months", "test_months"} - prepare.keys():
            raise ValueError(f"{Path(path).name}: needs prepare: with train_months and test_months")
        return cls(prepare["train_months"], prepare["test_months"])

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, default: TrainConfig | None = None) -> TrainConfig:
        """The window a CI job passes: ``BIKE_TRAIN_MONTHS`` (comma-separated) and ``BIKE_TEST_MONTH``, each
        falling back to ``default`` (``CI``)."""
        env = os.environ if env is None else env
        default = default or CI
        train = env.get("BIKE_TRAIN_MONTHS") or ",".join(default.train_months)
        test = env.get("BIKE_TEST_MONTH") or ",".join(default.test_months)
        return cls(tuple(m.strip() for m in train.split(",")), tuple(m.strip() for m in test.split(",")))


EXAMPLE = TrainConfig(("Jan", "Feb", "March", "April"), ("May",))
CI = EXAMPLE.next()
