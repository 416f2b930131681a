import pytest
import yaml

from mlops_course import alerts, lint
from mlops_course.alerts import AlertRulesError

ALL_ALERTS = ["BikeServiceDown", "BikeHighErrorRate", "BikeManyRejectedInputs", "BikeSlowPredictions",
              "BikeFeatureDrift", "BikeInputsDrifted", "BikeErrorAboveBaseline"]


def every_rule(**changes):
    return alerts.alert_rules(mae_threshold=51.4, **changes)


# ------------------------------------------------------------------ the rules
def test_generated_rules_validate_and_cover_service_drift_and_error():
    assert alerts.validate_alert_rules(alerts.rules_yaml()) == ALL_ALERTS[:-1]  # no error rule without a threshold
    text = alerts.rules_yaml(every_rule())
    assert alerts.validate_alert_rules(text) == ALL_ALERTS
    rules = {r["alert"]: r for g in yaml.safe_load(text)["groups"] for r in g["rules"]}
    assert 'status=~"5.."' in rules["BikeHighErrorRate"]["expr"]
    assert "histogram_quantile(0.99" in rules["BikeSlowPredictions"]["expr"]
    assert alerts.metric_names(rules["BikeSlowPredictions"]["expr"]) == {"bike_request_latency_seconds_bucket"}
    assert rules["BikeFeatureDrift"]["expr"].endswith("> 0.25")
    assert alerts.metric_names(rules["BikeErrorAboveBaseline"]["expr"]) == {
        "bike_prediction_abs_error_sum", "bike_prediction_abs_error_count"}
    custom = {r["alert"]: r["expr"] for g in alerts.alert_rules(error_rate=0.01, latency_p99=0.1, psi_threshold=0.1,
                                                                drift_share_threshold=0.3)["groups"]
              for r in g["rules"]}
    assert custom["BikeHighErrorRate"].endswith("> 0.01") and custom["BikeSlowPredictions"].endswith("> 0.1")
    assert custom["BikeInputsDrifted"] == "bike_drift_share > 0.3"


def test_the_rules_read_only_metrics_that_are_exported():
    exported = set(alerts.KNOWN_METRICS)
    for group in every_rule()["groups"]:
        for rule in group["rules"]:
            families = {alerts._family(name, alerts.KNOWN_METRICS) for name in alerts.metric_names(rule["expr"])}
            assert families <= exported, rule["alert"]
    assert alerts.JOB_METRICS == ("bike_feature_drift_psi", "bike_drift_share", "bike_prediction_abs_error")


def _rules(**changes):
    rule = {"alert": "BikeHighErrorRate", "expr": "sum(rate(bike_requests_total[5m])) > 1", "for": "5m",
            "labels": {"severity": "page"}, "annotations": {"summary": "many errors"}}
    rule.update(changes)
    return yaml.safe_dump({"groups": [{"name": "g", "rules": [rule]}]})


@pytest.mark.parametrize("text,message", [
    (_rules(expr="sum(rate(bike_requests_total[5m]) > 1"), "'expr' is not valid PromQL"),
    (_rules(expr="rate(bike_requets_total[5m]) > 1"), r"unknown metric\(s\) \['bike_requets_total'\]"),
    (_rules(expr="vector(1) > 0"), "reads no metric"),
    (_rules(**{"for": "5 minutes"}), "alert BikeHighErrorRate: 'for' must be a duration"),
    (_rules(labls={"severity": "page"}), r"alert BikeHighErrorRate: unknown field\(s\) \['labls'\]"),
    (_rules(labels={}), "labels.severity"),
    (_rules(annotations={}), "annotations.summary"),
    (_rules(alert="high error rate"), "'alert' must be a name"),
    ("groups: [", "not valid YAML"),
    ("rules: []", "list under 'groups'"),
    ("groups: [{name: g, intervall: 1m, rules: []}]", r"group 'g': unknown field\(s\) \['intervall'\]"),
    ("groups: [{name: g, interval: hourly, rules: []}]", "'interval' must be a duration"),
    ("groups: [{name: g, rules: []}]\nrule_files: []", "unknown top-level field"),
])
def test_broken_rules_are_refused_naming_the_rule_and_field(text, message):
    with pytest.raises(AlertRulesError, match=message):
        alerts.validate_alert_rules(text)


def test_repeated_alert_names_are_refused():
    doc = alerts.alert_rules()
    doc["groups"][1]["rules"].append(dict(doc["groups"][1]["rules"][0]))
    with pytest.raises(AlertRulesError, match="repeat"):
        alerts.validate_alert_rules(alerts.rules_yaml(doc))


def test_metric_names_come_from_the_parsed_expression():
    expr = 'sum(rate({__name__="bike_requests_total", route="/x"}[5m])) / ignoring(le) up{job="bike"} > 1'
    assert alerts.metric_names(expr) == {"bike_requests_total", "up"}
    assert alerts.metric_names('max by (f) (x{label="bike_y"}) > 0') == {"x"}  # label values are not metrics
    with pytest.raises(ValueError):
        alerts.metric_names("sum(rate(x[5m])")


@pytest.mark.parametrize("text,seconds", [("30m", 1800), ("1h30m", 5400), ("1800s", 1800), ("1d", 86400),
                                          ("500ms", 0.5)])
def test_duration_seconds(text, seconds):
    assert alerts.duration_seconds(text) == seconds


@pytest.mark.parametrize("text", ["0.5h", "30 minutes", "5", ""])
def test_duration_seconds_refuses_what_prometheus_refuses(text):
    with pytest.raises(ValueError, match="not a Prometheus duration"):
        alerts.duration_seconds(text)


