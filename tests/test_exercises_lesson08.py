"""The checkers of lesson 08's exercises, without the loop: the replay, the registry and the lineage are stubbed."""

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from mlops_course import registry
from mlops_course.exercises import evaluate
from mlops_course.exercises import lesson08 as checks

POLICY = {"bikes": None, "initial_months": ["Jan", "Feb", "March"], "holdout_month": "April",
          "drift_threshold": 0.3}


# ---------------------------------------------------------------- 08.1
@pytest.fixture
def one_retraining(monkeypatch):
    calls = []

    def replay(bikes, initial_months, holdout_month, *, drift_threshold, error_threshold, n_estimators=40,
               margin=0.0):
        calls.append({"drift_threshold": drift_threshold, "error_threshold": error_threshold})
        return 1

    monkeypatch.setattr(checks, "count_retrainings", replay)
    return calls


def test_retrainings_right_answer_replays_at_60(one_retraining):
    assert evaluate("08.1", 1, **POLICY).ok
    assert evaluate("08.1", np.int64(1), **POLICY).ok  # e.g. the sum of a boolean column
    assert one_retraining[0] == {"drift_threshold": 0.3, "error_threshold": 60.0}


@pytest.mark.parametrize("answer,words", [(2, "too many"), (0, "too few"), ("1", "whole number"),
                                          (True, "whole number"), (1.0, "whole number"), (None, "not answered")])
def test_retrainings_wrong_answers(one_retraining, answer, words):
    feedback = evaluate("08.1", answer, **POLICY)
    assert not feedback.ok and words in str(feedback)


# ---------------------------------------------------------------- 08.2
@pytest.fixture
def champion_v4(monkeypatch):
    monkeypatch.setattr(registry, "aliases", lambda *args, **kwargs: {"champion": "4", "challenger": "5"})


def test_broken_gate_right_answer(champion_v4):
    refused = SimpleNamespace(model_version="5", promoted=False)
    feedback = evaluate("08.2", refused, champion_before="4")
    assert feedback.ok and "v4 stays champion" in feedback.message


@pytest.mark.parametrize("answer,words", [
    (SimpleNamespace(model_version="5", promoted=True), "not strict enough"),
    (SimpleNamespace(model_version=None, promoted=False), "register=True"),
    ("champion kept", "training_flow"),
])
def test_broken_gate_wrong_answers(champion_v4, answer, words):
    feedback = evaluate("08.2", answer, champion_before="4")
    assert not feedback.ok and words in str(feedback)


def test_broken_gate_notices_a_moved_champion(champion_v4):
    feedback = evaluate("08.2", SimpleNamespace(model_version="5", promoted=False), champion_before="3")
    assert not feedback.ok and "moved from v3 to v4" in feedback.message


# ---------------------------------------------------------------- 08.3
TIMELINE = pd.DataFrame({"served_version": ["3", "4"]}, index=pd.Index(["Oct", "Nov"], name="month"))
LINEAGE = pd.DataFrame({"data_commit": ["cf43aa9", "8ac6aff"]}, index=pd.Index(["3", "4"], name="version"))


def test_trace_right_answer():
    assert evaluate("08.3", "8ac6aff", timeline=TIMELINE, lineage=LINEAGE).ok
    assert evaluate("08.3", " 8ac6aff\n", timeline=TIMELINE, lineage=LINEAGE).ok


@pytest.mark.parametrize("answer,words", [("cf43aa9", "different model version"), ("0000000", "not a data commit")])
def test_trace_wrong_answers(answer, words):
    feedback = evaluate("08.3", answer, timeline=TIMELINE, lineage=LINEAGE)
    assert not feedback.ok and words in str(feedback)
