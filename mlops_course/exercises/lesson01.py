"""Checks for lesson 01 (Data versioning with DVC): each takes the learner's answer and the repository.

The checks ask git and DVC, never compare spelling: 01.1 compares a hash with what the tag ``v1`` recorded,
01.2 reads the learner's pipeline through DVC (its graph, ``dvc.lock`` and ``dvc status``), and 01.3 resolves
the answer as a git revision and compares the data it points to with what ``dvc.lock`` says was used.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import warnings
from pathlib import Path

from mlops_course.exercises import correct, exercise, wrong
from mlops_course.versioning import CommandError, execute

DATA_PATH = "data/bikes.csv"
METRICS_PATH = "metrics.json"  # what train.py writes; exercise 3 asks which data it came from
HEX32 = re.compile(r"^[0-9a-f]{32}$")
REDIRECT = re.compile(r"^\d*[<>]+&?")
# The pipeline the learner builds in section 7; exercise 2 adds a stage upstream of TRAIN_STAGE.
LESSON_STAGES = ("prepare", "train")
TRAIN_STAGE = "train"


def _yaml(text: str):
    import yaml

    return yaml.safe_load(text) or {}


def tag_hashes(repo: str | Path = ".", path: str = DATA_PATH) -> dict[str, str]:
    """The md5 each git tag of ``repo`` records for ``path`` (tags without that .dvc file are left out)."""
    tags = execute("git tag --list", repo).output.split()
    hashes = {}
    for tag in tags:
        recorded = _recorded_md5(repo, tag, path)
        if recorded:
            hashes[tag] = recorded
    return hashes


def _recorded_md5(repo: str | Path, revision: str, path: str = DATA_PATH) -> str | None:
    """The md5 that ``path``'s .dvc file records at a git revision, or None when it has none there."""
    shown = execute(["git", "show", f"{revision}:{path}.dvc"], repo, check=False)
    if not shown.ok:
        return None
    outs = _yaml(shown.output).get("outs") or [{}]
    return str(outs[0]["md5"]) if isinstance(outs[0], dict) and "md5" in outs[0] else None


# ---------------------------------------------------------------- 01.1
@exercise("01.1", "restore data version v1 and verify its hash")
def restored_hash(answer, repo: str | Path = ".") -> object:
    if hasattr(answer, "hexdigest") and callable(answer.hexdigest):  # a hashlib object: its hex digest
        answer = answer.hexdigest()
    if isinstance(answer, (bytes, bytearray)):
        return wrong(f"that is {len(answer):,} bytes of data, not their hash.",
                     "hash them: hashlib.md5(data_bytes).hexdigest() gives the 32 hex digits.")
    if not isinstance(answer, str):
        return wrong(f"expected the md5 as a string of 32 hex digits, got {type(answer).__name__}.",
                     "hashlib.md5(data_bytes).hexdigest() gives that string.")
    answer = answer.strip().lower()
    hashes = tag_hashes(repo)
    if "v1" not in hashes:
        return wrong("this repository has no tag v1 with data/bikes.csv.dvc.",
                     "run the lesson's cells from the top: section 3 tags version 1 as v1.")
    if answer == hashes["v1"]:
        return correct(f"{answer} is what v1's .dvc file records: the bytes you restored are version 1.")
    others = [tag for tag, value in hashes.items() if value == answer]
    if others:
        return wrong(f"that is the hash of {others[0]}, not of v1.",
                     "read the file at the old revision: dvc.api.read(..., rev='v1', mode='rb'), or "
                     "`git checkout v1 -- data/bikes.csv.dvc` then `dvc checkout`.")
    if re.fullmatch(r"[0-9a-f]{64}", answer):
        return wrong("that looks like a SHA-256 (64 hex digits).", "DVC 3 records MD5: use hashlib.md5.")
    pointer = execute(["git", "show", f"v1:{DATA_PATH}.dvc"], repo, check=False)
    if pointer.ok and answer == hashlib.md5((pointer.output + "\n").encode()).hexdigest():
        return wrong("that is the hash of the small .dvc pointer file, not of the data.",
                     "hash the bytes of data/bikes.csv as they were at v1.")
    if not HEX32.match(answer):
        return wrong(f"{answer!r} is not an md5 (32 hex digits).", "use hashlib.md5(data).hexdigest().")
    return wrong("that is not the hash of any tagged version of data/bikes.csv.",
                 "hash the raw bytes (mode='rb'): text mode and re-saving with pandas change them.")


