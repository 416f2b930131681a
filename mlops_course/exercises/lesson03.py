"""Checks for lesson 03 (Model registry and packaging).

Each check judges the answer by what it does: predictions are compared with the registered versions' own
predictions, a list of trusted types is tried on the file, a gate result is re-scored against the registry,
and a model card is parsed and its figures recomputed from version 1.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from mlops_course.exercises import correct, exercise, wrong


def _predictions(answer) -> np.ndarray | None:
    values = answer.to_numpy() if hasattr(answer, "to_numpy") else answer
    try:
        return np.asarray(values, dtype=float).ravel()
    except (TypeError, ValueError):
        return None


@exercise("03.1", "predict with the champion, loaded by its alias")
def champion_predictions(answer, X, name: str = "bike-demand") -> object:
    import mlflow

    from mlops_course import registry

    preds = _predictions(answer)
    if preds is None:
        return wrong(f"expected numbers (an array of predictions), got a {type(answer).__name__} that is not.",
                     "put the result of model.predict(july_X) in july_predictions.")
    if preds.shape != (len(X),):
        return wrong(f"expected {len(X)} predictions (one per row of the table), got {preds.size}.",
                     "call predict on the whole table you were given, not on a few rows.")
    champion = registry.version_by_alias("champion", name)
    expected = mlflow.sklearn.load_model(f"models:/{name}/{champion.version}").predict(X)
    if np.allclose(preds, expected, atol=1e-6):
        return correct(f"these are the predictions of version {champion.version}, the one '@champion' points at.")
    if np.allclose(preds, expected, atol=1e-2):
        return correct(f"these are version {champion.version}'s predictions (through ONNX, float32 rounding).")
    client = mlflow.MlflowClient()
    for mv in client.search_model_versions(f"name='{name}'"):
        other = mlflow.sklearn.load_model(f"models:/{name}/{mv.version}").predict(X)
        if np.allclose(preds, other, atol=1e-2):
            return wrong(f"these are the predictions of version {mv.version}, but '@champion' now points at "
                         f"version {champion.version}.",
                         "load by alias, not by number: mlflow.pyfunc.load_model('models:/bike-demand@champion'). "
                         "The gate moved the alias.")
    if np.allclose(preds, np.round(expected), atol=1e-6):
        return wrong("these are the champion's predictions, rounded.",
                     "keep the numbers predict returns; round only when you display them.")
    return wrong("these are not the predictions of any registered version.",
                 "pass the features (pipeline.make_features) of the rows, not the raw table, and do not round.")


@exercise("03.2", "the types skops must be told to trust")
def trusted_types(answer, skops_file) -> object:
    import skops.io as sio

    if isinstance(answer, str) or not isinstance(answer, Iterable):
        return wrong(f"expected a list of type names (strings), got {type(answer).__name__}.",
                     "write it like ['package.module.ClassName'].")
    answer = list(answer)
    if not all(isinstance(t, str) for t in answer):
        return wrong("skops takes type names as text, and some entries are not strings.",
                     "write each type as its dotted name, e.g. 'package.module.ClassName', not the class itself.")
    given, needed = set(answer), set(sio.get_untrusted_types(file=skops_file))
    tree = "sklearn.tree._tree.Tree"
    if tree in given and tree not in needed:
        return wrong(f"{tree} is what a random forest needs; this file holds another model.",
                     "ask the file itself: skops.io.get_untrusted_types(file=...).")
    missing = sorted(needed - given)
    if missing:
        return wrong(f"skops would still refuse the file: {missing} is not in your list.",
                     "ask the file itself: skops.io.get_untrusted_types(file=...).")
    extra = sorted(given - needed)
    if extra:
        return wrong(f"your list trusts more than the file needs: {extra}.",
                     "trust only the types get_untrusted_types reports, and only after reading what they are.")
    model = sio.load(skops_file, trusted=sorted(given))
    return correct(f"with exactly {sorted(needed)} trusted, skops loads the {type(model).__name__}.")


CHALLENGER_MONTHS = ("Feb", "March", "April", "May")  # what exercise 3's challenger learns
LEAK_RATIO = 0.7  # a held-out MAE below 70 % of an honest refit's means the model saw the held-out month


def _refit(model, months):
    """An unfitted copy of ``model`` (same kind and settings, seed included) fitted on ``months``."""
    from sklearn.base import clone

    from mlops_course import data, pipeline

    X, y = pipeline.xy(data.select_months(data.load_bikeshare(), list(months)))
    return clone(model).fit(X, y)


@exercise("03.3", "a gate with a safety margin")
def gate_with_margin(answer, margin: float = 0.05, holdout=None, name: str = "bike-demand") -> object:
    import math

    import mlflow

    from mlops_course import pipeline, registry

    if not isinstance(answer, registry.GateResult):
        return wrong(f"expected the GateResult that registry.promote_if_better returns, got {type(answer).__name__}.",
                     "answer = registry.promote_if_better(version, june, margin=0.05)")
    if answer.champion_mae is None:
        return wrong("this gate ran without a champion, so it had nothing to compare with.",
                     "run it after the champion alias exists (the cells above set it).")
    if answer.champion_version == answer.challenger_version:
        return wrong(f"version {answer.challenger_version} was gated against itself.",
                     "register the new model first (registry.register) and pass the version it returns.")
    if not math.isclose(answer.margin, margin, abs_tol=1e-9):
        return wrong(f"this gate used a margin of {answer.margin:g}, not {margin:g}.",
                     f"pass margin={margin} to promote_if_better.")
    should_promote = answer.challenger_mae < answer.champion_mae * (1 - margin)
    if answer.promoted != should_promote:
        return wrong(f"with MAE {answer.challenger_mae:.2f} against {answer.champion_mae:.2f} and a {margin:.0%} "
                     f"margin the gate should have {'promoted' if should_promote else 'kept the champion'}.",
                     "use the GateResult that promote_if_better returns; do not build or edit one yourself.")
    if holdout is not None:
        challenger = mlflow.sklearn.load_model(f"models:/{name}/{answer.challenger_version}")
        on_holdout = pipeline.evaluate(challenger, holdout)["mae"]
        if not math.isclose(on_holdout, answer.challenger_mae, abs_tol=5e-3):
            return wrong(f"version {answer.challenger_version} scores MAE {on_holdout:.2f} on the held-out month, "
                         f"but this gate saw {answer.challenger_mae:.2f}: it was scored on other data.",
                         "pass june (the month neither model trained on) to promote_if_better.")
        # A model that learned the held-out month scores far better on it than the same model trained without it.
        honest = pipeline.evaluate(_refit(challenger, CHALLENGER_MONTHS), holdout)["mae"]
        if on_holdout < LEAK_RATIO * honest:
            return wrong(f"version {answer.challenger_version} scores MAE {on_holdout:.2f} on the held-out month, far "
                         f"better than the same model trained on {'-'.join(CHALLENGER_MONTHS[::3])} "
                         f"({honest:.2f}): it has learned that month, so the gate cannot judge it.",
                         "train the challenger on February to May only: the month that judges a model must be one "
                         "it never saw.")
    if math.isclose(answer.challenger_mae, answer.champion_mae, abs_tol=1e-9):
        return wrong("the challenger scores exactly like the champion: it is the same model, trained on the same "
                     "months.", "train the challenger on February to May (leave January out).")
    champion = registry.aliases(name).get("champion")
    expected = answer.challenger_version if answer.promoted else answer.champion_version
    if champion != expected:
        return wrong(f"'@champion' points at version {champion}, but this decision says it should be {expected}.",
                     "run the gate once more, after registering the challenger, and do not move aliases by hand.")
    verdict = "promoted" if answer.promoted else "kept the champion"
    return correct(f"version {answer.challenger_version} scored MAE {answer.challenger_mae:.2f} against "
                   f"{answer.champion_mae:.2f}; with a {margin:.0%} margin the gate {verdict}.")


def _card_table(text: str) -> dict[str, dict[str, str]]:
    """The metrics table of a course model card: {month: {column: cell}}."""
    lines = text.split("## Metrics by month", 1)[-1].splitlines()
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in lines if line.startswith("|")]
    if len(rows) < 2:
        return {}
    header, body = rows[0], [r for r in rows[2:] if len(r) == len(rows[0])]
    return {r[0]: dict(zip(header[1:], r[1:])) for r in body}


@exercise("03.4", "a model card for version 1")
def model_card_v1(answer, name: str = "bike-demand") -> object:
    import re
    from pathlib import Path

    import mlflow

    from mlops_course import data, pipeline, registry

    if not isinstance(answer, str) or not answer.startswith("runs:/"):
        return wrong(f"expected the artifact URI that registry.log_model_card returns (runs:/...), got {answer!r}.",
                     "answer = registry.log_model_card(card_path, version='1')")
    tag = mlflow.MlflowClient().get_model_version(name, "1").tags.get(registry.MODEL_CARD_TAG)
    if tag != answer:
        return wrong("version 1 is not tagged with this card.",
                     "log the card with registry.log_model_card(path, version='1'), which also sets the tag.")
    text = Path(mlflow.artifacts.download_artifacts(answer)).read_text()
    title = text.splitlines()[0] if text.strip() else ""
    titled = re.search(r"\bversion (\w+)", title)
    if titled is None or titled.group(1) != "1":
        return wrong(f"the card's title is {title!r}: it describes another version.",
                     "pass version='1' to write_model_card.")
    table = _card_table(text)
    if not table:
        return wrong("the card has no metrics table.", "write it with packaging.write_model_card.")
    missing = [m for m in data.MONTHS if m not in table]
    if missing:
        return wrong(f"the metrics table leaves out {missing}: it should cover every month.",
                     "evaluate version 1 on the whole year: pipeline.evaluate_by_month(model, bikes).")
    training = [m for m in data.MONTHS if table[m].get("used for") == "training"]
    if training != ["Jan", "Feb", "March", "April"]:
        return wrong(f"the card says version 1 was trained on {training}, but it was trained on January to April.",
                     "pass train_months=['Jan', 'Feb', 'March', 'April'].")
    version_1 = mlflow.sklearn.load_model(f"models:/{name}/1")
    by_month = pipeline.evaluate_by_month(version_1, data.load_bikeshare())
    off = [m for m in data.MONTHS if abs(float(table[m]["MAE"]) - by_month.loc[m, "mae"]) > 0.006]
    if off:
        return wrong(f"the MAE of {off[:3]} in the card is not version 1's MAE: the metrics come from another model.",
                     "compute them with version 1 itself: load models:/bike-demand/1 and pass it to "
                     "pipeline.evaluate_by_month and write_model_card.")
    return correct("version 1 has its model card, logged in its run and linked from its tags, with its own "
                   "metrics for every month.")
