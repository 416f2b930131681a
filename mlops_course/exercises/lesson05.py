"""Checks for lesson 05 (Model monitoring and drift).

05.1 compares a number with the PSI computed here, within the precision the lesson prints. 05.2 parses the
rule's PromQL with promql-parser and judges what it computes, then runs it with ``promtool test rules`` on
synthetic series (when promtool is installed). 05.3 recomputes the months from the table.
"""

from __future__ import annotations

import math
import numbers
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from mlops_course import alerts, drift, monitoring
from mlops_course.exercises import correct, exercise, wrong

PRINTED_PRECISION = 5e-4  # the lesson prints the PSI with 3 decimals: any value that rounds the same is right


# ------------------------------------------------------------------ 05.1
def _psi_variants(reference, current) -> dict[str, tuple[float, str, str]]:
    """Values that typical mistakes give, with the message and the hint that name each mistake."""
    ref = pd.Series(reference).value_counts(normalize=True)
    cur = pd.Series(current).value_counts(normalize=True).reindex(ref.index, fill_value=0.0)
    e_raw, a_raw = ref.to_numpy(), cur.to_numpy()
    e = np.where(e_raw > 0, e_raw, drift.PSI_EPS)
    a = np.where(a_raw > 0, a_raw, drift.PSI_EPS)
    expected = float(np.sum((a - e) * np.log(a / e)))
    variants = {
        "kl_current": (float(np.sum(a * np.log(a / e))), "is one Kullback-Leibler direction only.",
                       "PSI adds both directions: sum((actual - expected) * ln(actual / expected))."),
        "kl_reference": (float(np.sum(e * np.log(e / a))), "is one Kullback-Leibler direction only.",
                         "PSI adds both directions: sum((actual - expected) * ln(actual / expected))."),
        "log10": (expected / math.log(10), "uses the base-10 logarithm.", "use the natural logarithm, np.log."),
        "percent": (expected * 100, "is 100 times too large: percentages instead of shares?",
                    "divide the counts by the number of rows so each sample's shares sum to 1."),
        "percent2": (expected * 10_000, "is 10,000 times too large: percentages instead of shares?",
                     "divide the counts by the number of rows so each sample's shares sum to 1."),
    }
    for eps in (1e-12, 1e-10, 1e-8, 1e-6, 1e-5, 1e-3, 1e-2):
        a_eps, e_eps = np.where(a_raw > 0, a_raw, eps), np.where(e_raw > 0, e_raw, eps)
        variants[f"eps{eps:g}"] = (float(np.sum((a_eps - e_eps) * np.log(a_eps / e_eps))),
                                   f"gives the empty category a share of {eps:g}.",
                                   (f"the exercise fixes an empty share at drift.PSI_EPS ({drift.PSI_EPS:g}); the "
                                   f"PSI depends on that choice (section 5 shows how much)."))
    seen = a_raw > 0  # categories July has: aligning on them drops the empty ones from the sum
    variants["dropped"] = (float(np.sum((a_raw[seen] - e_raw[seen]) * np.log(a_raw[seen] / e_raw[seen]))),
                           "leaves out the category July does not have.",
                           (f"align both samples on the reference's categories: an empty share becomes "
                            f"drift.PSI_EPS ({drift.PSI_EPS:g}) and its term counts."))
    return variants


@exercise("05.1", "PSI of a categorical feature by hand")
def psi_by_hand(answer, reference, current) -> object:
    if isinstance(answer, bool) or not isinstance(answer, numbers.Real):
        return wrong(f"expected one number (the PSI), got {type(answer).__name__}.",
                     "sum the per-category terms into one float, e.g. with float(np.sum(...)).")
    answer = float(answer)
    if math.isnan(answer):
        return wrong("the PSI is NaN.", "an empty share made a log(0) or 0/0: give it drift.PSI_EPS first.")
    expected = drift.psi(reference, current, categorical=True)
    # A mistake can land within printing precision of the PSI (leaving out an empty category changes it in the
    # fourth decimal): the answer is judged by the value it is closest to, the PSI or a known mistake.
    mistakes = [(abs(answer - value), message, hint) for value, message, hint in
                _psi_variants(reference, current).values() if abs(value - expected) > 1e-9]
    nearest = min(mistakes, key=lambda m: m[0], default=None)
    if abs(answer - expected) <= PRINTED_PRECISION and (nearest is None or abs(answer - expected) <= nearest[0]):
        return correct(f"PSI = {expected:.3f}: {drift.psi_level(expected)} by the usual rule of thumb.")
    if nearest is not None and nearest[0] <= PRINTED_PRECISION:
        return wrong(f"{answer:.4f} {nearest[1]}", nearest[2])
    if answer < 0:
        return wrong(f"{answer:.4f} is negative, and every PSI term is >= 0.",
                     "(a - e) and ln(a / e) always have the same sign; check the order inside each factor.")
    return wrong(f"{answer:.4f} is not the PSI of these samples.",
                 "take each category's share in the reference (e) and in July (a), then "
                 "sum((a - e) * np.log(a / e)) over the categories.")