# ---------------------------------------------------------------- 01.2
def _command_files(stage, root: Path) -> list[str]:
    """Files of the repository that a stage's command names but that are neither its deps nor its outs."""
    commands = stage.cmd if isinstance(stage.cmd, list) else [stage.cmd or ""]
    declared = [Path(d.fs_path).resolve() for d in stage.deps] + [Path(o.fs_path).resolve() for o in stage.outs]
    wdir = Path(stage.wdir).resolve()
    found = []
    for command in commands:
        try:
            tokens = shlex.split(command)
        except ValueError:
            continue
        for token in tokens:
            token = REDIRECT.sub("", token)  # `>out.txt`, `2>err.txt`, `<in.csv`: the file after it
            if not token or any(ch.isspace() for ch in token) or token.startswith("-"):
                continue
            try:
                path = (wdir / token).resolve()
                if not path.is_file() or not path.is_relative_to(root):
                    continue
            except (OSError, ValueError):
                continue
            if not any(path == known or path.is_relative_to(known) for known in declared):
                found.append(token)
    return sorted(set(found))


def _outputs(stage) -> list[str]:
    return [str(out.def_path) for out in stage.outs]


def _describe(stage, root: Path) -> str:
    """A stage's name as `dvc repro NAME` takes it from the repository root: `train`, or `sub/dvc.yaml:train`."""
    dvcfile = Path(stage.dvcfile.path).resolve()
    name = getattr(stage, "name", None) or dvcfile.name
    where = dvcfile.relative_to(root) if dvcfile.is_relative_to(root) else dvcfile
    return name if str(where) == "dvc.yaml" else f"{where}:{name}"


def _lock_entry(stage) -> dict | None:
    lock_file = Path(stage.dvcfile.path).with_name("dvc.lock")
    if not lock_file.is_file():
        return None
    return (_yaml(lock_file.read_text()).get("stages") or {}).get(stage.name)


def _status(repo: Path) -> dict:
    result = execute("dvc status --json", repo, check=False)
    if not result.ok:
        raise CommandError(result.command, result.returncode, result.output)
    text = result.output.strip()
    start = text.find("{")
    return json.loads(text[start:]) if start >= 0 else {}


def _changes(changes) -> str:
    """What `dvc status --json` says changed for one stage, e.g. "changed deps, changed outs"."""
    if not isinstance(changes, list):
        return str(changes)
    kinds = [key if isinstance(item, dict) else str(item) for item in changes
             for key in (item if isinstance(item, dict) else [item])]
    return ", ".join(dict.fromkeys(kinds)) or "changed"


def _run_learner_function(func):
    """Call the learner's function; return (value, None) or (None, feedback when it failed)."""
    name = getattr(func, "__name__", "your function")
    try:
        return func(), None
    except CommandError as err:
        lines = [line for line in err.output.splitlines() if line.strip()]
        said = next((line for line in lines if line.startswith("ERROR")), lines[-1] if lines else "")
        hint = "fix that command and run the check again."
        if "already exists" in err.output:
            hint = ("`dvc stage add` refuses a stage that exists already: add --force to redefine it (then your "
                    "function can run twice), or run the lesson again from the setup cell.")
        return None, wrong(f"{name}() stopped: `{err.command}` failed with exit code {err.returncode}: {said}",
                           hint)
    except Exception as exc:  # noqa: BLE001 - the learner's code may raise anything
        return None, wrong(f"{name}() raised {type(exc).__name__}: {exc}", "fix it and run the check again.")


