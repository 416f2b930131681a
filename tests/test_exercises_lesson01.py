import hashlib
import os
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from mlops_course.exercises import evaluate
from mlops_course.exercises.lesson01 import tag_hashes
from mlops_course.versioning import execute, init_repo, run

ROWS = ["season,mnth,bikers\n", "1,Jan,16\n", "1,Jan,40\n"]
# Two small stage scripts shaped like the lesson's: prepare writes data/prepared, train reads it and writes
# a model and metrics. Plain Python without imports, so a stage costs a few hundredths of a second.
PREPARE = ("import pathlib\nout = pathlib.Path('data/prepared')\nout.mkdir(parents=True, exist_ok=True)\n"
           "(out / 'train.csv').write_text(open('data/bikes.csv').read())\n")
TRAIN = ("import json, pathlib\nrows = len(open('data/prepared/train.csv').readlines())\n"
         "pathlib.Path('model.txt').write_text(str(rows))\n"
         "pathlib.Path('metrics.json').write_text(json.dumps({'rows': rows}))\n")
CHECK = "import pathlib\npathlib.Path('reports').mkdir(exist_ok=True)\npathlib.Path('reports/ok.txt').write_text('ok')\n"
TRAIN_STAGE = "-p train -o model.txt -M metrics.json python train.py"


