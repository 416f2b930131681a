"""The pytest side of the reliability suite: run a notebook in a fresh namespace, then judge the run.

``run_notebook`` starts ``run_lesson.py`` (this folder) under ``unshare --net --mount`` (as root) or
``unshare --user --map-root-user --net --mount`` (an ordinary user, where the kernel allows unprivileged user
namespaces and overlay mounts in them; elsewhere the suite is skipped with the reason, or fails when ``CI`` is
set): only loopback is up,
and the repository is covered by an overlay whose upper layer (a tmpfs) catches everything the run writes
there. The run gets a fresh ``HOME``, ``TMPDIR``, workspace root and build folder in the test's ``tmp_path``,
and this folder first on ``PYTHONPATH`` so every Python process loads ``sitecustomize.py`` (the network
audit). ``Run.problems()`` turns what came back into short, telling lines.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SANITIZE = REPO / "tests" / "sanitize.cfg"
RUN_TIMEOUT = 1200  # seconds; a lesson takes 15-90 s, so only a hung run ever meets it

# Inside the new namespaces: loopback up, a tmpfs for the overlay's layers, the overlay over the repository.
NAMESPACE_SETUP = ('set -e; ip link set lo up; mount -t tmpfs tmpfs "$1"; mkdir "$1/upper" "$1/work"; '
                   'mount -t overlay overlay -o "lowerdir=$2,upperdir=$1/upper,workdir=$1/work" "$2"; '
                   'shift 2; exec "$@"')

# What Jupyter, IPython and matplotlib themselves keep in $HOME (paths relative to HOME, as prefixes):
HOME_ALLOWED = {
    ".local/share/jupyter/runtime/": "jupyter_client: kernel connection files",
    ".ipython/": "IPython: profile_default (history.sqlite, startup/README, security/)",
    ".cache/matplotlib/": "matplotlib: font cache (fontlist-*.json)",
}
# Where a run may write inside the repository: the workspaces, the build folder, Python's bytecode caches.
REPO_ALLOWED_TOP = ("workspaces", "build")


ROOT_NAMESPACES = ["unshare", "--net", "--mount"]
USER_NAMESPACES = ["unshare", "--user", "--map-root-user", "--net", "--mount"]
_namespaces: list[str] | None = None


def _probe(prefix: list[str]) -> str:
    """Empty when ``prefix`` can build the namespaces with loopback, a tmpfs and an overlay; else why not."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        lower, mnt = Path(folder, "lower"), Path(folder, "mnt")
        lower.mkdir()
        mnt.mkdir()
        probe = subprocess.run([*prefix, "--", "sh", "-c", NAMESPACE_SETUP, "sh", str(mnt), str(lower), "true"],
                               capture_output=True, text=True, check=False)
    return "" if probe.returncode == 0 else f"`{' '.join(prefix)}` failed: {probe.stderr.strip()[:300]}"


def namespace_prefix() -> list[str]:
    """The ``unshare`` command that gives a run its namespaces here; fails or skips when there is none."""
    global _namespaces
    if _namespaces is not None:
        return _namespaces
    why = []
    if not sys.platform.startswith("linux"):
        why.append(f"this is {sys.platform}, not Linux")
    for tool in ("unshare", "ip", "mount"):
        if shutil.which(tool) is None:
            why.append(f"{tool!r} is not installed")
    if not why:
        prefix = ROOT_NAMESPACES if os.geteuid() == 0 else USER_NAMESPACES
        problem = _probe(prefix)
        if not problem:
            _namespaces = prefix
            return prefix
        why.append(problem + ("" if os.geteuid() == 0 else
                              " (unprivileged user namespaces are off: run as root, or allow them with "
                              "`sysctl kernel.unprivileged_userns_clone=1`)"))
    reason = ("the reliability suite runs each lesson in a network namespace with only loopback and an overlay "
              "over the repository; here: " + "; ".join(why))
    if os.environ.get("CI"):
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def preflight() -> None:
    """Skip (or, with ``CI`` set, fail) when this machine cannot build the namespaces the suite needs."""
    namespace_prefix()


@pytest.fixture(scope="module")
def font_cache(tmp_path_factory) -> Path:
    """A HOME in which matplotlib has built its font cache, copied into each run's fresh HOME (a missing
    cache makes matplotlib print a notice that nbval would see as a changed output). Checks the machine first."""
    preflight()
    home = tmp_path_factory.mktemp("font-cache-home")
    subprocess.run([sys.executable, "-c", "import matplotlib.font_manager"], env=_base_env(home), check=True,
                   capture_output=True, timeout=300)
    return home


