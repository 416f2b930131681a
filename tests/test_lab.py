"""lab: the JupyterLab command line and the kernel settings the course runs with."""

import json

import pytest

from mlops_course.course import lab


def test_lab_command_is_loopback_tokened_and_fetches_nothing(tmp_path):
    command = lab.lab_command(tmp_path, port=9999, token="abc", port_retries=0)
    assert "--ip=127.0.0.1" in command and "--no-browser" in command
    assert "--port=9999" in command and "--ServerApp.port_retries=0" in command
    assert f"--ServerApp.root_dir={tmp_path}" in command and "--IdentityProvider.token=abc" in command
    assert "--LabApp.news_url=None" in command and "--LabApp.extension_manager=readonly" in command
    assert any(c.endswith("NeverCheckForUpdate") for c in command)
    assert "--KernelManager.transport_encryption=auto" in command


def test_every_lab_gets_its_own_token(tmp_path):
    tokens = {next(c for c in lab.lab_command(tmp_path) if c.startswith("--IdentityProvider.token=")) for _ in "ab"}
    assert len(tokens) == 2


def test_settings_turn_news_and_update_checks_off():
    overrides = json.loads((lab.SETTINGS_DIR / "overrides.json").read_text())
    notification = overrides["@jupyterlab/apputils-extension:notification"]
    assert notification == {"fetchNews": "false", "checkForUpdates": False}


def test_kernel_config_asks_for_encrypted_kernels():
    assert lab.kernel_config().KernelManager.transport_encryption == "auto"


def test_missing_notebook_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="notebooks folder"):
        lab.lab_command(tmp_path / "nope")
