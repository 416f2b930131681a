import os
import sys
from pathlib import Path

import pytest
import yaml

from mlops_course import versioning
from mlops_course.versioning import CommandError, clean_output, execute, init_repo, run


@pytest.fixture
def tool_env(tmp_path, monkeypatch):
    """git and DVC settings kept in tmp_path, the venv's tools on PATH, cwd tmp_path (like setup_lesson)."""
    tools = tmp_path / ".tools"
    tools.mkdir()
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tools / "gitconfig"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("DVC_SITE_CACHE_DIR", str(tools / "dvc-site-cache"))
    monkeypatch.setenv("DVC_GLOBAL_CONFIG_DIR", str(tools / "dvc-global"))
    monkeypatch.setenv("DVC_NO_ANALYTICS", "1")
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"])
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def repo(tool_env):
    return init_repo(tool_env / "project", quiet=True)


def test_clean_output_hides_machine_paths(tmp_path):
    inner = tmp_path / "repo"
    inner.mkdir()
    text = (f"\x1b[32mA\x1b[0m  {inner}/data.csv   \nremote {tmp_path}/storage\n"
            f"python {Path(sys.prefix).resolve()}/bin/python\n\n")
    cleaned = clean_output(text, inner)
    assert cleaned == "A  data.csv\nremote ../storage\npython <venv>/bin/python"
    assert str(tmp_path) not in cleaned
    assert clean_output(f"kept .dvc/tmp/x and {inner}-old, cwd {inner}.", inner) == \
        "kept .dvc/tmp/x and ../repo-old, cwd .."
    assert clean_output(f"{inner}.bak", inner) == "../repo.bak"
    hint = "To track the changes with git, run:\n\n\tgit add models/.gitignore dvc.lock data/.gitignore\n"
    assert clean_output(hint, inner).endswith("\tgit add data/.gitignore dvc.lock models/.gitignore")


def test_init_repo_sets_local_identity_and_quiet_dvc(repo):
    assert (repo / ".git").is_dir() and (repo / ".dvc").is_dir()
    config = (repo / ".dvc" / "config").read_text()
    assert "analytics = false" in config and "check_update = false" in config
    assert execute("git config --local user.name", repo).output == versioning.GIT_USER[0]
    assert execute("git log --format=%s|%an|%aI", repo).output == \
        f"Initialise DVC|{versioning.GIT_USER[0]}|2011-06-01T09:00:00+00:00"
    assert execute("git status --porcelain", repo).output == ""
    # nothing written to the global git config
    assert not Path(os.environ["GIT_CONFIG_GLOBAL"]).exists()


def test_commit_hashes_are_the_same_on_every_run(tool_env):
    a = init_repo(tool_env / "a", quiet=True)
    b = init_repo(tool_env / "b", quiet=True)
    for folder in (a, b):
        (folder / "notes.txt").write_text("same content\n")
    assert versioning.commit(a, "notes", "notes.txt", quiet=True) == \
        versioning.commit(b, "notes", "notes.txt", quiet=True)


def test_init_repo_refuses_an_existing_repository(repo):
    with pytest.raises(FileExistsError, match="already holds"):
        init_repo(repo, quiet=True)


def test_run_prints_command_and_cleaned_output(repo, capsys):
    run("git status --short --branch", repo)
    out = capsys.readouterr().out
    assert out.startswith("$ git status --short --branch\n## main")
    assert str(repo) not in out


def test_failures_raise_with_the_output(repo, capsys):
    with pytest.raises(CommandError) as err:
        run("git checkout no-such-branch", repo)
    assert err.value.returncode != 0 and "no-such-branch" in err.value.output
    assert "git checkout no-such-branch" in str(err.value)
    run("git checkout no-such-branch", repo, check=False)
    assert "[exit code" in capsys.readouterr().out
    result = execute("dvc checkout no/such/file.dvc", repo, check=False)
    assert not result.ok and "no/such/file.dvc" in result.output


def test_bad_commands_are_explained(repo):
    with pytest.raises(CommandError, match="command not found"):
        execute("no-such-tool-xyz --help", repo)
    with pytest.raises(ValueError, match="empty command"):
        execute("", repo)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        execute("git status", repo / "missing")
    with pytest.raises(ValueError, match="only dvc"):
        execute("git status", repo, in_process=True)


def test_dvc_in_process_prints_what_the_dvc_program_prints(repo):
    (repo / "data.csv").write_text("a,b\n1,2\n")
    in_process = execute("dvc add data.csv", repo)
    execute("dvc remove data.csv.dvc", repo)
    program = execute("dvc add data.csv", repo, in_process=False)
    assert in_process.output == program.output
    assert "git add .gitignore data.csv.dvc" in in_process.output


