import json
import math
import uuid

import httpx
import numpy as np
import pandas as pd
import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from mlops_course import pipeline, traffic
from mlops_course.traffic import TrafficError


def features(n, start_hour=0):
    hours = (np.arange(n) + start_hour) % 24
    return pd.DataFrame({"hr": hours.astype(float), "weekday": 1.0, "workingday": 1.0, "holiday": 0.0,
                         "weather": 2.0, "temp": 0.3, "atemp": 0.31, "hum": 0.5, "windspeed": 0.2})[pipeline.FEATURES]


def test_feature_rows_are_json_ready_with_whole_numbers_as_ints():
    rows = traffic.feature_rows(features(2))
    assert rows[1] == {"hr": 1, "weekday": 1, "workingday": 1, "holiday": 0, "weather": 2, "temp": 0.3,
                       "atemp": 0.31, "hum": 0.5, "windspeed": 0.2}
    assert isinstance(rows[0]["hr"], int) and isinstance(rows[0]["temp"], float)
    json.dumps(rows)
    with pytest.raises(TrafficError, match=r"lack feature column\(s\) \['hum'\]"):
        traffic.feature_rows(features(1).drop(columns="hum"))


class FakeService:
    """Answers /predict the way the service contract says (prediction = 10 * hr), counting requests."""

    def __init__(self, fail_after=None):
        self.calls, self.fail_after = [], fail_after

    def __call__(self, request: httpx.Request) -> httpx.Response:
        rows = json.loads(request.content)["rows"]
        self.calls.append(len(rows))
        if self.fail_after is not None and len(self.calls) > self.fail_after:
            return httpx.Response(422, json={"detail": "rows.0.hr: input should be <= 23"})
        return httpx.Response(200, json={"predictions": [10.0 * r["hr"] for r in rows], "model_name": "bike-demand",
                                         "model_version": "3", "request_id": uuid.uuid4().hex})


def test_replay_sends_each_month_in_chunks_and_keeps_row_order():
    service = FakeService()
    with httpx.Client(transport=httpx.MockTransport(service)) as client:
        sent = traffic.replay("http://svc", [("June", features(50)), ("July", features(24, 5))],
                              rows_per_request=24, client=client)
    assert service.calls == [24, 24, 2, 24]
    assert sent.groupby("month", sort=False).size().to_dict() == {"June": 50, "July": 24}
    june = sent[sent["month"] == "June"]
    assert june["row"].tolist() == list(range(50))
    assert june["prediction"].tolist() == [10.0 * (h % 24) for h in range(50)]
    assert sent["request_id"].nunique() == 4 and set(sent["model_version"]) == {"3"}


def test_replay_stops_with_the_services_answer_on_an_error():
    with (httpx.Client(transport=httpx.MockTransport(FakeService(fail_after=1))) as client,
          pytest.raises(TrafficError, match=r"June: POST /predict answered 422: .*rows.0.hr")):
        traffic.replay("http://svc", [("June", features(48))], client=client)
    with pytest.raises(ValueError, match="at least 1"):
        traffic.replay("http://svc", [], rows_per_request=0)


def write_log(path, requests):
    lines = [json.dumps({"request_id": f"r{i}", "time": "2011-06-01T00:00:00+00:00", "model_version": "1",
                         "inputs": rows, "predictions": [float(r["hr"]) for r in rows]}) + "\n"
             for i, rows in enumerate(requests)]
    path.write_text("".join(lines))


def test_read_request_log_gives_one_row_per_prediction(tmp_path):
    log = tmp_path / "requests.jsonl"
    write_log(log, [traffic.feature_rows(features(3)), traffic.feature_rows(features(2, 10))])
    table = traffic.read_request_log(log, expect=2)
    assert len(table) == 5 and table["request_id"].tolist() == ["r0"] * 3 + ["r1"] * 2
    assert table["row_in_request"].tolist() == [0, 1, 2, 0, 1]
    assert table["hr"].tolist() == [0, 1, 2, 10, 11] and table["prediction"].tolist() == [0.0, 1.0, 2.0, 10.0, 11.0]
    assert set(pipeline.FEATURES) <= set(table.columns)


def test_read_request_log_errors(tmp_path):
    with pytest.raises(TrafficError, match="no request log"):
        traffic.read_request_log(tmp_path / "missing.jsonl")
    log = tmp_path / "requests.jsonl"
    write_log(log, [traffic.feature_rows(features(1))])
    with pytest.raises(TrafficError, match="has 1 request"):
        traffic.read_request_log(log, expect=2, timeout=0.2)
    with open(log, "a") as fh:
        fh.write('{"request_id": "x", "inputs": [{"hr": 1}], "predictions": []}\n')
    with pytest.raises(TrafficError, match="line 2 is not a request record"):
        traffic.read_request_log(log)
    log.write_text('{"request_id": "x", "inputs": [{"hr": 1}], "predic\n')
    with pytest.raises(TrafficError, match="not JSON"):
        traffic.read_request_log(log)


