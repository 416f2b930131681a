"""Production traffic for the monitoring lessons: replay months of real hours to the service over HTTP,
read the request log it writes, and scrape and parse its Prometheus ``/metrics``.

The service itself is :mod:`mlops_course.serving` (lesson 04); this module is only its client. The request
log has one JSON line per ``/predict`` call: ``request_id``, ``time``, ``model_version``, ``inputs`` (rows)
and ``predictions``. A client that sends ``x-request-id`` gets that id logged: with the day's date as the id
(:func:`dates`), each logged row's key is its date and hour, which is how labels that arrive later are
joined to what the service really saw (:func:`label_keys`).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import pandas as pd

from mlops_course import data, pipeline

INTEGER_FEATURES = ("hr", "weekday", "workingday", "holiday", "weather")
YEAR = 2011  # the year of the bike data (data/README.md); its ``day`` column is the day of that year


class TrafficError(RuntimeError):
    """The service answered something other than a prediction, or its log or metrics are unusable."""


def feature_rows(features: pd.DataFrame) -> list[dict]:
    """JSON-ready request rows (the columns of ``pipeline.FEATURES``; whole-number features as ints)."""
    missing = [c for c in pipeline.FEATURES if c not in features.columns]
    if missing:
        raise TrafficError(f"rows lack feature column(s) {missing}; build them with pipeline.make_features")
    rows = []
    for record in features[pipeline.FEATURES].to_dict(orient="records"):
        rows.append({k: int(v) if k in INTEGER_FEATURES else float(v) for k, v in record.items()})
    return rows


def dates(rows: pd.DataFrame) -> pd.Series:
    """The ISO date (``"2011-06-01"``) of each row of the bike data, from its day-of-year column ``day``."""
    if "day" not in rows.columns:
        raise TrafficError("rows lack the 'day' column (day of the year): pass rows of data.load_bikeshare()")
    stamps = pd.Timestamp(f"{YEAR}-01-01") + pd.to_timedelta(rows["day"].astype("int64") - 1, unit="D")
    return pd.Series(stamps.dt.strftime("%Y-%m-%d").to_numpy(), index=rows.index, name="date")


def label_keys(log: pd.DataFrame) -> pd.DataFrame:
    """``day`` (of the year) and ``month`` of each logged prediction, from the request id it carried.

    The request id is the date the client sent as ``x-request-id`` (see :func:`dates`); with ``hr``, one of
    the logged inputs, ``(day, hr)`` is the key under which the true count arrives later, so the client's
    own record of what it sent is not needed. A request id that is not a date raises :class:`TrafficError`.
    """
    for column in ("request_id", "hr"):
        if column not in log.columns:
            raise TrafficError(f"the log table lacks {column!r}: read it with traffic.read_request_log")
    when = pd.to_datetime(log["request_id"], format="%Y-%m-%d", errors="coerce")
    if when.isna().any():
        bad = sorted(set(log.loc[when.isna(), "request_id"].astype(str)))[:3]
        raise TrafficError(f"request id(s) {bad} are not dates (YYYY-MM-DD): send each day's date as "
                           f"x-request-id, or drop the requests that were not part of the replay first")
    if (when.dt.year != YEAR).any():
        raise TrafficError(f"request dates outside {YEAR}, the year of the bike data")
    month_names = data.MONTHS
    return pd.DataFrame({"day": when.dt.dayofyear.astype("int64").to_numpy(),
                         "month": [month_names[m - 1] for m in when.dt.month]}, index=log.index)


def replay(url: str, batches: Iterable[tuple[str, pd.DataFrame]], *, rows_per_request: int = 24,
           client=None, timeout: float = 30.0, key: str | None = None) -> pd.DataFrame:
    """POST each month's feature rows to ``{url}/predict``, ``rows_per_request`` at a time (24 = one day).

    With ``key`` (a column of the batches, e.g. ``"date"`` from :func:`dates`), one request goes per run of
    equal values instead, and that value is sent as ``x-request-id``, so the service logs it.
    Returns one row per prediction: ``month``, ``row`` (position in the month's batch), ``request_id``,
    ``model_version`` and ``prediction``. Any non-200 answer raises :class:`TrafficError` with its body.
    ``client`` may be an ``httpx.Client`` (or FastAPI's ``TestClient``); by default one is opened here.
    """
    import httpx

    if rows_per_request < 1:
        raise ValueError(f"rows_per_request must be at least 1; got {rows_per_request}")
    own = client is None
    client = client or httpx.Client(timeout=timeout)
    out = []
    try:
        for month, batch in batches:
            rows = feature_rows(batch)
            if key is None:
                chunks = [(start, rows[start:start + rows_per_request], None)
                          for start in range(0, len(rows), rows_per_request)]
            else:
                if key not in batch.columns:
                    raise TrafficError(f"{month}: the batch has no {key!r} column to send as x-request-id")
                values = batch[key].astype(str).to_numpy()
                starts = [0] + [i for i in range(1, len(values)) if values[i] != values[i - 1]]
                chunks = [(a, rows[a:b], values[a]) for a, b in zip(starts, starts[1:] + [len(values)])]
            for start, chunk, request_id in chunks:
                headers = {"x-request-id": request_id} if request_id is not None else None
                response = client.post(f"{url.rstrip('/')}/predict", json={"rows": chunk}, headers=headers)
                if response.status_code != 200:
                    raise TrafficError(f"{month}: POST /predict answered {response.status_code}: "
                                       f"{response.text[:300]}")
                body = response.json()
                if len(body.get("predictions", [])) != len(chunk):
                    raise TrafficError(f"{month}: sent {len(chunk)} rows, got {len(body.get('predictions', []))} "
                                       f"predictions back")
                for i, value in enumerate(body["predictions"]):
                    out.append({"month": month, "row": start + i, "request_id": body["request_id"],
                                "model_version": str(body["model_version"]), "prediction": float(value)})
    finally:
        if own:
            client.close()
    return pd.DataFrame(out, columns=["month", "row", "request_id", "model_version", "prediction"])


def read_request_log(path: os.PathLike | str, *, expect: int | None = None, timeout: float = 10.0) -> pd.DataFrame:
    """The request log as one row per prediction: request id, model version, the input features, prediction.

    The service writes the log from a background thread; with ``expect`` (number of requests) this waits up
    to ``timeout`` seconds for that many lines (``request_log.read_request_log`` reads the file).
    """
    from mlops_course.request_log import read_request_log as read_records

    path = Path(path)
    if not path.exists() and expect is None:
        raise TrafficError(f"no request log at {path.name}: start the service with request_log=... and send requests")
    try:
        entries = read_records(path, expect=expect, timeout=timeout)
    except json.JSONDecodeError as exc:
        raise TrafficError(f"{path.name} has a line that is not JSON ({exc.msg}); the log is damaged") from None
    if not path.exists():
        raise TrafficError(f"no request log at {path.name}: start the service with request_log=... and send requests")
    if expect is not None and len(entries) < expect:
        raise TrafficError(f"{path.name} has {len(entries)} request(s) after {timeout:.0f} s, expected {expect}")
    records = []
    for number, entry in enumerate(entries, start=1):
        inputs, predictions = entry.get("inputs"), entry.get("predictions")
        if not isinstance(inputs, list) or not isinstance(predictions, list) or len(inputs) != len(predictions):
            raise TrafficError(f"{path.name} line {number} is not a request record: it needs 'inputs' and "
                               f"'predictions' lists of one length")
        for row, (values, prediction) in enumerate(zip(inputs, predictions)):
            records.append({"request_id": entry.get("request_id"), "model_version": str(entry.get("model_version")),
                            "row_in_request": row, **values, "prediction": float(prediction)})
    return pd.DataFrame(records)


# ------------------------------------------------------------------ /metrics
def scrape(url: str, *, client=None, timeout: float = 10.0) -> str:
    """The Prometheus text exposition of ``{url}/metrics`` (what a Prometheus server fetches every scrape)."""
    import httpx

    target = f"{url.rstrip('/')}/metrics"
    response = httpx.get(target, timeout=timeout) if client is None else client.get(target)
    if response.status_code != 200:
        raise TrafficError(f"GET /metrics answered {response.status_code}")
    return response.text


def parse_metrics(text: str) -> pd.DataFrame:
    """Every sample of an exposition as rows ``family, type, sample, labels, value`` (labels as a dict),
    parsed with ``prometheus_client.parser.text_string_to_metric_families``."""
    from prometheus_client.parser import text_string_to_metric_families

    rows = []
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                rows.append({"family": family.name, "type": family.type, "sample": sample.name,
                             "labels": dict(sample.labels), "value": float(sample.value)})
    except ValueError as exc:
        raise TrafficError(f"not a Prometheus text exposition: {exc}") from None
    return pd.DataFrame(rows, columns=["family", "type", "sample", "labels", "value"])


def _select(samples: pd.DataFrame, sample: str, labels: Mapping[str, str]) -> pd.DataFrame:
    chosen = samples[samples["sample"] == sample]
    keep = chosen["labels"].apply(lambda have: all(have.get(k) == v for k, v in labels.items()))
    return chosen[keep]


def request_counts(samples: pd.DataFrame) -> pd.DataFrame:
    """``bike_requests_total`` as a table of route, method, status and count."""
    chosen = _select(samples, "bike_requests_total", {})
    if chosen.empty:
        raise TrafficError("no bike_requests_total samples: is this the bike service's /metrics?")
    table = pd.DataFrame(list(chosen["labels"]))[["route", "method", "status"]]
    table["count"] = chosen["value"].astype(int).to_numpy()
    return table.sort_values(["route", "method", "status"]).reset_index(drop=True)


def histogram(samples: pd.DataFrame, metric: str, **labels: str) -> pd.DataFrame:
    """The cumulative buckets of a histogram (``le`` upper bounds, counts) for the given labels."""
    chosen = _select(samples, f"{metric}_bucket", labels)
    if chosen.empty:
        raise TrafficError(f"no buckets for {metric} with labels {labels}")
    table = pd.DataFrame({"le": chosen["labels"].apply(lambda d: float(d["le"])).to_numpy(),
                          "count": chosen["value"].to_numpy()})
    return table.groupby("le", as_index=False)["count"].sum().sort_values("le").reset_index(drop=True)


def histogram_quantile(q: float, buckets: pd.DataFrame) -> float:
    """The q-quantile estimated from cumulative buckets the way PromQL's ``histogram_quantile`` does:
    find the bucket holding rank q*total and interpolate linearly inside it."""
    if not 0 <= q <= 1:
        raise ValueError(f"q must be in [0, 1]; got {q}")
    les, counts = buckets["le"].tolist(), buckets["count"].tolist()
    if not les or not math.isinf(les[-1]) or counts[-1] == 0:
        return float("nan")
    rank = q * counts[-1]
    for i, (le, count) in enumerate(zip(les, counts)):
        if count >= rank:
            if math.isinf(le):
                return les[i - 1] if i else float("nan")
            lower, below = (les[i - 1], counts[i - 1]) if i else (0.0, 0.0)
            return lower + (le - lower) * (rank - below) / (count - below) if count > below else le
    return float("nan")  # pragma: no cover - the +Inf bucket always holds the total