@pytest.fixture(scope="module")
def tools(tmp_path_factory):
    root = tmp_path_factory.mktemp("lesson01")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GIT_CONFIG_GLOBAL", str(root / "gitconfig"))
        mp.setenv("GIT_CONFIG_NOSYSTEM", "1")
        mp.setenv("DVC_SITE_CACHE_DIR", str(root / "site-cache"))
        mp.setenv("DVC_GLOBAL_CONFIG_DIR", str(root / "dvc-global"))
        mp.setenv("PATH", str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"])
        yield root


@pytest.fixture(scope="module")
def repo(tools):
    """A repository like the lesson's: data tagged v1, v2, v3; a stage that read v2; v3 not reproduced."""
    repo = init_repo(tools / "project", quiet=True)
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
    return repo


@pytest.fixture(scope="module")
def built_pipeline(tools):
    """The lesson's section 7 in small: tracked data, params.yaml, prepare.py and train.py as two stages."""
    repo = init_repo(tools / "pipeline", quiet=True)
    (repo / "data").mkdir()
    (repo / "data" / "bikes.csv").write_text("".join(ROWS))
    run("dvc add data/bikes.csv", repo, quiet=True)
    (repo / "params.yaml").write_text("prepare: {months: [Jan]}\ntrain: {depth: 3}\n")
    (repo / "prepare.py").write_text(PREPARE)
    (repo / "train.py").write_text(TRAIN)
    (repo / "check.py").write_text(CHECK)
    run("dvc stage add -n prepare -d prepare.py -d data/bikes.csv -p prepare -o data/prepared python prepare.py",
        repo, quiet=True)
    run(f"dvc stage add -n train -d train.py -d data/prepared {TRAIN_STAGE}", repo, quiet=True)
    run("dvc repro", repo, quiet=True)
    run(["git", "add", "-A"], repo, quiet=True)
    run(["git", "commit", "-qm", "pipeline"], repo, quiet=True)
    return repo


@pytest.fixture
def project(built_pipeline, tmp_path):
    """A fresh copy of the small pipeline for one test (the checks of 01.2 change it)."""
    copy = tmp_path / "project"
    shutil.copytree(built_pipeline, copy, symlinks=True)
    shutil.rmtree(copy / ".dvc" / "tmp", ignore_errors=True)
    return copy


def md5_of(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def test_tag_hashes(repo):
    assert tag_hashes(repo) == {"v1": md5_of("".join(ROWS[:2])), "v2": md5_of("".join(ROWS)),
                                "v3": md5_of("".join(ROWS) + "1,Feb,7\n")}


# ---------------------------------------------------------------- 01.1
def test_restored_hash_accepts_the_hash_of_v1_in_any_form(repo):
    v1 = md5_of("".join(ROWS[:2]))
    assert evaluate("01.1", v1, repo).ok
    assert evaluate("01.1", v1.upper() + "\n", repo).ok
    assert evaluate("01.1", hashlib.md5("".join(ROWS[:2]).encode()), repo).ok  # the hash object itself


def test_restored_hash_names_the_mistake(repo):
    current = evaluate("01.1", md5_of("".join(ROWS)), repo)
    assert not current.ok and "hash of v2" in current.message and "rev='v1'" in current.hint
    sha = evaluate("01.1", hashlib.sha256("".join(ROWS[:2]).encode()).hexdigest(), repo)
    assert not sha.ok and "SHA-256" in sha.message and "md5" in sha.hint.lower()
    pointer = execute("git show v1:data/bikes.csv.dvc", repo).output + "\n"
    assert "pointer" in evaluate("01.1", md5_of(pointer), repo).message
    raw = evaluate("01.1", "".join(ROWS[:2]).encode(), repo)
    assert not raw.ok and "not their hash" in raw.message and "hexdigest" in raw.hint
    assert "not an md5" in evaluate("01.1", "abc", repo).message
    resaved = evaluate("01.1", md5_of("".join(ROWS[:2]).replace("\n", "\r\n")), repo)
    assert not resaved.ok and "not the hash of any" in resaved.message and "mode='rb'" in resaved.hint
    assert "string" in evaluate("01.1", 123, repo).message


# ---------------------------------------------------------------- 01.2
def test_upstream_stage_accepts_a_gate_that_train_depends_on(project):
    def add_stage():
        run("dvc stage add --force -n validate -d check.py -d data/bikes.csv -O reports/ok.txt python check.py",
            project, quiet=True)
        run(f"dvc stage add --force -n train -d train.py -d data/prepared -d reports/ok.txt {TRAIN_STAGE}",
            project, quiet=True)
        run("dvc repro", project, quiet=True)
        return "validate"

    done = evaluate("01.2", add_stage, project)
    assert done.ok, done
    assert "'validate'" in done.message and "directly" in done.message and "reports/ok.txt" in done.message
    again = evaluate("01.2", add_stage, project)  # --force: the function can run twice
    assert again.ok, again


def test_upstream_stage_accepts_any_name_and_form(project):
    def edit_dvc_yaml():  # a stage in front of prepare, written into dvc.yaml by hand; no name returned
        spec = yaml.safe_load((project / "dvc.yaml").read_text())
        spec["stages"]["clean"] = {"cmd": "head -n 2 data/bikes.csv > data/clean.csv",
                                   "deps": ["data/bikes.csv"], "outs": [{"data/clean.csv": {"cache": False}}]}
        spec["stages"]["prepare"]["deps"].append("data/clean.csv")
        (project / "dvc.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
        run("dvc repro", project, quiet=True)

    through = evaluate("01.2", edit_dvc_yaml, project)
    assert through.ok, through
    assert "'clean'" in through.message and "through 'prepare'" in through.message


def test_upstream_stage_accepts_a_folder_output_and_a_name_given_by_hand(project):
    run("dvc stage add -n features -d data/bikes.csv -o data/features "
        "'mkdir -p data/features && cut -d, -f1 data/bikes.csv > data/features/season.csv'", project, quiet=True)
    run(f"dvc stage add --force -n train -d train.py -d data/prepared -d data/features/season.csv {TRAIN_STAGE}",
        project, quiet=True)
    run("dvc repro", project, quiet=True)
    done = evaluate("01.2", " features ", project)
    assert done.ok and "directly" in done.message, done


def test_upstream_stage_output_not_used_by_train(project):
    def add_stage():
        run("dvc stage add -n sample -d data/prepared/train.csv -O sample.csv "
            "'head -n 2 data/prepared/train.csv > sample.csv'", project, quiet=True)
        run("dvc repro", project, quiet=True)
        return "sample"

    unused = evaluate("01.2", add_stage, project)
    assert not unused.ok and "train does not depend on it" in unused.message
    assert "['sample.csv']" in unused.message and "--force" in unused.hint


def test_upstream_stage_never_reproduced(project):
    run("dvc stage add -n validate -d check.py -d data/bikes.csv -O reports/ok.txt python check.py", project,
        quiet=True)
    run(f"dvc stage add --force -n train -d train.py -d data/prepared -d reports/ok.txt {TRAIN_STAGE}", project,
        quiet=True)
    not_run = evaluate("01.2", "validate", project)
    assert not not_run.ok and "never run" in not_run.message and "dvc.lock" in not_run.message
    assert "dvc repro" in not_run.hint


def test_upstream_stage_without_dependencies(project):
    run("dvc stage add -n stamp -O stamp.txt 'echo checked > stamp.txt'", project, quiet=True)
    run(f"dvc stage add --force -n train -d train.py -d data/prepared -d stamp.txt {TRAIN_STAGE}", project,
        quiet=True)
    run("dvc repro", project, quiet=True)
    no_deps = evaluate("01.2", "stamp", project)
    assert not no_deps.ok and "no dependencies" in no_deps.message and "cannot tell when" in no_deps.message
    assert "-d" in no_deps.hint


def test_upstream_stage_script_not_a_dependency(project):
    run("dvc stage add -n validate -d data/bikes.csv -O reports/ok.txt python check.py", project, quiet=True)
    run(f"dvc stage add --force -n train -d train.py -d data/prepared -d reports/ok.txt {TRAIN_STAGE}", project,
        quiet=True)
    run("dvc repro", project, quiet=True)
    unlisted = evaluate("01.2", "validate", project)
    assert not unlisted.ok and "['check.py']" in unlisted.message and "would not re-run" in unlisted.message
    assert unlisted.hint == "add -d check.py."


def test_upstream_stage_train_redefined_without_its_inputs(project):
    run("dvc stage add -n validate -d check.py -d data/bikes.csv -O reports/ok.txt python check.py", project,
        quiet=True)
    run(f"dvc stage add --force -n train -d train.py -d reports/ok.txt {TRAIN_STAGE}", project, quiet=True)
    run("dvc repro", project, quiet=True)
    lost = evaluate("01.2", "validate", project)
    assert not lost.ok and "no longer depends on what prepare writes" in lost.message
    assert "-d data/prepared" in lost.hint
    run("dvc stage add --force -n train -d train.py -d data/prepared -d reports/ok.txt "
        "-o model.txt -M metrics.json python train.py", project, quiet=True)
    run("dvc repro", project, quiet=True)
    no_params = evaluate("01.2", "validate", project)
    assert not no_params.ok and "parameters" in no_params.message and "-p train" in no_params.hint


def test_upstream_stage_train_not_rerun(project):
    run("dvc stage add -n validate -d check.py -d data/bikes.csv -O reports/ok.txt python check.py", project,
        quiet=True)
    run(f"dvc stage add --force -n train -d train.py -d data/prepared -d reports/ok.txt {TRAIN_STAGE}", project,
        quiet=True)
    run("dvc repro --single-item validate", project, quiet=True)
    stale = evaluate("01.2", "validate", project)
    assert not stale.ok and "dvc status" in stale.message and "train: changed deps" in stale.message
    assert "dvc repro" in stale.hint


def test_upstream_stage_stub_and_failures(project):
    def add_stage():
        # the lesson's stub: a comment and nothing done yet
        ...

    stub = evaluate("01.2", add_stage, project)
    assert not stub.ok and "no stage added yet" in stub.message and "dvc stage add" in stub.hint
    assert str(stub).startswith("[not yet]")

    def add_twice():
        run("dvc stage add -n validate -d check.py -d data/bikes.csv -O reports/ok.txt python check.py",
            project, quiet=True)
        return "validate"

    add_twice()
    failed = evaluate("01.2", add_twice, project)
    assert not failed.ok and "add_twice() stopped" in failed.message and "dvc stage add" in failed.message
    assert "--force" in failed.hint

    def boom():
        raise KeyError("max_dept")

    assert "boom() raised KeyError" in evaluate("01.2", boom, project).message
    assert "one of the stages section 7 wrote" in evaluate("01.2", "prepare", project).message
    assert "has no stage 'gate'" in evaluate("01.2", "gate", project).message
    assert "expected the new stage's name" in evaluate("01.2", lambda: 42, project).message
    (project / "dvc.yaml").unlink()
    early = evaluate("01.2", add_stage, project)  # the check run before section 7
    assert not early.ok and "no stage 'train'" in early.message and "section 7" in early.hint


# ---------------------------------------------------------------- 01.3
def test_metrics_data_version_accepts_v2_by_any_name(repo):
    right = evaluate("01.3", "v2", repo)
    assert right.ok and md5_of("".join(ROWS)) in right.message
    commit = execute("git rev-parse v2", repo).output
    by_commit = evaluate("01.3", commit, repo)
    assert by_commit.ok and "v2" in by_commit.message
    assert evaluate("01.3", md5_of("".join(ROWS)), repo).ok


def test_metrics_data_version_follows_the_stage_that_wrote_the_metrics(tools):
    # prepare -> train (metrics.json) read v2; then v3 arrives and only a side stage, validate, is re-run on it.
    repo = init_repo(tools / "traced", quiet=True)
    data = repo / "data" / "bikes.csv"
    data.parent.mkdir()
    for tag, rows in (("v1", ROWS[:2]), ("v2", ROWS[2:])):
        with open(data, "a") as fh:
            fh.writelines(rows)
        run("dvc add data/bikes.csv", repo, quiet=True)
        run(["git", "add", "data"], repo, quiet=True)
        run(["git", "commit", "-qm", f"data {tag}"], repo, quiet=True)
        run(["git", "tag", tag], repo, quiet=True)
    run("dvc stage add -n prepare -d data/bikes.csv -o prepared.csv cp data/bikes.csv prepared.csv", repo, quiet=True)
    run(["dvc", "stage", "add", "-n", "train", "-d", "prepared.csv", "-M", "metrics.json",
         "wc -l < prepared.csv > metrics.json"], repo, quiet=True)
    run(["dvc", "stage", "add", "-n", "validate", "-d", "data/bikes.csv", "-o", "report.txt",
         "wc -c < data/bikes.csv > report.txt"], repo, quiet=True)
    run("dvc repro", repo, quiet=True)
    run(["git", "add", "-A"], repo, quiet=True)
    run(["git", "commit", "-qm", "pipeline"], repo, quiet=True)
    with open(data, "a") as fh:
        fh.write("1,Feb,7\n")
    run("dvc add data/bikes.csv", repo, quiet=True)
    run(["git", "commit", "-qm", "data v3", "data/bikes.csv.dvc"], repo, quiet=True)
    run(["git", "tag", "v3"], repo, quiet=True)
    run("dvc repro validate", repo, quiet=True)  # dvc.lock: validate on v3, prepare and train still on v2
    assert evaluate("01.3", "v2", repo).ok
    newest = evaluate("01.3", "v3", repo)
    assert not newest.ok and "newest" in newest.message


def test_metrics_data_version_names_the_mistake(repo):
    newest = evaluate("01.3", "v3", repo)
    assert not newest.ok and "newest" in newest.message and "dvc.lock" in newest.hint
    old = evaluate("01.3", "v1", repo)
    assert not old.ok and "not the data" in old.message
    assert "not a tag" in evaluate("01.3", "v9", repo).message
    assert "not a tag" in evaluate("01.3", "--all", repo).message
    first = execute("git rev-list --max-parents=0 HEAD", repo).output
    assert "no data/bikes.csv.dvc" in evaluate("01.3", first, repo).message
    assert "tag name" in evaluate("01.3", 2, repo).message
