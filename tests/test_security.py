"""Security hygiene: the serving path never unpickles, every server the course starts listens on 127.0.0.1 only,
and no credential is committed to the repository.

Each check is paired with a control that shows it can fail: a cloudpickle model is refused by the same guard, a
socket on 0.0.0.0 is reported, planted fake credentials are found.
"""

import ast
import base64
import hashlib
import json
import os
import re
import socket
import subprocess
from pathlib import Path

import httpx
import mlflow
import psutil
import pytest
from conftest import module_lesson, small_champion
from mlflow.models import infer_signature

from mlops_course import pipeline, process, serving
from mlops_course.course import lessons

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "mlops_course"
LOOPBACK = "127.0.0.1"
ROW = dict(serving.EXAMPLE_ROW)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A lesson workspace with bike-demand v1 as champion (skops + ONNX) and, as a control, a model saved with
    cloudpickle (``pickled-bike@champion``)."""
    with module_lesson(tmp_path_factory, "95", "security-tests") as lesson:
        model, train = small_champion()
        features = pipeline.make_features(train)
        with mlflow.start_run():
            unsafe = mlflow.sklearn.log_model(model, name="pickled", serialization_format="cloudpickle",
                                              pip_requirements=["scikit-learn"],
                                              signature=infer_signature(features, model.predict(features)))
        version = mlflow.register_model(unsafe.model_uri, "pickled-bike").version
        mlflow.MlflowClient().set_registered_model_alias("pickled-bike", "champion", version)
        yield lesson


# ================================================================ 1. no plain pickle in the serving path
# Runs `python -m mlops_course.serving`'s main() after making every unpickling entry point refuse: pickle's and
# _pickle's load/loads/Unpickler, joblib.load and cloudpickle.load(s), under every name any loaded module holds
# them by, plus an audit hook on "pickle.find_class" for unpicklers made before the patches.
GUARD = '''
import os
import sys

LOG = os.environ["PICKLE_GUARD_LOG"]


class PickleRefused(RuntimeError):
    pass


def note(what):
    with open(LOG, "a", encoding="utf-8") as fh:
        fh.write(what + "\\n")


def refusing(label):
    def refuse(*args, **kwargs):
        note(label)
        raise PickleRefused(f"{label} was called in the serving process")
    return refuse


import _pickle  # noqa: E402
import pickle  # noqa: E402

import cloudpickle  # noqa: E402
import joblib  # noqa: E402
import joblib.numpy_pickle  # noqa: E402


class RefusingUnpickler(pickle.Unpickler):
    def __init__(self, *args, **kwargs):
        note("pickle.Unpickler")
        raise PickleRefused("pickle.Unpickler was created in the serving process")


originals = {}
for module, names in ((pickle, ("load", "loads", "Unpickler")), (_pickle, ("load", "loads", "Unpickler")),
                      (joblib, ("load",)), (joblib.numpy_pickle, ("load",)), (cloudpickle, ("load", "loads"))):
    for name in names:
        obj = getattr(module, name)
        originals.setdefault(id(obj), (obj, f"{module.__name__}.{name}"))
for module in list(sys.modules.values()):
    namespace = getattr(module, "__dict__", None)
    if isinstance(namespace, dict):
        for key, value in list(namespace.items()):
            found = originals.get(id(value))
            if found is not None and found[0] is value:
                namespace[key] = RefusingUnpickler if isinstance(value, type) else refusing(found[1])


def audit(event, args):
    if event == "pickle.find_class":
        note(f"pickle.find_class {args[0]}.{args[1]}")
        raise PickleRefused(f"unpickling {args[0]}.{args[1]} in the serving process")


sys.addaudithook(audit)

from mlops_course import serving  # noqa: E402

serving.main(sys.argv[1:])
'''


def guarded_service(lesson, folder: Path, **kwargs) -> tuple[process.BackgroundServer, Path]:
    """``serving.start_service``'s own command and environment, with the guard run in front of it."""
    guard, log = folder / "pickle_guard.py", folder / "pickle-guard.log"
    guard.write_text(GUARD)
    server = serving.start_service(tracking_uri=lesson.tracking_uri, log_file=folder / "service.log", start=False,
                                   **kwargs)
    assert server.command[1:3] == ["-m", "mlops_course.serving"]
    server.command = [server.command[0], str(guard), *server.command[3:]]
    server.env["PICKLE_GUARD_LOG"] = str(log)
    return server, log