# ------------------------------------------------------------------ promtool: check and unit tests
def test_every_rule_has_a_firing_and_a_quiet_case():
    tests = alerts.rule_tests(every_rule())
    assert tests["rule_files"] == ["alerts.yml"]
    fires = {t["name"].removesuffix(" fires"): t for t in tests["tests"] if t["name"].endswith(" fires")}
    quiet = {t["name"].removesuffix(" stays quiet"): t for t in tests["tests"] if t["name"].endswith(" stays quiet")}
    assert sorted(fires) == sorted(quiet) == sorted(ALL_ALERTS)
    for name in ALL_ALERTS:
        assert fires[name]["alert_rule_test"][-1]["exp_alerts"], name  # the alert is expected ...
        assert all(not check["exp_alerts"] for check in quiet[name]["alert_rule_test"]), name  # ... and not here
    # rules with a `for:` of 2 minutes or more must not fire halfway through it
    assert not fires["BikeHighErrorRate"]["alert_rule_test"][0]["exp_alerts"]
    assert fires["BikeHighErrorRate"]["alert_rule_test"][0]["eval_time"] == "2m"


@pytest.mark.parametrize("rules", [alerts.alert_rules(), every_rule(), every_rule(error_rate=0.6, latency_p99=2.0,
                                                                                  psi_threshold=1.0)],
                         ids=["defaults", "with the error rule", "other thresholds"])
def test_promtool_accepts_the_rules_and_their_tests_pass(tmp_path, rules):
    rules_path, tests_path = alerts.write_rules(tmp_path, rules)
    assert lint.promtool_check_rules(rules_path).ok
    verdict = lint.promtool_test_rules(tests_path)
    assert verdict.ok, str(verdict)
    assert alerts.rules_file_problems(rules_path) == []


MUTATIONS = {  # a plausible mistake in one rule, and the rule whose unit test must catch it
    "dropped le": ("sum by (le) (rate(bike_request_latency", "sum (rate(bike_request_latency", "BikeSlowPredictions"),
    "no route filter": ('_bucket{route="/predict"}', "_bucket", "BikeSlowPredictions"),
    "denominator counts /health": ('/ sum(rate(bike_requests_total{route="/predict"}[5m])) > 0.05',
                                   "/ sum(rate(bike_requests_total[5m])) > 0.05", "BikeHighErrorRate"),
    "threshold typo": ("> 0.05", "> 0.5", "BikeHighErrorRate"),
    "shorter for": ("for: 5m", "for: 1m", "BikeHighErrorRate"),
    "misspelled metric": ("(bike_feature_drift_psi)", "(bike_feature_psi)", "BikeFeatureDrift"),
    "feature label lost": ("max by (feature) (bike_feature_drift_psi)", "max(bike_feature_drift_psi)",
                           "BikeFeatureDrift"),
    "sum over count swapped": ("_sum[7d])) / sum(increase(bike_prediction_abs_error_count",
                               "_count[7d])) / sum(increase(bike_prediction_abs_error_sum", "BikeErrorAboveBaseline"),
    "up == 1": ("== 0", "== 1", "BikeServiceDown"),
}


@pytest.mark.parametrize("mistake", sorted(MUTATIONS))
def test_the_unit_tests_catch_a_broken_rule(tmp_path, mistake):
    old, new, alert = MUTATIONS[mistake]
    rules_path, tests_path = alerts.write_rules(tmp_path, every_rule())
    text = rules_path.read_text()
    assert old in text
    rules_path.write_text(text.replace(old, new, 1))
    assert lint.promtool_check_rules(rules_path).ok  # each mistake is valid PromQL: only the tests see it
    verdict = lint.promtool_test_rules(tests_path)
    assert not verdict.ok
    assert {name for name, _ in alerts.failed_tests(verdict)} == {alert}


def test_a_rule_file_with_a_wrong_field_gets_an_error_naming_the_file_and_the_field(tmp_path):
    rules_path, _ = alerts.write_rules(tmp_path, every_rule())
    broken = tmp_path / "alerts-broken.yml"
    broken.write_text(rules_path.read_text().replace("for: 5m", "for: five minutes")
                      .replace("    labels:\n      severity: ticket\n    annotations:\n      summary: A feature",
                               "    lables:\n      severity: ticket\n    annotations:\n      summary: A feature"))
    verdict = lint.promtool_check_rules(broken)
    assert not verdict.ok and verdict.file == "alerts-broken.yml"  # promtool refuses it
    problems = alerts.rules_file_problems(broken)
    assert all(p.startswith("alerts-broken.yml: ") for p in problems)
    assert any("BikeHighErrorRate: 'for' must be a duration" in p and "five minutes" in p for p in problems)
    assert any("BikeFeatureDrift: unknown field(s) ['lables']" in p for p in problems)


def test_write_rules_and_failed_tests_names(tmp_path):
    rules_path, tests_path = alerts.write_rules(tmp_path / "new", name="bike")
    assert (rules_path.name, tests_path.name) == ("bike.yml", "bike_test.yml")
    assert yaml.safe_load(tests_path.read_text())["rule_files"] == ["bike.yml"]
    assert alerts.failed_tests(lint.Verdict("promtool test rules", "x", ())) == []
    with pytest.raises(ValueError, match="no unit test is written for alert 'Other'"):
        alerts.rule_tests({"groups": [{"name": "g", "rules": [{"alert": "Other", "expr": "up > 1"}]}]})
