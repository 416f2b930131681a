"""Checks for lesson 03 (Model registry and packaging)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mlops_course.exercises import correct, exercise, wrong


def _predictions(answer) -> np.ndarray:
    values = answer.to_numpy() if hasattr(answer, "to_numpy") else np.asarray(answer)
    return np.asarray(values, dtype=float).ravel()


@exercise("03.1", "predict with the champion, loaded by its alias")
def champion_predictions(answer, X, name: str = "bike-demand") -> object:
    import mlflow

    from mlops_course import registry

    preds = _predictions(answer)
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
    return wrong("these are not the predictions of any registered version.",
                 "pass the features (pipeline.make_features) of the rows, not the raw table, and do not round.")


@exercise("03.2", "the types skops must be told to trust")
def trusted_types(answer, skops_file) -> object:
    import skops.io as sio

    if isinstance(answer, str) or not isinstance(answer, Sequence):
        return wrong(f"expected a list of type names (strings), got {type(answer).__name__}.",
                     "write it like ['package.module.ClassName'].")
    answer = [str(t) for t in answer]
    needed = sorted(sio.get_untrusted_types(file=skops_file))
    if sorted(answer) == needed:
        model = sio.load(skops_file, trusted=answer)
        return correct(f"with exactly {needed} trusted, skops loads the {type(model).__name__}.")
    if "sklearn.tree._tree.Tree" in answer and "sklearn.tree._tree.Tree" not in needed:
        return wrong("sklearn.tree._tree.Tree is what a random forest needs; this file holds another model.",
                     "ask the file itself: skops.io.get_untrusted_types(file=...).")
    missing = [t for t in needed if t not in answer]
    if missing:
        return wrong(f"skops would still refuse the file: {missing} is not in your list.",
                     "ask the file itself: skops.io.get_untrusted_types(file=...).")
    extra = [t for t in answer if t not in needed]
    return wrong(f"your list trusts more than the file needs: {extra}.",
                 "trust only the types get_untrusted_types reports, and only after reading what they are.")


@exercise("03.3", "a gate with a safety margin")
def gate_with_margin(answer, margin: float = 0.05, name: str = "bike-demand") -> object:
    from mlops_course import registry

    if not isinstance(answer, registry.GateResult):
        return wrong(f"expected the GateResult that registry.promote_if_better returns, got {type(answer).__name__}.",
                     "answer = registry.promote_if_better(version, june, margin=0.05)")
    if answer.champion_mae is None:
        return wrong("this gate ran without a champion, so it had nothing to compare with.",
                     "run it after the champion alias exists (the cells above set it).")
    needed = answer.champion_mae * (1 - margin)
    if f"needed below {needed:.2f}" not in answer.reason:
        return wrong(f"this gate did not use a {margin:.0%} margin: {answer.reason}.",
                     f"pass margin={margin} to promote_if_better.")
    champion = registry.aliases(name).get("champion")
    expected = answer.challenger_version if answer.promoted else answer.champion_version
    if champion != expected:
        return wrong(f"'@champion' points at version {champion}, but this decision says it should be {expected}.",
                     "run the gate once more, after registering the challenger, and do not move aliases by hand.")
    verdict = "promoted" if answer.promoted else "kept the champion"
    return correct(f"version {answer.challenger_version} scored MAE {answer.challenger_mae:.2f} against "
                   f"{answer.champion_mae:.2f}; with a {margin:.0%} margin the gate {verdict}.")


@exercise("03.4", "a model card for version 1")
def model_card_v1(answer, name: str = "bike-demand") -> object:
    import mlflow

    from mlops_course import registry

    if not isinstance(answer, str) or not answer.startswith("runs:/"):
        return wrong(f"expected the artifact URI that registry.log_model_card returns (runs:/...), got {answer!r}.",
                     "answer = registry.log_model_card(card_path, version='1')")
    tag = mlflow.MlflowClient().get_model_version(name, "1").tags.get(registry.MODEL_CARD_TAG)
    if tag != answer:
        return wrong("version 1 is not tagged with this card.",
                     "log the card with registry.log_model_card(path, version='1'), which also sets the tag.")
    from pathlib import Path

    text = Path(mlflow.artifacts.download_artifacts(answer)).read_text()
    if "version 1" not in text.splitlines()[0]:
        return wrong(f"the card's title is {text.splitlines()[0]!r}: it describes another version.",
                     "pass version='1' to write_model_card.")
    if "| May | training" in text:
        return wrong("the card says May was used for training, but version 1 was trained on January to April.",
                     "pass train_months=['Jan', 'Feb', 'March', 'April'].")
    if "| April | training" not in text or "| Dec |" not in text:
        return wrong("the metrics table should mark January to April as training and cover every month.",
                     "evaluate version 1 on the whole year: pipeline.evaluate_by_month(model, bikes).")
    return correct("version 1 has its model card, logged in its run and linked from its tags.")
