"""Prometheus alerting rules for the bike service and its monitoring job, their promtool unit tests, a check.

- :func:`alert_rules` builds the rules (a dict; :func:`rules_yaml` writes the file Prometheus loads).
- :func:`rule_tests` builds a ``promtool test rules`` file for them: for every rule, synthetic series where
  it fires (and, when it has a ``for:``, a moment where it must not fire yet) and series where it stays quiet.
  :func:`write_rules` writes both files; ``lint.promtool_check_rules`` and ``lint.promtool_test_rules`` run
  the real tool on them.
- :func:`validate_alert_rules` is the course's own check of what promtool does not know: every field name,
  and that each expression reads a metric the service or the monitoring job exports. promtool is the judge
  of validity; this check names the rule and the field when something is wrong.

Metric names live here once: the service's (``serving.py``) and the monitoring job's (lesson 05).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from mlops_course.drift import PSI_SIGNIFICANT

# Metric names fixed by the service contract (serving.py) and by the monitoring job of lesson 05.
SERVICE_METRICS = ("bike_requests_total", "bike_request_latency_seconds", "bike_prediction_value",
                   "bike_model_info")
DRIFT_METRICS = ("bike_feature_drift_psi", "bike_drift_share")
ERROR_METRIC = "bike_prediction_abs_error"  # histogram of |prediction - label| once labels arrive, bikes
ERROR_BUCKETS = (10, 25, 50, 100, 200, 400)
JOB_METRICS = (*DRIFT_METRICS, ERROR_METRIC)
KNOWN_METRICS = (*SERVICE_METRICS, *JOB_METRICS, "up")
DRIFT_SHARE_THRESHOLD = 0.5  # more than half of the features drifting counts as "the inputs moved"
SEVERITIES = ("page", "ticket")
RULE_FIELDS = ("alert", "record", "expr", "for", "keep_firing_for", "labels", "annotations")
GROUP_FIELDS = ("name", "interval", "limit", "query_offset", "rules")
_DURATION = re.compile(r"^((\d+)(ms|s|m|h|d|w|y))+$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
_SERIES_SUFFIXES = ("_bucket", "_count", "_sum", "_created", "_total")


class AlertRulesError(ValueError):
    """A Prometheus rules file that Prometheus would refuse or that would never fire; lists every problem."""


# ------------------------------------------------------------------ the rules
def _rule(name: str, expr: str, wait: str, severity: str, summary: str) -> dict:
    return {"alert": name, "expr": expr, "for": wait, "labels": {"severity": severity},
            "annotations": {"summary": summary}}


def alert_rules(*, error_rate: float = 0.05, rejected_rate: float = 0.2, latency_p99: float = 0.25,
                psi_threshold: float = PSI_SIGNIFICANT, drift_share_threshold: float = DRIFT_SHARE_THRESHOLD,
                mae_threshold: float | None = None, job: str = "bike-demand") -> dict:
    """Prometheus alerting rules for the bike service and its monitoring job (a dict; see :func:`rules_yaml`).

    Service: scrape target down, 5xx share, rejected inputs (4xx share: often a client sending a new
    schema), p99 latency of ``/predict`` from its histogram. Model (the monitoring job's metrics): a
    feature's PSI, the share of drifted features, and, with ``mae_threshold`` (bikes per hour, e.g. the
    release MAE times 1 + tolerance), the MAE of the last 7 days of labelled predictions.
    """
    rate = 'sum(rate(bike_requests_total{route="/predict",status=~"%s"}[5m]))'
    total = 'sum(rate(bike_requests_total{route="/predict"}[5m]))'
    p99 = ('histogram_quantile(0.99, sum by (le) '
           '(rate(bike_request_latency_seconds_bucket{route="/predict"}[5m])))')
    service = [
        _rule("BikeServiceDown", f'up{{job="{job}"}} == 0', "2m", "page", "The bike service is not scraped"),
        _rule("BikeHighErrorRate", f"{rate % '5..'} / {total} > {error_rate}", "5m", "page",
              f"More than {error_rate:.0%} of /predict requests fail (5xx)"),
        _rule("BikeManyRejectedInputs", f"{rate % '4..'} / {total} > {rejected_rate}", "15m", "ticket",
              f"More than {rejected_rate:.0%} of /predict inputs are rejected (4xx): a client or schema change?"),
        _rule("BikeSlowPredictions", f"{p99} > {latency_p99}", "10m", "page",
              f"p99 latency of /predict above {latency_p99} s"),
    ]
    model = [
        _rule("BikeFeatureDrift", f"max by (feature) (bike_feature_drift_psi) > {psi_threshold}", "0m",
              "ticket", f"A feature's PSI against the training data is above {psi_threshold}"),
        _rule("BikeInputsDrifted", f"bike_drift_share > {drift_share_threshold}", "0m", "ticket",
              f"More than {drift_share_threshold:.0%} of the features drifted against the training data"),
    ]
    if mae_threshold is not None:
        week = f"sum(increase({ERROR_METRIC}_%s[7d]))"
        model.append(_rule("BikeErrorAboveBaseline", f"{week % 'sum'} / {week % 'count'} > {mae_threshold}",
                           "1d", "ticket",
                           f"MAE of the last 7 days of labelled predictions above {mae_threshold} bikes/hour"))
    return {"groups": [{"name": "bike-service", "rules": service},
                       {"name": "bike-model-drift", "interval": "1h", "rules": model}]}


def rules_yaml(rules: Mapping | None = None) -> str:
    """The rules as the YAML text of a Prometheus ``rule_files`` entry."""
    import yaml

    return yaml.safe_dump(dict(rules or alert_rules()), sort_keys=False, width=140)


def alert_names(rules: Mapping) -> list[str]:
    """The alert names of a rules dict, in file order."""
    return [r["alert"] for g in rules.get("groups", []) for r in g.get("rules", []) if "alert" in r]


# ------------------------------------------------------------------ promtool unit tests
def duration_seconds(text: str) -> float:
    """Seconds of a Prometheus duration such as ``30m``, ``1h30m`` or ``1800s``; ``ValueError`` otherwise."""
    text = str(text).strip()
    if not _DURATION.match(text):
        raise ValueError(f"not a Prometheus duration (a number and a unit, e.g. 5m or 1h30m): {text!r}")
    return float(sum(int(n) * _UNIT_SECONDS[u] for _, n, u in re.findall(r"((\d+)(ms|s|m|h|d|w|y))", text)))


def _minutes(seconds: float) -> str:
    return f"{int(seconds // 60)}m"


def _number(x: float) -> str:
    return f"{x:.6g}"


def _series(name: str, labels: Mapping[str, str], values: str) -> dict:
    inside = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return {"series": f"{name}{{{inside}}}" if inside else name, "values": values}


def _threshold(expr: str) -> float:
    """The number an expression ``... > threshold`` compares with (0 when it compares otherwise)."""
    return float(expr.rsplit(">", 1)[1]) if ">" in expr else 0.0


def _rule_cases(rule: Mapping, job: str, steps: int) -> tuple[list[dict], list[dict], dict]:
    """Input series where the rule's condition holds, where it does not, and the labels the alert carries."""
    name, t = rule["alert"], _threshold(rule["expr"])

    def counter(per_minute: float) -> str:
        return f"0+{_number(per_minute)}x{steps}"

    def gauge(value: float) -> str:
        return f"{_number(value)}x{steps}"

    if name == "BikeServiceDown":
        labels = {"job": job, "instance": "bike-service:8000"}
        return [_series("up", labels, gauge(0))], [_series("up", labels, gauge(1))], labels
    if name in ("BikeHighErrorRate", "BikeManyRejectedInputs"):
        status = "500" if name == "BikeHighErrorRate" else "422"

        def requests(share: float) -> list[dict]:
            bad = 100 * share
            return [_series("bike_requests_total", {"route": "/predict", "method": "POST", "status": "200"},
                            counter(100 - bad)),
                    _series("bike_requests_total", {"route": "/predict", "method": "POST", "status": status},
                            counter(bad)),
                    # many fast health checks: a rule that forgot route="/predict" would be diluted by them
                    _series("bike_requests_total", {"route": "/health", "method": "GET", "status": "200"},
                            counter(1000))]
        return requests(min(2 * t, (1 + t) / 2)), requests(t / 2), {}
    if name == "BikeSlowPredictions":
        bounds = [t / 2, t, 2 * t, 4 * t]

        def buckets(route: str, cumulative: Sequence[float]) -> list[dict]:
            les = [_number(b) for b in bounds] + ["+Inf"]
            return [_series("bike_request_latency_seconds_bucket", {"route": route, "status": "200", "le": le},
                            counter(c)) for le, c in zip(les, cumulative)]
        slow_health = buckets("/health", [0, 0, 0, 0, 100])  # a rule without route="/predict" would see these
        return (buckets("/predict", [80, 90, 95, 100, 100]),
                buckets("/predict", [100, 100, 100, 100, 100]) + slow_health, {})
    if name == "BikeFeatureDrift":
        def psi(temp: float) -> list[dict]:
            return [_series("bike_feature_drift_psi", {"feature": "temp"}, gauge(temp)),
                    _series("bike_feature_drift_psi", {"feature": "hr"}, gauge(t / 8))]
        return psi(4 * t), psi(t / 2), {"feature": "temp"}
    if name == "BikeInputsDrifted":
        return ([_series("bike_drift_share", {}, gauge((1 + t) / 2))],
                [_series("bike_drift_share", {}, gauge(t / 2))], {})
    if name == "BikeErrorAboveBaseline":
        def errors(mean: float) -> list[dict]:
            return [_series(f"{ERROR_METRIC}_count", {}, counter(1)),
                    _series(f"{ERROR_METRIC}_sum", {}, counter(mean))]
        return errors(2 * t), errors(t / 2), {}
    raise ValueError(f"no unit test is written for alert {name!r}: add its synthetic series to "
                     f"alerts._rule_cases")


