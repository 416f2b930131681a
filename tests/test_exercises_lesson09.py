"""Checks of lesson 09: right answers pass, typical wrong answers get the matching hint.

09.1 runs real DVC commands against a moto S3 store; 09.2 runs the objective on an Optuna study (SQLite storage
here, PostgreSQL in the lesson: the check only needs a storage URL); 09.3 evaluates PromQL through a stand-in
for Prometheus' query API.
"""

import pytest

from mlops_course import data, pipeline, versioning
from mlops_course.exercises import evaluate
from mlops_course.exercises.lesson09 import PER_REPLICA
from mlops_course.object_store import ObjectStore


# ---------------------------------------------------------------- 09.1 backup remote
@pytest.fixture(scope="module")
def store(tmp_path_factory):
    with ObjectStore(tmp_path_factory.mktemp("s3")) as s:
        s.apply_env()
        s.create_bucket("team-backup")
        s.create_bucket("other-bucket")
        yield s


def clone(tmp_path, store, name="backup", url="s3://team-backup/bikes", local_endpoint=True, push=True):
    repo = versioning.init_repo(tmp_path / "bob", quiet=True)
    (repo / "data").mkdir()
    data.select_months(data.load_bikeshare(), ["Jan"]).head(50).to_csv(repo / "data" / "bikes.csv", index=False)
    versioning.run("dvc add --quiet data/bikes.csv", repo, quiet=True)
    if name:
        versioning.run(["dvc", "remote", "add", name, url], repo, quiet=True)
        where = ["--local"] if local_endpoint else []
        versioning.run(["dvc", "remote", "modify", *where, name, "endpointurl", store.url], repo, quiet=True)
        if push:
            versioning.run(["dvc", "push", "-r", name], repo, quiet=True)
        else:  # the module's store keeps what earlier tests pushed: empty the bucket
            for key, _ in store.objects("team-backup"):
                store.client().delete_object(Bucket="team-backup", Key=key)
    return repo


def test_backup_remote_right_answers(tmp_path, store):
    repo = clone(tmp_path / "a", store)
    feedback = evaluate("09.1", "backup", repo=repo, store=store)
    assert feedback.ok, feedback
    other = clone(tmp_path / "b", store, name="copy")  # any name, as long as the answer names it
    assert evaluate("09.1", " copy ", repo=other, store=store).ok


@pytest.mark.parametrize("setup,answer,hint", [
    ({"name": None}, "backup", "dvc remote add backup s3://team-backup/bikes"),
    ({"url": "s3://other-bucket/bikes"}, "backup", "the backup bucket is team-backup"),
    ({"local_endpoint": False}, "backup", "keep it in the local config"),
    ({"push": False}, "backup", "dvc push -r backup"),
])
def test_backup_remote_typical_mistakes(tmp_path, store, setup, answer, hint):
    repo = clone(tmp_path, store, **setup)
    feedback = evaluate("09.1", answer, repo=repo, store=store)
    assert not feedback.ok and hint in feedback.hint, feedback


def test_backup_remote_wrong_name_and_type(tmp_path, store):
    repo = clone(tmp_path, store)
    assert "not 'typo'" in evaluate("09.1", "typo", repo=repo, store=store).message
    assert "as a string" in evaluate("09.1", 3, repo=repo, store=store).message


# ---------------------------------------------------------------- 09.2 summer objective
@pytest.fixture(scope="module")
def bikes():
    return data.load_bikeshare()


@pytest.fixture
def storage(tmp_path):
    return f"sqlite:///{tmp_path / 'optuna.db'}"


def solution(bikes):
    def objective(trial):
        model = pipeline.train(data.select_months(bikes, ["April", "May", "June"]), n_estimators=30,
                               max_depth=trial.suggest_int("max_depth", 4, 16))
        return pipeline.evaluate(model, data.select_months(bikes, ["July"]))["mae"]

    return objective


def by_hand(bikes):
    from sklearn.metrics import mean_absolute_error

    train = data.select_months(bikes, ["June", "April", "May"])
    july = data.select_months(bikes, ["July"])

    def objective(trial):
        depth = trial.suggest_int("max_depth", low=4, high=16)
        model = pipeline.build_model("random_forest", n_estimators=30, max_depth=depth)
        model.fit(*pipeline.xy(train))
        return float(mean_absolute_error(july[data.TARGET], model.predict(pipeline.make_features(july))))

    return objective


def test_summer_objective_right_answers(bikes, storage):
    feedback = evaluate("09.2", solution(bikes), storage=storage, bikes=bikes)
    assert feedback.ok and "depth 5" in feedback.message, feedback
    assert evaluate("09.2", by_hand(bikes), storage=storage, bikes=bikes).ok


def variant(bikes, *, months=("April", "May", "June"), trees=30, score="mae", sign=1, param="max_depth"):
    def objective(trial):
        model = pipeline.train(data.select_months(bikes, list(months)), n_estimators=trees,
                               max_depth=trial.suggest_int(param, 4, 16))
        return sign * pipeline.evaluate(model, data.select_months(bikes, ["July"]))[score]

    return objective


