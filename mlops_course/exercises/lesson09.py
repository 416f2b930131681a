"""Checks for lesson 09 (MLOps at team scale). Each runs what the learner wrote against the lesson's engines.

- 09.1 reads the DVC remote in the learner's clone with ``dvc remote list`` / ``dvc config`` and looks for the
  data's object in the backup bucket (what ``dvc push -r backup`` leaves there);
- 09.2 runs the learner's Optuna objective on a new study in the lesson's PostgreSQL, with queued depths, and
  compares each trial's value with the check's own training;
- 09.3 evaluates the learner's PromQL in the lesson's Prometheus next to a reference expression.
"""

from __future__ import annotations

import math
import os
import time
import uuid
from pathlib import Path

from mlops_course.exercises import correct, exercise, wrong

BACKUP_URL = "s3://team-backup/bikes"
SUMMER_TRAIN = ["April", "May", "June"]
SUMMER_HOLDOUT = "July"
SUMMER_TREES = 30
SUMMER_DEPTHS = (5, 12)
PER_REPLICA = 'sum by (instance) (rate(bike_requests_total{route="/predict"}[1m]))'


# ---------------------------------------------------------------- 09.1: a DVC remote, read back by DVC itself
def _dvc(repo: Path, *args: str) -> tuple[bool, str]:
    from mlops_course import versioning

    result = versioning.execute(["dvc", *args], repo, check=False)
    return result.ok, result.output.strip()


def _remotes(repo: Path) -> dict[str, str]:
    ok, text = _dvc(repo, "remote", "list")
    found = {}
    for line in text.splitlines() if ok else []:
        parts = line.split()
        if len(parts) >= 2:
            found[parts[0]] = parts[1]
    return found


@exercise("09.1", "a backup remote for Bob")
def backup_remote(answer, repo=None, store=None) -> object:
    if not isinstance(answer, str) or not answer.strip():
        return wrong(f"expected the remote's name as a string, got {answer!r}.", "backup_remote = 'backup'.")
    if repo is None or store is None:
        return wrong("the check needs Bob's clone and the object store.", "call check('09.1', name, repo=bob, store=store).")
    repo, name = Path(repo), answer.strip()
    remotes = _remotes(repo)
    if name not in remotes:
        return wrong(f"`dvc remote list` in Bob's clone shows {sorted(remotes)}, not {name!r}.",
                     f"add it in Bob's clone: dvc remote add {name} {BACKUP_URL}.")
    url = remotes[name].rstrip("/")
    if url != BACKUP_URL:
        bucket = url.removeprefix("s3://").split("/")[0] if url.startswith("s3://") else None
        if bucket and bucket != "team-backup":
            return wrong(f"remote {name!r} points at {url}, in the bucket {bucket!r}.",
                         f"the backup bucket is team-backup: dvc remote modify {name} url {BACKUP_URL}.")
        return wrong(f"remote {name!r} points at {url}, not {BACKUP_URL}.",
                     f"dvc remote modify {name} url {BACKUP_URL}.")
    ok, endpoint = _dvc(repo, "config", f"remote.{name}.endpointurl")
    if not ok or not endpoint:
        return wrong(f"remote {name!r} has no endpointurl, so DVC would look for the bucket on AWS.",
                     f"dvc remote modify --local {name} endpointurl <the store's URL> (store.url).")
    if endpoint.rstrip("/") != store.url.rstrip("/"):
        return wrong(f"remote {name!r} has an endpointurl that is not this lesson's store.",
                     f"set it to store.url: dvc remote modify --local {name} endpointurl ...")
    ok, listed = _dvc(repo, "config", "--project", "--list")  # listing: no error logged when the key is absent
    shared = ok and any(line.split("=", 1)[0].strip() == f"remote.{name}.endpointurl" for line in listed.splitlines())
    if shared:
        return wrong("the endpoint is in .dvc/config, which is committed: every clone would get this laptop's "
                     "address.", f"keep it in the local config: dvc remote modify --local {name} endpointurl ...")
    from mlops_course import versioning

    md5 = versioning.tracked_md5(repo / "data" / "bikes.csv.dvc")
    keys = [key for key, _ in store.objects("team-backup")]
    if not any(key.endswith(md5[2:]) and md5[:2] in key for key in keys):
        return wrong(f"remote {name!r} is configured, but the bucket team-backup holds no copy of the data yet.",
                     f"push to it: dvc push -r {name}.")
    return correct(f"remote {name!r} -> {BACKUP_URL}, endpoint in the local config, and the data's object "
                   f"({md5[:8]}...) is in the bucket.")