# ------------------------------------------------------------------ 05.2
PREDICTION_BUCKETS = (10, 25, 50, 100, 200, 300, 400, 500, 600, 800, 1000)  # as the service exports them
# Cumulative counts per minute: median 440 (fires) and median 280 with a p99 of 960 (must stay quiet).
HIGH_MEDIAN = (0, 0, 0, 5, 10, 20, 30, 80, 90, 100, 100, 100)
LOW_MEDIAN = (0, 0, 5, 10, 30, 55, 70, 80, 85, 95, 100, 100)
_COMPARISONS = {">": ">", ">=": ">=", "<": "<", "<=": "<="}
_MIRROR = {">": "<", ">=": "<=", "<": ">", "<=": ">="}


def _unwrap(node):
    import promql_parser

    while isinstance(node, promql_parser.ParenExpr):
        node = node.expr
    return node


def _median_problem(expr: str) -> tuple[str, str] | None:
    """What keeps ``expr`` from meaning "median predicted bikes of the last hour above 400" (or None)."""
    import promql_parser as pq

    node = _unwrap(pq.parse(expr))
    op = str(node.op) if isinstance(node, pq.BinaryExpr) else ""
    if op not in _COMPARISONS:
        return ("the expression compares nothing with 400, so it never decides when to fire.",
                "end the expression with > 400.")
    lhs, rhs = _unwrap(node.lhs), _unwrap(node.rhs)
    if isinstance(lhs, pq.NumberLiteral) and not isinstance(rhs, pq.NumberLiteral):
        lhs, rhs, op = rhs, lhs, _MIRROR[op]
    if not isinstance(rhs, pq.NumberLiteral):
        return ("the expression does not compare the median with a number.", "end the expression with > 400.")
    if node.modifier is not None and node.modifier.return_bool:
        return (("'> bool' turns the comparison into 0 or 1, a value every evaluation has, so the alert "
                "fires all the time."), "drop bool: a plain > 400 keeps only the series above 400.")
    if not math.isclose(rhs.val, 400.0):
        return (f"the rule compares with {rhs.val:g}, not 400.", "compare the median with 400: > 400.")
    if op in ("<", "<="):
        return ("the rule fires when the median is below 400.", "use > 400: above 400.")
    if op == ">=":
        return ("'>= 400' also fires at exactly 400; the rule is for a median above 400.", "use > 400.")
    if not isinstance(lhs, pq.Call) or lhs.func.name != "histogram_quantile":
        return ("the expression does not estimate a quantile from the histogram.",
                "the median of a histogram is histogram_quantile(0.5, ...) over its _bucket series.")
    quantile = _unwrap(lhs.args[0])
    if not isinstance(quantile, pq.NumberLiteral):
        return ("the quantile is not a number.", "the median is histogram_quantile(0.5, ...).")
    if not math.isclose(quantile.val, 0.5):
        extra = " (quantiles go from 0 to 1, 50 % is 0.5)" if quantile.val > 1 else ""
        return (f"the expression estimates the {quantile.val:g} quantile, not the median{extra}.",
                "the median is histogram_quantile(0.5, ...); 0.99 would be the 99th percentile.")
    inner = _unwrap(lhs.args[1])
    if isinstance(inner, pq.AggregateExpr):
        name = str(inner.op)
        modifier = inner.modifier
        labels = list(modifier.labels) if modifier is not None else []
        kind = str(modifier.type).rsplit(".", 1)[-1].lower() if modifier is not None else ""
        keeps_le = (kind == "by" and "le" in labels) or (kind == "without" and "le" not in labels)
        if name not in ("sum", "avg"):
            return (f"{name}() over the buckets does not add up the histogram's counts.",
                    "add the buckets' rates with sum by (le) (...).")
        if not keeps_le:
            how = f"{name} without (le)" if kind == "without" else (f"{name} by ({', '.join(labels)})" if labels
                                                                    else f"{name}(...) without by (le)")
            return (f"{how} drops the le label, so histogram_quantile finds no buckets and the rule never fires.",
                    "keep the bucket bounds: sum by (le) (rate(bike_prediction_value_bucket[1h])).")
        inner = _unwrap(inner.expr)
    if isinstance(inner, (pq.VectorSelector, pq.MatrixSelector)):
        return ("the quantile is taken over counts since the service started, not over the last hour.",
                "take rate(bike_prediction_value_bucket[1h]) inside histogram_quantile.")
    if not isinstance(inner, pq.Call):
        return ("histogram_quantile does not get the rates of the bucket series.",
                "histogram_quantile(0.5, sum by (le) (rate(bike_prediction_value_bucket[1h]))).")
    function = inner.func.name
    if function == "irate":
        return ("irate uses only the last two samples of each bucket, not the whole last hour.",
                "use rate(bike_prediction_value_bucket[1h]) (or increase).")
    if function not in ("rate", "increase"):
        return (f"{function}() is not how a histogram's counters become counts of the last hour.",
                "use rate(bike_prediction_value_bucket[1h]) (or increase).")
    window = _unwrap(inner.args[0]) if inner.args else None
    if isinstance(window, pq.SubqueryExpr):
        return ("the rate is taken over a subquery.", "use a plain range: rate(bike_prediction_value_bucket[1h]).")
    if not isinstance(window, pq.MatrixSelector):
        return ("rate() gets no range of samples.", "rate(bike_prediction_value_bucket[1h]).")
    selector = window.vector_selector
    metric = selector.name or next((m.value for m in selector.matchers.matchers if m.name == "__name__"), "")
    if metric != "bike_prediction_value_bucket":
        if metric in ("bike_prediction_value_sum", "bike_prediction_value_count"):
            return (f"{metric} gives the mean prediction, not the median.",
                    "the median comes from the buckets: bike_prediction_value_bucket.")
        if metric == "bike_prediction_value":
            return ("the expression reads bike_prediction_value, not the histogram's buckets.",
                    "a histogram is stored as bike_prediction_value_bucket series, one per upper bound 'le'.")
        return (f"the expression reads {metric or 'no metric'}, not the prediction histogram's buckets.",
                "a histogram is stored as bike_prediction_value_bucket series, one per upper bound 'le'.")
    if any(m.name == "le" for m in selector.matchers.matchers):
        return ("the selector keeps only some buckets (a matcher on le), so the quantile is wrong.",
                "select every bucket: no matcher on le.")
    if selector.offset is not None or selector.at is not None:
        return ("the selector looks at an earlier time (offset or @), not the last hour.",
                "drop the offset / @ modifier.")
    seconds = window.range.total_seconds()
    if not math.isclose(seconds, 3600):
        return (f"the rate is taken over {seconds / 60:g} minutes, not the last hour.", "use a [1h] range.")
    return None


