"""A webhook receiver for Alertmanager: each notification it gets is appended to a JSON-lines file.

``python -m mlops_course.webhook --port N --out alerts.jsonl`` serves ``POST /alerts`` (Alertmanager's webhook
body: ``status``, ``alerts`` with ``labels``) and ``GET /health``, on 127.0.0.1 only. :func:`receiver` runs it as
a :class:`mlops_course.process.BackgroundServer`; :func:`notifications` reads what arrived.

With ``--deployment API_URL DEPLOYMENT_ID`` (``receiver(..., deployment=(api_url, id))``) each firing
notification also starts a run of that Prefect deployment through Prefect's REST API
(``POST /deployments/{id}/create_flow_run``), with the parameter ``trigger`` set to the alert's name and an
idempotency key made of the alerts' fingerprints and start times, so a notification Alertmanager sends again
starts no second run. The run's id (or the error) is written into the notification's line as ``flow_run``.
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


def receiver(out: os.PathLike | str, *, log_file: os.PathLike | str | None = None,
             deployment: tuple[str, str] | None = None, start: bool = True) -> process.BackgroundServer:
    """The receiver, started, writing to ``out``; its URL for Alertmanager is ``server.url + "/alerts"``.

    ``deployment=(prefect_api_url, deployment_id)``: also start a run of that deployment per firing notification.
    ``start=False`` returns it unstarted (its port, so its URL, is known already), e.g. for
    ``process.start_together`` with Alertmanager and Prometheus.
    """
    out = Path(out).resolve()
    command = [sys.executable, "-m", "mlops_course.webhook", "--port", "{port}", "--out", str(out)]
    if deployment is not None:
        api_url, deployment_id = deployment
        command += ["--deployment", str(api_url), str(deployment_id)]
    server = process.BackgroundServer(command, log_file=log_file or out.with_suffix(".log"), health_path="/health",
                                      name="webhook receiver")
    return server.start() if start else server


def notifications(out: os.PathLike | str) -> list[dict]:
    """Every notification received so far, oldest first (an empty list before the first)."""
    path = Path(out)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def wait_for_alert(out: os.PathLike | str, alertname: str, *, timeout: float = 60.0,
                   started: bool = False) -> dict:
    """The first firing notification that carries ``alertname``; ``TimeoutError`` if none came in time.

    ``started=True``: the first one that started a run of the deployment. A notification the receiver could not
    turn into a run (Prefect busy: a 503) was answered 502, and Alertmanager sends it again.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for note in notifications(out):
            if started and "id" not in (note.get("flow_run") or {}):
                continue
            if note.get("status") == "firing" and any(a.get("labels", {}).get("alertname") == alertname
                                                      for a in note.get("alerts", [])):
                return note
        time.sleep(0.2)
    what = "started a run for" if started else "reached the webhook for"
    raise TimeoutError(f"no firing notification {what} {alertname} within {timeout:.0f} s")


def start_deployment_run(api_url: str, deployment_id: str, note: dict) -> dict:
    """Start a run of the deployment for a firing notification; ``{"id": ...}`` or ``{"error": ...}``."""
    import urllib.error
    import urllib.request

    firing = [a for a in note.get("alerts", []) if a.get("status", "firing") == "firing"]
    names = sorted({a.get("labels", {}).get("alertname", "?") for a in firing})
    key = "|".join(sorted(f"{a.get('fingerprint', '')}@{a.get('startsAt', '')}" for a in firing))
    body = {"parameters": {"trigger": ",".join(names)}, "tags": ["alertmanager"], "idempotency_key": key}
    request = urllib.request.Request(f"{api_url.rstrip('/')}/deployments/{deployment_id}/create_flow_run",
                                     data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return {"id": json.load(response)["id"]}
    except urllib.error.HTTPError as exc:
        return {"error": f"Prefect answered {exc.code}: {exc.read().decode(errors='replace')[:300]}"}
    except (urllib.error.URLError, OSError, ValueError, KeyError) as exc:
        return {"error": f"could not start a run of deployment {deployment_id} at {api_url}: {exc}"}


def _handler(out: Path, deployment: tuple[str, str] | None = None):
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
            if not isinstance(note, dict):
                self._reply(400, {"error": "expected a JSON object with 'status' and 'alerts'"})
                return
            if deployment is not None and note.get("status") == "firing":
                note["flow_run"] = start_deployment_run(*deployment, note)
            with out.open("a") as f:
                f.write(json.dumps(note, sort_keys=True) + "\n")
            started = note.get("flow_run", {})
            if "error" in started:  # 502: Alertmanager sends the notification again later
                self._reply(502, {"error": started["error"]})
                return
            self._reply(200, {"received": len(note.get("alerts", [])), **({"flow_run": started["id"]} if started else {})})

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
    parser.add_argument("--deployment", nargs=2, metavar=("API_URL", "DEPLOYMENT_ID"),
                        help="start a run of this Prefect deployment for every firing notification")
    args = parser.parse_args(argv)
    deployment = tuple(args.deployment) if args.deployment else None
    ThreadingHTTPServer((process.HOST, args.port), _handler(Path(args.out), deployment)).serve_forever()


if __name__ == "__main__":
    main()
