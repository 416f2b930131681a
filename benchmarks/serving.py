"""Requests per second and latency of three ways to serve the bike model, side by side.

    .venv/bin/python benchmarks/serving.py [--requests 2000] [--batch 1]

Trains and registers the course model in a temporary workspace, then starts each server in turn on
127.0.0.1 and a free port, sends it the same bounded request mix from one client, and stops it:

1. ``mlflow models serve`` (MLflow's scoring server, ``--env-manager local``, one worker)
2. the course service (``mlops_course.serving``) with scikit-learn
3. the course service with ONNX Runtime

Prints what ran, on what machine, and the figures; writes them to build/bench/serving.md too.
Goal (issue 6): the ONNX service at least 3x the requests per second of ``mlflow models serve``, and its p99
under 10 ms for one row.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from mlops_course import data, deploy, loadtest, paths, pipeline, process, registry, serving


def machine() -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{platform.node() or 'host'}: {platform.system()} {platform.machine()}, {os.cpu_count()} cores, "
            f"load average {load:.1f} at start, Python {platform.python_version()}")


def prepare(workspace: Path) -> str:
    """A workspace with bike-demand v1 (random forest, Jan-April) as champion; returns its tracking URI."""
    import mlflow

    os.environ["MLOPS_COURSE_WORKSPACE"] = str(workspace)
    from mlops_course import setup_lesson

    lesson = setup_lesson("90", quiet=True)
    bikes = data.load_bikeshare()
    train = data.select_months(bikes, pipeline.DEFAULT_SPLIT.train)
    model = pipeline.train(train)
    with mlflow.start_run(run_name="bench"):
        logged = registry.log_bike_model(model, pipeline.make_features(train))
    registry.register(logged, alias="champion")
    return lesson.tracking_uri


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests per server (default 2000)")
    parser.add_argument("--batch", type=int, default=1, help="rows per request (default 1)")
    parser.add_argument("--warmup", type=int, default=100)
    args = parser.parse_args(argv)

    started = time.strftime("%Y-%m-%d %H:%M")
    host = machine()
    with tempfile.TemporaryDirectory() as tmp:
        uri = prepare(Path(tmp))
        rows = pipeline.make_features(data.select_months(data.load_bikeshare(), ["June"]))
        mix_course = loadtest.course_calls(rows, args.batch)
        mix_mlflow = loadtest.mlflow_calls(rows, args.batch)
        runs = [("mlflow models serve", lambda: deploy.mlflow_serve(tracking_uri=uri,
                                                                     log_file=Path(tmp) / "mlflow.log").start(),
                 mix_mlflow),
                ("course service, scikit-learn", lambda: serving.start_service(
                    tracking_uri=uri, backend="sklearn", request_log=Path(tmp) / "sk.jsonl",
                    log_file=Path(tmp) / "sk.log"), mix_course),
                ("course service, ONNX Runtime", lambda: serving.start_service(
                    tracking_uri=uri, backend="onnx", request_log=Path(tmp) / "onnx.jsonl",
                    log_file=Path(tmp) / "onnx.log"), mix_course)]
        results = []
        try:
            for name, start, mix in runs:
                t0 = time.perf_counter()
                server = start()
                boot = time.perf_counter() - t0
                try:
                    result = loadtest.run_load_test(server.url, mix, args.requests, name=name, warmup=args.warmup,
                                                    max_seconds=300)
                finally:
                    server.stop()
                results.append(result)
                print(f"{name}: started in {boot:.1f} s, {result.requests} requests in {result.seconds:.1f} s, "
                      f"{result.errors} errors", flush=True)
        finally:
            process.stop_all()
    table = loadtest.compare(results, baseline="mlflow models serve")
    onnx = table.loc["course service, ONNX Runtime"]
    goal_rps = onnx["speed_vs_mlflow_models_serve"] >= 3
    goal_p99 = onnx["p99_ms"] < 10 if args.batch == 1 else None
    lines = [f"# Serving benchmark ({started})", "",
             f"Machine: {host}", "",
             (f"Mix: {args.requests} POST requests of {args.batch} row(s) each (hours of June 2011, in order), "
             f"after {args.warmup} warm-up requests; one client, one keep-alive connection, sequential; "
             f"each server on 127.0.0.1, one process/worker, started and stopped in turn."), "",
             "| server | requests | errors | req/s | p50 ms | p90 ms | p99 ms | req/s vs mlflow models serve |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in table.iterrows():
        lines.append(f"| {name} | {int(r.requests)} | {int(r.errors)} | {r.req_per_s:.0f} | {r.p50_ms:.2f} | "
                     f"{r.p90_ms:.2f} | {r.p99_ms:.2f} | {r.speed_vs_mlflow_models_serve:.1f}x |")
    lines += ["", (f"Goal: ONNX service >= 3x the req/s of mlflow models serve: "
                  f"{'met' if goal_rps else 'NOT met'} ({onnx['speed_vs_mlflow_models_serve']:.1f}x).")]
    if goal_p99 is not None:
        lines.append(f"Goal: ONNX service p99 < 10 ms for one row: {'met' if goal_p99 else 'NOT met'} "
                     f"({onnx['p99_ms']:.2f} ms).")
    text = "\n".join(lines)
    print(text)
    out = paths.build_dir() / "bench" / "serving.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