def _promtool_says(rule: dict) -> tuple[bool, str] | None:
    """Run the rule with promtool on synthetic series; (ok, what went wrong), or None without promtool."""
    from mlops_course import lint

    try:
        lint.find_tool("promtool")
    except lint.ToolMissing:
        return None
    firing = 'clamp_max(count(ALERTS{alertname="BikePredictionsHigh",alertstate="firing"}), 1) or vector(0)'

    def series(cumulative) -> list[dict]:
        bounds = [str(b) for b in PREDICTION_BUCKETS] + ["+Inf"]
        return [{"series": f'bike_prediction_value_bucket{{job="bike-demand",instance="bike-service:8000",le="{le}"}}',
                 "values": f"0+{c}x150"} for le, c in zip(bounds, cumulative)]

    def check(at: str, value: int) -> dict:
        return {"expr": firing, "eval_time": at, "exp_samples": [{"value": value}]}

    # each check at a time of its own: promtool's report names the time, not the test group
    tests = {"rule_files": ["rule.yml"], "evaluation_interval": "1m", "tests": [
        {"name": "median 440", "interval": "1m", "input_series": series(HIGH_MEDIAN),
         "promql_expr_test": [check("15m", 0), check("45m", 1), check("2h", 1)]},
        {"name": "median 280, p99 960", "interval": "1m", "input_series": series(LOW_MEDIAN),
         "promql_expr_test": [check("50m", 0), check("2h10m", 0)]}]}
    import yaml

    with tempfile.TemporaryDirectory(prefix="exercise-05.2-") as folder:
        Path(folder, "rule.yml").write_text(alerts.rules_yaml({"groups": [{"name": "exercise", "rules": [rule]}]}))
        test_file = Path(folder, "rule_test.yml")
        test_file.write_text(yaml.safe_dump(tests, sort_keys=False))
        verdict = lint.promtool_test_rules(test_file)
    if verdict.ok:
        return True, ""
    failed = set(re.findall(r"time: ([0-9hms]+)", "\n".join(verdict.findings)))
    if failed & {"50m", "2h10m"}:
        return False, "it fired on series whose median is 280 (but whose 99th percentile is 960)"
    if failed & {"45m", "2h"}:
        return False, "it did not fire as expected on series whose median stays at 440"
    if "15m" in failed:
        return False, "it fired after 15 minutes on series whose median is 440, before 30 minutes had passed"
    return False, f"promtool could not run it: {verdict.findings[0] if verdict.findings else 'no output'}"


