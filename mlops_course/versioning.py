"""Plumbing for the git + DVC repositories of the lessons: run real commands and show their output.

* :func:`run` runs a command (``"dvc add data/bikes.csv"``), prints ``$ command`` and what it printed, cleaned
  of anything machine-specific (absolute paths become relative), and raises :class:`CommandError` with that
  output when the command fails. :func:`execute` does the same without printing and returns the result.
* ``dvc`` commands run through DVC's own command-line entry point (``dvc.cli.main``, what the ``dvc`` program
  calls) inside this Python process: same arguments, same output, but no 0.5-0.9 s of start-up per command.
  That happens only in the main thread (other threads, e.g. Prefect tasks, get a subprocess);
  ``in_process=False`` always starts the ``dvc`` program. Everything else (``git``, ``python``) is a
  subprocess.
* Every command gets a fixed git identity and fixed commit dates (:data:`GIT_ENV`), so a commit made from
  the same files has the same hash on every run of a lesson.
* :func:`init_repo` makes a folder a git + DVC repository with a local identity, DVC analytics and update
  checks off, and a first commit; :func:`add_remote` adds a local folder as the default DVC remote.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shlex
import subprocess
import sys
import tempfile
import threading
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from mlops_course import paths

GIT_USER = ("Course Learner", "learner@example.com")
COMMIT_DATE = "2011-06-01T09:00:00+00:00"
GIT_ENV = {
    "GIT_AUTHOR_NAME": GIT_USER[0],
    "GIT_AUTHOR_EMAIL": GIT_USER[1],
    "GIT_COMMITTER_NAME": GIT_USER[0],
    "GIT_COMMITTER_EMAIL": GIT_USER[1],
    "GIT_AUTHOR_DATE": COMMIT_DATE,
    "GIT_COMMITTER_DATE": COMMIT_DATE,
}
# Quiet, offline, colourless and the same width everywhere.
COMMAND_ENV = {**GIT_ENV, "DVC_NO_ANALYTICS": "1", "GIT_PAGER": "cat", "PAGER": "cat", "NO_COLOR": "1",
               "COLUMNS": "110", "TQDM_DISABLE": "1", "GIT_TERMINAL_PROMPT": "0"}
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
GIT_ADD_HINT = re.compile(r"^(\tgit add )(.+)$", re.MULTILINE)
DVC_LOGGERS = ("dvc", "dvc_objects", "dvc_data")
COLORAMA_STREAMS = ("orig_stdout", "orig_stderr", "wrapped_stdout", "wrapped_stderr")


class CommandError(RuntimeError):
    """A command exited with a non-zero code; the message holds the command, the code and its output."""

    def __init__(self, command: str, returncode: int, output: str):
        self.command, self.returncode, self.output = command, returncode, output
        super().__init__(f"`{command}` failed with exit code {returncode}. Its output:\n{output.rstrip()}")


@dataclass(frozen=True)
class CommandResult:
    """What :func:`execute` returns: the command as shown, its exit code and its cleaned output."""

    command: str
    returncode: int
    output: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def _as_args(cmd: str | Sequence[str]) -> tuple[list[str], str]:
    if isinstance(cmd, str):
        args, shown = shlex.split(cmd), cmd.strip()
    else:
        args = [str(part) for part in cmd]
        shown = shlex.join(args)
    if not args:
        raise ValueError("empty command: pass something like 'dvc status' or ['git', 'status']")
    return args, shown


def clean_output(text: str, cwd: str | os.PathLike | None = None) -> str:
    """Output as a learner should see it: no colour codes, no trailing blanks, no paths of this machine.

    The working directory becomes ``.`` (its parent ``..``), the course's virtual environment ``<venv>``,
    the course folder ``<course>``, the temp folder ``<tmp>`` and the home folder ``~``. The files DVC
    suggests to ``git add`` are sorted: DVC keeps them in a set and prints them in a different order each run.
    """
    cwd = Path(cwd or os.getcwd()).resolve()
    roots = {str(cwd): ".", str(cwd.parent): "..", str(Path(sys.prefix).resolve()): "<venv>",
             str(paths.REPO_ROOT): "<course>", str(Path(tempfile.gettempdir()).resolve()): "<tmp>",
             str(Path.home()): "~"}
    text = ANSI.sub("", text).replace("\r\n", "\n")
    for root in sorted((r for r in roots if len(r) > 1), key=len, reverse=True):
        short = roots[root]
        # Whole paths only: /tmp is the temp folder, but .dvc/tmp is not.
        start, end = r"(?<![\w.~/-])", r"(?![\w-])(?!\.\S)"
        text = re.sub(start + re.escape(root + os.sep), "" if short == "." else short + os.sep, text)
        text = re.sub(start + re.escape(root) + end, short, text)
    text = GIT_ADD_HINT.sub(lambda m: m[1] + " ".join(sorted(m[2].split())), text)
    return "\n".join(line.rstrip() for line in text.split("\n")).strip("\n")


@contextlib.contextmanager
def _patched_environ(extra: Mapping[str, str]) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in extra}
    os.environ.update(extra)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def unwrap_colorama() -> None:
    """Give ``sys.stdout`` and ``sys.stderr`` back their streams if colorama wrapped them.

    ``import dvc`` calls ``colorama.init()``, which wraps both streams (when they are not terminals) in a
    writer that flushes after every ``write``. In a Jupyter kernel each flush becomes an output of its own, so
    ``print("a", x)`` is stored as four outputs and rendered on several lines by nbconvert. DVC's output is
    uncoloured here anyway (``NO_COLOR``), so the wrapper has nothing to do.
    """
    wrapper = getattr(sys.modules.get("colorama.ansitowin32"), "StreamWrapper", None)
    if wrapper is None:
        return
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if isinstance(stream, wrapper):
            setattr(sys, name, getattr(stream, "_StreamWrapper__wrapped", stream))


def _dvc_in_process(args: list[str], cwd: Path, env: Mapping[str, str]) -> tuple[int, str]:
    """Run ``dvc <args>`` through ``dvc.cli.main``, capturing DVC's output and that of the stage commands
    it starts (they write to file descriptors 1 and 2) in one temporary file, in order."""
    import logging

    from dvc.cli import main as dvc_main
    from dvc.ui import ui
    from rich.console import Console

    unwrap_colorama()  # importing dvc wrapped the streams; see the function

    handlers = {h for name in DVC_LOGGERS for h in logging.getLogger(name).handlers
                if isinstance(h, logging.StreamHandler)}
    width = int(env.get("COLUMNS", COMMAND_ENV["COLUMNS"]))
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    with tempfile.TemporaryFile() as tmp:
        saved_fds = (os.dup(1), os.dup(2))
        writer = open(os.dup(tmp.fileno()), "w", buffering=1,  # noqa: SIM115 (closed in finally)
                      encoding="utf-8", errors="replace")
        saved_streams = (sys.stdout, sys.stderr)
        saved_handlers = {h: h.stream for h in handlers}
        saved_cwd = os.getcwd()
        # DVC prints tables and some messages with `rich`, which would detect Jupyter and send them to the
        # notebook's display directly, out of order; plain consoles on our file keep them in the text.
        saved_consoles = {key: ui.__dict__.get(key) for key in ("rich_console", "error_console")}
        # DVC writes JSON (`--json`) with colorama switched off, which puts back the streams colorama saw
        # when dvc was imported (the notebook's, or pytest's): point colorama at our file for the call.
        colorama_state = sys.modules.get("colorama.initialise")
        saved_colorama = {key: getattr(colorama_state, key) for key in COLORAMA_STREAMS
                          if colorama_state is not None and hasattr(colorama_state, key)}
        try:
            for key in saved_colorama:
                setattr(colorama_state, key, writer)
            os.dup2(tmp.fileno(), 1)
            os.dup2(tmp.fileno(), 2)
            sys.stdout = sys.stderr = writer
            for handler in handlers:
                handler.stream = writer
            for key in saved_consoles:
                ui.__dict__[key] = Console(file=writer, stderr=key == "error_console", force_jupyter=False,
                                           force_terminal=False, no_color=True, width=width)
            os.chdir(cwd)
            with _patched_environ(env), warnings.catch_warnings():
                # The dvc program shows no DeprecationWarnings of its libraries; neither do we.
                warnings.simplefilter("ignore", DeprecationWarning)
                try:
                    code = dvc_main(args[1:])
                except SystemExit as exc:  # argparse may exit on a bad flag
                    code = exc.code if isinstance(exc.code, int) else 1
        finally:
            with contextlib.suppress(Exception):
                writer.flush()
            os.chdir(saved_cwd)
            for key, stream in saved_colorama.items():
                setattr(colorama_state, key, stream)
            for key, console in saved_consoles.items():
                if console is None:
                    ui.__dict__.pop(key, None)
                else:
                    ui.__dict__[key] = console
            for handler, stream in saved_handlers.items():
                handler.stream = stream
            sys.stdout, sys.stderr = saved_streams
            os.dup2(saved_fds[0], 1)
            os.dup2(saved_fds[1], 2)
            for fd in saved_fds:
                os.close(fd)
            writer.close()
        tmp.seek(0)
        return int(code or 0), tmp.read().decode("utf-8", errors="replace")


def _repo_root(where: Path) -> Path:
    for folder in (where, *where.parents):
        if (folder / ".dvc").is_dir():
            return folder
    return where


def execute(cmd: str | Sequence[str], cwd: str | os.PathLike | None = None, *, check: bool = True,
            in_process: bool | None = None, env: Mapping[str, str] | None = None) -> CommandResult:
    """Run a command in ``cwd`` (default: the working directory) and return its cleaned output.

    ``cmd`` is a string split like a shell would (no pipes or globs) or a list of arguments. ``dvc``
    commands run in this process unless ``in_process=False``. With ``check=True`` a non-zero exit code
    raises :class:`CommandError` carrying the output.
    """
    args, shown = _as_args(cmd)
    where = Path(cwd or os.getcwd()).resolve()
    if not where.is_dir():
        raise FileNotFoundError(f"cannot run `{shown}`: the folder {where.name!r} does not exist")
    extra = {**COMMAND_ENV, **(env or {})}
    if not os.environ.get("DVC_SITE_CACHE_DIR"):
        # DVC keeps per-repository indexes in a machine-wide folder (/var/tmp/dvc) unless told otherwise.
        extra.setdefault("DVC_SITE_CACHE_DIR", str(_repo_root(where) / ".dvc" / "tmp" / "site-cache"))
    if in_process is None:
        # In-process only from the main thread: the call redirects file descriptors and changes directory.
        in_process = args[0] == "dvc" and threading.current_thread() is threading.main_thread()
    if in_process and args[0] != "dvc":
        raise ValueError(f"only dvc commands can run in-process, not {args[0]!r}")
    if in_process:
        code, raw = _dvc_in_process(args, where, extra)
    else:
        try:
            proc = subprocess.run(args, check=False, cwd=where, env={**os.environ, **extra},
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                  text=True, errors="replace")
        except FileNotFoundError:
            raise CommandError(shown, 127, f"{args[0]}: command not found. Is the course's virtual "
                                           f"environment (its bin folder) on PATH?") from None
        code, raw = proc.returncode, proc.stdout
    result = CommandResult(shown, code, clean_output(raw, where))
    if check and code != 0:
        raise CommandError(shown, code, result.output)
    return result


def run(cmd: str | Sequence[str], cwd: str | os.PathLike | None = None, *, check: bool = True,
        quiet: bool = False, in_process: bool | None = None, shown: Mapping[str, str] | None = None) -> None:
    """Run a command like :func:`execute` and print ``$ command`` followed by its cleaned output.

    With ``check=False`` a failure is printed with its exit code instead of raised; ``quiet=True`` prints
    nothing (errors are still raised). ``shown``: text to print differently, e.g. ``{store.url:
    "http://127.0.0.1:<port>"}`` for an address that changes at every run (the command itself is unchanged).
    """
    result = execute(cmd, cwd, check=False, in_process=in_process)
    if not quiet:
        command, output = result.command, result.output
        for real, display in (shown or {}).items():
            command, output = command.replace(real, display), output.replace(real, display)
        print(f"$ {command}")
        if output:
            print(output)
        if not result.ok:
            print(f"[exit code {result.returncode}]")
    if check and not result.ok:
        raise CommandError(result.command, result.returncode, result.output)


def init_repo(path: str | os.PathLike, *, quiet: bool = False, commit: bool = True) -> Path:
    """Make ``path`` (created if needed) a git + DVC repository and return it.

    Runs ``git init -b main``, sets a local ``user.name``/``user.email``, ``dvc init``, turns DVC's
    analytics and update checks off in ``.dvc/config`` and (``commit=True``) commits that as the first
    commit. Each command is printed with its output unless ``quiet``. Refuses a folder that already is one.
    """
    repo = Path(path)
    if (repo / ".git").exists() or (repo / ".dvc").exists():
        raise FileExistsError(f"{repo.name!r} already holds a git or DVC repository; use a new folder (running "
                              f"a lesson again? run its setup cell first: it gives a fresh workspace)")
    repo.mkdir(parents=True, exist_ok=True)
    for cmd in ("git init -b main",
                f"git config user.name {shlex.quote(GIT_USER[0])}",
                f"git config user.email {GIT_USER[1]}",
                "dvc init",
                "dvc config core.analytics false",
                "dvc config core.check_update false"):
        run(cmd, repo, quiet=quiet)
    if commit:
        run("git add .dvc/config", repo, quiet=quiet)
        run(["git", "commit", "-q", "-m", "Initialise DVC"], repo, quiet=quiet)
    return repo.resolve()


def add_remote(repo: str | os.PathLike, storage: str | os.PathLike, *, name: str = "storage",
               quiet: bool = False) -> Path:
    """Create the folder ``storage`` and make it the default DVC remote of ``repo`` (stored relative)."""
    repo, storage = Path(repo).resolve(), Path(storage)
    storage = storage if storage.is_absolute() else (Path.cwd() / storage)
    storage.mkdir(parents=True, exist_ok=True)
    relative = os.path.relpath(storage.resolve(), repo)
    run(["dvc", "remote", "add", "--default", name, relative], repo, quiet=quiet)
    return storage.resolve()


def commit(repo: str | os.PathLike, message: str, *files: str | os.PathLike, quiet: bool = False) -> str:
    """``git add`` the files and ``git commit -m message`` in ``repo``; return the new short hash."""
    if files:
        run(["git", "add", *map(str, files)], repo, quiet=quiet)
    run(["git", "commit", "-q", "-m", message], repo, quiet=quiet)
    return execute("git rev-parse --short HEAD", repo).output


def md5(path: str | os.PathLike) -> str:
    """The MD5 hex digest of a file's bytes: the hash DVC 3 records for a file (``hash: md5``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (is the data checked out? try `dvc checkout`)")
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "md5").hexdigest()


def tracked_md5(dvc_file: str | os.PathLike) -> str:
    """The MD5 that a ``.dvc`` file records for its (single) output."""
    import yaml

    path = Path(dvc_file)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such .dvc file; `dvc add <data>` writes it")
    outs = (yaml.safe_load(path.read_text()) or {}).get("outs") or []
    if not outs or "md5" not in outs[0]:
        raise ValueError(f"{path.name} records no output hash; is it a file written by `dvc add`?")
    return str(outs[0]["md5"])
