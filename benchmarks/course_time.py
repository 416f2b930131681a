"""Wall time of every lesson executed by the course runner, and the total.

    .venv/bin/python benchmarks/course_time.py [LESSON ...]

Prints what ran, on what machine, and the figures; writes them to build/bench/course_time.md too.
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from mlops_course import lessons, paths, runner

BUDGETS = {"00": 15, "01": 25, "02": 25, "03": 25, "04": 30, "05": 30, "06": 25, "07": 45, "08": 60}


def machine() -> str:
    return (f"{platform.node() or 'host'}: {platform.system()} {platform.machine()}, {os.cpu_count()} cores, "
            f"Python {platform.python_version()}")


def main(argv: list[str]) -> int:
    chosen = [lessons.find(a) for a in argv] if argv else lessons.available()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for info in chosen:
            start = time.perf_counter()
            result = runner.execute(info, Path(tmp), progress=False)
            rows.append((info, result.status, time.perf_counter() - start))
    lines = [f"# Course time ({time.strftime('%Y-%m-%d')})", "", f"Machine: {machine()}", "",
             "| lesson | status | seconds | budget |", "|---|---|---:|---:|"]
    for info, status, seconds in rows:
        lines.append(f"| {info.stem} | {status} | {seconds:.1f} | {BUDGETS.get(info.number, '-')} |")
    lines.append(f"| total | {sum(s == 'ok' for _, s, _ in rows)}/{len(rows)} ok | "
                 f"{sum(t for *_, t in rows):.1f} | 150 |")
    text = "\n".join(lines)
    print(text)
    out = paths.build_dir() / "bench" / "course_time.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")
    return 0 if all(s == "ok" for _, s, _ in rows) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
