#!/usr/bin/env bash
# A fresh clone of the committed HEAD to a green `make test`, with the install timed apart from the tests.
#
#   benchmarks/setup_time.sh [--cold]
#
# Steps, each timed: `git clone` of this repository into a temporary folder, `make .venv/done` there (the
# install: a venv, uv, the locked packages), then `make test` there. The install needs the package registry
# (PyPI). By default it uses this user's download caches (~/.cache/uv, ~/.cache/pip), as a second checkout on
# the same machine would; --cold points both at empty folders, as on a new machine (downloads ~1 GB).
# Prints what ran, on what machine and the figures; writes build/bench/setup_time.md and the two logs next to
# it; removes the clone; exits non-zero when a step fails (and prints the end of its log).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cold=0
case "${1:-}" in
    --cold) cold=1 ;;
    "") ;;
    *) echo "usage: $0 [--cold]" >&2; exit 2 ;;
esac
out_dir="${MLOPS_COURSE_BUILD:-$repo/build}/bench"
mkdir -p "$out_dir"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/course-setup.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# The clone must see a plain shell: nothing pointing back at this checkout (its venv, workspaces, build
# folder) and no make state from a `make bench` that called this script.
unset MLOPS_COURSE_WORKSPACE MLOPS_COURSE_BUILD MLOPS_COURSE_DATA VIRTUAL_ENV MAKEFLAGS MAKELEVEL MFLAGS
PATH=$(printf '%s' "$PATH" | tr ':' '\n' | grep -vxF "$repo/.venv/bin" | paste -sd: -)
export PATH

uv_cache=${UV_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/uv}
if [ "$cold" = 1 ]; then
    export UV_CACHE_DIR="$tmp/uv-cache" PIP_CACHE_DIR="$tmp/pip-cache"
    caches="empty uv and pip caches in the temporary folder (--cold: everything is downloaded)"
else
    size=$(du -sh "$uv_cache" 2>/dev/null | cut -f1 || true)
    caches="this user's caches: uv $uv_cache (${size:-empty} before the run), pip ${PIP_CACHE_DIR:-default}"
fi

cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo 2>/dev/null | head -n1)
host="$(hostname): $(uname -sm), $(nproc) cores (${cpu:-unknown CPU}), $(${PYTHON:-python3} --version 2>&1),"
host="$host load average $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null | sed 's/ /, /g') (1/5/15 min) at start"
commit=$(git -C "$repo" rev-parse --short HEAD)
started=$(date '+%Y-%m-%d %H:%M')
echo "setup_time: fresh clone of $commit to green make test on $host"
echo "caches: $caches"

rows=()
total=0
failed=""

# step NAME LOG COMMAND...: run COMMAND with its output in LOG, print and record its seconds and result.
step() {
    local name=$1 log=$2 start end seconds result=ok shown
    shift 2
    shown="$*"
    shown=${shown//$tmp/<tmp>}
    echo "== $name: $shown"
    start=$EPOCHREALTIME
    "$@" >"$log" 2>&1 || result="FAILED (exit $?)"
    end=$EPOCHREALTIME
    seconds=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
    total=$(awk -v a="$total" -v b="$seconds" 'BEGIN { printf "%.1f", a + b }')
    echo "   $name: $result in $seconds s"
    rows+=("| $name | \`$shown\` | $seconds | $result |")
    if [ "$result" != ok ]; then
        failed=$name
        echo "   last lines of $log:"
        tail -n 30 "$log" | sed 's/^/   | /'
    fi
}

clone="$tmp/course"
step clone "$tmp/clone.log" git clone --quiet "$repo" "$clone"
[ -z "$failed" ] && step install "$tmp/install.log" make -C "$clone" .venv/done
[ -z "$failed" ] && step test "$tmp/test.log" make -C "$clone" test
# The floor (kernel start + imports, benchmarks/course_time.py) measured in the same clone right after, so the
# suite's time can be read as a multiple of it: machines differ, ratios hold.
floor=""
if [ -z "$failed" ]; then
    floor=$( (cd "$clone" && .venv/bin/python benchmarks/course_time.py --floor-only) 2>/dev/null |
             sed -n 's/^floor: \([0-9.]*\) s.*/\1/p')
fi
test_seconds=$(printf '%s\n' "${rows[@]}" | awk -F'|' '$2 ~ /test/ {gsub(/ /, "", $4); print $4}')
multiple=$([ -n "$floor" ] && [ -n "$test_seconds" ] &&
           awk -v t="$test_seconds" -v f="$floor" 'BEGIN { printf "%.0f", t / f }' || true)
for log in install test; do
    if [ -f "$tmp/$log.log" ]; then cp "$tmp/$log.log" "$out_dir/setup_time-$log.log"; fi
done
summary=$(grep -E '[0-9]+ (passed|failed)' "$tmp/test.log" 2>/dev/null | tail -n1 | tr -d '=' | xargs || true)

{
    echo "# Setup time: fresh clone to green \`make test\` ($started)"
    echo
    echo "Command: \`benchmarks/setup_time.sh${1:+ $1}\` (course commit $commit, cloned from the committed HEAD)"
    echo
    echo "Machine: $host"
    echo
    echo "Caches: $caches"
    echo
    echo "| step | command | seconds | result |"
    echo "|---|---|---:|---|"
    printf '%s\n' "${rows[@]}"
    echo "| total | | $total | $([ -n "$failed" ] && echo "failed at $failed" || echo ok) |"
    echo
    echo "- pytest's summary line: ${summary:-none (the tests did not run)}."
    echo "- The floor measured in the clone right after: ${floor:-not measured} s, so \`make test\` took" \
         "${multiple:-?}x the floor (budget: 60x, issue 20)."
    echo "- The install step is the Makefile's \`.venv/done\`: a venv, uv from PyPI, the lock file, the course."
    echo "- Logs: setup_time-install.log and setup_time-test.log next to this report."
} >"$out_dir/setup_time.md"
cat "$out_dir/setup_time.md"
[ -z "$failed" ]
