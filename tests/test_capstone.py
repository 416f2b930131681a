"""The capstone: policies replayed offline, the naive baseline, the refit, and the closed loop for real
(Prefect server, uvicorn service, DVC repo, MLflow registry) on a short year."""

import json
import sys

import httpx
import numpy as np
import pandas as pd
import pytest

from mlops_course import capstone, data, registry, stages, versioning
from mlops_course.exercises import evaluate

MONTHS = ["Jan", "Feb", "March"]


@pytest.fixture(scope="module")
def bikes():
    return data.load_bikeshare()


@pytest.fixture(scope="module")
def replay(bikes):
    """A cheap year: small forests, released after April."""
    return capstone.OfflineReplay(bikes, MONTHS, "April", model_params={"n_estimators": 10})


def signals(**changes):
    base = {"month": "May", "mae": 50.0, "naive_mae": 40.0, "drift_share": 0.6, "new_months": 1}
    return capstone.Signals(**{**base, **changes})


# ---------------------------------------------------------------- lesson 05's rule, read from its notebook
def test_lesson05_rule_is_read_from_lesson_05s_parameters_cell():
    from mlops_course.course import lessons

    rule = capstone.lesson05_rule()
    values = capstone.notebook_parameters(lessons.find("05").path)
    assert (rule.drift_threshold, rule.tolerance) == (values["drift_threshold"], values["tolerance"])
    assert rule.error_threshold(40.0) == pytest.approx(40.0 * (1 + rule.tolerance))
    assert f"{rule.drift_threshold:g}" in str(rule) and f"{rule.tolerance:.0%}" in str(rule)


def notebook(tmp_path, source, tags=("parameters",)):
    path = tmp_path / "05-Fake.ipynb"
    path.write_text(json.dumps({"cells": [{"cell_type": "markdown", "metadata": {}, "source": ["# x"]},
                                          {"cell_type": "code", "metadata": {"tags": list(tags)},
                                           "source": [source]}]}))
    return path


def test_lesson05_rule_from_another_parameters_cell(tmp_path):
    rule = capstone.lesson05_rule(notebook(tmp_path, "tolerance = 0.2  # a comment\ndrift_threshold = 0.7\n"
                                                     "months = ['Jan']\nn = len(months)\n"))
    assert (rule.drift_threshold, rule.tolerance) == (0.7, 0.2)


@pytest.mark.parametrize("source,tags,words", [
    ("tolerance = 0.1\n", ("parameters",), "drift_threshold"),
    ("tolerance = 0.1\ndrift_threshold = 'half'\n", ("parameters",), "drift_threshold"),
    ("tolerance = 0.1\ndrift_threshold = 0.5\n", (), "no cell tagged 'parameters'"),
])
def test_lesson05_rule_says_what_is_missing(tmp_path, source, tags, words):
    with pytest.raises(LookupError, match=words):
        capstone.lesson05_rule(notebook(tmp_path, source, tags))


# ---------------------------------------------------------------- the naive forecast
def test_naive_forecast_is_the_same_hour_a_week_earlier_or_the_week_before(bikes):
    table = pd.DataFrame({"day": [1, 1, 8, 8, 15, 15], "hr": [0, 1, 0, 1, 0, 1], "bikers": [10, 20, 30, 40, 50, 60]})
    rows = table[table["day"] == 15]
    assert capstone.naive_forecast(table, rows).tolist() == [30, 40]
    gappy = table.drop(index=3)  # day 8, hour 1 is missing: day 1 stands in
    assert capstone.naive_forecast(gappy, gappy[gappy["day"] == 15]).tolist() == [30, 20]
    with pytest.raises(ValueError, match=r"day 15, hour 1: no count .* within 1 week"):
        capstone.naive_forecast(gappy, gappy[gappy["day"] == 15], weeks=1)
    with pytest.raises(ValueError, match="needs history"):
        capstone.naive_forecast(table, table[table["day"] == 1])


def test_naive_mae_on_a_month_matches_a_direct_lookup(bikes):
    may = data.select_months(bikes, ["May"])
    week_before = bikes.set_index(["day", "hr"])["bikers"]
    direct = week_before.reindex(list(zip(may["day"] - 7, may["hr"]))).to_numpy()
    assert not np.isnan(direct).any()  # May has every hour of the week before
    assert capstone.naive_mae(bikes, "May") == pytest.approx(np.abs(direct - may["bikers"].to_numpy()).mean())


# ---------------------------------------------------------------- policies
@pytest.mark.parametrize("answer", [True, False, np.bool_(True)])
def test_decide_accepts_bools(answer):
    assert capstone.decide(lambda s: answer, signals()) is bool(answer)