@exercise("01.2", "add a stage whose output the training stage uses")
def upstream_stage(answer, repo: str | Path = ".") -> object:
    repo = Path(repo).resolve()
    name = answer
    if callable(answer):
        name, failed = _run_learner_function(answer)
        if failed:
            return failed
    if name is not None and not isinstance(name, str):
        return wrong(f"expected the new stage's name (a string), got {type(name).__name__}.",
                     "return the name you gave `dvc stage add -n`.")
    try:
        from dvc.dependency.param import ParamsDependency
        from dvc.repo import Repo
    except ImportError:
        return wrong("DVC is not installed in this environment.", "install the course: pip install -e .")
    import networkx as nx

    try:
        with Repo(str(repo)) as dvc_repo, warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # DVC's own, as the dvc program hides them
            stages = [s for s in dvc_repo.index.stages if not s.is_data_source]
            graph = dvc_repo.index.graph
    except Exception as exc:  # noqa: BLE001 - an invalid dvc.yaml, a cycle, an output declared twice ...
        return wrong(f"DVC cannot read the pipeline: {type(exc).__name__}: {exc}",
                     "run `dvc dag` to see the same error, and fix dvc.yaml.")
    by_name = {_describe(s, repo): s for s in stages}
    train = by_name.get(TRAIN_STAGE)
    if train is None:
        return wrong(f"the pipeline has no stage '{TRAIN_STAGE}' (its stages: {sorted(by_name) or 'none'}).",
                     "run section 7 first: its cells add prepare and train.")
    added = sorted(n for n in by_name if n not in LESSON_STAGES)
    if name is None:
        if not added:
            return wrong(f"no stage added yet: the pipeline still has only {sorted(by_name)}.",
                         "fill in the function: dvc stage add -n NAME -d INPUT -o OUTPUT COMMAND, make "
                         f"{TRAIN_STAGE} depend on OUTPUT, run dvc repro, and return NAME.")
        if len(added) > 1:
            return wrong(f"several stages were added ({added}); which one is yours?", "return its name.")
        name = added[0]
    name = name.strip()
    if name in LESSON_STAGES:
        return wrong(f"{name!r} is one of the stages section 7 wrote.", "add a stage of your own.")
    stage = by_name.get(name)
    if stage is None:
        return wrong(f"the pipeline has no stage {name!r}; it has {sorted(by_name)}.",
                     "`dvc stage add -n NAME ...` adds one; return the NAME you gave it.")
    if not stage.outs:
        return wrong(f"stage {name!r} declares no outputs, so no other stage can depend on it.",
                     "declare what its command writes with -o (cached), -O (kept in git) or -M (metrics).")
    if not stage.deps:
        return wrong(f"stage {name!r} declares no dependencies, so DVC cannot tell when to re-run it.",
                     "add -d for every file its command reads (the data, and the script if there is one).")
    for checked in (stage, train):
        unlisted = _command_files(checked, repo)
        if unlisted:
            return wrong(f"stage {_describe(checked, repo)!r} runs `{checked.cmd}`, which names {unlisted}, "
                         f"but does not depend on {'it' if len(unlisted) == 1 else 'them'}: editing "
                         f"{'that file' if len(unlisted) == 1 else 'those files'} would not re-run the stage.",
                         "add -d " + " -d ".join(unlisted) + ".")
    upstream = nx.descendants(graph, train)  # DVC's graph points from a stage to the stages it depends on
    if stage not in upstream:
        return wrong(f"stage {name!r} writes {_outputs(stage)}, but {TRAIN_STAGE} does not depend on "
                     f"{'it' if len(stage.outs) == 1 else 'any of them'} (nor does a stage {TRAIN_STAGE} "
                     f"depends on), so dvc repro would not run it before training.",
                     f"add its output to {TRAIN_STAGE}'s deps: redefine {TRAIN_STAGE} with `dvc stage add "
                     f"--force -n {TRAIN_STAGE} ... -d OUTPUT ...` (all its options again), or edit dvc.yaml.")
    prepare = by_name.get("prepare")
    if prepare is not None and prepare not in upstream:
        return wrong(f"{TRAIN_STAGE} no longer depends on what prepare writes, so new data would not re-train "
                     "it.", f"`dvc stage add --force` replaces all of a stage's options: give {TRAIN_STAGE} "
                     "its -d data/prepared again.")
    if not any(isinstance(dep, ParamsDependency) for dep in train.deps):
        return wrong(f"{TRAIN_STAGE} no longer declares its parameters, so a change in params.yaml would not "
                     "re-train it.", f"add -p {TRAIN_STAGE} when you redefine it.")
    if _lock_entry(stage) is None:
        return wrong(f"stage {name!r} is defined but has never run: dvc.lock has no entry for it.",
                     "run `dvc repro`.")
    try:
        stale = _status(repo)
    except (CommandError, ValueError) as exc:
        return wrong(f"`dvc status` did not answer: {exc}", "run `dvc status` yourself to see why.")
    if stale:
        said = "; ".join(f"{item}: {_changes(changes)}" for item, changes in stale.items())
        return wrong(f"`dvc status` finds work to do ({said}).",
                     "run `dvc repro`, then run the check again.")
    path = nx.shortest_path(graph, train, stage)
    via = ("directly" if len(path) == 2 else
           "through " + " and ".join(f"'{_describe(s, repo)}'" for s in path[1:-1]))
    return correct(f"stage {name!r} runs `{stage.cmd}` and writes {_outputs(stage)}, which {TRAIN_STAGE} uses "
                   f"{via}; dvc.lock records it and `dvc status` finds nothing to re-run.")


