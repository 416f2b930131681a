"""Prometheus and Alertmanager for a lesson: generated configs, both servers on loopback, HTTP API helpers.

- :func:`prometheus_config` writes the ``prometheus.yml`` a team would write: one scrape job over the service
  replicas, the rule files, and the Alertmanager to send alerts to. Intervals are 1 s so a lesson sees an
  alert fire in seconds (production: 15-60 s).
- :func:`alertmanager_config` routes every alert, or the ones named, to one webhook receiver (``group_wait`` 1 s here).
- :class:`Prometheus` and :class:`Alertmanager` run the Debian binaries (``prometheus``,
  ``prometheus-alertmanager``; Homebrew's ``alertmanager`` on macOS) as
  :class:`mlops_course.process.ManagedServer` subclasses, with their data folders in the workspace, on free
  ports of 127.0.0.1, stopped with the lesson. Alertmanager's cluster port is off (one instance).
- :func:`query` and :func:`alerts` read Prometheus' HTTP API (``/api/v1/query``, ``/api/v1/alerts``).
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from mlops_course import process

PROMETHEUS = ("prometheus",)
ALERTMANAGER = ("prometheus-alertmanager", "alertmanager")  # Debian's name, then the upstream/Homebrew one
# System packages, not Python ones: how to install each (``require_tools`` and ``mlops-course doctor`` say this).
INSTALL = {
    "prometheus": "Debian/Ubuntu: `sudo apt-get install prometheus`; macOS: `brew install prometheus`",
    "prometheus-alertmanager": "Debian/Ubuntu: `sudo apt-get install prometheus-alertmanager`; macOS: "
                               "`brew install alertmanager` (its binary is called alertmanager there)",
}


class MissingTool(RuntimeError):
    """A binary the lesson needs is not installed; the message says how to install it."""


def find_binary(names: Sequence[str]) -> str | None:
    """The first of ``names`` on PATH (or in ``/usr/bin``), else ``None``."""
    for name in names:
        found = shutil.which(name) or shutil.which(name, path="/usr/bin:/usr/local/bin:/opt/homebrew/bin")
        if found:
            return found
    return None


def missing_tools() -> list[str]:
    """The names of the binaries this module needs that are not installed (empty when all are)."""
    return [names[0] for names in (PROMETHEUS, ALERTMANAGER) if find_binary(names) is None]


def require_tools() -> None:
    """Raise :class:`MissingTool` naming every missing binary and how to install it (the install lines of
    :data:`INSTALL`, which ``mlops-course doctor`` prints too)."""
    missing = missing_tools()
    if missing:
        raise MissingTool("this lesson needs Prometheus and Alertmanager, and they are not installed:\n"
                          + "\n".join(f"- {name}: {INSTALL[name]}" for name in missing)
                          + "\nInstall them, then run `mlops-course doctor` to check again.")


# ------------------------------------------------------------------ configuration files
def prometheus_config(targets: Sequence[str], *, rule_files: Sequence[str] = (), alertmanager: str | None = None,
                      job: str = "bike-demand", interval: str = "1s") -> dict:
    """A ``prometheus.yml`` as a dict: scrape ``targets`` (``host:port``) as ``job``, load ``rule_files``."""
    config: dict = {"global": {"scrape_interval": interval, "evaluation_interval": interval},
                    "scrape_configs": [{"job_name": job, "metrics_path": "/metrics", "scrape_interval": interval,
                                        "static_configs": [{"targets": list(targets)}]}]}
    if rule_files:
        config["rule_files"] = list(rule_files)
    if alertmanager:
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]}
    return config


def alertmanager_config(webhook_url: str, *, receiver: str = "retrain", group_wait: str = "1s",
                        repeat_interval: str = "1h", only: Sequence[str] | None = None) -> dict:
    """An ``alertmanager.yml`` as a dict: alerts to one webhook, grouped by alert name.

    ``only``: the alert names the webhook gets; every other alert goes to the receiver ``ignore``, which has no
    configs and so notifies nobody (a team would route those to chat or paging instead).
    """
    hook = {"name": receiver, "webhook_configs": [{"url": webhook_url, "send_resolved": False}]}
    route = {"receiver": receiver, "group_by": ["alertname"], "group_wait": group_wait, "group_interval": "1s",
             "repeat_interval": repeat_interval}
    if only is None:
        return {"route": route, "receivers": [hook]}
    names = "|".join(re.escape(name) for name in only)
    route = {**route, "receiver": "ignore", "routes": [{"receiver": receiver, "matchers": [f'alertname=~"{names}"']}]}
    return {"route": route, "receivers": [{"name": "ignore"}, hook]}


def write_yaml(path: os.PathLike | str, content: Mapping) -> Path:
    import yaml

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(dict(content), sort_keys=False, width=140))
    return path


# ------------------------------------------------------------------ the servers
class Prometheus(process.ManagedServer):
    """``prometheus`` on a free loopback port, config and TSDB in ``<workspace>/prometheus``."""

    def __init__(self, workspace: os.PathLike | str, config: Mapping, *, startup_timeout: float = 60.0):
        self.folder = Path(workspace).resolve() / "prometheus"
        self.config_file = write_yaml(self.folder / "prometheus.yml", config)
        binary = find_binary(PROMETHEUS)
        if binary is None:
            require_tools()
        command = [binary, f"--config.file={self.config_file}", f"--storage.tsdb.path={self.folder / 'data'}",
                   f"--web.listen-address={process.HOST}:{{port}}", "--web.enable-lifecycle",
                   "--storage.tsdb.retention.time=1d", "--log.level=warn"]
        super().__init__(process.BackgroundServer(command, log_file=self.folder / "prometheus.log",
                                                  health_path="/-/ready", startup_timeout=startup_timeout,
                                                  cwd=self.folder, name="prometheus"))


class Alertmanager(process.ManagedServer):
    """Alertmanager on a free loopback port (cluster port off), config and state in ``<workspace>/alertmanager``."""

    def __init__(self, workspace: os.PathLike | str, config: Mapping, *, startup_timeout: float = 60.0):
        self.folder = Path(workspace).resolve() / "alertmanager"
        self.config_file = write_yaml(self.folder / "alertmanager.yml", config)
        binary = find_binary(ALERTMANAGER)
        if binary is None:
            require_tools()
        command = [binary, f"--config.file={self.config_file}", f"--storage.path={self.folder / 'data'}",
                   f"--web.listen-address={process.HOST}:{{port}}", "--cluster.listen-address=",
                   "--log.level=warn"]
        super().__init__(process.BackgroundServer(command, log_file=self.folder / "alertmanager.log",
                                                  health_path="/-/ready", startup_timeout=startup_timeout,
                                                  cwd=self.folder, name="alertmanager"))

    @property
    def address(self) -> str:
        """``host:port``, as Prometheus' ``alerting`` section wants it."""
        return f"{process.HOST}:{self.port}"