def test_decide_explains_a_policy_that_cannot_run():
    with pytest.raises(capstone.PolicyError, match="returned|answered None") as info:
        capstone.decide(lambda s: None, signals())
    assert info.value.answer is None and info.value.raised is None
    with pytest.raises(capstone.PolicyError, match="raised AttributeError in May") as info:
        capstone.decide(lambda s: s.error > 1, signals())
    assert isinstance(info.value.raised, AttributeError)
    with pytest.raises(capstone.PolicyError, match="must return True"):
        capstone.decide(lambda s: "yes", signals())
    with pytest.raises(capstone.PolicyError, match="function of one argument"):
        capstone.decide(True, signals())


def test_the_replay_scores_every_policy_on_the_same_months(replay):
    policies = {"never": lambda s: False, "always": lambda s: True, "after drift": lambda s: s.drift_share > 0.5}
    table = replay.compare(policies)
    assert list(table.index) == [*policies, capstone.NAIVE]
    assert list(table.columns) == [*replay.months, "all months", "retrainings", "promotions"]
    assert replay.months == data.MONTHS[4:]
    hours = pd.Series(replay.hours)
    for name, row in table.iterrows():  # all months = the hour-weighted mean of the months
        assert row["all months"] == pytest.approx((row[replay.months] * hours).sum() / hours.sum())
    assert table.loc["never", "retrainings"] == 0 and table.loc["always", "retrainings"] == len(replay.months)
    assert table.loc["always", "all months"] < table.loc["never", "all months"]
    assert table.loc[capstone.NAIVE, "retrainings"] is pd.NA
    assert table.loc[capstone.NAIVE, "May"] == pytest.approx(capstone.naive_mae(replay.bikes, "May"))


def test_the_replay_refits_a_promoted_model_on_the_gate_month(replay):
    refit, judged = replay.run(lambda s: True), replay.run(lambda s: True, refit=False)
    assert refit.loc["May", "trained_on"] == "Jan-April" and judged.loc["May", "trained_on"] == "Jan-March"
    for run, last in ((refit, 0), (judged, 1)):
        promoted = [m for m in run.index if run.loc[m, "promoted"]]
        assert promoted, "nothing was promoted in a year of monthly retraining"
        for month in promoted[:-1]:
            following = run.index[run.index.get_loc(month) + 1]
            months = data.MONTHS[:data.MONTHS.index(month) + 1 - last]
            assert run.loc[following, "trained_on"] == f"{months[0]}-{months[-1]}"
    # with a refit, May's challenger learns exactly what the champion learned: the same model, a tie, refused
    assert refit.loc["May", "challenger_mae"] == refit.loc["May", "mae"] and not refit.loc["May", "promoted"]


def test_the_replay_gate_uses_the_margin(bikes):
    strict = capstone.OfflineReplay(bikes, MONTHS, "April", model_params={"n_estimators": 10}, margin=0.9)
    assert strict.compare({"always": lambda s: True}, naive=False).loc["always", "promotions"] == 0
    with pytest.raises(ValueError, match="margin"):
        capstone.OfflineReplay(bikes, MONTHS, "April", margin=1.5)
    with pytest.raises(ValueError, match="before the holdout month"):
        capstone.OfflineReplay(bikes, ["Jan", "April"], "April")


def test_the_replay_fits_each_set_of_months_once(replay):
    assert replay.model(["Jan", "Feb"]) is replay.model(("Jan", "Feb"))
    assert replay.release_mae == replay.mae(MONTHS, "April")


def test_show_prints_missing_values_the_same_under_every_pandas():
    table = pd.DataFrame({"mae": [1.234, float("nan")], "n": pd.array([3, None], dtype="Int64"),
                          "ok": [True, False], "who": ["v2", None]}, index=["a", "b"])
    lines = capstone.show(table).splitlines()
    assert lines[1].split() == ["a", "1.23", "3", "yes", "v2"]
    assert lines[2].split() == ["b", "-", "-", "no", "-"]
    assert "NaN" not in capstone.show(table) and "None" not in capstone.show(table)


def test_registry_notices_are_hidden_and_nothing_else(capsys):
    with capstone.registry_notices_hidden():
        print("Registered model 'bike-demand' already exists. Creating a new version of this model...",
              file=sys.stderr)
        print("Created version '3' of model 'bike-demand'.", file=sys.stderr)
        print("UserWarning: something worth reading", file=sys.stderr)
        sys.stderr.write("no newline at the end")
    assert capsys.readouterr().err == "UserWarning: something worth reading\nno newline at the end"