def test_the_serving_process_loads_the_champion_and_predicts_with_pickle_refused(store, tmp_path):
    server, log = guarded_service(store, tmp_path)
    with server, httpx.Client(base_url=server.url, timeout=120) as client:
        assert client.get("/health").json()["backend"] == "onnx"
        onnx = client.post("/predict", json={"rows": [ROW]}).json()
        # Reload through scikit-learn (skops), then back to ONNX: both loaders run in the guarded process.
        assert client.post("/reload", params={"backend": "sklearn"}).json()["backend"] == "sklearn"
        sk = client.post("/predict", json={"rows": [ROW]}).json()
        assert client.post("/reload", params={"backend": "onnx"}).json()["backend"] == "onnx"
    assert onnx["model_version"] == sk["model_version"] == "1"
    assert sk["predictions"] == pytest.approx(onnx["predictions"], rel=1e-4)
    assert not log.exists(), f"the serving process tried to unpickle: {log.read_text()}"
    assert "PickleRefused" not in server.log_tail(200)


def test_the_same_guard_refuses_a_model_saved_with_cloudpickle(store, tmp_path):
    server, log = guarded_service(store, tmp_path, model_name="pickled-bike", backend="sklearn")
    with pytest.raises(process.ServerError, match="PickleRefused"):
        server.start()
    assert "pickle.load" in log.read_text()
    assert not server.running


