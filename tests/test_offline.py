"""offline: the switches are data, applied once at import without touching what the user set; importing any
module of the package writes no file and installs no warning filter."""

import os
import pkgutil
import subprocess
import sys

import mlops_course
from mlops_course import offline


def test_apply_keeps_what_the_user_set():
    env = {"DO_NOT_TRACK": "false"}
    offline.apply(env=env)
    assert env["DO_NOT_TRACK"] == "false" and env["MLFLOW_DISABLE_TELEMETRY"] == "true"
    assert set(offline.TELEMETRY_OFF) <= set(offline.OFFLINE_ENV)


MODULES = sorted(m.name for m in pkgutil.walk_packages(mlops_course.__path__, "mlops_course.")
                 if not m.name.endswith("__main__"))


def test_importing_any_module_writes_nothing_and_filters_no_warning(tmp_path):
    home, cwd = tmp_path / "home", tmp_path / "cwd"
    home.mkdir()
    cwd.mkdir()
    # Libraries add filters of their own; only a filter installed from a file of this package counts.
    code = ("import importlib, sys, warnings\n"
            "ours = []\n"
            "def spy(real):\n"
            "    def record(*args, **kwargs):\n"
            "        caller = sys._getframe(1).f_code.co_filename\n"
            "        if '/mlops_course/' in caller:\n"
            "            ours.append(f'{caller.split(\"/mlops_course/\")[1]}: {args[:2]}')\n"
            "        return real(*args, **kwargs)\n"
            "    return record\n"
            "warnings.filterwarnings = spy(warnings.filterwarnings)\n"
            "warnings.simplefilter = spy(warnings.simplefilter)\n"
            f"for name in {MODULES!r}:\n"
            "    importlib.import_module(name)\n"
            "print(len(ours), ours)\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLOPS_COURSE_", "PREFECT_", "XDG_"))}
    env.update(HOME=str(home), PYTHONWARNINGS="", MLOPS_COURSE_BUILD=str(tmp_path / "build"),
               MLOPS_COURSE_WORKSPACE=str(tmp_path / "workspaces"))
    done = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[0] == "0", f"warning filters installed at import: {done.stdout}"
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    allowed = (".cache/matplotlib/", ".config/matplotlib")  # matplotlib's own font cache, when a module imports it
    assert [w for w in written if not any(a in w for a in allowed)] == []