def exposition():
    """Metrics named as in the service contract, filled with known values."""
    registry = CollectorRegistry()
    requests = Counter("bike_requests_total", "requests", ["route", "method", "status"], registry=registry)
    latency = Histogram("bike_request_latency_seconds", "latency", ["route"], buckets=(0.01, 0.02, 0.05, 0.1),
                        registry=registry)
    predicted = Histogram("bike_prediction_value", "predictions", buckets=(50, 100, 200, 400), registry=registry)
    requests.labels("/predict", "POST", "200").inc(98)
    requests.labels("/predict", "POST", "422").inc(2)
    requests.labels("/health", "GET", "200").inc(7)
    for value in [0.005] * 50 + [0.015] * 40 + [0.04] * 9 + [0.5]:
        latency.labels("/predict").observe(value)
    for value in (10, 60, 60, 150, 500):
        predicted.observe(value)
    return generate_latest(registry).decode()


def test_parse_metrics_and_request_counts():
    samples = traffic.parse_metrics(exposition())
    assert {"bike_requests", "bike_request_latency_seconds", "bike_prediction_value"} <= set(samples["family"])
    counts = traffic.request_counts(samples)
    assert counts.to_dict(orient="records") == [
        {"route": "/health", "method": "GET", "status": "200", "count": 7},
        {"route": "/predict", "method": "POST", "status": "200", "count": 98},
        {"route": "/predict", "method": "POST", "status": "422", "count": 2}]
    with pytest.raises(TrafficError, match="no bike_requests_total"):
        traffic.request_counts(samples[samples["family"] != "bike_requests"])
    with pytest.raises(TrafficError, match="not a Prometheus text exposition"):
        traffic.parse_metrics("this is { not metrics")


def test_histograms_and_quantiles_like_promql():
    samples = traffic.parse_metrics(exposition())
    buckets = traffic.histogram(samples, "bike_prediction_value")
    assert buckets["le"].tolist() == [50, 100, 200, 400, math.inf]
    assert buckets["count"].tolist() == [1, 3, 4, 4, 5]
    latency = traffic.histogram(samples, "bike_request_latency_seconds", route="/predict")
    # rank 0.5 * 100 = 50 falls at the top of the first bucket (0, 0.01]
    assert traffic.histogram_quantile(0.5, latency) == pytest.approx(0.01)
    # rank 95: bucket (0.02, 0.05] holds ranks 91..99 -> 0.02 + 0.03 * (95 - 90) / 9
    assert traffic.histogram_quantile(0.95, latency) == pytest.approx(0.02 + 0.03 * 5 / 9)
    # rank 99.5 lies in +Inf: PromQL answers the largest finite bound
    assert traffic.histogram_quantile(0.995, latency) == pytest.approx(0.1)
    with pytest.raises(TrafficError, match="no buckets"):
        traffic.histogram(samples, "bike_request_latency_seconds", route="/nope")
    with pytest.raises(ValueError, match="q must be"):
        traffic.histogram_quantile(1.5, latency)


def test_scrape_reads_the_exposition_and_refuses_errors():
    text = exposition()

    def handler(request):
        return httpx.Response(200, text=text) if request.url.path == "/metrics" else httpx.Response(404)

    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        assert traffic.scrape("http://svc/", client=client) == text
    with (httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(503))) as client,
          pytest.raises(TrafficError, match="503")):
        traffic.scrape("http://svc", client=client)


# ------------------------------------------------------------------ against the real service (in process)
@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """bike-demand v1 (trained on January, with its ONNX copy) as champion, served by the real FastAPI app."""
    import os

    import mlflow
    from fastapi.testclient import TestClient

    from mlops_course import data, process, registry, serving, setup_lesson

    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    os.environ["MLOPS_COURSE_WORKSPACE"] = str(tmp_path_factory.mktemp("ws"))
    lesson = setup_lesson("97", quiet=True)
    bikes = data.load_bikeshare()
    january = data.select_months(bikes, ["Jan"])
    model = pipeline.train(january, n_estimators=5)
    mlflow.set_experiment("traffic-test")  # never an experiment id left active by another test module
    with mlflow.start_run():
        registry.register(registry.log_bike_model(model, pipeline.make_features(january)), alias="champion")
    app = serving.create_app(tracking_uri=lesson.tracking_uri, request_log=lesson.path("requests.jsonl"))
    try:
        with TestClient(app) as client:
            yield lesson, client, bikes, model
    finally:
        process.stop_all()
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)


