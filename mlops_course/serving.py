"""The course's prediction service: a FastAPI app that serves ``models:/bike-demand@champion``.

Routes: ``GET /health``, ``POST /predict`` (one or many rows), ``POST /reload`` (re-resolve the alias),
``GET /metrics`` (Prometheus text format), plus FastAPI's ``/docs`` and ``/openapi.json``.

- :func:`create_app` builds the app in this process (for ``fastapi.testclient.TestClient``).
- :func:`start_service` runs it with uvicorn in a background process on 127.0.0.1 and a free port and
  returns a started :class:`~mlops_course.process.BackgroundServer` (``.url``, ``.stop()``, ``with``).
- ``python -m mlops_course.serving --port 8000`` runs it in the foreground.

Each ``/predict`` call is appended to a JSON-lines request log by a background thread, so the response never
waits for the disk. A line reaches the file a moment after its response; :func:`read_request_log` with
``expect=n`` waits for ``n`` lines, and stopping the service writes everything still queued.
"""

import argparse
import math
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, create_model
from starlette.exceptions import HTTPException as StarletteHTTPException

from mlops_course import pipeline, registry
from mlops_course.model_loader import BACKENDS, ModelLoadError, ServedModel, load_served_model
from mlops_course.packaging import release_free_memory
from mlops_course.process import HOST, BackgroundServer, ServerError
from mlops_course.request_log import RequestLog, read_request_log  # noqa: F401 (part of this module's API)

MAX_BATCH = 2000  # rows per request; a month of hourly rows is at most 744
ROUTES = ("/health", "/predict", "/reload", "/metrics", "/docs", "/openapi.json")
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
PREDICTION_BUCKETS = (10, 25, 50, 100, 200, 300, 400, 500, 600, 800, 1000)


# ---------------------------------------------------------------- request and response schemas
def _feature_field(name: str) -> tuple[Any, Any]:
    low, high, unit = pipeline.FEATURE_RANGES[name]
    return (StrictFloat, Field(ge=low, le=high, allow_inf_nan=False,
                               description=f"{unit}; from {low} to {high}", json_schema_extra={"unit": unit}))


BikeFeatures = create_model(
    "BikeFeatures", __config__=ConfigDict(extra="forbid"),
    __doc__="One hour to predict: exactly the model's features, as numbers within their ranges.",
    **{name: _feature_field(name) for name in pipeline.FEATURES})

EXAMPLE_ROW = {"hr": 8, "weekday": 1, "workingday": 1, "holiday": 0, "weather": 1, "temp": 0.3, "atemp": 0.3,
               "hum": 0.5, "windspeed": 0.2}


def request_model(max_batch: int = MAX_BATCH) -> type[BaseModel]:
    """The ``/predict`` body schema: ``{"rows": [BikeFeatures, ...]}`` with 1 to ``max_batch`` rows."""
    return create_model(
        "PredictRequest", __config__=ConfigDict(extra="forbid", json_schema_extra={"examples": [
            {"rows": [EXAMPLE_ROW]}]}),
        rows=(list[BikeFeatures], Field(min_length=1, max_length=max_batch,
                                        description=f"hours to predict, 1 to {max_batch} per request")))


PredictRequest = request_model()


class PredictResponse(BaseModel):
    predictions: list[float] = Field(description="predicted bikes per hour, one per row, in row order")
    model_name: str
    model_version: str
    request_id: str


class HealthResponse(BaseModel):
    status: str
    model_name: str
    model_version: str
    alias: str
    backend: str


class ErrorDetail(BaseModel):
    field: str = Field(description="the part of the request at fault, e.g. `rows[0].hr`, `body`, `query.backend`")
    loc: list[str]
    msg: str
    type: str


class ErrorResponse(BaseModel):
    message: str = Field(description="what is wrong, in one line")
    detail: list[ErrorDetail] | str = Field(description="one entry per problem (or the message again)")


ERROR_MEANINGS = {
    400: "the body is not readable JSON",
    409: "the alias cannot be loaded; the old version keeps serving",
    422: "the request breaks the schema; the message names every field at fault",
    503: "the registry cannot be reached; the old version keeps serving",
}


def error_responses(*codes: int) -> dict[int, dict]:
    """OpenAPI entries for the error answers a route gives: all have the ``ErrorResponse`` body."""
    return {code: {"model": ErrorResponse, "description": ERROR_MEANINGS[code]} for code in codes}


