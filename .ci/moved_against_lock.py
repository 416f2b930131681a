"""Print every installed package whose version differs from ``requirements.lock`` (the weekly job's first look).

    python .ci/moved_against_lock.py [LOCK]

Reads the pins (``name==version``) of the lock and the distributions installed in this interpreter's
environment; prints one line per package that moved, was added or is missing, and a count. Always exits 0:
it informs, the tests judge.
"""

from __future__ import annotations

import re
import sys
from importlib.metadata import distributions
from pathlib import Path

PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==([^\s;#]+)")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_pins(lock: Path) -> dict[str, str]:
    return {canonical(m[1]): m[2] for line in lock.read_text().splitlines() if (m := PIN.match(line.strip()))}


def installed() -> dict[str, str]:
    return {canonical(d.metadata["Name"]): d.version for d in distributions() if d.metadata["Name"]}


def moved(pins: dict[str, str], have: dict[str, str]) -> list[str]:
    lines = []
    for name in sorted(set(pins) | set(have)):
        locked, now = pins.get(name), have.get(name)
        if locked and now and locked != now:
            lines.append(f"{name}: {locked} -> {now}")
        elif locked and not now:
            lines.append(f"{name}: {locked} -> not installed")
        elif now and not locked and name not in ("mlops-course", "pip", "setuptools", "wheel"):
            lines.append(f"{name}: not in the lock -> {now}")
    return lines


def main(argv: list[str]) -> int:
    lock = Path(argv[0]) if argv else Path(__file__).resolve().parents[1] / "requirements.lock"
    lines = moved(lock_pins(lock), installed())
    print(f"Python {sys.version.split()[0]}: {len(lines)} package(s) differ from {lock.name}")
    for line in lines:
        print("  " + line)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
