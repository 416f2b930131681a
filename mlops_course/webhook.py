"""A webhook receiver for Alertmanager: each notification it gets is appended to a JSON-lines file.

``python -m mlops_course.webhook --port N --out alerts.jsonl`` serves ``POST /alerts`` (Alertmanager's webhook
body: ``status``, ``alerts`` with ``labels``) and ``GET /health``, on 127.0.0.1 only. :func:`receiver` runs it as
a :class:`mlops_course.process.BackgroundServer`; :func:`notifications` reads what arrived. What to do on an
alert (here: retrain) is the reader's business; a real team's receiver would start a deployment run instead.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from mlops_course import process


def receiver(out: os.PathLike | str, *, log_file: os.PathLike | str | None = None) -> process.BackgroundServer:
    """The receiver, started, writing to ``out``; its URL for Alertmanager is ``server.url + "/alerts"``."""
    out = Path(out).resolve()
    command = [sys.executable, "-m", "mlops_course.webhook", "--port", "{port}", "--out", str(out)]
    return process.BackgroundServer(command, log_file=log_file or out.with_suffix(".log"), health_path="/health",
                                    name="webhook receiver").start()


def notifications(out: os.PathLike | str) -> list[dict]:
    """Every notification received so far, oldest first (an empty list before the first)."""
    path = Path(out)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def wait_for_alert(out: os.PathLike | str, alertname: str, *, timeout: float = 60.0) -> dict:
    """The first firing notification that carries ``alertname``; ``TimeoutError`` if none came in time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for note in notifications(out):
            if note.get("status") == "firing" and any(a.get("labels", {}).get("alertname") == alertname
                                                      for a in note.get("alerts", [])):
                return note
        time.sleep(0.2)
    raise TimeoutError(f"no firing notification for {alertname} reached the webhook within {timeout:.0f} s")


def _handler(out: Path):
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self._reply(200 if self.path == "/health" else 404, {"status": "ok"})

        def do_POST(self):
            if self.path != "/alerts":
                self._reply(404, {"error": "POST /alerts"})
                return
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)) or 0)
            try:
                note = json.loads(body)
            except ValueError:
                self._reply(400, {"error": "not JSON"})
                return
            with out.open("a") as f:
                f.write(json.dumps(note, sort_keys=True) + "\n")
            self._reply(200, {"received": len(note.get("alerts", []))})

        def _reply(self, code: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, fmt, *args):  # one line per request in the log file, no clock time
            print(f"{self.command} {self.path} -> {args[1] if len(args) > 1 else ''}", flush=True)

    return Handler


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mlops_course.webhook", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    ThreadingHTTPServer((process.HOST, args.port), _handler(Path(args.out))).serve_forever()


if __name__ == "__main__":
    main()
