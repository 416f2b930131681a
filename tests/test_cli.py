import subprocess
import sys

import pytest

from mlops_course.course import cli


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "mlops_course", *args], capture_output=True, text=True,
                          timeout=120, check=False)


def test_list_prints_module_table(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    assert "Introduction to MLOps" in out and "End to End MLOps Pipeline" in out


@pytest.mark.parametrize("args,message", [
    (["run", "42"], "unknown lesson '42'"),
    (["run", "00", "-p", "oops"], "bad parameter 'oops'"),
    (["run", "00", "-p", "nope=1"], "has parameter(s) ['nope']"),
    (["execute", "banana"], "unknown lesson 'banana'"),
])
def test_bad_input_is_one_line_and_exit_2(args, message):
    result = run_cli(*args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_doctor_runs(capsys):
    code = cli.main(["doctor"])
    out = capsys.readouterr().out
    assert "checks passed" in out and "[ok  ] python" in out
    assert code in (0, 1)


def test_run_executes_and_prints_table(tmp_path):
    result = run_cli("run", "00", "--out", str(tmp_path), "-p", "n_estimators=5", "--no-progress")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "00-Introduction_to_MLOps  ok" in result.stdout and "total" in result.stdout
    assert (tmp_path / "00-Introduction_to_MLOps.ipynb").exists()
