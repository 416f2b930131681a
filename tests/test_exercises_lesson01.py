import hashlib
import os
import sys
from pathlib import Path

import pytest

from mlops_course.exercises import evaluate
from mlops_course.exercises.lesson01 import tag_hashes
from mlops_course.versioning import execute, init_repo, run

ROWS = ["season,mnth,bikers\n", "1,Jan,16\n", "1,Jan,40\n"]


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A repository like the lesson's: data tagged v1, v2, v3; a stage that read v2; v3 not reproduced."""
    root = tmp_path_factory.mktemp("lesson01")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GIT_CONFIG_GLOBAL", str(root / "gitconfig"))
        mp.setenv("GIT_CONFIG_NOSYSTEM", "1")
        mp.setenv("DVC_SITE_CACHE_DIR", str(root / "site-cache"))
        mp.setenv("DVC_GLOBAL_CONFIG_DIR", str(root / "dvc-global"))
        mp.setenv("PATH", str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"])
        repo = init_repo(root / "project", quiet=True)
        data = repo / "data" / "bikes.csv"
        data.parent.mkdir()
        for tag, rows in (("v1", ROWS[:2]), ("v2", ROWS[2:])):
            with open(data, "a") as fh:
                fh.writelines(rows)
            run("dvc add data/bikes.csv", repo, quiet=True)
            run(["git", "add", "data"], repo, quiet=True)
            run(["git", "commit", "-qm", f"data {tag}"], repo, quiet=True)
            run(["git", "tag", tag], repo, quiet=True)
        (repo / "dvc.yaml").write_text("stages:\n  prepare:\n    cmd: wc -l < data/bikes.csv > rows.txt\n"
                                       "    deps:\n      - data/bikes.csv\n    outs:\n      - rows.txt\n")
        run("dvc repro", repo, quiet=True)
        run(["git", "add", "dvc.yaml", "dvc.lock", ".gitignore"], repo, quiet=True)
        run(["git", "commit", "-qm", "pipeline"], repo, quiet=True)
        with open(data, "a") as fh:
            fh.write("1,Feb,7\n")
        run("dvc add data/bikes.csv", repo, quiet=True)
        run(["git", "commit", "-qm", "data v3", "data/bikes.csv.dvc"], repo, quiet=True)
        run(["git", "tag", "v3"], repo, quiet=True)
        yield repo


def md5_of(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def test_tag_hashes(repo):
    assert tag_hashes(repo) == {"v1": md5_of("".join(ROWS[:2])), "v2": md5_of("".join(ROWS)),
                                "v3": md5_of("".join(ROWS) + "1,Feb,7\n")}


def test_restored_hash(repo):
    v1 = md5_of("".join(ROWS[:2]))
    assert evaluate("01.1", v1, repo).ok
    assert evaluate("01.1", v1.upper() + "\n", repo).ok
    current = evaluate("01.1", md5_of("".join(ROWS)), repo)
    assert not current.ok and "hash of v2" in current.message and "rev='v1'" in current.hint
    sha = evaluate("01.1", hashlib.sha256("".join(ROWS[:2]).encode()).hexdigest(), repo)
    assert not sha.ok and "SHA-256" in sha.message and "md5" in sha.hint.lower()
    pointer = execute("git show v1:data/bikes.csv.dvc", repo).output + "\n"
    assert "pointer" in evaluate("01.1", md5_of(pointer), repo).message
    assert "not an md5" in evaluate("01.1", "abc", repo).message
    assert "not the hash of any" in evaluate("01.1", "0" * 32, repo).message
    assert "string" in evaluate("01.1", 123, repo).message


def test_new_stage(repo):
    assert "one of the four" in evaluate("01.2", "prepare", repo).message
    missing = evaluate("01.2", "sample", repo)
    assert not missing.ok and "no stage 'sample'" in missing.message and "dvc stage add" in missing.hint
    run("dvc stage add -n nodeps -O empty.txt 'touch empty.txt'", repo, quiet=True)
    assert "no dependencies" in evaluate("01.2", "nodeps", repo).message
    run("dvc stage add -n sample -d rows.txt -O sample.txt 'head -n 1 rows.txt > sample.txt'", repo,
        quiet=True)
    not_run = evaluate("01.2", "sample", repo)
    assert not not_run.ok and "never run" in not_run.message and "dvc repro" in not_run.hint
    run("dvc repro --single-item sample", repo, quiet=True)
    done = evaluate("01.2", "sample", repo)
    assert done.ok and "head -n 1 rows.txt" in done.message
    (repo / "sample.txt").write_text("tampered\n")
    stale = evaluate("01.2", "sample", repo)
    assert not stale.ok and "dvc repro" in stale.hint
    run("dvc repro --single-item sample", repo, quiet=True)
    assert "name" in evaluate("01.2", "  ", repo).hint


def test_metrics_data_version(repo):
    right = evaluate("01.3", "v2", repo)
    assert right.ok and md5_of("".join(ROWS)) in right.message
    newest = evaluate("01.3", "v3", repo)
    assert not newest.ok and "newest" in newest.message and "dvc.lock" in newest.hint
    old = evaluate("01.3", "v1", repo)
    assert not old.ok and "not the data" in old.message
    assert "not a tag" in evaluate("01.3", "v9", repo).message
