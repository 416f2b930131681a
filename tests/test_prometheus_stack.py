"""Prometheus and Alertmanager for a lesson: configs, both servers on loopback, the query helpers."""

import pytest
import yaml

from mlops_course import process
from mlops_course import prometheus_stack as ps

pytestmark = pytest.mark.skipif(bool(ps.missing_tools()), reason="prometheus / alertmanager not installed")


def test_configs_are_what_the_tools_accept(tmp_path):
    config = ps.prometheus_config(["127.0.0.1:8001", "127.0.0.1:8002"], rule_files=["alerts.yml"],
                                  alertmanager="127.0.0.1:9093")
    assert config["scrape_configs"][0]["static_configs"][0]["targets"] == ["127.0.0.1:8001", "127.0.0.1:8002"]
    assert config["global"]["evaluation_interval"] == "1s"
    path = ps.write_yaml(tmp_path / "prometheus.yml", {**config, "rule_files": []})
    assert yaml.safe_load(path.read_text())["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    route = ps.alertmanager_config("http://127.0.0.1:1/hook")["route"]
    assert route["group_wait"] == "1s" and route["receiver"] == "retrain"
    only = ps.alertmanager_config("http://127.0.0.1:1/hook", only=["Shift", "A.B"])
    assert only["route"]["receiver"] == "ignore"  # every other alert notifies nobody
    assert only["route"]["routes"] == [{"receiver": "retrain", "matchers": ['alertname=~"Shift|A\\.B"']}]
    assert [r["name"] for r in only["receivers"]] == ["ignore", "retrain"]


def test_missing_binaries_say_how_to_install(monkeypatch):
    monkeypatch.setattr(ps, "find_binary", lambda names: None)
    assert ps.missing_tools() == ["prometheus", "prometheus-alertmanager"]
    with pytest.raises(ps.MissingTool) as info:
        ps.require_tools()
    text = str(info.value)
    for needed in ("apt-get install prometheus`", "apt-get install prometheus-alertmanager", "brew install alertmanager",
                   "mlops-course doctor"):
        assert needed in text


def test_both_servers_start_query_and_stop(tmp_path):
    # The routed form: Alertmanager refuses a config it cannot parse, so starting it checks the matcher too.
    with ps.Alertmanager(tmp_path, ps.alertmanager_config("http://127.0.0.1:1/hook", only=["Shift"])) as am, \
         ps.Prometheus(tmp_path, ps.prometheus_config([f"127.0.0.1:{process.free_port()}"],
                                                       alertmanager=am.address)) as prom:
        assert prom.url.startswith("http://127.0.0.1:")
        ps.wait_for(lambda: ps.query(prom.url, "up"), timeout=30, what="the first scrape")
        assert ps.targets_up(prom.url, "bike-demand") == 0  # nothing listens there
        assert ps.query_value(prom.url, "1 + 1") == 2.0
        assert ps.alerts(prom.url) == []
        with pytest.raises(ps.QueryError, match="parse error"):
            ps.query(prom.url, "sum(")
    assert not prom.running and not am.running


def test_a_bad_config_is_reported_with_its_log(tmp_path):
    prom = ps.Prometheus(tmp_path, {"global": {"scrape_interval": "often"}})
    with pytest.raises(process.ServerError, match="prometheus did not start on 127.0.0.1:"):
        prom.start()
    assert not prom.running


def test_wait_for_names_what_it_waited_for():
    with pytest.raises(TimeoutError, match="the alert"):
        ps.wait_for(lambda: None, timeout=0.2, every=0.05, what="the alert")
