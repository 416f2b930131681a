"""The service's request log: one JSON line per prediction request, written by a background thread.

Each line: ``{"request_id", "time" (ISO-8601, UTC), "model_version", "inputs" (row dicts), "predictions"}``.
The request handler only puts a record on a queue, so the response never waits for the disk; the monitoring
lesson reads the file. A line reaches the file a moment after its response: :func:`read_request_log` with
``expect=n`` waits for ``n`` lines, and closing the log (stopping the service) writes everything queued.
"""

from __future__ import annotations

import json
import os
import queue
import threading
import time
from pathlib import Path

from mlops_course import pipeline


class RequestLog:
    """Appends one JSON line per prediction request to a file, from a background thread.

    ``write`` only puts the record on a queue; the thread turns it into JSON and writes it. ``flush`` waits
    until everything queued so far is on disk; ``close`` does that and stops the thread.
    """

    def __init__(self, path: os.PathLike | str):
        self.path = Path(path)
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def write(self, record: dict) -> None:
        self._ensure_thread()
        self._queue.put(record)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every record queued before this call is written; False on timeout."""
        if self._thread is None:
            return True
        done = threading.Event()
        self._queue.put(done)
        return done.wait(timeout)

    def close(self, timeout: float = 10.0) -> None:
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout)

    def _ensure_thread(self) -> None:
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                    self._thread = threading.Thread(target=self._run, name="request-log", daemon=True)
                    self._thread.start()

    def _run(self) -> None:
        # Binary and unbuffered: all lines queued so far go to the file in one write() call, so a reader
        # never sees half a line for long, and nothing waits in a buffer.
        with open(self.path, "ab", buffering=0) as fh:
            while True:
                items = [self._queue.get()]
                while True:
                    try:
                        items.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                lines = [_json_line(i) for i in items if isinstance(i, dict)]
                if lines:
                    fh.write("".join(lines).encode("utf-8"))
                for item in items:
                    if isinstance(item, threading.Event):
                        item.set()
                if any(item is None for item in items):
                    return


def _json_line(record: dict) -> str:
    try:
        return json.dumps(_log_line(record)) + "\n"
    except Exception as exc:  # noqa: BLE001 - a broken record must not stop the writer thread
        return json.dumps({"request_id": record.get("request_id"), "error": f"not logged: {exc}"}) + "\n"


def _log_line(record: dict) -> dict:
    rows = [dict(zip(pipeline.FEATURES, r)) for r in record["inputs"].tolist()]
    return {"request_id": record["request_id"], "time": record["time"], "model_version": record["model_version"],
            "inputs": rows, "predictions": [float(p) for p in record["predictions"]]}


def read_request_log(path: os.PathLike | str, expect: int | None = None, timeout: float = 10.0) -> list[dict]:
    """The records of a request log; with ``expect``, wait up to ``timeout`` s until that many are there."""
    path = Path(path)
    deadline = time.monotonic() + timeout
    while True:
        text = path.read_text(encoding="utf-8") if path.exists() else ""
        complete = [line for line in text.split("\n")[:-1] if line.strip()]  # the last piece is unfinished
        if expect is None or len(complete) >= expect or time.monotonic() > deadline:
            return [json.loads(line) for line in complete]
        time.sleep(0.02)