# ---------------------------------------------------------------- metrics
class ServiceMetrics:
    """The service's Prometheus metrics, in a registry of their own (two apps in one process never clash)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("bike_requests_total", "HTTP requests by route, method and status code",
                                ["route", "method", "status"], registry=self.registry)
        self.latency = Histogram("bike_request_latency_seconds", "Time to answer a request, by route and status",
                                 ["route", "status"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.prediction = Histogram("bike_prediction_value", "Predicted bikes per hour",
                                    buckets=PREDICTION_BUCKETS, registry=self.registry)
        self.model_info = Gauge("bike_model_info", "The model version being served (value 1)",
                                ["name", "version", "alias", "backend"], registry=self.registry)

    def serving(self, model: ServedModel) -> None:
        self.model_info.clear()
        self.model_info.labels(model.name, model.version, model.alias, model.backend).set(1)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Counts every HTTP request and times it (plain ASGI: cheaper than ``@app.middleware``)."""

    def __init__(self, app, metrics: ServiceMetrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_and_remember(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_remember)
        finally:
            route = scope["path"] if scope["path"] in ROUTES else "other"  # bounded label values
            self.metrics.requests.labels(route, scope["method"], str(status)).inc()
            self.metrics.latency.labels(route, str(status)).observe(time.perf_counter() - start)


# ---------------------------------------------------------------- error bodies
def _field_name(loc: Sequence[Any]) -> str:
    parts = [p for p in loc if p != "body"]
    if not parts or all(isinstance(p, int) for p in parts):
        return "body"
    name = ""
    for p in parts:
        name += f"[{p}]" if isinstance(p, int) else (f".{p}" if name else str(p))
    return name


def validation_error_body(errors: Sequence[dict]) -> tuple[int, dict]:
    """Status code and JSON body for a rejected request: every problem with the field it concerns.

    Invalid JSON is a 400, everything else a 422. The offending values are left out on purpose: a NaN in
    the body could not be written back as JSON.
    """
    detail = []
    for err in errors:
        message = err.get("msg", "invalid")
        if err.get("type") == "json_invalid" and err.get("ctx", {}).get("error"):
            message = f"{message}: {err['ctx']['error']}"
        detail.append({"field": _field_name(err.get("loc", ())), "loc": [str(p) for p in err.get("loc", ())],
                       "msg": message, "type": err.get("type", "")})
    for d, err in zip(detail, errors):
        if d["type"] == "model_attributes_type" and d["field"] == "body" and isinstance(err.get("input"), bytes):
            d["msg"] += " (the body was not read as JSON: send it with the header content-type: application/json)"
    status = 400 if any(d["type"] == "json_invalid" for d in detail) else 422
    shown = "; ".join(f"{d['field']}: {d['msg']}" for d in detail[:5])
    more = f" (and {len(detail) - 5} more)" if len(detail) > 5 else ""
    return status, {"message": f"invalid request: {shown}{more}", "detail": detail}


def http_error_body(request: Request, exc: StarletteHTTPException) -> dict:
    """The JSON body for an error FastAPI raises itself (unknown route, wrong method, unreadable body), in the
    same format as a validation error: a ``message`` that names the problem, and ``detail``."""
    method, path = request.method, request.url.path
    if exc.status_code == 404:
        routes = [f"{m} {r.path}" for r in request.app.routes for m in sorted(getattr(r, "methods", None) or ())
                  if m != "HEAD"]
        message = f"no route {method} {path}; this service answers {', '.join(routes)}"
    elif exc.status_code == 405:
        allowed = (exc.headers or {}).get("Allow", "")
        message = f"method {method} is not allowed on {path}; use {allowed or 'another method'}"
    elif exc.status_code == 400 and exc.__cause__ is not None:  # FastAPI could not decode the body
        cause = f"{type(exc.__cause__).__name__}: {exc.__cause__}"[:300]
        msg = f"the body could not be read as JSON ({cause})"
        return {"message": f"invalid request: body: {msg}",
                "detail": [{"field": "body", "loc": ["body"], "msg": msg, "type": "body_unreadable"}]}
    else:
        message = f"{exc.detail}: {method} {path}"
    return {"message": message, "detail": message}


# ---------------------------------------------------------------- what it serves
class ReloadFailed(Exception):
    """A reload that did not happen: the model that keeps serving, why, and the HTTP status to answer."""

    def __init__(self, served: ServedModel, exc: Exception):
        self.version, self.backend = served.version, served.backend
        self.why = f"{type(exc).__name__}: {exc}"
        self.status = 409 if isinstance(exc, ModelLoadError) else 503  # the model's fault, or the registry's
        super().__init__(self.why)


class ServingState:
    """The model a service serves: loaded at start, swapped by :meth:`reload` one reload at a time.

    ``version`` pins it (a reload loads that version again); otherwise each load resolves ``alias`` once and
    loads the version it names. ``on_swap(model)`` runs for the first model and for each one swapped in,
    under the reload lock (the service's model-version gauge).
    """

    def __init__(self, name: str, alias: str, *, tracking_uri: str | None, backend: str,
                 version: str | int | None = None, on_swap: Callable[[ServedModel], None] | None = None):
        self.name, self.alias, self.tracking_uri, self.version = name, alias, tracking_uri, version
        self.backend = backend
        self._on_swap = on_swap or (lambda model: None)
        self._lock = threading.Lock()
        self.model = self._load(backend)
        self._on_swap(self.model)

    def _load(self, backend: str) -> ServedModel:
        model = load_served_model(self.name, self.alias, tracking_uri=self.tracking_uri, backend=backend,
                                  version=self.version)
        release_free_memory()  # what the load freed, back to the OS
        return model

    def reload(self, backend: str | None = None) -> ServedModel:
        """Load what the alias names now (with ``backend``, default the current one) and swap it in; on any
        error raise :class:`ReloadFailed` and keep serving the current model."""
        with self._lock:
            wanted = backend or self.backend
            try:
                new = self._load(wanted)
            except Exception as exc:  # whatever failed, the current model keeps serving
                raise ReloadFailed(self.model, exc) from exc
            self.model, self.backend = new, wanted
            self._on_swap(new)
        release_free_memory()  # the old model's memory, freed by the swap
        return new


# ---------------------------------------------------------------- the app
def create_app(model_name: str = registry.MODEL_NAME, alias: str = "champion", *, tracking_uri: str | None = None,
               request_log: os.PathLike | str | None = None, backend: str = "auto",
               max_batch: int = MAX_BATCH, version: str | int | None = None) -> FastAPI:
    """The prediction service for ``models:/<model_name>@<alias>``; the model is loaded now.

    ``version``: serve that version, pinned (``/reload`` loads it again rather than following the alias);
    ``alias`` is then reported as where it came from.

    ``request_log``: JSON-lines file for the monitoring lesson (none when ``None``). ``backend``: ``"auto"``
    (ONNX Runtime when the version has an ONNX copy, scikit-learn otherwise), ``"onnx"`` or ``"sklearn"``.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {BACKENDS}")
    if int(max_batch) < 1:
        raise ValueError(f"max_batch must be at least 1; got {max_batch}")
    metrics = ServiceMetrics()
    state = ServingState(model_name, alias, tracking_uri=tracking_uri, backend=backend, version=version,
                         on_swap=metrics.serving)
    log = RequestLog(request_log) if request_log is not None else None
    body_schema = PredictRequest if max_batch == MAX_BATCH else request_model(max_batch)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        if log is not None:
            log.close()

    served_uri = f"models:/{model_name}/{version}" if version is not None else f"models:/{model_name}@{alias}"
    app = FastAPI(title="Bike demand prediction service", version="1.0", lifespan=lifespan,
                  description=f"Predicts hourly bike rentals with `{served_uri}`. "
                              "Every feature is a number within its range; see the schema below.")
    app.state.metrics = metrics
    app.state.request_log = log
    app.add_middleware(MetricsMiddleware, metrics=metrics)

    def health_body() -> dict:
        model = state.model
        return {"status": "ok", "model_name": model.name, "model_version": model.version, "alias": model.alias,
                "backend": model.backend}

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        status, body = validation_error_body(exc.errors())
        return JSONResponse(body, status_code=status)

    @app.exception_handler(StarletteHTTPException)  # unknown route, wrong method, unreadable body
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(http_error_body(request, exc), status_code=exc.status_code, headers=exc.headers)

    @app.get("/health", response_model=HealthResponse, summary="Which model is being served")
    async def health() -> dict:
        return health_body()

    @app.post("/predict", response_model=PredictResponse, summary="Predict bikes per hour for 1 or more rows",
              responses=error_responses(400, 422))
    async def predict(body: body_schema, request: Request) -> JSONResponse:  # type: ignore[valid-type]
        # Prediction takes well under a millisecond with ONNX Runtime, so it runs right here in the event
        # loop; a slow model would go to a thread pool (a plain `def` route) instead.
        model = state.model
        X = np.array([[getattr(row, f) for f in pipeline.FEATURES] for row in body.rows], dtype=np.float64)
        y = model.predict(X)
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        for value in y:
            metrics.prediction.observe(value)
        if log is not None:
            log.write({"request_id": request_id, "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
                       "model_version": model.version, "inputs": X, "predictions": y})
        return JSONResponse({"predictions": [float(v) if math.isfinite(v) else None for v in y],
                             "model_name": model.name, "model_version": model.version, "request_id": request_id},
                            headers={"x-request-id": request_id})

    @app.post("/reload", response_model=HealthResponse, summary="Re-resolve the alias and load the version it names",
              responses=error_responses(409, 422, 503))
    def reload(backend: Literal["auto", "onnx", "sklearn"] | None = Query(
            None, description="switch the runtime too (default: keep the current one)")) -> Any:
        # A plain `def` route: loading runs in a worker thread while predictions go on.
        try:
            state.reload(backend)
        except ReloadFailed as failed:
            message = f"reload failed, still serving version {failed.version} ({failed.backend}): {failed.why}"
            return JSONResponse({"message": message, "detail": message}, status_code=failed.status)
        return health_body()

    @app.get("/metrics", summary="Prometheus metrics (text exposition format)", response_class=PlainTextResponse)
    async def prometheus_metrics() -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    return app


# ---------------------------------------------------------------- running it
class NothingToServe(ServerError):
    """``start_service`` found no version behind the alias in the tracking store (nothing was started)."""


def check_servable(alias: str = "champion", model_name: str = registry.MODEL_NAME, *,
                   tracking_uri: str | None = None) -> None:
    """Raise ``NothingToServe`` (one line that says which cells to run first) when no version is behind
    ``models:/<model_name>@<alias>``; any server for that URI, the course's or the learner's, would fail to start."""
    try:
        registry.version_by_alias(alias, model_name, tracking_uri=tracking_uri)
    except registry.AliasError as exc:
        raise NothingToServe(f"nothing to serve at models:/{model_name}@{alias}: {exc}. Run the cells that "
                             f"register a version and set that alias first.") from None


def start_service(model_name: str = registry.MODEL_NAME, alias: str = "champion", *, tracking_uri: str | None = None,
                  request_log: os.PathLike | str | None = None, backend: str = "auto",
                  log_file: os.PathLike | str | None = None, port: int | None = None,
                  max_batch: int = MAX_BATCH, startup_timeout: float = 120.0, start: bool = True) -> BackgroundServer:
    """Run the service with uvicorn in a background process on 127.0.0.1 (a free port unless ``port``).

    Returns the started server; use it in a ``with`` block or call ``.stop()``. ``tracking_uri`` defaults to
    ``MLFLOW_TRACKING_URI``. Paths are resolved against the current directory (the lesson's workspace).
    ``start=False`` returns it unstarted (e.g. for ``process.start_together``).
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {BACKENDS}")
    tracking_uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not tracking_uri:
        raise ValueError("no tracking store: pass tracking_uri=lesson.tracking_uri (or set MLFLOW_TRACKING_URI)")
    # Checked here, in a fraction of a second, rather than by a process that starts, imports and exits.
    check_servable(alias, model_name, tracking_uri=tracking_uri)
    command = [sys.executable, "-m", "mlops_course.serving", "--model-name", model_name, "--alias", alias,
               "--tracking-uri", tracking_uri, "--backend", backend, "--port", "{port}",
               "--max-batch", str(max_batch)]
    if request_log is not None:
        command += ["--request-log", str(Path(request_log).resolve())]
    log_file = Path(log_file).resolve() if log_file is not None else Path.cwd() / "service.log"
    server = BackgroundServer(command, log_file=log_file, port=port, health_path="/health",
                              startup_timeout=startup_timeout, name=f"bike-service-{backend}",
                              env={"MLFLOW_TRACKING_URI": tracking_uri})
    return server.start() if start else server


def argument_parser(parser_class: type[argparse.ArgumentParser] = argparse.ArgumentParser
                    ) -> argparse.ArgumentParser:
    """The command line of ``python -m mlops_course.serving`` (the image's ENTRYPOINT; a Kubernetes ``args:``
    list is parsed by it). ``parser_class``: e.g. one whose ``error`` raises instead of exiting."""
    parser = parser_class(prog="python -m mlops_course.serving", description=__doc__.splitlines()[0])
    parser.add_argument("--model-name", default=registry.MODEL_NAME)
    parser.add_argument("--alias", default="champion")
    parser.add_argument("--version", default=None,
                        help="serve this model version, pinned (the alias is then only reported)")
    parser.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI"))
    parser.add_argument("--backend", choices=BACKENDS, default="auto")
    parser.add_argument("--request-log", default=None)
    parser.add_argument("--max-batch", type=int, default=MAX_BATCH)
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--host", default=HOST, help="interface to listen on (default 127.0.0.1: this machine only)")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    import uvicorn

    args = argument_parser().parse_args(argv)
    app = create_app(args.model_name, args.alias, tracking_uri=args.tracking_uri, request_log=args.request_log,
                     backend=args.backend, max_batch=args.max_batch, version=args.version)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