# ---------------------------------------------------------------- 09.2: an objective, run on a shared study
def _reference_mae(bikes, depth: int) -> float:
    from mlops_course import data, pipeline

    model = pipeline.train(data.select_months(bikes, SUMMER_TRAIN), n_estimators=SUMMER_TREES, max_depth=depth)
    return pipeline.evaluate(model, data.select_months(bikes, [SUMMER_HOLDOUT]))["mae"]


@exercise("09.2", "an objective for the summer")
def summer_objective(answer, storage: str | None = None, bikes=None) -> object:
    import optuna

    from mlops_course import data

    if not callable(answer):
        return wrong(f"expected a function of one trial, got {type(answer).__name__}.",
                     "def summer_objective(trial): ... return mae")
    from mlops_course.exercises.lesson07 import _is_stub

    if _is_stub(answer):
        return wrong("exercise 09.2 (an objective for the summer) is not answered yet: the function's body is "
                     "still empty.", "fill in the cell above, run it, then run this check again.")
    storage = storage or os.environ.get("OPTUNA_STORAGE")
    if not storage:
        return wrong("the check needs the study storage.", "call check('09.2', summer_objective, storage=study_uri).")
    bikes = data.load_bikeshare() if bikes is None else bikes
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=f"check-09-2-{uuid.uuid4().hex[:8]}", storage=storage,
                                direction="minimize")
    for depth in SUMMER_DEPTHS:
        study.enqueue_trial({"max_depth": depth})
    study.optimize(answer, n_trials=len(SUMMER_DEPTHS), catch=(Exception,))
    trials = study.trials
    failed = [t for t in trials if t.state != optuna.trial.TrialState.COMPLETE]
    if failed:
        return wrong(f"{len(failed)} of {len(trials)} trials did not complete (state {failed[0].state.name}).",
                     "run summer_objective on a trial by hand: optuna.create_study().optimize(summer_objective, "
                     "n_trials=1) shows the error; the function must return a number.")
    used = [t.params for t in trials]
    if any("max_depth" not in p for p in used):
        return wrong(f"the trials suggested {sorted(used[0])}, not max_depth.",
                     "ask the trial for it: max_depth = trial.suggest_int('max_depth', 4, 16).")
    if [p["max_depth"] for p in used] != list(SUMMER_DEPTHS):
        return wrong(f"the queued depths {list(SUMMER_DEPTHS)} came back as {[p['max_depth'] for p in used]}.",
                     "suggest max_depth between 4 and 16, as an int: trial.suggest_int('max_depth', 4, 16).")
    truth = [_reference_mae(bikes, d) for d in SUMMER_DEPTHS]
    values = [t.value for t in trials]
    if all(math.isclose(v, -m, rel_tol=1e-6) for v, m in zip(values, truth)):
        return wrong("your objective returns minus the MAE.", "the study minimises: return the MAE itself.")
    if all(0 <= v <= 1 for v in values):
        return wrong(f"your objective returned {values[0]:.3f}: a score between 0 and 1 (R^2?), not the MAE.",
                     "return pipeline.evaluate(model, july)['mae'].")
    off = [(d, v, m) for d, v, m in zip(SUMMER_DEPTHS, values, truth) if not math.isclose(v, m, rel_tol=1e-6)]
    if off:
        depth, value, mae = off[0]
        return wrong(f"with max_depth={depth} your objective returned {value:.2f}; a forest of {SUMMER_TREES} "
                     f"trees on {'+'.join(SUMMER_TRAIN)} scores {mae:.2f} on {SUMMER_HOLDOUT}.",
                     f"train on {SUMMER_TRAIN} with n_estimators={SUMMER_TREES} and score on "
                     f"['{SUMMER_HOLDOUT}'].")
    shown = ", ".join(f"depth {d}: {v:.2f}" for d, v in zip(SUMMER_DEPTHS, values))
    return correct(f"both queued trials ran on the shared study and match ({shown}).")