def package_imports(module: str) -> set[str]:
    """The modules of the package that ``module`` imports, directly or not, at any level of its code."""
    seen, todo = set(), [module]
    while todo:
        name = todo.pop()
        if name in seen or not (PACKAGE / f"{name}.py").is_file():
            continue
        seen.add(name)
        for node in ast.walk(ast.parse((PACKAGE / f"{name}.py").read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "mlops_course":
                todo += [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mlops_course."):
                todo.append(node.module.split(".")[1])
            elif isinstance(node, ast.Import):
                todo += [a.name.split(".")[1] for a in node.names if a.name.startswith("mlops_course.")]
    return seen


PICKLE_MODULES = {"pickle", "_pickle", "cPickle", "cloudpickle", "joblib", "dill", "shelve"}


def pickle_uses(source: str, filename: str) -> list[str]:
    """Every import of a pickle-based library (also through ``__import__``/``import_module``), every pandas
    pickle helper and every ``allow_pickle=True`` in ``source``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Call):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if called in ("__import__", "import_module") and node.args and isinstance(node.args[0], ast.Constant):
                names = [str(node.args[0].value)]
            if called in ("read_pickle", "to_pickle"):
                found.append(f"{filename}:{node.lineno} calls {called}")
            for kw in node.keywords:
                if kw.arg == "allow_pickle" and not (isinstance(kw.value, ast.Constant) and kw.value.value is False):
                    found.append(f"{filename}:{node.lineno} passes allow_pickle={ast.unparse(kw.value)}")
        hits = [name for name in names if PICKLE_MODULES & set(name.split("."))]
        if hits:
            found.append(f"{filename}:{node.lineno} imports {hits[0]}")
    return found


def test_serving_modules_import_no_pickle_library():
    modules = package_imports("serving")
    assert {"serving", "model_loader", "registry", "packaging", "request_log", "pipeline"} <= modules
    problems = [p for m in sorted(modules) for p in pickle_uses((PACKAGE / f"{m}.py").read_text(), f"{m}.py")]
    assert not problems, problems


def test_the_static_check_finds_pickle_in_every_disguise():
    source = ("import pickle\nfrom joblib import load\nimport sklearn.externals.joblib\n"
              "cp = __import__('cloudpickle')\nimportlib.import_module('dill')\n"
              "pd.read_pickle('m.pkl')\nnp.load('a.npy', allow_pickle=True)\nnp.load('b.npy', allow_pickle=False)\n")
    assert [p.split(" ", 1)[0] for p in pickle_uses(source, "x.py")] == [
        "x.py:1", "x.py:2", "x.py:3", "x.py:4", "x.py:5", "x.py:6", "x.py:7"]


# ================================================================ 2. every server on 127.0.0.1 only
def bound_sockets(pid: int) -> tuple[list[tuple], list[str]]:
    """The listening TCP and bound UDP sockets of a process and all its children, and their Unix sockets."""
    root = psutil.Process(pid)
    inet, unix = [], []
    for proc in [root, *root.children(recursive=True)]:
        try:
            for conn in proc.net_connections(kind="inet"):
                listening = conn.status == psutil.CONN_LISTEN
                unconnected_udp = conn.type == socket.SOCK_DGRAM and not conn.raddr
                if listening or unconnected_udp:
                    inet.append((proc.pid, proc.name(), conn.type.name, conn.laddr.ip, conn.laddr.port))
            unix += [conn.laddr for conn in proc.net_connections(kind="unix") if conn.laddr]
        except psutil.NoSuchProcess:
            continue
    return inet, unix


def exposed(inet: list[tuple]) -> list[tuple]:
    return [s for s in inet if s[3] != LOOPBACK]


def assert_loopback_only(pid: int, port: int | None) -> list[tuple]:
    inet, _ = bound_sockets(pid)
    assert inet, "found no listening socket in the server's process tree"
    if port is not None:
        assert (LOOPBACK, port) in {(s[3], s[4]) for s in inet}, inet
    assert not exposed(inet), f"sockets reachable from other machines: {exposed(inet)}"
    return inet


def test_the_loopback_check_reports_a_socket_on_all_interfaces():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as wide, \
            socket.socket(socket.AF_INET, socket.SOCK_STREAM) as narrow:
        wide.bind(("0.0.0.0", 0))
        wide.listen(1)
        narrow.bind((LOOPBACK, 0))
        narrow.listen(1)
        inet, _ = bound_sockets(os.getpid())
        assert ("0.0.0.0", wide.getsockname()[1]) in {(s[3], s[4]) for s in exposed(inet)}
        assert (LOOPBACK, narrow.getsockname()[1]) not in {(s[3], s[4]) for s in exposed(inet)}


def test_prediction_service_listens_on_loopback_only(store, tmp_path):
    with serving.start_service(tracking_uri=store.tracking_uri, log_file=tmp_path / "service.log") as server:
        assert_loopback_only(server.process.pid, server.port)


def test_mlflow_tracking_server_listens_on_loopback_only(store):
    from mlops_course import tracking

    with tracking.tracking_server(store.workspace) as server:
        assert_loopback_only(server.process.pid, server.port)


def test_mlflow_models_serve_listens_on_loopback_only(store, tmp_path):
    from mlops_course import deploy

    with deploy.mlflow_serve(tracking_uri=store.tracking_uri, log_file=tmp_path / "mlflow-serve.log") as server:
        assert_loopback_only(server.process.pid, server.port)


def test_prefect_server_listens_on_loopback_only(store):
    from mlops_course import orchestration

    server = orchestration.PrefectServer(store.workspace)
    try:
        server.start().wait()
        assert_loopback_only(server._server.process.pid, server._server.port)
    finally:
        server.stop()
    assert not server.running


def test_stage_server_listens_on_a_unix_socket_only(tmp_path):
    from mlops_course.stage_server import StageServer

    with StageServer(tmp_path / "tools") as server:
        inet, unix = bound_sockets(server.process.pid)
        assert not inet, f"the stage server should have no TCP/UDP socket: {inet}"
        assert any(Path(path).name.startswith("stages.sock") for path in unix), unix


def test_the_kernel_papermill_starts_listens_on_loopback_only():
    # The runner executes lessons with papermill, which starts kernels with jupyter_client's defaults.
    from jupyter_client.manager import start_new_kernel

    manager, client = start_new_kernel(kernel_name="python3")
    try:
        inet = assert_loopback_only(manager.provisioner.process.pid, manager.shell_port)
        assert len(inet) >= 5  # shell, iopub, stdin, control, heartbeat
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


# ================================================================ 3. no secret in the repository
# detect-secrets 1.5 with every plugin and its default filters. Findings it cannot tell from data are dropped
# here, each for a stated reason (nothing is excluded by file):
# - base64 images in notebooks (outputs and attachments): a line `"image/png": "iVBOR..."` is a picture;
# - hex strings of digest length (32 and 64: md5 and sha256): the course prints and pins content checksums
#   (data/README.md, DVC, the loader) on purpose; keyword detectors still catch `api_key = "<hex>"`;
# - the course's own lesson names, which happen to be long mixed-case words with high entropy.
# detect-secrets' keyword list has password, secret and api_key but not "token": one pattern of ours adds
# `token = "..."`, `access_token: '...'`, `"auth_token": "..."` with a value that looks real (16 or more token
# characters, letters and digits both, not one repeated run).
IMAGE_LINE = ('"image/png"', '"image/jpeg"', '"image/gif"', '"image/webp"')
TOKEN_LITERAL = re.compile(r"""(?i)token["']?\s*[:=]\s*\\?["']([A-Za-z0-9_\-./+=]{16,})\\?["']""")


def token_literals(path: Path) -> list[str]:
    found = []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        for value in TOKEN_LITERAL.findall(line):
            if any(c.isdigit() for c in value) and any(c.isalpha() for c in value) and len(set(value)) > 8:
                found.append(f"{path.name}:{number}: Token literal")
    return found


def finding_is_data(filename: str, line: str, kind: str, value: str) -> bool:
    if kind == "Base64 High Entropy String" and filename.endswith(".ipynb") and line.lstrip().startswith(IMAGE_LINE):
        return True
    if kind == "Hex High Entropy String" and len(value) in (32, 64):
        return True
    return value in {info.stem for info in lessons.CATALOGUE}


def scan_for_secrets(paths: list[Path]) -> list[str]:
    """``file:line: kind`` for every credential detect-secrets finds in ``paths`` (data findings dropped)."""
    from detect_secrets import SecretsCollection
    from detect_secrets.settings import default_settings

    with default_settings():
        collection = SecretsCollection()
        collection.scan_files(*map(str, paths), num_processors=1)
    found = []
    for filename, secret in collection:
        line = Path(filename).read_text(errors="replace").splitlines()[secret.line_number - 1]
        if not finding_is_data(filename, line, secret.type, secret.secret_value or ""):
            found.append(f"{Path(filename).name}:{secret.line_number}: {secret.type}")
    return sorted(found + [hit for path in paths for hit in token_literals(path)])


def test_no_tracked_file_holds_a_credential():
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    paths = [REPO / name for name in tracked.decode().split("\0") if name and (REPO / name).is_file()]
    assert len(paths) > 50 and REPO / "tests" / "test_security.py" in paths
    assert scan_for_secrets(paths) == []


def fake(label: str, length: int, alphabet: str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") -> str:
    """A fixed random-looking string (never a real credential), built at run time so no source line holds it."""
    digest = hashlib.sha256(label.encode()).digest() * 4
    return "".join(alphabet[b % len(alphabet)] for b in digest[:length])


def test_the_scanner_finds_planted_fake_credentials(tmp_path):
    letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    key_body = base64.b64encode(hashlib.sha512(b"not a key").digest() * 3).decode()
    planted = {
        "aws.py": f'ACCESS_KEY_ID = "{"AK" + "IA" + fake("aws", 16)}"\n',
        "aws_secret.py": f'aws_secret_access_key = "{fake("aws-secret", 40, letters + "/+")}"\n',
        "id_rsa.txt": "-----BEGIN " + "RSA PRIVATE KEY-----\n" + key_body + "\n-----END " + "RSA PRIVATE KEY-----\n",
        "github.py": f'GH = "{"gh" + "p_" + fake("gh", 36, letters)}"\n',
        "gitlab.py": f'GL = "{"gl" + "pat-" + fake("gl", 20, letters)}"\n',
        "slack.py": f'SLACK = "{"xo" + "xb-" + fake("s1", 11, "0123456789") + "-" + fake("s2", 24, letters.lower())}"\n',
        "settings.py": f'db_password = "{fake("pw", 16, letters)}"\napi_token = "{fake("tok", 24, letters)}"\n',
        "remote.cfg": f"url = https://deploy:{fake('url', 14, letters)}@git.example.com/repo.git\n",
        "clean.py": 'SEED = 42\nURL = "http://127.0.0.1:5000"\nDIGEST = "' + hashlib.sha256(b"x").hexdigest() + '"\n',
    }
    for name, text in planted.items():
        (tmp_path / name).write_text(text)
    token = f'token = "{fake("nb", 32, letters)}"'
    notebook_key = "AK" + "IA" + fake("nb-aws", 16)
    png = base64.b64encode(b"\x89PNG\r\n\x1a\n" + hashlib.sha512(b"pixels").digest() * 40).decode()
    notebook = {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [
        {"cell_type": "code", "id": "a", "metadata": {}, "execution_count": 1, "source": [token],
         "outputs": [{"output_type": "display_data", "metadata": {}, "data": {"image/png": png}}]},
        {"cell_type": "code", "id": "b", "metadata": {}, "execution_count": 2, "source": ["print(creds)"],
         "outputs": [{"output_type": "stream", "name": "stdout", "text": [notebook_key + "\n"]}]},
    ]}
    (tmp_path / "lesson.ipynb").write_text(json.dumps(notebook, indent=1))
    found = scan_for_secrets(sorted(tmp_path.iterdir()))
    files = {entry.split(":")[0] for entry in found}
    assert files == set(planted) - {"clean.py"} | {"lesson.ipynb"}, found
    for expected in ["aws.py:1: AWS Access Key", "aws_secret.py:1: AWS Access Key", "id_rsa.txt:1: Private Key",
                     "github.py:1: GitHub Token", "gitlab.py:1: GitLab Token", "slack.py:1: Slack Token",
                     "settings.py:1: Secret Keyword", "settings.py:2: Token literal",
                     "remote.cfg:1: Basic Auth Credentials"]:
        assert expected in found, found
    # In the notebook: the token in the code and the key in the output, never the picture.
    lines = (tmp_path / "lesson.ipynb").read_text().splitlines()
    flagged = sorted({int(e.split(":")[1]) for e in found if e.startswith("lesson.ipynb")})
    assert len(flagged) == 2, found
    assert fake("nb", 32, letters) in lines[flagged[0] - 1] and notebook_key in lines[flagged[1] - 1], found
