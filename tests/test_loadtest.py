"""The load-test client: request mixes, bounded runs against a real loopback server, percentiles, plots."""

import json
import threading
import time
import typing
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pandas as pd
import pytest

from mlops_course import data, loadtest, pipeline


@pytest.fixture(scope="module")
def rows():
    return pipeline.make_features(data.select_months(data.load_bikeshare(), ["June"])).head(10)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the real servers
    seen: typing.ClassVar[list] = []
    delay = 0.0

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).seen.append((self.path, body))
        time.sleep(type(self).delay)
        status = 500 if self.path == "/broken" else 200
        payload = b'{"predictions": [1.0]}'
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    Handler.seen, Handler.delay = [], 0.0
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_course_calls_batch_rows(rows):
    calls = loadtest.course_calls(rows, batch=4)
    assert [c.rows for c in calls] == [4, 4, 2] and {c.path for c in calls} == {"/predict"}
    first = json.loads(calls[0].body)
    assert list(first) == ["rows"] and first["rows"][0] == rows.iloc[0][pipeline.FEATURES].to_dict()


def test_mlflow_calls_use_dataframe_split(rows):
    calls = loadtest.mlflow_calls(rows, batch=3)
    body = json.loads(calls[0].body)["dataframe_split"]
    assert calls[0].path == "/invocations" and body["columns"] == pipeline.FEATURES
    assert body["data"] == rows[pipeline.FEATURES].head(3).to_numpy().tolist() and len(calls) == 4


def test_exact_number_of_requests_is_sent(server, rows):
    calls = loadtest.course_calls(rows)
    result = loadtest.run_load_test(server, calls, 25, name="fake", warmup=5, concurrency=2)
    assert len(Handler.seen) == 30  # 5 warm-up + 25 measured, nothing more
    assert result.requests == 25 and result.errors == 0 and len(result.latencies_ms) == 25
    assert result.rows == 25 and result.rps > 0 and result.p50 <= result.p90 <= result.p99
    sent = [body for _, body in Handler.seen[5:]]
    assert sorted(sent) == sorted(c.body for c in [calls[i % len(calls)] for i in range(25)])


def test_errors_are_counted_not_timed(server):
    calls = [loadtest.Call("/broken", b"{}"), loadtest.Call("/predict", b"{}")]
    result = loadtest.run_load_test(server, calls, 10, warmup=0)
    assert result.errors == 5 and len(result.latencies_ms) == 5 and result.requests == 10


def test_max_seconds_bounds_the_run(server):
    Handler.delay = 0.05
    result = loadtest.run_load_test(server, [loadtest.Call("/predict", b"{}")], 1000, warmup=0, max_seconds=0.3)
    assert 1 <= result.requests < 1000


def test_connection_refused_counts_errors():
    from mlops_course.process import free_port

    result = loadtest.run_load_test(f"http://127.0.0.1:{free_port()}", [loadtest.Call("/p", b"{}")], 3, warmup=0)
    assert result.errors == 3 and np.isnan(result.p50)


@pytest.mark.parametrize("url", ["http://10.1.2.3:8000", "http://example.com:80", "https://127.0.0.1:8443",
                                 "http://127.0.0.1"])
def test_only_loopback_targets(url):
    with pytest.raises(ValueError, match="127.0.0.1"):
        loadtest.run_load_test(url, [loadtest.Call("/p", b"{}")], 1)


def test_bad_arguments():
    with pytest.raises(ValueError, match="no requests"):
        loadtest.run_load_test("http://127.0.0.1:1", [], 1)
    with pytest.raises(ValueError, match="at least 1"):
        loadtest.run_load_test("http://127.0.0.1:1", [loadtest.Call("/p", b"")], 0)


def result(name, ms, seconds):
    return loadtest.LoadTestResult(name, len(ms), 0, seconds, np.array(ms, float), len(ms))


def test_percentiles_and_compare():
    slow = result("slow", [10.0] * 99 + [100.0], 2.0)
    fast = result("fast", list(np.arange(1, 101, dtype=float)), 0.5)
    assert fast.p50 == pytest.approx(50.5) and fast.p99 == pytest.approx(99.01) and slow.p50 == 10
    table = loadtest.compare([slow, fast], baseline="slow")
    assert table.loc["fast", "req_per_s"] == 200 and table.loc["fast", "speed_vs_slow"] == 4
    assert isinstance(table, pd.DataFrame) and list(table.index) == ["slow", "fast"]
    with pytest.raises(KeyError, match="no result named 'mlflow'"):
        loadtest.compare([slow], baseline="mlflow")


def test_plot_results():
    import matplotlib

    matplotlib.use("Agg", force=True)
    fig = loadtest.plot_results([result("a", [1.0, 2.0, 3.0], 1.0), result("b", [5.0, 6.0], 1.0)])
    assert len(fig.axes) == 2 and len(fig.axes[0].lines) == 2
