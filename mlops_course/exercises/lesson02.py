"""Checks for lesson 02 (Experiment tracking with MLflow). They read the lesson's tracking store."""

from __future__ import annotations

import math

from mlops_course.exercises import correct, exercise, wrong

EXPERIMENT = "bike-demand"
NAME = "tags.mlflow.runName"


def _runs(experiment: str, filter_string: str = ""):
    import mlflow

    if mlflow.get_experiment_by_name(experiment) is None:
        return None
    return mlflow.search_runs(experiment_names=[experiment], filter_string=filter_string, output_format="pandas")


def _value(row, column: str) -> float | None:
    value = row.get(column) if column in row else None
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return float(value)


def _text(row, column: str) -> str | None:
    value = row.get(column) if column in row else None
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


def _names(runs) -> list[str]:
    return sorted(str(n) for n in runs[NAME].dropna()) if runs is not None and len(runs) else []


def _no_experiment(experiment: str):
    return wrong(f"there is no experiment {experiment!r} in this tracking store.",
                 "run the lesson's cells from the top: the baseline cell calls mlflow.set_experiment.")


def _train_mae_of_logged_model(row) -> float | None:
    """The MAE on the run's training months (its ``train_months`` tag) of the model the run logged, or None."""
    import mlflow

    from mlops_course import data, pipeline

    months = _text(row, "tags.train_months")
    found = mlflow.search_logged_models(filter_string=f"source_run_id = '{row['run_id']}'", output_format="list")
    if not months or not found:
        return None
    model = mlflow.sklearn.load_model(found[0].model_uri)
    return pipeline.evaluate(model, data.select_months(data.load_bikeshare(), months.split(",")))["mae"]


@exercise("02.1", "log a missing metric")
def missing_metric(answer: str, experiment: str = EXPERIMENT) -> object:
    if not isinstance(answer, str):
        return wrong(f"expected the run's name as a string, got {type(answer).__name__}.",
                     "answer with the name of the run, e.g. 'rf-baseline', not the run object or its id.")
    runs = _runs(experiment)
    if runs is None:
        return _no_experiment(experiment)
    named = runs[runs[NAME] == answer] if NAME in runs else runs.iloc[0:0]
    if named.empty:
        return wrong(f"no run named {answer!r} in experiment {experiment!r}; runs there: {_names(runs)}.",
                     "the baseline run is called 'rf-baseline'.")
    rows = [row for _, row in named.iterrows()]
    complete = [r for r in rows if _value(r, "metrics.train_mae") is not None
                and _value(r, "metrics.valid_mae") is not None]
    if not complete:
        if any(_value(r, "metrics.train_mae") is not None for r in rows):
            return wrong(f"a run named {answer!r} has train_mae but no valid_mae: you started a new run with "
                         f"the same name instead of adding to the existing one.",
                         "reopen the baseline with mlflow.start_run(run_id=baseline.info.run_id).")
        others = sorted({c.split(".", 1)[1] for r in rows for c in r.index
                         if c.startswith("metrics.") and _value(r, c) is not None and "train" in c})
        hint = (f"you logged {others}; the exercise asks for the key 'train_mae' exactly." if others else
                "inside mlflow.start_run(run_id=...), call mlflow.log_metric('train_mae', ...).")
        return wrong(f"run {answer!r} has no metric 'train_mae' yet.", hint)
    row = complete[0]
    train_mae, valid_mae = _value(row, "metrics.train_mae"), _value(row, "metrics.valid_mae")
    if math.isclose(train_mae, valid_mae, rel_tol=1e-9):
        return wrong(f"train_mae equals valid_mae ({valid_mae:.2f}): that is the validation error again.",
                     "evaluate the model on train_df (the training months), not on valid_df.")
    if not 0 < train_mae < valid_mae:
        return wrong(f"train_mae is {train_mae:.2f}, validation MAE {valid_mae:.2f}: a forest fits its own "
                     f"training hours better than an unseen month, so this looks like another number.",
                     "use pipeline.evaluate(model, train_df)['mae'] with the baseline model.")
    expected = _train_mae_of_logged_model(row)
    if expected is None:
        return wrong(f"run {answer!r} has no logged model (or no train_months tag) to check train_mae against.",
                     "run section 2 from the top: it tags the run and logs the model with log_model.")
    if abs(train_mae - expected) > 0.005:  # the lesson prints two decimals
        return wrong(f"train_mae is {train_mae:.2f}, but the run's model has MAE {expected:.2f} on its training "
                     f"months ({_text(row, 'tags.train_months')}).",
                     "evaluate the baseline model itself on train_df: pipeline.evaluate(model, train_df)['mae'].")
    return correct(f"run {answer!r}: train MAE {train_mae:.2f} vs validation MAE {valid_mae:.2f}; the gap is "
                   f"part overfitting (the forest knows its own training hours) and part the change from the "
                   f"training months to a month it has not seen.")


