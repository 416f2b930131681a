"""Checks for lesson 08 (End-to-end MLOps pipeline).

- 08.1 runs the learner's retraining policy through the lesson's :class:`~mlops_course.capstone.OfflineReplay`
  and judges what it does: how often it retrains, and its MAE over the production months against the naive
  forecast's.
- 08.2 judges a training-flow result by what the gate did: the challenger beat the champion on the holdout
  month, and the margin still kept the champion.
- 08.3 compares a git commit hash with the lineage table (short or full hash, any case).
"""

from __future__ import annotations

import re

from mlops_course.exercises import correct, exercise, wrong


def _months(run, column: str) -> str:
    months = [m for m, flag in run[column].items() if flag]
    return ", ".join(months) or "none"


@exercise("08.1", "write a retraining policy")
def policy(answer, *, replay, budget: int = 2, refit: bool = True):
    from mlops_course import capstone

    if not callable(answer):
        return wrong(f"expected a function my_policy(s) -> bool, got {type(answer).__name__}.",
                     "pass the function itself (my_policy), not what it returns (my_policy(...)).")
    try:
        run = replay.run(answer, refit=refit)
    except capstone.PolicyError as exc:
        if exc.raised is None and exc.answer is None:
            return wrong("your policy returned None: its body is not written yet.",
                         "end it with `return <condition>`: True retrains, False keeps the champion.")
        if exc.raised is not None:
            return wrong(f"your policy raised {type(exc.raised).__name__}: {exc.raised}.",
                         "it receives one Signals object s: read s.mae, s.naive_mae, s.drift_share, "
                         "s.new_months or s.month.")
        return wrong(f"your policy returned {exc.answer!r} ({type(exc.answer).__name__}), not True or False.",
                     "return a comparison such as `s.mae > s.naive_mae`, which is a bool.")
    retrainings = int(run["retrain"].sum())
    mae = replay.all_months(run["mae"])
    naive = replay.all_months(replay.naive)
    span = f"{replay.months[0]}-{replay.months[-1]}"
    effect = (f"{retrainings} retraining(s) (in {_months(run, 'retrain')}), MAE {mae:.2f} over {span}; "
              f"naive forecast {naive:.2f}")
    if retrainings == 0:
        return wrong(f"your policy never retrains: MAE {mae:.2f} over {span}, like the 'no retraining' row "
                     f"(naive forecast {naive:.2f}).",
                     "retrain when the model does badly, e.g. when s.mae is above s.naive_mae.")
    if retrainings > budget:
        return wrong(f"{effect}: over the budget of {budget} retrainings.",
                     "skip the retrainings that cannot help: s.new_months counts the months the champion has "
                     "not learned yet (1 means a retrained model would learn nothing new).")
    if mae >= naive:
        return wrong(f"{effect}: not below the naive forecast.",
                     "retrain when the model is worse than the naive forecast, early in the summer: a model that "
                     "learns June serves July to October much better.")
    return correct(f"{effect}: within the budget of {budget} and below the naive forecast.")


def champion_mae(version: str, month: str, bikes) -> float:
    """MAE on ``month`` of the registered version ``version`` (the scikit-learn flavour the gate scores)."""
    import mlflow

    from mlops_course import data, pipeline, registry

    model = mlflow.sklearn.load_model(f"models:/{registry.MODEL_NAME}/{version}")
    return pipeline.evaluate(model, data.select_months(bikes, [month]))["mae"]


@exercise("08.2", "a gate too strict")
def strict_gate(answer, *, champion_before, bikes):
    from mlops_course import registry

    if not all(hasattr(answer, k) for k in ("promoted", "model_version", "metrics", "holdout_month")):
        return wrong(f"expected the result of training_flow(...), got {type(answer).__name__}.",
                     "store the return value of training_flow(...) in strict_run.")
    if answer.model_version is None:
        return wrong("the run registered no model version.", "call training_flow with register=True.")
    if answer.promoted is None:
        return wrong("the gate did not judge this run.", "leave promote=True (the default) in training_flow.")
    champion_before = str(champion_before)
    challenger = float(answer.metrics["mae"])  # the flow rounds it to 4 decimals: compare at that precision
    champion = round(champion_mae(champion_before, answer.holdout_month, bikes), 4)
    if answer.promoted:
        needed = 1 - challenger / champion if champion else 0.0
        return wrong(f"v{answer.model_version} was promoted: the margin was not strict enough.",
                     f"it beat v{champion_before} by {needed:.0%}, so a margin above that keeps it out. Put "
                     f"@champion back first: mlflow.MlflowClient().set_registered_model_alias("
                     f"'{registry.MODEL_NAME}', 'champion', '{champion_before}').")
    now = registry.aliases().get("champion")
    if now != champion_before:
        return wrong(f"@champion moved from v{champion_before} to v{now}.",
                     f"set it back to v{champion_before} and let the gate alone decide.")
    if not challenger < champion:
        return wrong(f"v{answer.model_version}'s MAE on {answer.holdout_month}, {challenger:.2f}, is not below the "
                     f"champion's {champion:.2f}: the gate refused it on its merits, with any margin.",
                     "train a challenger that beats the champion (on July to November, as the exercise says) "
                     "and let a strict margin refuse it.")
    return correct(f"v{answer.model_version} beat the champion on {answer.holdout_month} ({challenger:.2f} against "
                   f"{champion:.2f}), and the margin still kept v{champion_before} as champion.")


HEX = re.compile(r"[0-9a-f]{1,40}")


@exercise("08.3", "trace a prediction to its data")
def trace(answer, *, timeline, lineage):
    version = str(timeline.loc["Nov", "served_version"])
    expected = str(lineage.loc[version, "data_commit"]).lower()
    text = str(answer).strip().lower()

    def same(commit: str) -> bool:  # a short hash names a commit by its first characters
        commit = str(commit).lower()
        return HEX.fullmatch(text) is not None and len(text) >= 7 and commit not in ("-", "none") and (commit.startswith(text) or text.startswith(commit))

    if same(expected):
        return correct(f"November's predictions came from v{version}, trained on data commit {expected}.")
    others = [v for v, commit in lineage["data_commit"].items() if same(commit)]
    if others:
        return wrong(f"that commit holds the data of v{others[0]}, not of the version that served November.",
                     "first find which version served November (the timeline), then its data_commit.")
    if text.removeprefix("v").isdigit() and text.removeprefix("v") in {str(v) for v in lineage.index}:
        return wrong(f"{answer!r} is a model version, not a commit.",
                     "look that version up in the lineage table: its data_commit column holds the commit.")
    if HEX.fullmatch(text) and len(text) < 7:
        return wrong(f"{answer!r} is too short to name a commit.", "give the 7 characters the lineage table shows.")
    return wrong(f"{answer!r} is not the data commit of any model version.",
                 "use the data_commit column of the lineage table.")