# ------------------------------------------------------------------ the HTTP API
class QueryError(RuntimeError):
    """Prometheus refused a query (bad PromQL) or could not be reached."""


def query(url: str, promql: str, *, timeout: float = 10.0, at: float | None = None) -> list[dict]:
    """Evaluate ``promql`` now (or at the Unix time ``at``); the vector as ``[{"metric": {...}, "value": float}]``.

    Two expressions compared with each other are evaluated at one ``at``: evaluated one after the other, "now"
    moves between them, and so does every rate.
    """
    import httpx

    params = {"query": promql} if at is None else {"query": promql, "time": f"{at:.3f}"}
    try:
        response = httpx.get(f"{url.rstrip('/')}/api/v1/query", params=params, timeout=timeout)
    except httpx.HTTPError as exc:
        raise QueryError(f"Prometheus at {url} did not answer ({type(exc).__name__})") from None
    body = response.json()
    if body.get("status") != "success":
        raise QueryError(f"Prometheus refused {promql!r}: {body.get('error', response.text[:200])}")
    data = body["data"]
    if data["resultType"] == "scalar":
        return [{"metric": {}, "value": float(data["result"][1])}]
    if data["resultType"] != "vector":
        raise QueryError(f"{promql!r} gives a {data['resultType']}, not an instant vector")
    return [{"metric": item["metric"], "value": float(item["value"][1])} for item in data["result"]]


def query_value(url: str, promql: str) -> float | None:
    """The single value of ``promql`` (``None`` when the vector is empty)."""
    result = query(url, promql)
    if len(result) > 1:
        raise QueryError(f"{promql!r} gives {len(result)} series; aggregate it (e.g. sum(...)) to one value")
    return result[0]["value"] if result else None


def alerts(url: str) -> list[dict]:
    """The alerts Prometheus holds now: ``[{"name", "state", "labels"}, ...]`` (state pending or firing)."""
    import httpx

    body = httpx.get(f"{url.rstrip('/')}/api/v1/alerts", timeout=10).json()
    return [{"name": a["labels"].get("alertname"), "state": a["state"], "labels": a["labels"]}
            for a in body["data"]["alerts"]]


def targets_up(url: str, job: str) -> int:
    """How many targets of ``job`` the last scrape reached."""
    return int(query_value(url, f'sum(up{{job="{job}"}})') or 0)


def wait_for(condition, *, timeout: float = 60.0, every: float = 0.25, what: str = "the condition"):
    """Call ``condition()`` until it returns something truthy (returned); ``TimeoutError`` naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout:.0f} s for {what}")
        time.sleep(every)