# Variables removed from a run's environment. Tool state must land in the fresh HOME, so nothing may move
# it elsewhere; and a learner's Jupyter has none of make's telemetry switches (Makefile) nor the CI/pytest
# markers with which MLflow turns its telemetry off by itself: the lesson's own set-up must do it.
MOVES_STATE = ("XDG_", "JUPYTER_", "IPYTHONDIR", "MPLCONFIGDIR")
SWITCHES_TELEMETRY = ("MLFLOW_DISABLE_TELEMETRY", "DO_NOT_TRACK", "DVC_NO_ANALYTICS", "PREFECT_", "ORT_",
                      "HF_HUB_OFFLINE", "PYTEST_", "CI", "GITHUB_", "RUNNER_")


def _base_env(home: Path) -> dict[str, str]:
    """This environment as a learner's Jupyter would have it (see above), with HOME set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(MOVES_STATE + SWITCHES_TELEMETRY)}
    env["HOME"] = str(home)
    return env


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root`` with its size and modification time."""
    found = {}
    for folder, _, files in os.walk(root):
        for name in files:
            path = Path(folder) / name
            try:
                st = path.lstat()
            except OSError:
                continue
            found[str(path.relative_to(root))] = (st.st_size, st.st_mtime_ns)
    return found


def changes(before: dict, after: dict) -> list[str]:
    lines = [f"{p} (new)" for p in after.keys() - before.keys()]
    lines += [f"{p} (deleted)" for p in before.keys() - after.keys()]
    lines += [f"{p} (modified)" for p in before.keys() & after.keys() if before[p] != after[p]]
    return sorted(lines)


def _read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def hold_namespace(pid: int, timeout: float = 10.0) -> int | None:
    """An open descriptor of ``pid``'s network namespace once ``unshare`` has made it, or None.

    Held until the run's sweep is done, it keeps the namespace, and so its inode number, alive: a run on the
    other xdist worker cannot get the same number meanwhile and have its processes swept as this run's.
    """
    own = os.readlink("/proc/self/ns/net")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if os.readlink(f"/proc/{pid}/ns/net") != own:
                return os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
        except OSError:
            return None  # the runner already ended
        time.sleep(0.01)
    return None


def sweep(netns: str) -> list[str]:
    """Kill every process still in network namespace ``netns`` (all of them belong to the run)."""
    killed = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.readlink(entry / "ns" / "net") != netns:
                continue
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:200]
            os.kill(int(entry.name), signal.SIGKILL)
            killed.append(f"pid {entry.name}: {command}")
        except OSError:
            continue
    return killed


@dataclass
class Run:
    """What one ``run_lesson.py`` invocation reported, plus what the test saw from outside."""

    name: str
    result: dict
    network: list[dict]  # the audit's records of non-loopback network use
    processes: list[dict]  # every Python process that loaded the audit hook (pid, argv)
    home_changes: list[str]
    swept: list[str] = field(default_factory=list)

    @property
    def audited(self) -> set[int]:
        return {rec["pid"] for rec in self.processes}

    @property
    def status(self) -> str:
        return self.result.get("status", "crashed")

    def problems(self, part: dict | None = None) -> list[str]:
        """Short lines for everything that broke a rule; empty when the run was clean."""
        part = self.result if part is None else part
        out = []
        for rec in self.network:
            out.append(f"network: {rec['event']} {rec['address']} by pid {rec['pid']}: {' '.join(rec['argv'])}")
        if part.get("no_route"):
            out.append(f"network: packets with no route or no listener {part['no_route']} (kernel counters: any "
                       f"process, C code included; Python's attempts are listed above, so none listed means "
                       f"native code, e.g. a DNS lookup or a library's telemetry: find it with strace -f)")
        sampled = part.get("sampled", {})
        for pid, command in sampled.get("python_processes", {}).items():
            # The warden (mlops_course/warden.py) runs with -I -S, so without the hook; it opens no socket.
            if int(pid) not in self.audited and "warden.py" not in command:
                out.append(f"not audited: Python process {pid} ran without the network hook: {command}")
        out += [f"listening beyond 127.0.0.1 while running: {s}" for s in sampled.get("not_loopback", [])]
        out += [f"process left behind: {p}" for p in part.get("leftover_processes", [])]
        out += [f"port still listening after the run: {s}" for s in part.get("leftover_listening", [])]
        if part is self.result:
            out += [f"written in HOME: {c}" for c in self.home_changes]
            for path in self.result.get("repo_writes", []):
                top = Path(path).parts[0]
                if top not in REPO_ALLOWED_TOP and "__pycache__" not in Path(path).parts:
                    out.append(f"written in the repository: {path}")
            out += [f"killed by the test's sweep (outlived the runner): {p}" for p in self.swept]
        return out


