"""A fresh clone stays clean: the package build installs the JupyterLab extension's npm
packages from the committed lock file (``npm ci``), which must match package.json, so
``make demo`` and ``make test`` leave ``git status`` as it was."""
import os
import pathlib
import shutil
import subprocess
import tomllib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
LABEXTENSION = ROOT / "labextension"


def test_the_build_installs_from_the_lock_file():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    hooks = config["tool"]["hatch"]["build"]["hooks"]["jupyter-builder"]
    for kwargs in (hooks["build-kwargs"], hooks["editable-build-kwargs"]):
        assert kwargs["path"] == "labextension"
        assert kwargs["npm"] == ["sh", "npm-locked.sh"]
    script = (LABEXTENSION / "npm-locked.sh").read_text()
    assert "npm ci" in script


@pytest.mark.timeout(300)
def test_lock_file_installs_as_committed(tmp_path):
    """What the build runs (``npm-locked.sh install``), without downloading the packages:
    npm accepts the lock file as it is and leaves it unchanged."""
    npm = shutil.which("npm")
    if npm is None:
        message = "the extension build needs npm"
        if os.environ.get("CI"):
            pytest.fail(message + " (.ci/run installs it)")
        pytest.skip(message)
    for name in ("package.json", "package-lock.json", "npm-locked.sh"):
        shutil.copy(LABEXTENSION / name, tmp_path / name)
    lock = (tmp_path / "package-lock.json").read_bytes()
    result = subprocess.run(["sh", "npm-locked.sh", "install", "--dry-run", "--ignore-scripts"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=280)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (tmp_path / "package-lock.json").read_bytes() == lock
    assert not (tmp_path / "node_modules").exists()