@pytest.mark.parametrize("kwargs,hint", [
    ({"sign": -1}, "return the MAE itself"),
    ({"score": "r2"}, "return pipeline.evaluate(model, july)['mae']"),
    ({"months": ("July",)}, "train on ['April', 'May', 'June'] with n_estimators=30"),
    ({"trees": 40}, "n_estimators=30"),
    ({"param": "depth"}, "trial.suggest_int('max_depth', 4, 16)"),
])
def test_summer_objective_typical_mistakes(bikes, storage, kwargs, hint):
    feedback = evaluate("09.2", variant(bikes, **kwargs), storage=storage, bikes=bikes)
    assert not feedback.ok and hint in feedback.hint, feedback


def test_summer_objective_that_fails_or_is_no_function(bikes, storage):
    def broken(trial):
        raise KeyError("bikers")

    assert "did not complete" in evaluate("09.2", broken, storage=storage, bikes=bikes).message
    assert "a function" in evaluate("09.2", 42, storage=storage, bikes=bikes).message

    def stub(trial):
        ...  # return the MAE on July

    assert "not answered yet" in evaluate("09.2", stub, storage=storage, bikes=bikes).message


# ---------------------------------------------------------------- 09.3 PromQL per replica
A, B = "127.0.0.1:8001", "127.0.0.1:8002"


def fake_prometheus(answers):
    """A query function that knows a few expressions (whitespace ignored), like Prometheus would answer them."""
    per_instance = [{"metric": {"instance": A}, "value": 1.5}, {"metric": {"instance": B}, "value": 1.4}]
    totals = [{"metric": {"instance": A}, "value": 120.0}, {"metric": {"instance": B}, "value": 110.0}]
    known = {PER_REPLICA: per_instance, 'sum by (instance) ((bike_requests_total{route="/predict"}))': totals,
             **answers}
    norm = {k.replace(" ", ""): v for k, v in known.items()}
    instants = set()

    def query(url, promql, at=None):
        instants.add(at)
        assert len(instants) == 1, "the check evaluated its expressions at different instants"
        return norm[promql.replace(" ", "")]

    return query


def test_per_replica_right_answers():
    without = 'sum without (route, status, method, job) (rate(bike_requests_total{route="/predict"}[1m]))'
    per_minute = 'sum by (instance) (increase(bike_requests_total{route="/predict"}[60s])) / 60'
    same = [{"metric": {"instance": A}, "value": 1.5}, {"metric": {"instance": B}, "value": 1.4}]
    for answer in (PER_REPLICA, without, per_minute):  # equivalent expressions: the same series, the same values
        query = fake_prometheus({without: same, per_minute: same})
        assert evaluate("09.3", answer, prometheus_url="http://p", query=query).ok, answer


@pytest.mark.parametrize("answer,result,hint", [
    ('sum by (instance) (bike_requests_total{route="/predict"})',
     [{"metric": {"instance": A}, "value": 120.0}, {"metric": {"instance": B}, "value": 110.0}], "a counter only grows"),
    ('sum(rate(bike_requests_total{route="/predict"}[1m]))', [{"metric": {}, "value": 2.9}], "sum by (instance)"),
    ('rate(bike_requests_total{route="/predict"}[1m])',
     [{"metric": {"instance": i, "status": s}, "value": 0.7} for i in (A, B) for s in ("200", "422")], "sum the rest"),
    ('sum by (instance) (rate(bike_requests_total[1m]))',
     [{"metric": {"instance": A}, "value": 2.5}, {"metric": {"instance": B}, "value": 2.4}], 'route="/predict"'),
    ('sum by (instance) (increase(bike_requests_total{route="/predict"}[1m]))',
     [{"metric": {"instance": A}, "value": 90.0}, {"metric": {"instance": B}, "value": 84.0}], "increase(...[1m]) / 60"),
    ('sum by (instance) (rate(bike_requests_total{route="/predict"}[5m]))',
     [{"metric": {"instance": A}, "value": 1.2}, {"metric": {"instance": B}, "value": 1.1}], "over a 1m window"),
])
def test_per_replica_typical_mistakes(answer, result, hint):
    feedback = evaluate("09.3", answer, prometheus_url="http://p", query=fake_prometheus({answer: result}))
    assert not feedback.ok and hint in feedback.hint, feedback


def test_per_replica_refused_query_and_stub():
    from mlops_course.prometheus_stack import QueryError

    def refuse(url, promql, at=None):
        raise QueryError("parse error")

    assert "refused" in evaluate("09.3", "sum(", prometheus_url="http://p", query=refuse).message
    assert "not answered yet" in evaluate("09.3", None, prometheus_url="http://p").message


def test_per_replica_without_recent_traffic_asks_for_traffic_instead_of_passing():
    idle = [{"metric": {"instance": A}, "value": 0.0}, {"metric": {"instance": B}, "value": 0.0}]
    wrong_window = 'sum by (instance) (rate(bike_requests_total{route="/predict"}[5m]))'
    for answer in (PER_REPLICA, wrong_window):
        query = fake_prometheus({PER_REPLICA: idle, wrong_window: idle})
        feedback = evaluate("09.3", answer, prometheus_url="http://p", query=query)
        assert not feedback.ok and "send traffic first" in feedback.hint, feedback
