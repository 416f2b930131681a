"""The webhook receiver: Alertmanager's notifications land in a JSON-lines file, read back by alert name."""

import httpx
import pytest

from mlops_course import webhook


def test_receives_and_finds_a_firing_alert(tmp_path):
    out = tmp_path / "alerts.jsonl"
    server = webhook.receiver(out)
    try:
        assert webhook.notifications(out) == []
        body = {"status": "firing", "receiver": "retrain", "alerts": [{"labels": {"alertname": "X"}}]}
        assert httpx.post(server.url + "/alerts", json=body).json() == {"received": 1}
        assert httpx.post(server.url + "/alerts", content=b"not json").status_code == 400
        assert httpx.post(server.url + "/other", json=body).status_code == 404
        assert webhook.wait_for_alert(out, "X", timeout=5)["receiver"] == "retrain"
        with pytest.raises(TimeoutError, match="no firing notification reached the webhook for Y"):
            webhook.wait_for_alert(out, "Y", timeout=0.5)
    finally:
        server.stop()
    assert not server.running


def test_an_unstarted_receiver_knows_its_url_and_starts_with_others(tmp_path):
    from mlops_course import process

    server = webhook.receiver(tmp_path / "alerts.jsonl", start=False)
    assert not server.running and server.url.startswith("http://127.0.0.1:")
    try:
        process.start_together(server)
        assert httpx.get(server.url + "/health").status_code == 200
    finally:
        server.stop()


class FakePrefect:
    """Prefect's create_flow_run route, recording each request body; answers like Prefect (the run's id)."""

    def __init__(self, status: int = 201):
        import json
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.bodies, self.paths = [], []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                fake.paths.append(self.path)
                fake.bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                data = json.dumps({"id": f"run-{len(fake.bodies)}"} if status < 400 else {"detail": "no"}).encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


FIRING = {"status": "firing", "receiver": "retrain",
          "alerts": [{"status": "firing", "labels": {"alertname": "Shift"}, "fingerprint": "ab12",
                      "startsAt": "2026-01-01T00:00:00Z"}]}


def test_a_firing_notification_starts_one_deployment_run(tmp_path):
    prefect = FakePrefect()
    out = tmp_path / "alerts.jsonl"
    server = webhook.receiver(out, deployment=(prefect.url, "dep-1"))
    try:
        assert httpx.post(server.url + "/alerts", json=FIRING).json() == {"received": 1, "flow_run": "run-1"}
        assert httpx.post(server.url + "/alerts", json={**FIRING, "status": "resolved"}).status_code == 200
    finally:
        server.stop()
        prefect.server.shutdown()
    assert prefect.paths == ["/api/deployments/dep-1/create_flow_run"]  # the resolved one started nothing
    body = prefect.bodies[0]
    assert body["parameters"] == {"trigger": "Shift"} and "alertmanager" in body["tags"]
    assert body["idempotency_key"] == "ab12@2026-01-01T00:00:00Z"  # the same alert sent again: the same run
    notes = webhook.notifications(out)
    assert notes[0]["flow_run"] == {"id": "run-1"} and "flow_run" not in notes[1]


def test_a_run_that_cannot_start_is_recorded_and_answered_502(tmp_path):
    prefect = FakePrefect(status=404)
    out = tmp_path / "alerts.jsonl"
    server = webhook.receiver(out, deployment=(prefect.url, "missing"))
    try:
        response = httpx.post(server.url + "/alerts", json=FIRING)
        assert response.status_code == 502 and "Prefect answered 404" in response.json()["error"]
        assert httpx.post(server.url + "/alerts", json=[1, 2]).status_code == 400  # JSON, but not a notification
    finally:
        server.stop()
        prefect.server.shutdown()
    assert "Prefect answered 404" in webhook.notifications(out)[0]["flow_run"]["error"]  # kept, not lost


def test_waiting_for_a_started_run_skips_a_notification_prefect_could_not_take(tmp_path):
    import json

    out = tmp_path / "alerts.jsonl"
    firing = {"status": "firing", "alerts": [{"labels": {"alertname": "X"}}]}
    out.write_text(json.dumps({**firing, "flow_run": {"error": "Prefect answered 503"}}) + "\n")
    assert "error" in webhook.wait_for_alert(out, "X", timeout=1)["flow_run"]
    with pytest.raises(TimeoutError, match="no firing notification started a run for X"):
        webhook.wait_for_alert(out, "X", timeout=0.5, started=True)
    with out.open("a") as f:  # Alertmanager sent it again, and this time the run started
        f.write(json.dumps({**firing, "flow_run": {"id": "run-1"}}) + "\n")
    assert webhook.wait_for_alert(out, "X", timeout=1, started=True)["flow_run"] == {"id": "run-1"}
