"""Training-serving skew: the REST service and the batch path must give the same predictions.

With SERVICE_URL set (the workflow's build job) the test calls that running service, the image just built;
without it, the same app in-process through FastAPI's TestClient.
"""

import os
import time

import httpx
import numpy as np
from fastapi.testclient import TestClient

from mlops_course import pipeline, registry
from mlops_course.serving import create_app


def wait_healthy(url, timeout=None):
    """Wait until the service at ``url`` answers 200 on /health (a container takes a while to start).

    ``timeout`` defaults to $SERVICE_WAIT seconds (120), read when the wait starts.
    """
    if timeout is None:
        timeout = float(os.environ.get("SERVICE_WAIT", "120"))
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=5.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"no healthy service at {url} after {timeout:.0f} s")
        time.sleep(1.0)


def test_service_matches_batch_path(split, tmp_path):
    _, test = split
    rows = test.head(48)  # the first two days of the test month
    batch = registry.load_sklearn("champion").predict(pipeline.make_features(rows))
    payload = {"rows": pipeline.make_features(rows).to_dict(orient="records")}
    if os.environ.get("SERVICE_URL"):
        wait_healthy(os.environ["SERVICE_URL"])
        response = httpx.post(f"{os.environ['SERVICE_URL']}/predict", json=payload, timeout=30.0)
    else:
        app = create_app(model_name=registry.MODEL_NAME, alias="champion",
                         tracking_uri=os.environ["MLFLOW_TRACKING_URI"],
                         request_log=tmp_path / "requests.jsonl", backend="auto")
        with TestClient(app) as client:
            response = client.post("/predict", json=payload)
    assert response.status_code == 200, response.text
    served = np.asarray(response.json()["predictions"])
    gap = float(np.max(np.abs(served - batch)))
    assert gap < 0.01, f"service and batch path differ by up to {gap:.3f} bikers"
