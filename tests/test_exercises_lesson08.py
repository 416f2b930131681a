"""The checkers of lesson 08's exercises: each accepts several correct answers and names the mistake of wrong ones.

08.1 runs on a small replay of its own (a fake year with fixed errors) for the hints, and on the real year
(OfflineReplay with the lesson's settings) for the lesson's own claims; 08.2's registry is stubbed; 08.3 needs
only two tables.
"""

from types import SimpleNamespace

import pandas as pd
import pytest

from mlops_course import capstone, data, registry
from mlops_course.exercises import evaluate
from mlops_course.exercises import lesson08 as checks


# ---------------------------------------------------------------- 08.1
class FakeReplay:
    """Four production months; a retraining in a month lowers every later month's error by 15."""

    def __init__(self):
        self.months = ["May", "June", "July", "Aug"]
        self.hours = dict.fromkeys(self.months, 100)
        self.naive = dict.fromkeys(self.months, 40.0)
        self.base = {"May": 45.0, "June": 50.0, "July": 52.0, "Aug": 50.0}

    def all_months(self, maes):
        maes = dict(maes)
        return sum(maes[m] for m in self.months) / len(self.months)

    def run(self, policy, *, refit=True):
        rows, gain, seen = [], 0.0, 0
        for month in self.months:
            mae = self.base[month] - gain
            seen += 1
            retrain = capstone.decide(policy, capstone.Signals(month, mae, self.naive[month], 0.6, seen))
            if retrain:
                gain, seen = gain + 15.0, 0
            rows.append({"month": month, "mae": mae, "retrain": retrain, "promoted": retrain})
        return pd.DataFrame(rows).set_index("month")


@pytest.mark.parametrize("policy", [
    lambda s: s.month == "May",                   # one early retraining: 45, 35, 37, 35
    lambda s: s.mae > s.naive_mae + 4,            # May, then nothing more is needed
    lambda s: s.mae > 44 and s.new_months >= 1,   # the same with a different signal
])
def test_policy_within_budget_and_below_naive(policy):
    feedback = evaluate("08.1", policy, replay=FakeReplay(), budget=2)
    assert feedback.ok and "below the naive forecast" in feedback.message


@pytest.mark.parametrize("policy,words", [
    (lambda s: False, "never retrains"),
    (lambda s: True, "over the budget of 2"),
    (lambda s: s.month == "Aug", "not below the naive forecast"),  # too late to help
    (lambda s: None, "returned None"),
    (lambda s: "retrain", "not True or False"),
    (lambda s: s.error > 40, "raised AttributeError"),
    (True, "expected a function"),
])
def test_policy_wrong_answers_are_named(policy, words):
    feedback = evaluate("08.1", policy, replay=FakeReplay(), budget=2)
    assert not feedback.ok and words in str(feedback) and feedback.hint


def test_an_unwritten_stub_is_not_yet():
    def my_policy(s):
        ...

    feedback = evaluate("08.1", my_policy, replay=FakeReplay())
    assert str(feedback).startswith("[not yet]") and "body" in str(feedback)


@pytest.fixture(scope="module")
def lesson_replay():
    """The lesson's own year and settings."""
    return capstone.OfflineReplay(data.load_bikeshare(), ["Jan", "Feb", "March"], "April",
                                  model_params={"n_estimators": 40})


def test_policy_on_the_lesson_year(lesson_replay):
    release = lesson_replay.release_mae
    right = [lambda s: s.mae > s.naive_mae and s.new_months > 1,  # the solution
             lambda s: s.mae > release,                           # above the release model's validation error
             lambda s: s.month in ("July", "Oct")]                 # a schedule: once a quarter
    for policy in right:
        feedback = evaluate("08.1", policy, replay=lesson_replay, budget=2)
        assert feedback.ok, str(feedback)
    for policy, words in [(lambda s: s.mae > s.naive_mae, "over the budget"),  # the lesson's worse_than_naive
                          (lambda s: s.mae > release * 1.1, "never retrains"),  # lesson 05's error threshold
                          (lambda s: s.month == "Dec", "not below the naive forecast")]:
        feedback = evaluate("08.1", policy, replay=lesson_replay, budget=2)
        assert not feedback.ok and words in str(feedback), str(feedback)