def rule_tests(rules: Mapping | None = None, *, rule_file: str = "alerts.yml", job: str = "bike-demand") -> dict:
    """A ``promtool test rules`` file (as a dict) for every alert in ``rules`` (default :func:`alert_rules`).

    Per rule, two test groups on a 1-minute scrape interval: one whose series keep the condition true from
    the start (no alert halfway through ``for:``, the alert with its labels and summary 10 minutes after
    ``for:`` has passed), one whose series stay on the quiet side of the threshold (no alert then).
    """
    rules = rules or alert_rules(job=job)
    tests = []
    for group in rules["groups"]:
        for rule in group["rules"]:
            wait = duration_seconds(rule.get("for", "0m"))
            fire_at = wait + 600
            steps = int(fire_at // 60) + 5
            firing, quiet, labels = _rule_cases(rule, job, steps)
            expected = {"exp_labels": {**labels, **rule.get("labels", {})},
                        "exp_annotations": dict(rule.get("annotations", {}))}
            checks = []
            if wait >= 120:
                checks.append({"eval_time": _minutes(max(60, wait // 2)), "alertname": rule["alert"],
                               "exp_alerts": []})
            checks.append({"eval_time": _minutes(fire_at), "alertname": rule["alert"], "exp_alerts": [expected]})
            tests.append({"name": f"{rule['alert']} fires", "interval": "1m", "input_series": firing,
                          "alert_rule_test": checks})
            tests.append({"name": f"{rule['alert']} stays quiet", "interval": "1m", "input_series": quiet,
                          "alert_rule_test": [{"eval_time": _minutes(fire_at), "alertname": rule["alert"],
                                               "exp_alerts": []}]})
    return {"rule_files": [rule_file], "evaluation_interval": "1m", "tests": tests}


def rule_tests_yaml(rules: Mapping | None = None, *, rule_file: str = "alerts.yml") -> str:
    """:func:`rule_tests` as the YAML text promtool reads."""
    import yaml

    return yaml.safe_dump(rule_tests(rules, rule_file=rule_file), sort_keys=False, width=140)


def write_rules(folder: Path | str, rules: Mapping | None = None, *, name: str = "alerts") -> tuple[Path, Path]:
    """Write ``<name>.yml`` (the rules) and ``<name>_test.yml`` (their promtool unit tests) into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rules = rules or alert_rules()
    rules_path, tests_path = folder / f"{name}.yml", folder / f"{name}_test.yml"
    rules_path.write_text(rules_yaml(rules), encoding="utf-8")
    tests_path.write_text(rule_tests_yaml(rules, rule_file=rules_path.name), encoding="utf-8")
    return rules_path, tests_path


def failed_tests(verdict) -> list[tuple[str, str]]:
    """``(alert, evaluation time)`` of every failed case in a ``lint.promtool_test_rules`` verdict."""
    text = "\n".join(getattr(verdict, "findings", ()))
    return re.findall(r"alertname: ([A-Za-z_][A-Za-z0-9_]*), time: ([0-9a-z.]+)", text)


# ------------------------------------------------------------------ the course's check
def metric_names(expr: str) -> set[str]:
    """The metric names an expression reads (``_bucket``/``_count``/``_sum`` kept), parsed with promql-parser.

    ``ValueError`` names the parse error when the expression is not PromQL.
    """
    import promql_parser

    tree = promql_parser.parse(expr)
    names: set[str] = set()

    def visit(node) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            if node.name:
                names.add(node.name)
            names.update(m.value for m in node.matchers.matchers if m.name == "__name__")
        elif isinstance(node, promql_parser.MatrixSelector):
            visit(node.vector_selector)
        elif isinstance(node, promql_parser.BinaryExpr):
            visit(node.lhs)
            visit(node.rhs)
        elif isinstance(node, promql_parser.AggregateExpr):
            visit(node.expr)
            if node.param is not None:
                visit(node.param)
        elif isinstance(node, promql_parser.Call):
            for arg in node.args:
                visit(arg)
        elif isinstance(node, (promql_parser.ParenExpr, promql_parser.UnaryExpr, promql_parser.SubqueryExpr)):
            visit(node.expr)

    visit(tree)
    return names


def _family(series_name: str, known: Sequence[str]) -> str:
    """The metric family of a series name: ``bike_prediction_value_bucket`` -> ``bike_prediction_value``."""
    if series_name in known:
        return series_name
    for suffix in _SERIES_SUFFIXES:
        if series_name.endswith(suffix) and series_name.removesuffix(suffix) in known:
            return series_name.removesuffix(suffix)
    return series_name


def _rule_problems(item: Mapping, where: str, known_metrics: Sequence[str]) -> list[str]:
    problems = []
    unknown_fields = sorted(str(k) for k in item if k not in RULE_FIELDS)
    if unknown_fields:
        problems.append(f"{where}: unknown field(s) {unknown_fields}; a rule has {list(RULE_FIELDS[:1] + RULE_FIELDS[2:])}")
    expr = str(item.get("expr", "")).strip()
    if not expr:
        problems.append(f"{where}: 'expr' is missing or empty")
    else:
        try:
            used = metric_names(expr)
        except ValueError as exc:
            problems.append(f"{where}: 'expr' is not valid PromQL ({exc})")
        else:
            families = {_family(n, known_metrics) for n in used}
            unknown = sorted(f for f in families if f not in known_metrics)
            if not families:
                problems.append(f"{where}: 'expr' reads no metric")
            elif unknown:
                problems.append(f"{where}: 'expr' reads unknown metric(s) {unknown}; known: {list(known_metrics)}")
    for field in ("for", "keep_firing_for"):
        if field in item and not _DURATION.match(str(item[field])):
            problems.append(f"{where}: '{field}' must be a duration like 5m, got {item[field]!r}")
    if not isinstance(item.get("labels", {}), Mapping) or (item.get("labels") or {}).get("severity") not in SEVERITIES:
        problems.append(f"{where}: labels.severity must be one of {SEVERITIES}")
    if not isinstance(item.get("annotations", {}), Mapping) or not (item.get("annotations") or {}).get("summary"):
        problems.append(f"{where}: annotations.summary is missing (it is what the on-call person reads)")
    return problems


def validate_alert_rules(text: str, known_metrics: Sequence[str] = KNOWN_METRICS, *, source: str | None = None
                         ) -> list[str]:
    """Check a rules file's fields and that every expression reads metrics that exist; return the alert names.

    Raises :class:`AlertRulesError` listing every problem, each naming the rule and the field (and the file
    when ``source`` is given). The course's rules also need a ``severity`` label (page or ticket) and a
    ``summary``. Whether Prometheus accepts the file is promtool's verdict (``lint.promtool_check_rules``).
    """
    import yaml

    head = f"{source}: " if source else ""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise AlertRulesError(f"{head}not valid YAML: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("groups"), list) or not doc["groups"]:
        raise AlertRulesError(f"{head}a rules file is a mapping with a non-empty list under 'groups'")
    problems, names, groups = [], [], set()
    extra = sorted(str(k) for k in doc if k != "groups")
    if extra:
        problems.append(f"unknown top-level field(s) {extra}; a rules file has only 'groups'")
    for g, group in enumerate(doc["groups"]):
        if not isinstance(group, dict):
            problems.append(f"group {g}: must be a mapping with 'name' and 'rules'")
            continue
        gname = group.get("name")
        if not gname or gname in groups:
            problems.append(f"group {g}: needs a unique 'name'")
        groups.add(gname)
        unknown_fields = sorted(str(k) for k in group if k not in GROUP_FIELDS)
        if unknown_fields:
            problems.append(f"group {gname!r}: unknown field(s) {unknown_fields}; a group has {list(GROUP_FIELDS)}")
        if "interval" in group and not _DURATION.match(str(group["interval"])):
            problems.append(f"group {gname!r}: 'interval' must be a duration like 1m, got {group['interval']!r}")
        for r, item in enumerate(group.get("rules") or []):
            where = f"group {gname!r} rule {r}"
            if not isinstance(item, dict) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", str(item.get("alert", ""))):
                problems.append(f"{where}: 'alert' must be a name like BikeHighErrorRate")
                continue
            names.append(item["alert"])
            problems += _rule_problems(item, f"alert {item['alert']}", known_metrics)
    if names and len(set(names)) != len(names):
        problems.append(f"alert names repeat: {sorted(n for n in set(names) if names.count(n) > 1)}")
    if not names and not problems:
        problems.append("no alerting rules at all")
    if problems:
        raise AlertRulesError(f"{head}invalid alerting rules:\n- " + "\n- ".join(problems))
    return names


def rules_file_problems(path: Path | str, known_metrics: Sequence[str] = KNOWN_METRICS) -> list[str]:
    """The course check's problems with a rules file, one line each naming the file, rule and field
    (empty when it finds none)."""
    p = Path(path)
    try:
        validate_alert_rules(p.read_text(encoding="utf-8"), known_metrics, source=p.name)
    except AlertRulesError as exc:
        first, *rest = str(exc).splitlines()
        return [f"{p.name}: {line.removeprefix('- ')}" for line in rest] or [first]
    return []
