"""A bounded load test on loopback: a fixed number of requests, latency percentiles and throughput.

One client sends the same request mix to each server (``concurrency`` keep-alive connections, default 1),
stops after ``n_requests`` or ``max_seconds``, and returns the numbers. It uses the standard library's
``http.client`` so the client itself costs little CPU and the figures describe the server. Only loopback
addresses are accepted: a load test never leaves this machine.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import numpy as np
import pandas as pd

from mlops_course import pipeline

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@dataclass(frozen=True)
class Call:
    """One request of a mix: a POST of a JSON body to a path."""

    path: str
    body: bytes
    rows: int = 1


@dataclass(frozen=True)
class LoadTestResult:
    """What one load test measured. Latencies in milliseconds, one per successful request."""

    name: str
    requests: int
    errors: int
    seconds: float
    latencies_ms: np.ndarray = field(repr=False)
    rows: int = 0

    @property
    def rps(self) -> float:
        """Requests answered per second (successful and failed)."""
        return self.requests / self.seconds if self.seconds > 0 else float("nan")

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if len(self.latencies_ms) else float("nan")

    @property
    def p50(self) -> float:
        return self.percentile(50)

    @property
    def p90(self) -> float:
        return self.percentile(90)

    @property
    def p99(self) -> float:
        return self.percentile(99)

    def summary(self) -> dict:
        return {"server": self.name, "requests": self.requests, "errors": self.errors,
                "rows_per_request": self.rows / self.requests if self.requests else float("nan"),
                "req_per_s": self.rps, "p50_ms": self.p50, "p90_ms": self.p90, "p99_ms": self.p99}


def _records(rows: pd.DataFrame) -> list[dict]:
    return rows[pipeline.FEATURES].astype(float).to_dict(orient="records")


def course_calls(rows: pd.DataFrame, batch: int = 1) -> list[Call]:
    """Requests for the course service: ``POST /predict {"rows": [...]}``, ``batch`` rows each."""
    records = _records(rows)
    return [Call("/predict", json.dumps({"rows": records[i:i + batch]}).encode(), len(records[i:i + batch]))
            for i in range(0, len(records), batch)]


def mlflow_calls(rows: pd.DataFrame, batch: int = 1) -> list[Call]:
    """The same rows for ``mlflow models serve``: ``POST /invocations {"dataframe_split": ...}``."""
    values = rows[pipeline.FEATURES].astype(float).to_numpy().tolist()
    return [Call("/invocations", json.dumps({"dataframe_split": {"columns": pipeline.FEATURES,
                                                                 "data": values[i:i + batch]}}).encode(),
                 len(values[i:i + batch]))
            for i in range(0, len(values), batch)]


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    if parts.scheme != "http" or parts.hostname not in LOOPBACK or parts.port is None:
        raise ValueError(f"load tests only target http://127.0.0.1:<port> on this machine; got {url!r}")
    return parts.hostname, parts.port


class _Worker(threading.Thread):
    def __init__(self, host: str, port: int, calls: Sequence[Call], timeout: float, deadline: float):
        super().__init__(daemon=True)
        self.host, self.port, self.calls, self.timeout, self.deadline = host, port, calls, timeout, deadline
        self.latencies: list[float] = []
        self.errors = 0
        self.done = 0
        self.rows = 0

    def run(self) -> None:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        headers = {"Content-Type": "application/json"}
        try:
            for call in self.calls:
                if time.monotonic() > self.deadline:
                    break
                start = time.perf_counter()
                try:
                    conn.request("POST", call.path, body=call.body, headers=headers)
                    response = conn.getresponse()
                    response.read()
                    ok = 200 <= response.status < 300
                except (OSError, http.client.HTTPException):
                    ok = False
                    conn.close()
                    conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
                self.done += 1
                if ok:
                    self.latencies.append((time.perf_counter() - start) * 1000.0)
                    self.rows += call.rows
                else:
                    self.errors += 1
        finally:
            conn.close()


def run_load_test(url: str, calls: Sequence[Call], n_requests: int = 2000, *, name: str = "", warmup: int = 20,
                  concurrency: int = 1, timeout: float = 10.0, max_seconds: float = 60.0) -> LoadTestResult:
    """Send ``n_requests`` requests (cycling through ``calls``) to ``url`` and measure them.

    ``warmup`` requests go first and are not counted. The test stops early after ``max_seconds``; the
    result then says how many requests were sent.
    """
    if not calls:
        raise ValueError("no requests to send: build them with course_calls(...) or mlflow_calls(...)")
    if n_requests < 1 or concurrency < 1:
        raise ValueError(f"n_requests and concurrency must be at least 1; got {n_requests} and {concurrency}")
    host, port = _host_port(url)
    mix = [calls[i % len(calls)] for i in range(n_requests)]
    if warmup:
        _Worker(host, port, [calls[i % len(calls)] for i in range(warmup)], timeout, time.monotonic() + 30).run()
    deadline = time.monotonic() + max_seconds
    workers = [_Worker(host, port, mix[k::concurrency], timeout, deadline) for k in range(concurrency)]
    start = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    seconds = time.perf_counter() - start
    latencies = np.array([x for w in workers for x in w.latencies])
    return LoadTestResult(name or url, sum(w.done for w in workers), sum(w.errors for w in workers), seconds,
                          latencies, sum(w.rows for w in workers))


def compare(results: Iterable[LoadTestResult], baseline: str | None = None) -> pd.DataFrame:
    """One row per server: throughput, percentiles and, with ``baseline``, throughput relative to it."""
    table = pd.DataFrame([r.summary() for r in results]).set_index("server")
    if baseline is not None:
        if baseline not in table.index:
            raise KeyError(f"no result named {baseline!r}; have {list(table.index)}")
        table["speed_vs_" + baseline.replace(" ", "_")] = table["req_per_s"] / table.loc[baseline, "req_per_s"]
    return table


def plot_results(results: Sequence[LoadTestResult]):
    """Latency distribution (left) and requests per second (right) of each server."""
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(9.5, 3.6))
    for r in results:
        ms = np.sort(r.latencies_ms)
        left.plot(ms, np.arange(1, len(ms) + 1) / len(ms), label=r.name)
    left.set_xscale("log")
    left.set_xlabel("latency (ms, log scale)")
    left.set_ylabel("share of requests answered")
    left.legend(fontsize=8)
    names = [r.name for r in results]
    right.barh(names, [r.rps for r in results], color=["#C44E52", "#4C72B0", "#55A868"][: len(results)])
    right.set_xlabel("requests per second")
    right.invert_yaxis()
    fig.tight_layout()
    return fig
