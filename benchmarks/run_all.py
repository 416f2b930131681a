"""Run the course's benchmarks one after the other and gather their reports into build/bench.md.

    .venv/bin/python benchmarks/run_all.py [NAME ...]        # or: make bench [BENCH="course_time drift"]

NAME is one of course_time, serving, drift, setup_time (default: all four, in that order; about 20 minutes
on 2 cores, most of it setup_time's full `make test`). Each benchmark's output is shown as it runs; each
writes its own report to build/bench/NAME.md, which becomes one section of build/bench.md (command, exit
code, wall seconds, then the report with its machine line and figures). Exits 1 when any benchmark failed.
"""

from __future__ import annotations

import subprocess
import sys
import time

from machine import REPO, commit, describe

from mlops_course import paths

BENCHMARKS = {
    "course_time": ["benchmarks/course_time.py"],
    "serving": ["benchmarks/serving.py"],
    "drift": ["benchmarks/drift.py"],
    "setup_time": ["benchmarks/setup_time.sh"],
}


def command_for(name: str) -> list[str]:
    """The argv that runs a benchmark: Python scripts with this interpreter, shell scripts with bash."""
    script = BENCHMARKS[name][0]
    runner = [sys.executable] if script.endswith(".py") else ["bash"]
    return [*runner, script, *BENCHMARKS[name][1:]]


def run(name: str) -> tuple[int, float, list[str]]:
    """Run one benchmark from the repository root, echoing its output; return exit code, seconds, output."""
    argv = command_for(name)
    print(f"\n=== {name}: {' '.join(argv[1:])}", flush=True)
    start = time.perf_counter()
    lines = []
    with subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            print(line, end="", flush=True)
            lines.append(line.rstrip("\n"))
    return proc.returncode, time.perf_counter() - start, lines


def section(name: str, code: int, seconds: float, output: list[str], started: float) -> list[str]:
    """A benchmark's part of the summary: how it ran, then its own report (headings two levels down)."""
    shown = " ".join(BENCHMARKS[name])
    lines = [f"## {name}", "", f"Command: `{shown}`; exit code {code}; {seconds:.0f} s wall.", ""]
    report = paths.build_dir() / "bench" / f"{name}.md"
    if report.is_file() and report.stat().st_mtime >= started:
        lines += [f"##{line}" if line.startswith("#") else line for line in report.read_text().splitlines()]
    else:
        lines += ["No report was written in this run; the end of its output:", "", "```",
                  *output[-40:], "```"]
    return [*lines, ""]


def main(argv: list[str]) -> int:
    unknown = [name for name in argv if name not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s) {unknown}; choose from {list(BENCHMARKS)}", file=sys.stderr)
        return 2
    names = argv or list(BENCHMARKS)
    header = [f"# Benchmarks ({time.strftime('%Y-%m-%d %H:%M')})", "",
              f"Course commit {commit()}.", "", f"Machine: {describe()}.", "",
              "| benchmark | command | exit code | wall seconds |", "|---|---|---:|---:|"]
    sections, failed = [], []
    for name in names:
        started = time.time()
        code, seconds, output = run(name)
        header.append(f"| {name} | `{' '.join(BENCHMARKS[name])}` | {code} | {seconds:.0f} |")
        sections += section(name, code, seconds, output, started)
        if code != 0:
            failed.append(name)
    text = "\n".join([*header, "", *sections]).rstrip() + "\n"
    out = paths.build_dir() / "bench.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"\nwrote {out}" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