def test_in_process_json_output_is_captured(repo, capsys):
    # DVC writes --json output with colorama switched off, which once sent it to the streams of import time
    assert execute("dvc status --json", repo).output == "{}"
    (repo / "dvc.yaml").write_text("stages:\n  hello:\n    cmd: echo hi > out.txt\n    outs:\n      - out.txt\n")
    assert execute("dvc status --json", repo).output == execute("dvc status --json", repo, in_process=False).output
    assert '"hello"' in execute("dvc status --json", repo).output
    assert capsys.readouterr().out == ""


def test_in_process_output_includes_stage_commands_and_restores_streams(repo, capsys):
    (repo / "dvc.yaml").write_text("stages:\n  hello:\n    cmd: echo hello from the stage > out.txt && "
                                   "echo printed by the stage\n    outs:\n      - out.txt\n")
    stdout_before = sys.stdout
    result = execute("dvc repro", repo)
    assert "Running stage 'hello'" in result.output
    assert result.output.index("Running stage") < result.output.index("printed by the stage")
    assert sys.stdout is stdout_before and Path.cwd().resolve() == repo.parent.resolve()
    print("still printing")
    assert "still printing" in capsys.readouterr().out


def test_push_pull_round_trip_is_byte_identical(repo):
    data = repo / "data"
    data.mkdir()
    (data / "rows.csv").write_text("x\n1\n2\n")
    run("dvc add data/rows.csv", repo, quiet=True)
    recorded = versioning.tracked_md5(data / "rows.csv.dvc")
    assert recorded == versioning.md5(data / "rows.csv")
    storage = versioning.add_remote(repo, repo.parent / "storage", quiet=True)
    assert "url = ../../storage" in (repo / ".dvc" / "config").read_text()
    run("dvc push", repo, quiet=True)
    assert (storage / "files" / "md5" / recorded[:2] / recorded[2:]).is_file()
    (data / "rows.csv").unlink()
    import shutil

    shutil.rmtree(repo / ".dvc" / "cache")
    run("dvc pull", repo, quiet=True)
    assert versioning.md5(data / "rows.csv") == recorded


def test_site_cache_stays_in_the_repository_when_not_configured(repo, monkeypatch):
    monkeypatch.delenv("DVC_SITE_CACHE_DIR")
    (repo / "x.txt").write_text("x\n")
    execute("dvc add x.txt", repo)
    assert (repo / ".dvc" / "tmp" / "site-cache").is_dir()


def test_hash_helpers_explain_bad_input(tmp_path):
    with pytest.raises(FileNotFoundError, match="dvc checkout"):
        versioning.md5(tmp_path / "missing.csv")
    with pytest.raises(FileNotFoundError, match="dvc add"):
        versioning.tracked_md5(tmp_path / "missing.csv.dvc")
    (tmp_path / "empty.dvc").write_text(yaml.safe_dump({"outs": [{"path": "x"}]}))
    with pytest.raises(ValueError, match="records no output hash"):
        versioning.tracked_md5(tmp_path / "empty.dvc")
    (tmp_path / "f.bin").write_bytes(b"abc")
    assert versioning.md5(tmp_path / "f.bin") == "900150983cd24fb0d6963f7d28e17f72"


def test_dvc_from_another_thread_runs_the_dvc_program(repo, monkeypatch):
    import threading

    def refuse(*args):
        raise AssertionError("in-process dvc must not run outside the main thread")

    expected = execute("dvc status", repo).output
    monkeypatch.setattr(versioning, "_dvc_in_process", refuse)
    results = []
    worker = threading.Thread(target=lambda: results.append(execute("dvc status", repo)))
    worker.start()
    worker.join()
    assert results and results[0].output == expected


def test_unwrap_colorama_gives_the_streams_back(monkeypatch):
    import io

    from colorama.ansitowin32 import AnsiToWin32

    plain_out, plain_err = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stdout", AnsiToWin32(plain_out).stream)  # what colorama.init() installs
    monkeypatch.setattr(sys, "stderr", AnsiToWin32(plain_err).stream)
    assert sys.stdout is not plain_out
    versioning.unwrap_colorama()
    assert sys.stdout is plain_out and sys.stderr is plain_err
    versioning.unwrap_colorama()  # nothing wrapped: nothing changes
    assert sys.stdout is plain_out


def test_run_can_show_a_changing_address_as_a_placeholder(tmp_path, capsys):
    versioning.run(["git", "init", "--quiet", "-b", "main", str(tmp_path / "r")], tmp_path)
    versioning.run(["git", "config", "--local", "remote.team.url", "http://127.0.0.1:51055"], tmp_path / "r",
                   shown={"http://127.0.0.1:51055": "http://127.0.0.1:<port>"})
    versioning.run(["git", "config", "--get", "remote.team.url"], tmp_path / "r",
                   shown={"51055": "<port>"})
    out = capsys.readouterr().out
    assert "$ git config --local remote.team.url http://127.0.0.1:<port>" in out
    assert "http://127.0.0.1:<port>" in out.splitlines()[-1] and "51055" not in out
    config = (tmp_path / "r" / ".git" / "config").read_text()
    assert "http://127.0.0.1:51055" in config  # what ran is the real command