# ---------------------------------------------------------------- lesson state
def test_a_missing_champion_or_service_names_the_cell_to_run(lesson_env, bikes, monkeypatch):
    from mlops_course import process, setup_lesson

    setup_lesson("98", quiet=True)
    with pytest.raises(capstone.LessonStateError, match="section 2"):
        capstone.require_champion()
    loop = capstone.ClosedLoop(repo=lesson_env, service_url=f"http://127.0.0.1:{process.free_port()}",
                               bikes=bikes, labelled=MONTHS, policy=lambda s: False, trained_on=MONTHS)
    with pytest.raises(capstone.LessonStateError, match="section 3"):
        loop.check_ready()


def test_write_data_version_commits_the_dvc_pointer(lesson_env, bikes):
    from mlops_course import setup_lesson

    lesson = setup_lesson("98", tracking=False, quiet=True)
    repo = capstone.init_repo(lesson.path("repo"))
    first = capstone.write_data_version(repo, bikes, ["Jan"])
    second = capstone.write_data_version(repo, bikes, ["Jan", "Feb"])
    assert first != second
    assert len(pd.read_csv(repo / stages.DATA)) == len(data.select_months(bikes, ["Jan", "Feb"]))
    log = versioning.execute("git log --oneline", repo).output
    assert "data: Jan-Feb" in log and "data: Jan (" in log
    with pytest.raises(ValueError, match="unknown month"):
        capstone.write_data_version(repo, bikes, ["Smarch"])


def test_unknown_months_are_refused(tmp_path, bikes):
    with pytest.raises(ValueError, match="unknown month"):
        capstone.ClosedLoop(repo=tmp_path, service_url="http://127.0.0.1:9", bikes=bikes, labelled=["Janvier"],
                            policy=lambda s: False, trained_on=["Jan"])
    with pytest.raises(ValueError, match="unknown month"):
        capstone.OfflineReplay(bikes, ["Jan"], "Avril")


# ---------------------------------------------------------------- the loop, for real
def test_the_loop_retrains_refits_reloads_and_matches_the_replay(lesson_env, bikes):
    from mlops_course import setup_lesson
    from mlops_course.orchestration import PrefectServer, training_flow
    from mlops_course.serving import start_service

    lesson = setup_lesson("97", quiet=True)
    prefect = PrefectServer(lesson.workspace).start()
    service = None
    params = {"n_estimators": 10}
    first_months = [*MONTHS, "April"]
    try:
        repo = capstone.init_repo(lesson.path("repo"))
        commit = capstone.write_data_version(repo, bikes, first_months)
        prefect.wait()
        first = training_flow(data_path=repo / stages.DATA, train_months=MONTHS, holdout_month="April",
                              model_params=params, register=True, run_name="first")
        release = capstone.refit_champion(repo / stages.DATA, first_months, refit_of=first.model_version,
                                          data_commit=commit, model_params=params)
        assert registry.aliases()["champion"] == release != first.model_version
        service = start_service(tracking_uri=lesson.tracking_uri, request_log=lesson.path("requests.jsonl"),
                                log_file=lesson.path("service.log"))
        loop = capstone.ClosedLoop(repo=repo, service_url=service.url, bikes=bikes, labelled=first_months,
                                   policy=lambda s: s.month == "June", trained_on=first_months,
                                   model_params=params)
        loop.check_ready()
        for month, batch in data.monthly_batches(bikes, ["May", "June", "July"]):
            loop.step(month, batch)
        timeline = loop.timeline()
        assert list(timeline["retrain"]) == [False, True, False]
        assert timeline.loc["June", "gate"] == "promoted" and timeline.loc["June", "refit"] != "-"
        assert timeline.loc["July", "served_version"] == timeline.loc["June", "refit"]
        assert httpx.get(f"{service.url}/health").json()["model_version"] == registry.aliases()["champion"]
        offline = capstone.OfflineReplay(bikes, MONTHS, "April", model_params=params).run(
            loop.policy).loc[timeline.index]
        assert (timeline["mae"] - offline["mae"]).abs().max() < 0.01, "the served year is not the replayed one"
        assert list(offline["retrain"]) == list(timeline["retrain"])
        table = capstone.lineage(loop.records, first.model_version, commit)
        assert table.loc[first.model_version, "data_commit"] == commit
        assert table.loc[release, "refit_of"] == f"v{first.model_version}" and table.loc[release, "holdout"] == "-"
        assert (table["data_commit"] != "-").all() and "champion" in ",".join(table["aliases"])
        fig = capstone.plot_timeline(timeline, 0.5)
        assert len(fig.axes) == 2
        last = str(timeline.iloc[-1]["served_version"])
        renamed = timeline.rename(index={timeline.index[-1]: "Nov"})
        assert evaluate("08.3", table.loc[last, "data_commit"], timeline=renamed, lineage=table).ok
        assert not evaluate("08.3", "0000000", timeline=renamed, lineage=table).ok
    finally:
        if service is not None:
            service.stop()
        prefect.stop()
    assert not service.running and not prefect.running
