"""Checks for lesson 01 (Data versioning with DVC): each takes the learner's answer and the repository."""

from __future__ import annotations

import re
from pathlib import Path

from mlops_course import stages
from mlops_course.exercises import correct, exercise, wrong
from mlops_course.versioning import execute

DATA_PATH = "data/bikes.csv"
HEX32 = re.compile(r"^[0-9a-f]{32}$")


def _yaml(text: str):
    import yaml

    return yaml.safe_load(text) or {}


def tag_hashes(repo: str | Path = ".", path: str = DATA_PATH) -> dict[str, str]:
    """The md5 each git tag of ``repo`` records for ``path`` (tags without that .dvc file are left out)."""
    tags = execute("git tag --list", repo).output.split()
    hashes = {}
    for tag in tags:
        shown = execute(["git", "show", f"{tag}:{path}.dvc"], repo, check=False)
        if shown.ok:
            outs = _yaml(shown.output).get("outs") or [{}]
            if "md5" in outs[0]:
                hashes[tag] = str(outs[0]["md5"])
    return hashes


@exercise("01.1", "restore data version v1 and verify its hash")
def restored_hash(answer: str, repo: str | Path = ".") -> object:
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
    if pointer.ok:
        import hashlib

        text = pointer.output + "\n"
        if answer == hashlib.md5(text.encode()).hexdigest():
            return wrong("that is the hash of the small .dvc pointer file, not of the data.",
                         "hash the bytes of data/bikes.csv as they were at v1.")
    if not HEX32.match(answer):
        return wrong(f"{answer!r} is not an md5 (32 hex digits).", "use hashlib.md5(data).hexdigest().")
    return wrong("that is not the hash of any tagged version of data/bikes.csv.",
                 "hash the raw bytes (mode='rb'): text mode and re-saving with pandas change them.")


@exercise("01.2", "add a pipeline stage and reproduce it")
def new_stage(answer: str, repo: str | Path = ".") -> object:
    repo = Path(repo)
    if not isinstance(answer, str) or not answer.strip():
        return wrong("expected the new stage's name as a string.",
                     "the name you passed to `dvc stage add -n`.")
    name = answer.strip()
    if not (repo / "dvc.yaml").is_file():
        return wrong("there is no dvc.yaml in the repository.", "run section 7 of the lesson first.")
    defined = _yaml((repo / "dvc.yaml").read_text()).get("stages") or {}
    if name in stages.STAGES:
        return wrong(f"{name!r} is one of the four stages the lesson wrote.", "add a stage of your own.")
    if name not in defined:
        return wrong(f"dvc.yaml has no stage {name!r}; it has {sorted(defined)}.",
                     "dvc stage add -n NAME -d INPUT -O OUTPUT 'COMMAND' adds one.")
    stage = defined[name]
    if not stage.get("deps"):
        return wrong(f"stage {name!r} declares no dependencies, so DVC cannot tell when to re-run it.",
                     "add -d <file the command reads>.")
    if not any(stage.get(key) for key in ("outs", "metrics", "plots")):
        return wrong(f"stage {name!r} declares no outputs.", "add -o or -O <file the command writes>.")
    lock_file = repo / "dvc.lock"
    locked = (_yaml(lock_file.read_text()).get("stages") or {}) if lock_file.is_file() else {}
    if name not in locked:
        return wrong(f"stage {name!r} is defined but has never run: dvc.lock has no entry for it.",
                     "run `dvc repro` (or `dvc repro NAME`).")
    if locked[name].get("cmd") != stage.get("cmd"):
        return wrong(f"the command of {name!r} changed since it last ran.", "run `dvc repro` again.")
    status = execute(["dvc", "status", name], repo, check=False)
    if not status.ok or "up to date" not in status.output:
        return wrong(f"`dvc status {name}` reports changes:\n{status.output}", "run `dvc repro` again.")
    return correct(f"stage {name!r} runs `{stage['cmd']}`, is recorded in dvc.lock and is up to date.")


@exercise("01.3", "find the data version behind the metrics")
def metrics_data_version(answer: str, repo: str | Path = ".") -> object:
    repo = Path(repo)
    if not isinstance(answer, str):
        return wrong(f"expected a tag name like 'v1', got {type(answer).__name__}.",
                     "answer with the tag's name.")
    answer = answer.strip()
    lock_file = repo / "dvc.lock"
    if not lock_file.is_file():
        return wrong("there is no dvc.lock yet.", "run the pipeline (section 7) first.")
    used = None
    for entry in (_yaml(lock_file.read_text()).get("stages") or {}).values():
        for dep in entry.get("deps") or []:
            if dep.get("path") == DATA_PATH:
                used = dep.get("md5")
    if used is None:
        return wrong("no stage in dvc.lock depends on data/bikes.csv.", "run the lesson's pipeline section.")
    hashes = tag_hashes(repo)
    matching = sorted(tag for tag, value in hashes.items() if value == used)
    if answer in matching:
        return correct(f"dvc.lock records md5 {used} for data/bikes.csv: that is {answer}.")
    if answer not in hashes:
        return wrong(f"{answer!r} is not a tag of a data version; tags: {sorted(hashes)}.",
                     "answer with one of the tags.")
    newest = max(hashes, key=lambda tag: execute(["git", "rev-list", "--count", tag], repo).output.zfill(9))
    hint = ("compare the md5 that dvc.lock records for data/bikes.csv with the md5 in each tag's "
            "data/bikes.csv.dvc (git show TAG:data/bikes.csv.dvc).")
    if answer == newest:
        return wrong(f"{answer} is the newest data, but the metrics were computed before it arrived.", hint)
    return wrong(f"{answer} is not the data the metrics were computed from.", hint)