# ---------------------------------------------------------------- 08.2
@pytest.fixture
def champion_v7(monkeypatch):
    monkeypatch.setattr(registry, "aliases", lambda *args, **kwargs: {"champion": "7", "challenger": "9"})
    monkeypatch.setattr(checks, "champion_mae", lambda version, month, bikes: {"7": 43.0912}[version])


def flow_result(mae, promoted=False, version="9", month="Dec"):
    return SimpleNamespace(model_version=version, promoted=promoted, metrics={"mae": mae}, holdout_month=month)


@pytest.mark.parametrize("mae", [39.5638, 43.0])  # much better or a little better, both refused by the margin
def test_strict_gate_right_answers(champion_v7, mae):
    feedback = evaluate("08.2", flow_result(mae), champion_before="7", bikes=None)
    assert feedback.ok and "kept v7 as champion" in feedback.message


@pytest.mark.parametrize("answer,words", [
    (flow_result(39.56, promoted=True), "not strict enough"),
    (flow_result(61.69), "refused it on its merits"),        # the weak challenger: it lost without a margin
    (flow_result(43.0912), "refused it on its merits"),      # the champion's own recipe: a tie is no win
    (flow_result(39.56, version=None), "register=True"),
    (SimpleNamespace(model_version="9", promoted=None, metrics={"mae": 39.5}, holdout_month="Dec"), "promote=True"),
    ("champion kept", "training_flow"),
])
def test_strict_gate_wrong_answers(champion_v7, answer, words):
    feedback = evaluate("08.2", answer, champion_before="7", bikes=None)
    assert not feedback.ok and words in str(feedback) and feedback.hint


def test_strict_gate_hint_for_a_promotion_puts_the_champion_back(champion_v7):
    feedback = evaluate("08.2", flow_result(39.56, promoted=True), champion_before="7", bikes=None)
    assert "set_registered_model_alias" in feedback.hint and "'7'" in feedback.hint and "8%" in feedback.hint


def test_strict_gate_notices_a_moved_champion(champion_v7, monkeypatch):
    monkeypatch.setattr(checks, "champion_mae", lambda version, month, bikes: 45.0)
    feedback = evaluate("08.2", flow_result(39.56), champion_before="5", bikes=None)
    assert not feedback.ok and "moved from v5 to v7" in feedback.message


# ---------------------------------------------------------------- 08.3
TIMELINE = pd.DataFrame({"served_version": ["5", "5", "7"]}, index=pd.Index(["Oct", "Nov", "Dec"], name="month"))
LINEAGE = pd.DataFrame({"data_commit": ["cf43aa9", "cf43aa9", "070203b", "070203b", "-"]},
                       index=pd.Index(["4", "5", "6", "7", "8"], name="version"))


@pytest.mark.parametrize("answer", ["cf43aa9", " cf43aa9\n", "CF43AA9", "cf43aa9" + "0" * 33])
def test_trace_right_answers(answer):
    assert evaluate("08.3", answer, timeline=TIMELINE, lineage=LINEAGE).ok


@pytest.mark.parametrize("answer,words", [
    ("070203b", "not of the version that served November"),  # the newest model's data
    ("5", "a model version, not a commit"),
    ("cf4", "too short"),
    ("0000000", "not the data commit of any model version"),
    ("-", "not the data commit"),
    ("cf43aa9 and 070203b", "not the data commit"),  # starts with the right hash, names two commits
    ("cf43aa9-old", "not the data commit"),
])
def test_trace_wrong_answers(answer, words):
    feedback = evaluate("08.3", answer, timeline=TIMELINE, lineage=LINEAGE)
    assert not feedback.ok and words in str(feedback) and feedback.hint