# ---------------------------------------------------------------- 09.3: PromQL, evaluated in Prometheus
def _series(result: list[dict]) -> dict[str, float]:
    return {r["metric"].get("instance", ""): r["value"] for r in result}


@exercise("09.3", "requests per second, per replica")
def per_replica(answer, prometheus_url: str | None = None, query=None) -> object:
    """``query(url, promql)``: how to evaluate (default :func:`mlops_course.prometheus_stack.query`)."""
    from mlops_course import prometheus_stack

    if not isinstance(answer, str) or not answer.strip():
        return wrong(f"expected a PromQL expression as a string, got {answer!r}.",
                     "per_replica = 'sum by (...) (rate(...[1m]))'.")
    if prometheus_url is None:
        return wrong("the check needs the lesson's Prometheus.", "call check('09.3', per_replica, prometheus_url=prom.url).")
    query = query or prometheus_stack.query
    at = time.time()  # both expressions at one instant: rates move as "now" moves
    try:
        mine = query(prometheus_url, answer, at=at)
    except prometheus_stack.QueryError as exc:
        return wrong(f"Prometheus refused the expression: {exc}.", "try it piece by piece, starting from "
                     "bike_requests_total{route=\"/predict\"}.")
    truth = _series(query(prometheus_url, PER_REPLICA, at=at))
    if len(mine) == 1 and len(truth) > 1:
        return wrong(f"the expression gives one series, not one per replica ({len(truth)} replicas).",
                     "keep the replica apart when you sum: sum by (instance) (...).")
    if len(mine) > len(truth):
        return wrong(f"the expression gives {len(mine)} series for {len(truth)} replicas: it still splits by "
                     "route, status or method.", "sum the rest away: sum by (instance) (rate(...)).")
    got = _series(mine)
    if set(got) != set(truth):
        return wrong(f"the series are labelled {sorted(got)}, not by replica.", "group by the label instance.")
    if not any(truth.values()):  # every rate is 0: any expression of the right shape would look right
        return wrong("no /predict request reached a replica in the last minute, so every rate is 0 and the "
                     "check cannot tell a right expression from a wrong one.",
                     "send traffic first (run send(drifted_month) from section 4), then this check within a minute.")
    totals = _series(query(prometheus_url, PER_REPLICA.replace("rate(", "(").replace("[1m]", ""), at=at))
    if all(math.isclose(got[i], totals[i], rel_tol=1e-9) for i in truth) and any(totals.values()):
        return wrong("the expression reads the counter's running total, not a rate.",
                     "a counter only grows: rate(bike_requests_total{...}[1m]) gives requests per second.")
    if all(math.isclose(got[i], 60 * truth[i], rel_tol=1e-6) for i in truth) and any(truth.values()):
        return wrong("the expression gives requests per minute (an increase over 1m), not per second.",
                     "rate(...[1m]) is per second; increase(...[1m]) / 60 is the same.")
    off = [i for i in truth if not math.isclose(got[i], truth[i], rel_tol=1e-6, abs_tol=1e-9)]
    if off:
        return wrong(f"for one replica your expression gives {got[off[0]]:.3f} requests/s, the reference "
                     f"{truth[off[0]]:.3f}.", "count only /predict: bike_requests_total{route=\"/predict\"}, "
                     "over a 1m window.")
    return correct(f"{len(truth)} series, one per replica, each the /predict request rate over the last minute.")