def run_notebook(notebook: Path, tmp: Path, font_cache: Path, *, interrupt_after: str | None = None,
                 learner: Path | None = None) -> Run:
    """Run ``notebook`` the reliability way in ``tmp`` and collect the evidence (see the module docstring)."""
    if tmp.resolve().is_relative_to(REPO):
        pytest.fail(f"tmp_path {tmp} is inside the repository, which the run sees through an overlay")
    home, mnt, out = tmp / "home", tmp / "overlay", tmp / "executed"
    shutil.copytree(font_cache, home, symlinks=True)
    for folder in (mnt, tmp / "tmp"):
        folder.mkdir()
    net_log, procs_log, result_file = tmp / "network.jsonl", tmp / "processes.jsonl", tmp / "result.json"
    env = _base_env(home)
    env.update({"TMPDIR": str(tmp / "tmp"), "MLOPS_COURSE_WORKSPACE": str(tmp / "ws"),
                "MLOPS_COURSE_BUILD": str(tmp / "build"), "MLOPS_NET_AUDIT_LOG": str(net_log),
                "MLOPS_NET_AUDIT_PROCS": str(procs_log),
                "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))})
    command = [*namespace_prefix(), "--", "sh", "-c", NAMESPACE_SETUP, "sh", str(mnt), str(REPO),
               sys.executable, str(HERE / "run_lesson.py"), str(notebook.resolve()), str(out), str(result_file),
               "--upper", str(mnt / "upper")]
    if interrupt_after:
        command += ["--interrupt-after", interrupt_after]
    if learner:
        command += ["--learner", str(learner.resolve())]
    before = snapshot(home)
    with open(tmp / "runner.log", "wb") as log:
        proc = subprocess.Popen(command, env=env, cwd=tmp, stdout=log, stderr=subprocess.STDOUT)
        held = hold_namespace(proc.pid)
        try:
            proc.wait(RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    started = result_file.with_suffix(".started")
    try:
        swept = sweep(json.loads(started.read_text())["netns"]) if started.exists() else []
    finally:
        if held is not None:
            os.close(held)
    if not result_file.exists():
        tail = (tmp / "runner.log").read_text(errors="replace")[-3000:]
        pytest.fail(f"{notebook.stem}: the lesson runner ended (code {proc.returncode}) without a result; "
                    f"its output ends with:\n{tail}", pytrace=False)
    home_changes = [c for c in changes(before, snapshot(home)) if not c.startswith(tuple(HOME_ALLOWED))]
    return Run(notebook.stem, json.loads(result_file.read_text()), _read_jsonl(net_log), _read_jsonl(procs_log),
               home_changes, swept)


def before_exercises(learner_run, reference: Path, folder: Path) -> Path:
    """The stored lesson with the outputs of its code cells before the first solution cell replaced by the
    learner edition's (the two editions are the same up to there), written to ``folder``: what nbval compares."""
    import nbformat

    from mlops_course.course import editions

    stored = nbformat.read(reference, as_version=4)
    full = [c for c in stored.cells if c.cell_type == "code"]
    first_solution = next((i for i, c in enumerate(full) if editions.SOLUTION_TAG in c.metadata.get("tags", [])),
                          len(full))
    ran = [c for c in learner_run.cells if c.cell_type == "code"]
    for cell, learner_cell in zip(full[:first_solution], ran, strict=False):
        assert cell.source == learner_cell.source, "the learner edition changed a cell before the exercises"
        cell.outputs = learner_cell.outputs
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / reference.name
    nbformat.write(stored, target)
    return target


def nbval_mismatches(executed: Path, reference: Path, session) -> list[str]:
    """Cells of ``executed`` whose outputs nbval would reject against ``reference`` (the stored lesson).

    Uses nbval's own collector and ``IPyNbCell.compare_outputs``: its per-cell tags and comment markers,
    the keys it skips (PNG images, metadata, tracebacks), stream coalescing and ``tests/sanitize.cfg``.
    """
    import nbformat
    from nbval.plugin import IPyNbFile, coalesce_streams, get_sanitize_patterns, nocolors

    collector = IPyNbFile.from_parent(session, path=reference)
    collector.sanitize_patterns.update(get_sanitize_patterns(SANITIZE.read_text()))
    items = list(collector.collect())
    ran = [c for c in nbformat.read(executed, as_version=4).cells if c.cell_type == "code"]
    if len(ran) != len(items):
        return [f"{len(ran)} code cells ran, the stored lesson has {len(items)}"]
    bad = []
    for item, cell in zip(items, ran):
        if item.options["skip"] or not item.options["check"] or item.cell.execution_count is None:
            continue
        item.colors = nocolors
        if not item.compare_outputs(coalesce_streams(cell.outputs), coalesce_streams(item.cell.outputs)):
            detail = "\n    ".join("\n".join(item.comparison_traceback).splitlines()[:12])
            bad.append(f"cell [{item.cell.execution_count}] differs from the stored output:\n    {detail}")
    return bad
