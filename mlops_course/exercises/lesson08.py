"""Checks for lesson 08 (End-to-end MLOps pipeline)."""

from __future__ import annotations

import numbers

from mlops_course.exercises import correct, exercise, wrong


def count_retrainings(bikes, initial_months, holdout_month, *, drift_threshold, error_threshold,
                      n_estimators=40, margin=0.0) -> int:
    """Replay the loop's policy in memory (same drift score, same split, same gate) and count retrainings."""
    from mlops_course import capstone, data, drift, pipeline, registry

    months = data.MONTHS
    labelled = [*initial_months, holdout_month]
    reference = list(initial_months)
    model = pipeline.train(data.select_months(bikes, reference), n_estimators=n_estimators)
    count = 0
    for month in months[months.index(holdout_month) + 1:]:
        batch = data.select_months(bikes, [month])
        features = pipeline.make_features(batch)
        ref = pipeline.make_features(data.select_months(bikes, reference))
        table = drift.drift_table(ref, features, categorical=capstone.CATEGORICAL)
        score = float((table["psi"] > drift.PSI_SIGNIFICANT).mean())
        mae = pipeline.evaluate(model, batch)["mae"]
        labelled.append(month)
        if score > drift_threshold and mae > error_threshold:
            count += 1
            challenger = pipeline.train(data.select_months(bikes, labelled[:-1]), n_estimators=n_estimators)
            if registry.gate(pipeline.evaluate(challenger, batch)["mae"], mae, margin)[0]:
                model, reference = challenger, labelled[:-1]
    return count


@exercise("08.1", "predict the number of retrainings")
def retrainings(answer, *, bikes, initial_months, holdout_month, drift_threshold, n_estimators=40):
    if isinstance(answer, bool) or not isinstance(answer, numbers.Integral):  # numpy's integers count too
        return wrong(f"expected a whole number of retrainings, got {answer!r}.", "count them: 0, 1, 2, ...")
    expected = count_retrainings(bikes, initial_months, holdout_month, drift_threshold=drift_threshold,
                                 error_threshold=60.0, n_estimators=n_estimators)
    if answer == expected:
        return correct(f"with error_threshold=60 the loop retrains {expected} time(s).")
    if answer > expected:
        return wrong(f"{answer} is too many.", "after a promotion the error drops: which months stay above 60?")
    return wrong(f"{answer} is too few.", "compare every month's MAE (not only the first) with 60, and remember "
                                          "the drift score must be above its threshold too.")


@exercise("08.2", "break the gate")
def broken_gate(answer, *, champion_before):
    from mlops_course import registry

    if not hasattr(answer, "promoted") or not hasattr(answer, "model_version"):
        return wrong(f"expected the result of training_flow(...), got {type(answer).__name__}.",
                     "store the return value of training_flow(...) in strict_run.")
    if answer.model_version is None:
        return wrong("the run registered no model version.", "call training_flow with register=True.")
    if answer.promoted:
        return wrong(f"v{answer.model_version} was promoted: the gate was not strict enough.",
                     "raise margin (0.9 means the challenger needs a 90% lower MAE).")
    champion = registry.aliases().get("champion")
    if champion != str(champion_before):
        return wrong(f"@champion moved from v{champion_before} to v{champion}.",
                     "the gate must leave @champion where it was.")
    return correct(f"the gate refused v{answer.model_version}; v{champion} stays champion.")


@exercise("08.3", "trace a prediction to its data")
def trace(answer, *, timeline, lineage):
    version = str(timeline.loc["Nov", "served_version"])
    expected = lineage.loc[version, "data_commit"]
    if str(answer).strip() == expected:
        return correct(f"November's predictions came from v{version}, trained on data commit {expected}.")
    if str(answer).strip() in set(lineage["data_commit"].dropna()):
        return wrong("that commit trained a different model version.",
                     "look up which version served November in the timeline first.")
    return wrong(f"{answer!r} is not a data commit of any model version.",
                 "use the data_commit column of the lineage table.")