@exercise("05.2", "an alert on the predictions")
def prediction_alert(answer) -> object:
    if not isinstance(answer, dict):
        return wrong(f"expected one rule as a dict, got {type(answer).__name__}.",
                     "copy the shape of a rule from the rules printed above: alert, expr, for, labels, annotations.")
    if answer.get("alert") != "BikePredictionsHigh":
        return wrong(f"the rule is called {answer.get('alert')!r}.", "name it BikePredictionsHigh.")
    try:
        alerts.validate_alert_rules(alerts.rules_yaml({"groups": [{"name": "exercise", "rules": [answer]}]}))
    except monitoring.AlertRulesError as exc:
        return wrong(f"the rule has a problem: {str(exc).splitlines()[-1].lstrip('- ')}.",
                     "fix the field named in the message.")
    problem = _median_problem(str(answer["expr"]))
    if problem is not None:
        return wrong(*problem)
    wait = alerts.duration_seconds(answer.get("for", "0s"))
    if not math.isclose(wait, 1800):
        said = f"'for' is {answer.get('for')!r}" if "for" in answer else "there is no 'for'"
        return wrong(f"{said}, so the alert fires after {wait / 60:g} minutes, not 30.",
                     "the condition must hold 30 minutes: for: 30m.")
    tested = _promtool_says(answer)
    if tested is None:
        return correct("the rule reads the median of the last hour and compares it with 400 for 30 minutes "
                       "(promtool is not installed, so it was judged from its parsed expression only).")
    ok, what = tested
    if not ok:
        return wrong(f"promtool's unit test: {what}.", "compare your expression with the rules printed above.")
    return correct("the rule is valid and promtool confirms it: it fires when the median prediction of the last "
                   "hour stays above 400 for 30 minutes, and stays quiet when only the tail is above 400.")


# ------------------------------------------------------------------ 05.3
_FULL_NAMES = {"january": "Jan", "february": "Feb", "march": "March", "april": "April", "may": "May",
               "june": "June", "july": "July", "august": "Aug", "september": "Sept", "october": "Oct",
               "november": "Nov", "december": "Dec", "sep": "Sept", "mar": "March", "apr": "April",
               "jun": "June", "jul": "July"}


def _month_names(answer, known: Iterable[str]) -> list[str] | None:
    if isinstance(answer, (str, bytes)) or not isinstance(answer, Iterable):
        return None
    by_lower = {m.lower(): m for m in known}
    names = []
    for item in answer:
        text = str(item).strip()
        names.append(by_lower.get(text.lower()) or _FULL_NAMES.get(text.lower(), text))
    return names


@exercise("05.3", "months that trigger retraining")
def retrain_months(answer, monthly: pd.DataFrame, drift_threshold: float, error_threshold: float) -> object:
    names = _month_names(answer, monthly.index)
    if names is None:
        return wrong(f"expected a list of month names, got {type(answer).__name__}.", "for example ['July', 'Nov'].")
    unknown = [m for m in names if m not in monthly.index]
    if unknown:
        return wrong(f"{unknown} are not months of the table; its months are {list(monthly.index)}.",
                     "use the names as in the table's index.")

    def months(rule) -> set[str]:
        return {m for m, row in monthly.iterrows() if rule(row["drift_share"], row["mae"])}

    chosen = set(names)
    expected = months(lambda d, e: monitoring.should_retrain(d, e, drift_threshold=drift_threshold,
                                                             error_threshold=error_threshold))
    in_order = [m for m in monthly.index if m in expected]
    if chosen == expected:
        return correct(f"retraining fires in {in_order or 'no month'}.")
    mistakes = [
        (lambda d, e: d >= drift_threshold and e >= error_threshold,
         "these months include one that only reaches a threshold.",
         "should_retrain needs values strictly above both thresholds."),
        (lambda d, e: d > drift_threshold or e > error_threshold, "these are the months where drift OR error cross.",
         "the rule needs both: drift above its threshold AND error above its threshold."),
        (lambda d, e: d > drift_threshold, "these are the months with drift only.", "also require mae > error_threshold."),
        (lambda d, e: e > error_threshold, "these are the months with a high error only.",
         "also require drift_share > drift_threshold."),
    ]
    for rule, message, hint in mistakes:
        if chosen == months(rule) and chosen != expected:
            return wrong(message, hint)
    return wrong(f"{sorted(chosen, key=list(monthly.index).index)} is not the set of months where the rule fires.",
                 "call should_retrain(row.drift_share, row.mae, drift_threshold=..., error_threshold=...) per row.")