# ---------------------------------------------------------------- 01.3
def _used_md5(repo: Path) -> str | None:
    """The md5 of data/bikes.csv behind metrics.json: the stage that wrote it, then the stages upstream of it
    (nearest first), as dvc.lock records them. A stage run on its own later (``dvc repro validate`` on new data)
    is not upstream of the metrics unless the metrics' stage reads what it wrote."""
    lock_file = repo / "dvc.lock"
    if not lock_file.is_file():
        return None
    stages = _yaml(lock_file.read_text()).get("stages") or {}

    def outs(entry) -> list[str]:
        return [str(out.get("path", "")).rstrip("/") for out in entry.get("outs") or []]

    def writes(entry, path: str) -> bool:
        return any(path == out or path.startswith(out + "/") for out in outs(entry))

    queue = [name for name, entry in stages.items() if METRICS_PATH in outs(entry)]
    if not queue:  # no stage declares the metrics file: any stage that read the data
        queue = list(stages)
    seen = set()
    while queue:
        name = queue.pop(0)
        if name in seen:
            continue
        seen.add(name)
        deps = stages[name].get("deps") or []
        for dep in deps:
            if dep.get("path") == DATA_PATH:
                return dep.get("md5")
        for dep in deps:
            queue.extend(other for other, entry in stages.items() if writes(entry, str(dep.get("path", ""))))
    return None


@exercise("01.3", "find the data version behind the metrics")
def metrics_data_version(answer, repo: str | Path = ".") -> object:
    repo = Path(repo)
    if not isinstance(answer, str) or not answer.strip():
        return wrong(f"expected a tag name like 'v1', got {type(answer).__name__}.",
                     "answer with the tag's name.")
    answer = answer.strip()
    if not (repo / "dvc.lock").is_file():
        return wrong("there is no dvc.lock yet.", "run the pipeline (section 7) first.")
    used = _used_md5(repo)
    if used is None:
        return wrong("no stage in dvc.lock depends on data/bikes.csv.", "run the lesson's pipeline section.")
    hashes = tag_hashes(repo)
    matching = sorted(tag for tag, value in hashes.items() if value == used)
    if answer.lower() == used:
        return correct(f"{used} is the md5 dvc.lock records for data/bikes.csv: the data of "
                       f"{' and '.join(matching) or 'no tag'}.")
    if answer.startswith("-") or not execute(["git", "rev-parse", "--verify", "--quiet", f"{answer}^{{commit}}"],
                                             repo, check=False).ok:
        return wrong(f"{answer!r} is not a tag (or other git revision) of this repository; tags: "
                     f"{sorted(hashes)}.", "answer with one of the tags.")
    at_answer = _recorded_md5(repo, answer)
    if at_answer is None:
        return wrong(f"at {answer} there is no data/bikes.csv.dvc, so it names no data version.",
                     "answer with one of the tags v1, v2, v3.")
    if at_answer == used:
        return correct(f"dvc.lock records md5 {used} for data/bikes.csv, and {answer} records the same: "
                       f"that is {' and '.join(matching) or answer}.")
    newest = max(hashes, key=lambda tag: execute(["git", "rev-list", "--count", tag], repo).output.zfill(9))
    hint = ("compare the md5 that dvc.lock records for data/bikes.csv with the md5 in each tag's "
            "data/bikes.csv.dvc (git show TAG:data/bikes.csv.dvc).")
    if at_answer == hashes.get(newest):
        return wrong(f"{answer} is the newest data, but the metrics were computed before it arrived.", hint)
    return wrong(f"{answer} is not the data the metrics were computed from.", hint)