@exercise("02.2", "find the best random forest with a filter")
def best_forest(answer: str, experiment: str = EXPERIMENT, kind: str = "random_forest") -> object:
    if not isinstance(answer, str):
        return wrong(f"expected a run name as a string, got {type(answer).__name__}.",
                     "take one value from the 'tags.mlflow.runName' column.")
    runs = _runs(experiment)
    if runs is None:
        return _no_experiment(experiment)
    if answer not in set(runs.get(NAME, [])):
        return wrong(f"{answer!r} is not a run name in {experiment!r}.",
                     "read the name from the 'tags.mlflow.runName' column of search_runs.")
    if "params.model_kind" not in runs or "metrics.valid_mae" not in runs:
        return wrong("no run logs the param 'model_kind' and the metric 'valid_mae' yet.",
                     "run the hyperparameter search cells first.")
    family = runs[(runs["params.model_kind"] == kind)].dropna(subset=["metrics.valid_mae"])
    ranked = family.sort_values(["metrics.valid_mae", NAME])
    best = ranked["metrics.valid_mae"].iloc[0]
    winners = set(ranked.loc[ranked["metrics.valid_mae"] == best, NAME])
    if answer in winners:
        return correct(f"{answer!r} is the best {kind} on the validation month (MAE {best:.2f}).")
    row = runs[runs[NAME] == answer].iloc[0]
    family_of_answer = _text(row, "params.model_kind")
    if family_of_answer != kind:
        overall = runs.dropna(subset=["metrics.valid_mae"])["metrics.valid_mae"].min()
        extra = " It is the best run overall, of another family." if _value(row, "metrics.valid_mae") == overall else ""
        return wrong(f"{answer!r} is a {family_of_answer or 'run without model_kind'}, not a {kind}."
                     + extra, f"add filter_string=\"params.model_kind = '{kind}'\" to mlflow.search_runs.")
    if answer == ranked[NAME].iloc[-1]:
        return wrong(f"{answer!r} is the worst {kind}, not the best.",
                     "a lower MAE is better: order_by=['metrics.valid_mae ASC'] and take the first row.")
    return wrong(f"{answer!r} is a {kind}, but not the one with the lowest validation MAE.",
                 "order_by=['metrics.valid_mae ASC'] and take the first row.")


@exercise("02.3", "tag a shortlist and query it by tag")
def shortlist(answer, experiment: str = EXPERIMENT, parent: str = "search", tag: str = "review",
              value: str = "shortlist", size: int = 3) -> object:
    if hasattr(answer, "columns"):
        return wrong("you passed a DataFrame.", f"take its run names: list(runs['{NAME}']).")
    if isinstance(answer, str) or not isinstance(answer, (list, tuple)):
        return wrong(f"expected a list of run names, got {type(answer).__name__}.",
                     "answer with a list like ['name-1', 'name-2', 'name-3'].")
    runs = _runs(experiment)
    if runs is None:
        return _no_experiment(experiment)
    parents = runs[runs.get(NAME) == parent] if NAME in runs else runs.iloc[0:0]
    if parents.empty:
        return wrong(f"no parent run named {parent!r} in {experiment!r}.", "run the hyperparameter search cell.")
    # The newest search only: the search cell run twice leaves two parents whose children share their names.
    newest = parents.sort_values("start_time")["run_id"].iloc[-1] if "start_time" in parents else parents["run_id"].iloc[0]
    children = runs[runs.get("tags.mlflow.parentRunId") == newest] if "tags.mlflow.parentRunId" in runs \
        else runs.iloc[0:0]
    children = children.dropna(subset=["metrics.valid_mae"]).sort_values(["metrics.valid_mae", NAME])
    expected = list(children[NAME].head(size))
    column = f"tags.{tag}"
    tagged = runs[runs[column] == value] if column in runs else runs.iloc[0:0]
    if tagged.empty:
        return wrong(f"no run carries the tag {tag}={value!r} yet.",
                     f"MlflowClient().set_tag(run_id, '{tag}', '{value}') for each of the three best candidates.")
    tagged_names = set(tagged[NAME])
    if tagged_names != set(expected):
        extra = sorted(tagged_names - set(expected))
        missing = len(set(expected) - tagged_names)
        parts = []
        if extra:
            parts.append(f"tagged but not among the {size} best candidates of {parent!r}: {extra}")
        if missing:
            parts.append(f"{missing} of the {size} best still untagged")
        return wrong("; ".join(parts) + ".",
                     "take the children of the search ordered by metrics.valid_mae ASC, tag the first three, "
                     "and remove the tag from the others (MlflowClient().delete_tag).")
    names = [str(n) for n in answer]
    if set(names) != tagged_names or len(names) != len(tagged_names):
        return wrong(f"your list {names} is not the set of runs that carry the tag.",
                     f"read them back with filter_string=\"tags.{tag} = '{value}'\".")
    if names != expected:
        return wrong("the right runs, in the wrong order.", "add order_by=['metrics.valid_mae ASC'] to the query.")
    return correct(f"the shortlist {names} is tagged and found again by its tag, best first.")
