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
        with pytest.raises(TimeoutError, match="no firing notification for Y"):
            webhook.wait_for_alert(out, "Y", timeout=0.5)
    finally:
        server.stop()
    assert not server.running
