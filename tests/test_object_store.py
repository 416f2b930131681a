"""The lesson's S3 store (moto): buckets, objects, the environment for MLflow and DVC, errors that name a setting."""

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from mlops_course import process
from mlops_course.object_store import FAKE_CREDENTIALS, ObjectStore, ObjectStoreError, check_bucket, explain


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    with ObjectStore(tmp_path_factory.mktemp("s3")) as s:
        yield s


def test_buckets_objects_and_env(store):
    assert store.url.startswith("http://127.0.0.1:")
    assert store.create_bucket("team-data") == "s3://team-data"
    assert store.create_bucket("team-data") == "s3://team-data"
    store.client().put_object(Bucket="team-data", Key="a/b.csv", Body=b"x,y\n")
    assert store.objects("team-data") == [("a/b.csv", 4)]
    env = store.env()
    assert env["MLFLOW_S3_ENDPOINT_URL"] == store.url
    assert env["AWS_ACCESS_KEY_ID"] == FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"]
    assert check_bucket("team-data", endpoint=store.url, client=store.client()) == "s3://team-data"


def test_missing_bucket_names_the_setting(store):
    with pytest.raises(ObjectStoreError, match="bucket 'nope' does not exist.*artifacts-destination"):
        check_bucket("nope", endpoint=store.url, client=store.client())


def error(code):
    return ClientError({"Error": {"Code": code, "Message": "m"}}, "HeadBucket")


@pytest.mark.parametrize("exc,setting", [
    (error("InvalidAccessKeyId"), "AWS_ACCESS_KEY_ID"),
    (error("SignatureDoesNotMatch"), "AWS_SECRET_ACCESS_KEY"),
    (error("403"), "AWS_ACCESS_KEY_ID"),
    (EndpointConnectionError(endpoint_url="http://127.0.0.1:1"), "MLFLOW_S3_ENDPOINT_URL"),
    (error("404"), "--artifacts-destination"),
])
def test_errors_name_the_setting(exc, setting):
    assert setting in explain(exc, bucket="b", endpoint="http://127.0.0.1:1")


def test_nothing_listening_is_named(monkeypatch):
    for name, value in FAKE_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ObjectStoreError, match="nothing answers.*MLFLOW_S3_ENDPOINT_URL"):
        check_bucket("b", endpoint=f"http://127.0.0.1:{process.free_port()}")


def test_no_credentials_are_named(monkeypatch):
    for name in FAKE_CREDENTIALS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    with pytest.raises(ObjectStoreError, match="AWS_ACCESS_KEY_ID"):
        check_bucket("b", endpoint=f"http://127.0.0.1:{process.free_port()}")


def test_port_taken_is_reported_with_the_port(tmp_path, store):
    other = ObjectStore(tmp_path, port=store.port)
    with pytest.raises(process.ServerError, match=f"127.0.0.1:{store.port}"):
        other.start()
    assert not other.running