def test_replay_log_and_metrics_against_the_real_service(served):
    from mlops_course import data

    lesson, client, bikes, model = served
    june = pipeline.make_features(data.select_months(bikes, ["June"]).head(30))
    july = pipeline.make_features(data.select_months(bikes, ["July"]).head(24))
    sent = traffic.replay(str(client.base_url), [("June", june), ("July", july)], client=client)
    assert sent.groupby("month", sort=False).size().to_dict() == {"June": 30, "July": 24}
    np.testing.assert_allclose(sent["prediction"][:30], model.predict(june), rtol=1e-4, atol=1e-3)  # ONNX: float32

    log = traffic.read_request_log(lesson.path("requests.jsonl"), expect=3)
    assert log["request_id"].tolist() == sent["request_id"].tolist()
    assert log["prediction"].tolist() == sent["prediction"].tolist()
    np.testing.assert_array_equal(log.loc[:29, "temp"].to_numpy(), june["temp"].to_numpy())

    samples = traffic.parse_metrics(traffic.scrape(str(client.base_url), client=client))
    counts = traffic.request_counts(samples)
    predict = counts[(counts["route"] == "/predict") & (counts["status"] == "200")]
    assert predict["count"].tolist() == [3]

    # the date sent as x-request-id is logged, and the labels join to the log by (day, hr) alone
    august = data.select_months(bikes, ["Aug"]).head(30).reset_index(drop=True)
    replayed = traffic.replay(str(client.base_url),
                              [("Aug", pipeline.make_features(august).assign(date=traffic.dates(august)))],
                              client=client, key="date")
    assert replayed["request_id"].unique().tolist() == ["2011-08-01", "2011-08-02"]
    log = traffic.read_request_log(lesson.path("requests.jsonl"), expect=5)
    logged = log[log["request_id"].str.startswith("2011-")].reset_index(drop=True)
    scored = logged.join(traffic.label_keys(logged)).merge(bikes[["day", "hr", "bikers"]], on=["day", "hr"],
                                                          validate="one_to_one")
    assert scored["bikers"].tolist() == august["bikers"].tolist() and set(scored["month"]) == {"Aug"}
    buckets = traffic.histogram(samples, "bike_prediction_value")
    assert buckets["count"].iloc[-1] == 54
    latency = traffic.histogram(samples, "bike_request_latency_seconds", route="/predict")
    assert latency["count"].iloc[-1] == 3 and traffic.histogram_quantile(0.5, latency) > 0


# ------------------------------------------------------------------ the key each request carries
def test_dates_come_from_the_day_of_the_year():
    rows = pd.DataFrame({"day": [1, 152, 365]}, index=[7, 8, 9])
    dates = traffic.dates(rows)
    assert dates.tolist() == ["2011-01-01", "2011-06-01", "2011-12-31"] and dates.index.tolist() == [7, 8, 9]
    with pytest.raises(TrafficError, match="'day' column"):
        traffic.dates(pd.DataFrame({"hr": [1]}))


def test_label_keys_read_the_day_and_month_from_the_request_id():
    log = pd.DataFrame({"request_id": ["2011-06-01", "2011-06-01", "2011-12-31"], "hr": [0.0, 1.0, 23.0]})
    keys = traffic.label_keys(log)
    assert keys.to_dict("list") == {"day": [152, 152, 365], "month": ["June", "June", "Dec"]}
    labels = pd.DataFrame({"day": [152, 152, 365], "hr": [1, 0, 23], "bikers": [10, 20, 30]})
    joined = log.join(keys).merge(labels, on=["day", "hr"], validate="one_to_one")
    assert joined["bikers"].tolist() == [20, 10, 30]  # joined by the key, whatever the order of the labels
    with pytest.raises(TrafficError, match=r"\['try-it'\] are not dates"):
        traffic.label_keys(pd.DataFrame({"request_id": ["try-it"], "hr": [0.0]}))
    with pytest.raises(TrafficError, match="outside 2011"):
        traffic.label_keys(pd.DataFrame({"request_id": ["2012-01-01"], "hr": [0.0]}))
    with pytest.raises(TrafficError, match="lacks 'hr'"):
        traffic.label_keys(pd.DataFrame({"request_id": ["2011-01-01"]}))


def test_replay_with_a_key_sends_one_request_per_value_as_its_request_id():
    seen_ids = []

    def service(request: httpx.Request) -> httpx.Response:
        rows = json.loads(request.content)["rows"]
        seen_ids.append((request.headers.get("x-request-id"), len(rows)))
        return httpx.Response(200, json={"predictions": [1.0] * len(rows), "model_name": "bike-demand",
                                         "model_version": "1", "request_id": request.headers["x-request-id"]})

    batch = features(30).assign(date=["2011-06-01"] * 20 + ["2011-06-02"] * 10)
    with httpx.Client(transport=httpx.MockTransport(service)) as client:
        sent = traffic.replay("http://svc", [("June", batch)], client=client, key="date")
    assert seen_ids == [("2011-06-01", 20), ("2011-06-02", 10)]
    assert sent["request_id"].tolist() == ["2011-06-01"] * 20 + ["2011-06-02"] * 10
    with (httpx.Client(transport=httpx.MockTransport(service)) as client,
          pytest.raises(TrafficError, match="no 'date' column")):
        traffic.replay("http://svc", [("June", features(3))], client=client, key="date")
